"""The multimodal language model: GPT-2 (``transformers``) over interleaved token groups.

Vocabulary (ids from ``offset``, 0 for a model built from a config, the text vocabulary's size for a
pretrained GPT-2 from ``--lm PATH``, whose text tokens stay as they are):

    [listener motion codes K][speaker motion codes K][speech codes S][emotion codes E][BOS]

Listener and speaker motion share the VQ-VAE's codebook but have separate ranges, so the model
knows whose motion a code is. Sequence of one window of G groups of r frames:

    BOS, (s_1 ... s_n, e_1, m_1, l_1), (s_1 ... s_n, e_2, m_2, l_2), ...   multimodal
    BOS, (m_1, l_1), (m_2, l_2), ...                                      speaker motion only

s: the speaker's speech tokens of the group, e: its emotion token, m: its motion token, l: the
listener's token. Positions are the tokens' indices in the window (GPT-2's learned absolute
positions); causal attention then gives exactly this: the listener token of group j is predicted
from everything up to the speaker's tokens of group j (the speaker's frames that end where the
listener's group ends) and the listener's own earlier tokens, never from a later speaker group.

Objectives: ``full`` (L): cross-entropy of each listener token, over the listener range only (the
distribution generation samples from); ``pre`` (L_pre): cross-entropy of every token after BOS, each
over its own modality's range (LM-listener's speaker-/audio-token losses; the supplement names L_pre
without defining it). Training corrupts listener input tokens: each is kept with probability
``pkeep`` and otherwise replaced by a random code (LM-listener's pkeep 0.5).

Generation (``sample``) is incremental with the KV cache: one forward of group_len tokens per group
(the previous listener token and the next group's speaker tokens); past ``window_groups`` groups the
context restarts from BOS with the last half of the groups (positions from 0, as in training).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ehead_cli import assets
from ehead_cli.errors import AssetError
from ehead_cli.listener.config import LMConfig

MODALITIES = ("listener", "speaker", "speech", "emotion")


@functools.cache
def _cache_arg() -> str:
    """The KV-cache keyword of GPT-2's forward: ``cache`` in transformers >= 5, ``past_key_values`` before."""
    import inspect

    from transformers import GPT2LMHeadModel

    return "cache" if "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters else "past_key_values"



@dataclass(frozen=True)
class Vocab:
    """Token id ranges. n_motion K, n_speech S, n_emotion E; ``speech_per_group`` n; ``offset`` first id."""

    n_motion: int
    n_speech: int
    n_emotion: int
    speech_per_group: int
    multimodal: bool
    offset: int = 0

    @property
    def listener(self) -> int:
        return self.offset

    @property
    def speaker(self) -> int:
        return self.offset + self.n_motion

    @property
    def speech(self) -> int:
        return self.offset + 2 * self.n_motion

    @property
    def emotion(self) -> int:
        return self.speech + self.n_speech

    @property
    def bos(self) -> int:
        return self.emotion + self.n_emotion

    @property
    def size(self) -> int:
        return self.bos + 1

    @property
    def group_len(self) -> int:
        return (self.speech_per_group + 1 if self.multimodal else 0) + 2

    def range(self, modality: str) -> tuple[int, int]:
        start = {"listener": self.listener, "speaker": self.speaker, "speech": self.speech,
                 "emotion": self.emotion}[modality]
        size = {"listener": self.n_motion, "speaker": self.n_motion, "speech": self.n_speech,
                "emotion": self.n_emotion}[modality]
        return start, start + size

    def group_modalities(self) -> list[str]:
        """The modality of each position of a group."""
        cond = ["speech"] * self.speech_per_group + ["emotion"] if self.multimodal else []
        return [*cond, "speaker", "listener"]


def group_tokens(vocab: Vocab, speaker: torch.Tensor, listener: torch.Tensor | None,
                 speech: torch.Tensor | None, emotion: torch.Tensor | None) -> torch.Tensor:
    """(B, G) speaker codes, (B, G) listener codes (None: a placeholder 0), (B, G, n) speech, (B, G)
    emotion -> (B, G, group_len) token ids."""
    B, G = speaker.shape
    parts = []
    if vocab.multimodal:
        if speech is None or emotion is None:
            raise ValueError("a multimodal LM needs speech and emotion tokens")
        parts += [speech + vocab.speech, (emotion + vocab.emotion)[..., None]]
    lis = torch.zeros_like(speaker) if listener is None else listener
    parts += [(speaker + vocab.speaker)[..., None], (lis + vocab.listener)[..., None]]
    return torch.cat(parts, dim=-1)


