"""The offline LS labeler: native Silero VAD (weights from the silero-vad wheel), the mouth gate,
and the states it finds on real GRID clips (silence at both ends, speech in the middle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_media
from safetensors.torch import save_file

from ehead_cli.errors import AssetError
from ehead_cli.io.audio import load_audio
from ehead_cli.layout import LISTEN, MOTION_FPS, SAMPLE_RATE, SPEAK, n_frames_for
from ehead_cli.prepare.vad import (
    CHUNK,
    SileroVAD,
    load_silero,
    mouth_gate,
    silero_weights_path,
    vad_states,
    voice_probability,
)

REPO = Path(__file__).resolve().parents[1]


class ConstantVoice(SileroVAD):
    """A VAD that hears speech with probability ``p`` in every chunk (to test the gating alone)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.full((-(-wave.shape[0] // CHUNK),), self.p)


def test_random_weights_in_the_package_layout_load_and_run(tmp_path):
    torch.manual_seed(1)
    net = SileroVAD()
    path = tmp_path / "vad.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded = load_silero(path)
    wave = torch.randn(3 * SAMPLE_RATE) * 0.1
    with torch.no_grad():
        probs = loaded(wave)
        np.testing.assert_allclose(probs.numpy(), net(wave).numpy(), rtol=1e-6)
    assert probs.shape == (-(-wave.shape[0] // CHUNK),) and ((probs >= 0) & (probs <= 1)).all()
    # per frame: 3 s -> 75 frames
    assert voice_probability(wave.numpy(), 75, loaded).shape == (75,)

    bad = tmp_path / "other.safetensors"
    save_file({"conv1.weight": torch.zeros(2, 2)}, str(bad))
    with pytest.raises(AssetError, match="not the Silero VAD"):
        load_silero(bad)
    with pytest.raises(AssetError, match="not a readable"):
        load_silero(tmp_path / "missing.safetensors")


def test_mouth_gate_closes_for_a_still_mouth_and_opens_for_an_articulating_one():
    T = 100
    t = np.arange(T) / MOTION_FPS
    still = np.full(T, 0.004) + 1e-4 * np.sin(2 * np.pi * 7 * t)  # tracker jitter only
    talking = 0.006 + 0.006 * np.sin(2 * np.pi * 4 * t)  # 4 syllables per second, 12 mm swing
    assert mouth_gate(still).max() == 0.0
    assert mouth_gate(talking)[10:-10].min() == 1.0
    amplitudes = np.array([0.2, 0.6, 1.0, 1.5, 2.0, 3.0]) * 1e-3  # metres of lip swing
    gates = [np.median(mouth_gate(0.006 + a * np.sin(2 * np.pi * 4 * t))) for a in amplitudes]
    assert gates[0] == 0.0 and gates[-1] == 1.0 and np.all(np.diff(gates) >= 0)
    assert any(0.0 < g < 1.0 for g in gates)  # a linear ramp between the thresholds

def test_voice_with_a_still_mouth_is_listening_and_with_a_moving_mouth_speaking():
    T = 75
    audio = np.zeros(T * 640, np.float32)
    t = np.arange(T) / MOTION_FPS
    voice = ConstantVoice(0.95)
    moving = 0.006 + 0.006 * np.sin(2 * np.pi * 4 * t)
    assert (vad_states(audio, T, np.full(T, 0.004), net=voice).states == LISTEN).all()
    assert (vad_states(audio, T, moving, net=voice).states == SPEAK).all()
    assert (vad_states(audio, T, None, net=voice).states == SPEAK).all()  # no track: voice alone decides
    quiet = vad_states(audio, T, moving, net=ConstantVoice(0.05))
    assert (quiet.states == LISTEN).all() and quiet.score.max() < 0.1


def test_silence_and_a_tone_are_not_speech():
    silero_weights_path()  # the silero-vad package is a dependency
    T = 50
    t = np.arange(T * 640) / SAMPLE_RATE
    for wave in (np.zeros(T * 640, np.float32), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)):
        labels = vad_states(wave, T)
        assert (labels.states == LISTEN).all() and labels.voice.max() < 0.3


@pytest.mark.media
def test_grid_clips_listen_at_both_ends_and_speak_in_the_middle(shared_data):
    for path in shared_media(shared_data, "grid", "*.mpg"):
        wave = load_audio(path)
        T = n_frames_for(wave.shape[0])
        labels = vad_states(wave, T)
        assert (labels.states[:10] == LISTEN).all(), path.name  # the first 0.4 s are silent
        assert (labels.states[-10:] == LISTEN).all(), path.name
        assert labels.states[T // 2] == SPEAK, path.name
        assert 0.3 < (labels.states == SPEAK).mean() < 0.7, path.name


@pytest.mark.media
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside silero_vad's own TorchScript loader
def test_native_network_agrees_with_the_packages_torchscript_model(shared_data):
    """The wheel's safetensors and TorchScript weights are not bit-identical; decisions agree."""
    import silero_vad  # a dependency of ehead: fail, not skip, without it
    jit = silero_vad.load_silero_vad()  # TorchScript, shipped in the same wheel; used only here
    net = load_silero(silero_weights_path())
    for path in shared_media(shared_data, "grid", "*.mpg")[:2]:
        wave = torch.from_numpy(load_audio(path))
        with torch.no_grad():
            ours, theirs = net(wave), jit.audio_forward(wave, SAMPLE_RATE)[0]
        assert ours.shape == theirs.shape
        assert ((ours > 0.5) == (theirs > 0.5)).float().mean() >= 0.95


def test_bridge_pauses_fills_only_short_pauses_inside_speech():
    from ehead_cli.prepare.smoothing import bridge_pauses

    s = np.array([-1, -1, 1, 1, -1, -1, 1, -1, -1, -1, -1, 1, -1], np.int8)
    out = bridge_pauses(s, 2)
    np.testing.assert_array_equal(out, [-1, -1, 1, 1, 1, 1, 1, -1, -1, -1, -1, 1, -1])  # the 4-frame gap stays


def test_states_auto_speaks_where_the_audio_has_voice(tmp_path):
    """``ehead generate --states auto``: silence around one speaker's utterance is listening, the
    utterance (with its short pauses) speaking."""
    from ehead_cli.generate.auto_states import auto_states
    from ehead_cli.io.audio import load_audio
    from ehead_cli.io.states import load_states

    clip = REPO / "sample_data" / "clips" / "conv009_fr"
    wave = load_audio(clip.with_suffix(".flac"))
    truth = load_states(clip.with_suffix(".csv"), -(-len(wave) // 640))
    first = np.flatnonzero(truth == 1)
    turn = wave[first[0] * 640:(first[0] + 50) * 640]  # 2 s of the avatar's own speech
    audio = np.concatenate([np.zeros(16000, np.float32), turn, np.zeros(16000, np.float32)])
    states = auto_states(audio)
    assert len(states) == 100
    assert (states[:20] == -1).all() and (states[-20:] == -1).all()
    assert (states[30:70] == 1).mean() > 0.9
