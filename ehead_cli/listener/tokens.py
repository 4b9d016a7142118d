"""The speaker's speech and emotion tokens, one row of each per r-frame group.

Offline defaults (the project's own; both fitted by ``fit_token_codebooks`` and stored in the
checkpoint, both named as deviations in docs/listener.md):

* speech: k-means over log-mel features (``ehead_cli.model.encoders.log_mel``, the project's front end):
  the two 50 Hz log-mel frames of each 25 fps motion frame are stacked into one feature, so a group
  of r = 8 frames gives 8 speech tokens;
* emotion: k-means "affect" clusters of the speaker's expression (its first ``affect_dims``
  coefficients, standardised). Eqs. 7-9 with a one-hot recogniser: each frame's distribution is the
  one-hot of its nearest cluster, the group's average is their histogram, and the token is its mode
  (lowest index on ties).

Third-party tokenisers from local paths (nothing is downloaded):

* ``SpeechTokenizerCodes``: the first RVQ layer of SpeechTokenizer (50 Hz, 2 per motion frame), built
  with the ``speechtokenizer`` package's model class from ``config.json`` and the weights loaded with
  ``torch.load(weights_only=True)`` (the package's own ``load_from_checkpoint`` unpickles without it);
* ``EmocaEmotion``: EMOCA's emotion recogniser (the EmoDECA MLP head on FLAME expression / pose codes,
  its Lightning ``.ckpt`` read with ``weights_only=True``), eqs. 8-9 exactly: per-frame class
  probabilities averaged over the group, the mode is the token.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ehead_cli import assets
from ehead_cli.errors import AssetError
from ehead_cli.layout import EXPR, FEATURES_PER_FRAME, JAW, ROT, SAMPLES_PER_FRAME
from ehead_cli.listener.config import TokenConfig
from ehead_cli.metrics.kmeans import assign, kmeans
from ehead_cli.model.encoders import dft_basis, log_mel, mel_filterbank

KMEANS_SEED = 0
AFFECT_STD_FLOOR = 1e-3


# --- the default speech tokens --------------------------------------------------------------------
def speech_features(wave: np.ndarray, n_frames: int, n_mels: int) -> np.ndarray:
    """(N,) 16 kHz -> (n_frames, 2 n_mels) float32: per motion frame its two log-mel frames stacked.
    The audio is zero-padded or cut to exactly ``n_frames`` x 640 samples first."""
    n = n_frames * SAMPLES_PER_FRAME
    wave = np.asarray(wave, np.float32)
    wave = np.pad(wave[:n], (0, max(0, n - len(wave))))
    with torch.no_grad():
        mel = log_mel(torch.from_numpy(wave)[None], mel_filterbank(n_mels), dft_basis())[0]  # (2T, n_mels)
    return mel.reshape(n_frames, FEATURES_PER_FRAME * n_mels).numpy()


def mode_per_group(labels: np.ndarray, r: int, n_classes: int) -> np.ndarray:
    """(G r,) per-frame labels -> (G,) the most frequent label of each group of r (lowest on ties):
    eqs. 8-9 with one-hot per-frame distributions."""
    groups = labels.reshape(-1, r)
    hist = np.zeros((groups.shape[0], n_classes), np.int64)
    np.add.at(hist, (np.arange(groups.shape[0])[:, None], groups), 1)
    return hist.argmax(1)


def emotion_tokens_from_probs(probs: np.ndarray, r: int) -> np.ndarray:
    """Eqs. 7-9: (G r, Ne) per-frame emotion probabilities -> (G,) argmax of each group's mean."""
    return probs.reshape(-1, r, probs.shape[-1]).mean(1).argmax(1)