def window_sequence(vocab: Vocab, groups: torch.Tensor) -> torch.Tensor:
    """(B, G, group_len) -> (B, 1 + G group_len): BOS then the groups in order."""
    B = groups.shape[0]
    bos = torch.full((B, 1), vocab.bos, dtype=groups.dtype, device=groups.device)
    return torch.cat([bos, groups.reshape(B, -1)], dim=1)


class ListenerLM(nn.Module):
    """GPT-2 over the vocabulary above: built from ``LMConfig`` by default, or initialised from a local
    pretrained GPT-2 folder (``pretrained``, ``--lm PATH`` / ``EHEAD_GPT2``) whose embeddings are
    extended by the listener's tokens."""

    def __init__(self, cfg: LMConfig, n_motion: int, n_speech: int, n_emotion: int, speech_per_group: int,
                 pretrained: str | os.PathLike | None = None, offset: int | None = None,
                 gpt2_config: dict | None = None):
        """``gpt2_config`` (a stored ``GPT2Config.to_dict()``, with ``offset``) rebuilds a saved model's exact
        architecture, whether it was built from a config or from a pretrained folder."""
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.cfg = cfg
        if gpt2_config is not None:
            self.vocab = Vocab(n_motion, n_speech, n_emotion, speech_per_group, cfg.multimodal, offset or 0)
            model = GPT2LMHeadModel(GPT2Config.from_dict(gpt2_config))
            if model.config.vocab_size != self.vocab.size:
                raise AssetError(f"stored GPT-2 config has {model.config.vocab_size} tokens, the listener needs "
                                 f"{self.vocab.size}")
        elif pretrained is not None:
            folder = assets.resolve("gpt2", pretrained)
            model = _load_gpt2(folder)
            base = model.config.vocab_size if offset is None else offset
            self.vocab = Vocab(n_motion, n_speech, n_emotion, speech_per_group, cfg.multimodal, base)
            if self.n_positions_needed > model.config.n_positions:
                raise AssetError(f"{folder}: GPT-2 has {model.config.n_positions} positions, a "
                                 f"{cfg.window_groups}-group window needs {self.n_positions_needed}")
            model.resize_token_embeddings(self.vocab.size)
        else:
            self.vocab = Vocab(n_motion, n_speech, n_emotion, speech_per_group, cfg.multimodal, offset or 0)
            gcfg = GPT2Config(vocab_size=self.vocab.size, n_positions=self.n_positions_needed, n_embd=cfg.n_embd,
                              n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=cfg.dropout,
                              embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, bos_token_id=self.vocab.bos,
                              eos_token_id=self.vocab.bos)
            model = GPT2LMHeadModel(gcfg)
        self.gpt = model

    @property
    def n_positions_needed(self) -> int:
        return 1 + self.cfg.window_groups * self.vocab.group_len

    def logits(self, ids: torch.Tensor, position_ids: torch.Tensor | None = None, past=None, use_cache: bool = False):
        """(B, L) ids -> ((B, L, V) logits, cache)."""
        if position_ids is None:
            position_ids = torch.arange(ids.shape[1], device=ids.device)[None].expand(ids.shape[0], -1)
        # transformers >= 5 names the KV cache ``cache``; earlier versions ``past_key_values``
        key = _cache_arg()
        out = self.gpt(input_ids=ids, position_ids=position_ids, use_cache=use_cache, **{key: past})
        return out.logits, getattr(out, key, None)

    def loss(self, batch: dict[str, torch.Tensor], objective: str = "full",
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropy of a batch of windows. batch: ``listener``, ``speaker`` (B, G) codes, ``speech``
        (B, G, n), ``emotion`` (B, G) (multimodal only), and optionally ``listener_in`` (B, G): the
        corrupted listener tokens to read (the training data draws them, ``data.LMWindows``); without
        it a model in training mode corrupts the inputs itself with ``generator``. Returns loss, ce per
        modality, listener accuracy."""
        v = self.vocab
        target_groups = group_tokens(v, batch["speaker"], batch["listener"], batch.get("speech"), batch.get("emotion"))
        seq = window_sequence(v, target_groups)  # (B, L)
        inp = seq
        corrupted = batch.get("listener_in")
        if corrupted is None and self.training and self.cfg.pkeep < 1.0:
            keep = torch.rand(batch["listener"].shape, generator=generator, device=seq.device) < self.cfg.pkeep
            rand = torch.randint(0, v.n_motion, batch["listener"].shape, generator=generator, device=seq.device)
            corrupted = torch.where(keep, batch["listener"], rand)
        if corrupted is not None:
            inp_groups = group_tokens(v, batch["speaker"], corrupted, batch.get("speech"), batch.get("emotion"))
            inp = window_sequence(v, inp_groups)
        logits, _ = self.logits(inp[:, :-1])  # position p predicts token p + 1
        targets = seq[:, 1:]
        G = batch["speaker"].shape[1]
        mods = v.group_modalities() * G  # modality of each target position
        out: dict[str, torch.Tensor] = {}
        total, count = logits.new_zeros(()), 0
        for name in MODALITIES:
            idx = [i for i, m in enumerate(mods) if m == name]
            if not idx:
                continue
            lo, hi = v.range(name)
            sub = logits[:, idx, lo:hi].float()  # (B, n, range)
            tgt = targets[:, idx] - lo
            ce = F.cross_entropy(sub.reshape(-1, hi - lo), tgt.reshape(-1))
            out[f"ce_{name}"] = ce
            if name == "listener":
                out["acc"] = (sub.argmax(-1) == tgt).float().mean()
            if objective == "pre" or name == "listener":
                total = total + ce * tgt.numel()
                count += tgt.numel()
        out["loss"] = total / max(count, 1)
        return out

    @torch.no_grad()
    def sample(self, speaker: torch.Tensor, speech: torch.Tensor | None, emotion: torch.Tensor | None, *,
               temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Autoregressive listener codes (B, G) for speaker codes (B, G) (+ speech (B, G, n), emotion
        (B, G)), with the KV cache; temperature 0 is greedy decoding."""
        v = self.vocab
        B, G = speaker.shape
        cond = group_tokens(v, speaker, None, speech, emotion)[..., :-1]  # (B, G, group_len - 1)
        W = self.cfg.window_groups
        listener = torch.zeros(B, G, dtype=torch.long, device=speaker.device)
        lo, hi = v.range("listener")
        past, n_ctx, start = None, 0, 0  # cache, positions used, first group in the context
        bos = torch.full((B, 1), v.bos, dtype=torch.long, device=speaker.device)
        for j in range(G):
            if j == 0 or j - start >= W:  # (re)start the context: BOS + the last W // 2 whole groups
                start = 0 if j == 0 else j - W // 2
                kept = [torch.cat([cond[:, g], (listener[:, g] + v.listener)[:, None]], 1) for g in range(start, j)]
                chunk = torch.cat([bos, *kept, cond[:, j]], dim=1)
                past, n_ctx = None, 0
            else:
                chunk = torch.cat([(listener[:, j - 1] + v.listener)[:, None], cond[:, j]], dim=1)
            pos = torch.arange(n_ctx, n_ctx + chunk.shape[1], device=chunk.device)[None].expand(B, -1)
            logits, past = self.logits(chunk, pos, past, use_cache=True)
            n_ctx += chunk.shape[1]
            listener[:, j] = sample_logits(logits[:, -1, lo:hi].float(), temperature, top_k, generator)
        return listener


def sample_logits(logits: torch.Tensor, temperature: float, top_k: int | None,
                  generator: torch.Generator | None) -> torch.Tensor:
    """(B, V) -> (B,) a sample at ``temperature`` from the ``top_k`` most likely (all when None);
    temperature 0 returns the argmax."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _load_gpt2(folder):
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    if not (folder / "config.json").is_file():
        raise AssetError(f"{folder}: not a transformers GPT-2 folder (no config.json); point --lm at it")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return GPT2LMHeadModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise AssetError(f"{folder}: cannot load a GPT-2 model ({str(err).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
