"""The second model family: the multimodal LM listener (mm-listener supplement; LM-listener, Ng et al. 2023).

An identity-disentangled VQ-VAE turns listener motion into tokens (``vqvae``); a GPT-2-architecture
language model predicts the listener's tokens from the speaker's motion, speech and emotion tokens
(``lm``, ``tokens``); the VQ-VAE decodes them with the listener's identity code. Modules:

``config``      typed configs and the presets in models/presets/listener/
``vqvae``       the VQ-VAE and its losses (eqs. 2-6)
``tokens``      speech and emotion tokens: the offline k-means defaults, SpeechTokenizer and EMOCA loaders
``lm``          vocabulary, interleaved sequences, the GPT-2 model, incremental sampling with the KV cache
``data``        dyadic dataset folders -> VQ windows and LM token windows
``importers``   DualTalk and Learning-to-Listen layouts -> a dyadic dataset folder
``checkpoint``  listener checkpoint folders (config.json + model.safetensors)
``train``       the training stages as tasks of the shared loop (ehead_cli.train.loop)
``generate``    generation, video, evaluation wiring (speed: ehead_cli.bench.listener)
``ablation``    the supplement's Table 2 on a dyadic dataset

``ehead train / generate / eval / bench --family listener`` run them; ``python -m ehead_cli.listener
ablation`` runs the ablation.
"""