@dataclass
class TokenCodebooks:
    """The fitted default tokenisers, stored in the checkpoint.

    speech_centers (K_s, 2 n_mels) float32 (None with SpeechTokenizer); affect_centers (E, affect_dims),
    affect_mean, affect_std (affect_dims,) (None with EMOCA)."""

    speech_centers: np.ndarray | None
    affect_centers: np.ndarray | None
    affect_mean: np.ndarray | None
    affect_std: np.ndarray | None

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in ("speech_centers", "affect_centers", "affect_mean", "affect_std"):
            v = getattr(self, name)
            if v is not None:
                out[f"tokens.{name}"] = torch.from_numpy(np.ascontiguousarray(v, np.float32))
        return out

    @classmethod
    def from_tensors(cls, state: dict[str, torch.Tensor]) -> TokenCodebooks:
        def get(name: str) -> np.ndarray | None:
            t = state.get(f"tokens.{name}")
            return None if t is None else t.float().numpy()

        return cls(get("speech_centers"), get("affect_centers"), get("affect_mean"), get("affect_std"))


def _sample_rows(rows: list[np.ndarray], limit: int, seed: int) -> np.ndarray:
    x = np.concatenate(rows).astype(np.float64)
    if len(x) > limit:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))]
    return x


def fit_token_codebooks(waves: list[np.ndarray], speaker_motions: list[np.ndarray], cfg: TokenConfig,
                        seed: int = KMEANS_SEED) -> TokenCodebooks:
    """Fit the default speech and affect k-means on the training clips (``waves`` (N,) 16 kHz and
    ``speaker_motions`` (T, 115) of the same clips). Each fit sees at most ``cfg.kmeans_frames``
    frames, a seeded sample."""
    speech = affect = mean = std = None
    if cfg.speech == "kmeans":
        feats = [speech_features(w, len(m), cfg.n_mels) for w, m in zip(waves, speaker_motions, strict=True)]
        x = _sample_rows(feats, cfg.kmeans_frames, seed)
        speech = kmeans(x, min(cfg.speech_codes, len(x)), seed=seed).centers.astype(np.float32)
        if len(speech) < cfg.speech_codes:  # fewer frames than codes: pad with copies (never nearest first)
            speech = np.concatenate([speech, np.repeat(speech[:1], cfg.speech_codes - len(speech), 0)])
    if cfg.emotion == "kmeans":
        expr = [np.asarray(m)[:, EXPR][:, : cfg.affect_dims] for m in speaker_motions]
        pooled = np.concatenate(expr).astype(np.float64)
        mean = pooled.mean(0)
        std = np.maximum(pooled.std(0), AFFECT_STD_FLOOR)
        x = (_sample_rows(expr, cfg.kmeans_frames, seed + 1) - mean) / std
        affect = kmeans(x, min(cfg.emotion_codes, len(x)), seed=seed).centers.astype(np.float32)
        if len(affect) < cfg.emotion_codes:
            affect = np.concatenate([affect, np.repeat(affect[:1], cfg.emotion_codes - len(affect), 0)])
        mean, std = mean.astype(np.float32), std.astype(np.float32)
    return TokenCodebooks(speech, affect, mean, std)


class SpeakerTokenizer:
    """Speech and emotion tokens of a speaker clip, per r-frame group.

    ``speech(wave, n_frames)`` -> (G, speech_per_group); ``emotion(motion)`` -> (G,); n_frames = G r.
    """

    def __init__(self, cfg: TokenConfig, rate: int, codebooks: TokenCodebooks,
                 speech_tokenizer: str | os.PathLike | None = None, emoca: str | os.PathLike | None = None):
        self.cfg, self.rate, self.codebooks = cfg, rate, codebooks
        self._st = SpeechTokenizerCodes(speech_tokenizer) if cfg.speech == "speechtokenizer" else None
        self._emoca = EmocaEmotion(emoca) if cfg.emotion == "emoca" else None
        if self._st is not None and self._st.codebook_size != cfg.speech_codes:
            raise AssetError(f"{self._st.folder}: SpeechTokenizer has {self._st.codebook_size} codes, the listener "
                             f"config expects tokens.speech_codes = {cfg.speech_codes}")
        if self._emoca is not None and self._emoca.n_classes != cfg.emotion_codes:
            raise AssetError(f"{self._emoca.folder}: EMOCA predicts {self._emoca.n_classes} emotions, the listener "
                             f"config expects tokens.emotion_codes = {cfg.emotion_codes}")

    def speech(self, wave: np.ndarray, n_frames: int) -> np.ndarray:
        if n_frames % self.rate:
            raise ValueError(f"{n_frames} frames is not a whole number of {self.rate}-frame groups")
        if self._st is not None:
            codes = self._st.codes(wave, n_frames)  # (2 T,) at 50 Hz
        else:
            feats = speech_features(wave, n_frames, self.cfg.n_mels)
            codes = assign(feats, self.codebooks.speech_centers)  # (T,) at 25 Hz
        per_group = len(codes) // (n_frames // self.rate)
        if per_group != self.cfg.speech_per_group:
            raise AssetError(f"the speech tokeniser gives {per_group} tokens per group, the listener config expects "
                             f"tokens.speech_per_group = {self.cfg.speech_per_group}")
        return codes.reshape(-1, per_group).astype(np.int64)

    def emotion(self, motion: np.ndarray) -> np.ndarray:
        motion = np.asarray(motion, np.float32)
        if len(motion) % self.rate:
            raise ValueError(f"{len(motion)} frames is not a whole number of {self.rate}-frame groups")
        if self._emoca is not None:
            return emotion_tokens_from_probs(self._emoca.probabilities(motion), self.rate).astype(np.int64)
        cb = self.codebooks
        x = (motion[:, EXPR][:, : self.cfg.affect_dims] - cb.affect_mean) / cb.affect_std
        return mode_per_group(assign(x, cb.affect_centers), self.rate, self.cfg.emotion_codes).astype(np.int64)


# --- SpeechTokenizer -----------------------------------------------------------------------------------
def _speechtokenizer_class() -> type:
    """The ``speechtokenizer`` package's model class. The package's ``__init__`` also imports its trainer
    (torchaudio, accelerate, beartype, ...), which inference does not need and torchaudio may not
    install: when that import fails, ``speechtokenizer.model`` is loaded without running it."""
    try:
        from speechtokenizer import SpeechTokenizer

        return SpeechTokenizer
    except ImportError:
        pass
    spec = importlib.util.find_spec("speechtokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise AssetError("SpeechTokenizer needs the speechtokenizer package: pip install --no-deps "
                         "speechtokenizer==1.0.1 einops (its other dependencies are only for training)")
    for name in [m for m in sys.modules if m == "speechtokenizer" or m.startswith("speechtokenizer.")]:
        del sys.modules[name]  # a half-imported package from the failed attempt
    package = importlib.util.module_from_spec(spec)  # the package object, its __init__ not executed
    sys.modules["speechtokenizer"] = package
    try:
        return importlib.import_module("speechtokenizer.model").SpeechTokenizer
    except ImportError as err:
        del sys.modules["speechtokenizer"]
        raise AssetError(f"cannot import speechtokenizer.model ({err}); pip install --no-deps "
                         "speechtokenizer==1.0.1 einops") from None


class SpeechTokenizerCodes:
    """RVQ-1 codes of SpeechTokenizer from a local folder: ``config.json`` and one ``.pt`` state dict
    (``SpeechTokenizer.pt`` in the release). Path: ``--speech-tokenizer`` / ``EHEAD_SPEECHTOKENIZER``."""

    def __init__(self, path: str | os.PathLike | None = None):
        folder = assets.resolve("speechtokenizer", path)
        if folder.is_file():
            folder, ckpt = folder.parent, folder
        else:
            pts = sorted(folder.glob("*.pt"))
            ckpt = folder / "SpeechTokenizer.pt" if (folder / "SpeechTokenizer.pt").is_file() else (
                pts[0] if pts else None)
        config = folder / "config.json"
        if ckpt is None or not config.is_file():
            raise AssetError(f"{folder}: a SpeechTokenizer folder needs config.json and a .pt checkpoint")
        try:
            cfg = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise AssetError(f"{config}: unreadable SpeechTokenizer config ({err})") from None
        if int(cfg.get("sample_rate", 16000)) != 16000 or int(np.prod(cfg.get("strides", [0]))) != 320:
            raise AssetError(f"{config}: ehead needs a 16 kHz SpeechTokenizer with a 320-sample hop (50 Hz)")
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling refusal or damaged file is the user's file
            raise AssetError(f"{ckpt}: not a plain state dict loadable with weights_only=True ({err})") from None
        model = _speechtokenizer_class()(cfg)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise AssetError(f"{ckpt}: weights do not match {config} ({str(err).splitlines()[0]})") from None
        self.model = model.eval().requires_grad_(False)
        self.folder = folder
        self.codebook_size = int(cfg["codebook_size"])

    @torch.no_grad()
    def codes(self, wave: np.ndarray, n_frames: int) -> np.ndarray:
        """(N,) 16 kHz -> (2 n_frames,) RVQ-1 codes at 50 Hz (audio padded or cut to n_frames x 640)."""
        n = n_frames * SAMPLES_PER_FRAME
        wave = np.asarray(wave, np.float32)
        wave = np.pad(wave[:n], (0, max(0, n - len(wave))))
        codes = self.model.encode(torch.from_numpy(wave)[None, None], n_q=1)  # (n_q, B, S)
        out = codes[0, 0].numpy()
        if len(out) != 2 * n_frames:
            raise AssetError(f"{self.folder}: SpeechTokenizer gave {len(out)} codes for {n_frames} frames "
                             f"(expected {2 * n_frames})")
        return out


# --- EMOCA's emotion recogniser --------------------------------------------------------------------------
class EmocaEmotion:
    """EMOCA's emotion recogniser head (EmoDECA's MLP) from a local folder: ``cfg.yaml`` and a Lightning
    checkpoint under ``checkpoints/`` (``*.ckpt``; the last in name order). Path: ``--emoca`` / ``EHEAD_EMOCA``.

    Read from cfg.yaml: model.use_identity / use_expression / use_global_pose / use_jaw_pose /
    use_detail_code, model.deca_cfg.model.n_shape / n_exp / n_detail, model.num_mlp_layers,
    model.mlp_dim or mlp_dimension_factor, model.mlp_norm_layer (BatchNorm1d / LayerNorm or none),
    model.predict_expression / predict_valence / predict_arousal, data.n_expression (default 9).
    Read from the checkpoint: ``state_dict["mlp.model.*"]`` only. The MLP is Linear, [norm], LeakyReLU(0.2)
    per hidden layer, then Linear; its input is [shape, expression, global pose, jaw] as configured
    (detail codes as zeros: ehead has none); its outputs are the expression logits, then valence and
    arousal. ehead motion maps onto it as expression = the first n_exp FLAME coefficients, global pose
    = head rotation, jaw = jaw pose, shape = the identity's first n_shape coefficients.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        import yaml

        folder = assets.resolve("emoca", path)
        cfg_path = folder / "cfg.yaml"
        ckpts = sorted((folder / "checkpoints").glob("*.ckpt")) if (folder / "checkpoints").is_dir() else []
        if not cfg_path.is_file() or not ckpts:
            raise AssetError(f"{folder}: an EMOCA emotion recogniser folder needs cfg.yaml and checkpoints/*.ckpt")
        try:
            cfg = yaml.safe_load(cfg_path.read_text())
            model_cfg, data_cfg = cfg["model"], cfg.get("data", {}) or {}
            deca = model_cfg.get("deca_cfg", {}).get("model", {})
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as err:
            raise AssetError(f"{cfg_path}: unreadable EMOCA config ({err})") from None
        self.use = {k: bool(model_cfg.get(f"use_{k}", False))
                    for k in ("identity", "expression", "global_pose", "jaw_pose", "detail_code")}
        self.n_shape, self.n_exp = int(deca.get("n_shape", 100)), int(deca.get("n_exp", 50))
        self.n_detail = int(deca.get("n_detail", 128))
        if self.n_exp > 100:
            raise AssetError(f"{cfg_path}: n_exp {self.n_exp} exceeds ehead's 100 expression coefficients")
        in_size = (self.n_shape * self.use["identity"] + self.n_exp * self.use["expression"]
                   + 3 * self.use["global_pose"] + 3 * self.use["jaw_pose"] + self.n_detail * self.use["detail_code"])
        if "mlp_dimension_factor" in model_cfg:
            hidden = int(in_size * model_cfg["mlp_dimension_factor"])
        else:
            hidden = int(model_cfg.get("mlp_dim", in_size))
        if not model_cfg.get("predict_expression", True):
            raise AssetError(f"{cfg_path}: this EMOCA model predicts no expression classes (emotion tokens need them)")
        self.n_classes = int(data_cfg.get("n_expression", 9))
        out_size = (self.n_classes + bool(model_cfg.get("predict_valence", False))
                    + bool(model_cfg.get("predict_arousal", False)))
        norm = model_cfg.get("mlp_norm_layer")
        norm_cls = {"BatchNorm1d": nn.BatchNorm1d, "LayerNorm": nn.LayerNorm, None: None}.get(norm, "bad")
        if norm_cls == "bad":
            raise AssetError(f"{cfg_path}: unsupported mlp_norm_layer {norm!r} (BatchNorm1d, LayerNorm or none)")
        layers: list[nn.Module] = []
        sizes = [in_size] + [hidden] * int(model_cfg.get("num_mlp_layers", 1))
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers.append(nn.Linear(a, b))
            if norm_cls is not None:
                layers.append(norm_cls(b))
            layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Linear(sizes[-1], out_size))
        self.mlp = nn.Sequential(*layers)
        ckpt = ckpts[-1]
        try:
            raw = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            raise AssetError(f"{ckpt}: cannot be read with weights_only=True ({str(err).splitlines()[0]}); "
                             "re-save its state_dict alone: torch.save({'state_dict': ckpt['state_dict']}, path)"
                             ) from None
        state = raw.get("state_dict", raw) if isinstance(raw, dict) else {}
        mlp_state = {k[len("mlp.model."):]: v for k, v in state.items() if k.startswith("mlp.model.")}
        try:
            self.mlp.load_state_dict(mlp_state)
        except RuntimeError as err:
            raise AssetError(f"{ckpt}: the emotion MLP's weights do not match {cfg_path} "
                             f"({str(err).splitlines()[0]})") from None
        self.mlp.eval().requires_grad_(False)
        self.folder = folder
        self.has_va = out_size > self.n_classes

    def _inputs(self, motion: np.ndarray, shape: np.ndarray | None) -> torch.Tensor:
        m = torch.as_tensor(np.asarray(motion, np.float32))
        parts = []
        if self.use["identity"]:
            s = np.zeros(self.n_shape, np.float32) if shape is None else np.asarray(shape, np.float32)[: self.n_shape]
            parts.append(torch.as_tensor(s)[None].expand(len(m), -1))
        if self.use["expression"]:
            parts.append(m[:, EXPR][:, : self.n_exp])
        if self.use["global_pose"]:
            parts.append(m[:, ROT])
        if self.use["jaw_pose"]:
            parts.append(m[:, JAW])
        if self.use["detail_code"]:
            parts.append(torch.zeros(len(m), self.n_detail))
        return torch.cat(parts, 1)

    @torch.no_grad()
    def probabilities(self, motion: np.ndarray, shape: np.ndarray | None = None) -> np.ndarray:
        """(T, 115) -> (T, n_classes) per-frame emotion probabilities (eq. 8)."""
        logits = self.mlp(self._inputs(motion, shape))[:, : self.n_classes]
        return torch.softmax(logits, dim=1).numpy()

    @torch.no_grad()
    def affect(self, motion: np.ndarray) -> np.ndarray:
        """(T, 115) -> (T, A): valence and arousal when the model predicts them, else the class
        probabilities: an ``AffectEstimator`` for the L2 Affect metric."""
        out = self.mlp(self._inputs(motion, None))
        return (out[:, self.n_classes:] if self.has_va else torch.softmax(out[:, : self.n_classes], 1)).numpy()
