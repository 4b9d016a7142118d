"""Speech for the sample data: espeak-ng synthesis and two-person conversation assembly.

``synthesize`` runs the espeak-ng program (a subprocess, WAV on stdout) and returns 16 kHz mono
float32 with its leading and trailing silence trimmed and its active-speech loudness normalised.
``assemble`` lays alternating turns of two speakers on one timeline, the avatar's turns at the
reference level and the interlocutor's at a chosen gain, and returns the single-stream mix (what
the avatar hears) with per-frame states (+1 while the avatar's turn lasts, -1 otherwise) at 25 fps.
Assembly needs no espeak-ng, so it is tested on synthetic tones.

The texts below were written for this project, several short conversational sentences in each of
six languages.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from ehead_cli.errors import AssetError
from ehead_cli.layout import LISTEN, SAMPLE_RATE, SAMPLES_PER_FRAME, SPEAK, n_frames_for

ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_S = 60.0  # one sentence takes well under a second
TRIM_DB = -45.0  # samples quieter than this (dB below the peak) at either end are cut
TRIM_MARGIN_S = 0.02  # kept before the first and after the last loud sample
FRAME_RMS_S = 0.02  # frame length for the active-speech loudness measure
ACTIVE_DB = -35.0  # frames within this many dB of the loudest frame count as active speech
REFERENCE_RMS_DB = -20.0  # dBFS: every synthesised utterance is scaled to this active-speech RMS
NOISE_DB = -72.0  # dBFS RMS of the background noise under the whole mix (no exact digital silence)
PEAK_LIMIT = 0.98  # a mix whose peak exceeds this is scaled down as a whole
LAST_FRAME_CUT = SAMPLES_PER_FRAME // 2  # samples the last frame lacks (see ``assemble``)

# language code -> the espeak-ng voice that speaks it
ESPEAK_LANGUAGE = {"en": "en-us", "es": "es", "de": "de", "fr": "fr-fr", "it": "it", "pt": "pt-br"}

TEXTS: dict[str, tuple[str, ...]] = {
    "en": (
        "Good morning, I hope the trip over here was not too long.",
        "I have been thinking about what you said yesterday.",
        "That sounds like a very good plan to me.",
        "Could you tell me a little more about how it works?",
        "We tried something similar last year, and it went quite well.",
        "Honestly, I am not sure that I agree with that.",
        "The weather was lovely, so we walked along the river for hours.",
        "Let me check my notes for a second.",
        "Yes, exactly, that is what I meant.",
        "The meeting moved to Thursday afternoon at four.",
        "I would love to hear what the others think about it.",
        "Oh, that is a surprise, I did not expect that at all.",
        "Maybe we should start with the simplest version first.",
        "Thank you, that was really helpful.",
    ),
    "es": (
        "Buenos días, ¿qué tal el viaje hasta aquí?",
        "Ayer estuve pensando en lo que me contaste.",
        "Me parece una idea muy buena.",
        "¿Me puedes explicar un poco más cómo funciona?",
        "El año pasado probamos algo parecido y salió bastante bien.",
        "La verdad es que no estoy muy seguro de eso.",
        "Hacía un tiempo precioso, así que paseamos junto al río.",
        "Déjame mirar mis notas un momento.",
        "Sí, exactamente, eso es lo que quería decir.",
        "La reunión se ha cambiado al jueves por la tarde.",
        "Me gustaría saber qué opinan los demás.",
        "Vaya, qué sorpresa, no me lo esperaba para nada.",
        "Quizás deberíamos empezar por la versión más sencilla.",
        "Muchas gracias, me has ayudado mucho.",
    ),
    "de": (
        "Guten Morgen, war die Fahrt hierher sehr lang?",
        "Ich habe über das nachgedacht, was du gestern gesagt hast.",
        "Das klingt für mich nach einem sehr guten Plan.",
        "Kannst du mir etwas genauer erklären, wie das funktioniert?",
        "Letztes Jahr haben wir etwas Ähnliches versucht, und es lief gut.",
        "Ehrlich gesagt bin ich mir da nicht so sicher.",
        "Das Wetter war herrlich, also sind wir stundenlang am Fluss spaziert.",
        "Lass mich kurz in meine Notizen schauen.",
        "Ja, genau, das habe ich gemeint.",
        "Das Treffen ist auf Donnerstagnachmittag verschoben.",
        "Ich würde gern hören, was die anderen davon halten.",
        "Oh, das überrascht mich, damit habe ich nicht gerechnet.",
        "Vielleicht sollten wir mit der einfachsten Version anfangen.",
        "Vielen Dank, das hat mir wirklich geholfen.",
    ),
    "fr": (
        "Bonjour, le trajet jusqu'ici n'a pas été trop long ?",
        "J'ai repensé à ce que tu m'as dit hier.",
        "Ça me semble être un très bon plan.",
        "Tu peux m'expliquer un peu mieux comment ça marche ?",
        "L'année dernière, nous avons essayé quelque chose de semblable.",
        "Franchement, je ne suis pas sûr d'être d'accord.",
        "Il faisait très beau, alors nous avons marché le long de la rivière.",
        "Attends, je regarde mes notes une seconde.",
        "Oui, exactement, c'est ce que je voulais dire.",
        "La réunion a été déplacée à jeudi après-midi.",
        "J'aimerais bien savoir ce que les autres en pensent.",
        "Oh, quelle surprise, je ne m'y attendais pas du tout.",
        "On devrait peut-être commencer par la version la plus simple.",
        "Merci beaucoup, ça m'a vraiment aidé.",
    ),
    "it": (
        "Buongiorno, com'è andato il viaggio fin qui?",
        "Ho ripensato a quello che mi hai detto ieri.",
        "Mi sembra proprio un ottimo piano.",
        "Puoi spiegarmi meglio come funziona?",
        "L'anno scorso abbiamo provato qualcosa di simile ed è andata bene.",
        "Sinceramente non sono sicuro di essere d'accordo.",
        "Il tempo era bellissimo, così abbiamo camminato lungo il fiume.",
        "Fammi controllare un attimo i miei appunti.",
        "Sì, esatto, è proprio quello che intendevo.",
        "La riunione è stata spostata a giovedì pomeriggio.",
        "Mi piacerebbe sapere cosa ne pensano gli altri.",
        "Che sorpresa, non me lo aspettavo per niente.",
        "Forse dovremmo cominciare dalla versione più semplice.",
        "Grazie mille, mi sei stato davvero utile.",
    ),
    "pt": (
        "Bom dia, a viagem até aqui foi muito longa?",
        "Fiquei pensando no que você me disse ontem.",
        "Isso me parece um ótimo plano.",
        "Você pode me explicar melhor como funciona?",
        "No ano passado tentamos algo parecido e deu bastante certo.",
        "Sinceramente, não tenho certeza se concordo com isso.",
        "O tempo estava lindo, então caminhamos ao longo do rio.",
        "Deixa eu olhar minhas anotações um segundo.",
        "Sim, exatamente, era isso que eu queria dizer.",
        "A reunião foi transferida para quinta à tarde.",
        "Eu gostaria de saber o que os outros acham.",
        "Nossa, que surpresa, eu não esperava isso de jeito nenhum.",
        "Talvez a gente devesse começar pela versão mais simples.",
        "Muito obrigado, você me ajudou muito.",
    ),
}


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice setting.

    variant: espeak-ng voice variant (``m3``, ``f2``, ``Annie``, ...)
    pitch:   base pitch, 0-99 (espeak-ng ``-p``; 50 is the default)
    speed:   words per minute (espeak-ng ``-s``; 175 is the default)
    """

    variant: str
    pitch: int = 50
    speed: int = 160

    @property
    def label(self) -> str:
        """A short text form for manifests: ``m3/p50/s160``."""
        return f"{self.variant}/p{self.pitch}/s{self.speed}"


def espeak_available() -> bool:
    """True when the espeak-ng program is on PATH."""
    return shutil.which(ESPEAK) is not None


def espeak_version() -> str:
    """The installed espeak-ng's version line (``eSpeak NG text-to-speech: 1.51 ...`` -> ``espeak-ng 1.51``),
    or ``espeak-ng (not installed)``."""
    if not espeak_available():
        return f"{ESPEAK} (not installed)"
    out = subprocess.run([ESPEAK, "--version"], capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S).stdout
    words = out.split(":", 1)[-1].split()
    return f"{ESPEAK} {words[0]}" if words else ESPEAK


def synthesize(text: str, language: str, voice: Voice) -> np.ndarray:
    """Speak ``text`` in ``language`` (a key of ``ESPEAK_LANGUAGE``) -> (N,) float32 at 16 kHz,
    trimmed and scaled to ``REFERENCE_RMS_DB`` active-speech RMS."""
    if not espeak_available():
        raise AssetError(f"{ESPEAK} not found on PATH: install it (Debian/Ubuntu: apt-get install espeak-ng)")
    if language not in ESPEAK_LANGUAGE:
        raise ValueError(f"unknown language {language!r}; known: {', '.join(ESPEAK_LANGUAGE)}")
    cmd = [ESPEAK, "-v", f"{ESPEAK_LANGUAGE[language]}+{voice.variant}", "-p", str(voice.pitch),
           "-s", str(voice.speed), "-b", "1", "--stdin", "--stdout"]  # -b 1: the text on stdin is UTF-8
    try:
        done = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=True,
                              timeout=ESPEAK_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        stderr = getattr(err, "stderr", b"") or b""
        raise AssetError(f"{ESPEAK} failed on voice {voice.label} ({language}): "
                         f"{stderr.decode(errors='replace').strip() or err}") from None
    # espeak-ng streams WAV with placeholder chunk sizes; libsndfile reads up to the real end
    wave, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    wave = soxr.resample(wave, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return normalise(trim_silence(wave))


def trim_silence(wave: np.ndarray) -> np.ndarray:
    """(N,) -> the stretch from ``TRIM_MARGIN_S`` before the first to after the last sample louder
    than ``TRIM_DB`` below the peak."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0.0:
        raise ValueError("cannot trim an all-silent waveform")
    loud = np.flatnonzero(np.abs(wave) >= peak * 10.0 ** (TRIM_DB / 20.0))
    margin = int(TRIM_MARGIN_S * SAMPLE_RATE)
    return wave[max(loud[0] - margin, 0): loud[-1] + margin + 1]


def active_rms_db(wave: np.ndarray) -> float:
    """RMS in dBFS over the active frames of (N,) audio (frames within ``ACTIVE_DB`` of the loudest)."""
    hop = int(FRAME_RMS_S * SAMPLE_RATE)
    n = len(wave) // hop
    frames = wave[: n * hop].reshape(n, hop) if n else wave[None]
    power = (frames.astype(np.float64) ** 2).mean(axis=1)
    active = power >= power.max() * 10.0 ** (ACTIVE_DB / 10.0)
    return float(10.0 * np.log10(power[active].mean() + 1e-20))


def normalise(wave: np.ndarray, target_db: float = REFERENCE_RMS_DB) -> np.ndarray:
    """Scale (N,) audio so its active-speech RMS is ``target_db`` dBFS."""
    gain = 10.0 ** ((target_db - active_rms_db(wave)) / 20.0)
    return (wave * gain).astype(np.float32)


@dataclass(frozen=True)
class Turn:
    """One turn: ``wave`` (N,) float32 at 16 kHz spoken by the avatar (``avatar=True``) or the
    interlocutor, placed after ``pause_s`` seconds of silence."""

    wave: np.ndarray
    avatar: bool
    pause_s: float


@dataclass(frozen=True)
class Conversation:
    """The assembled clip.

    wave:    (N,) float32 16 kHz single-stream mix, N = 640 T - 320 (see ``assemble``)
    states:  (T,) int8 per 25 fps frame, +1 while the avatar's turn lasts, -1 otherwise
    avatar:  (N,) float32 the avatar's track alone (scaled like the mix)
    other:   (N,) float32 the interlocutor's track alone (scaled like the mix)
    turns:   (start_sample, end_sample, is_avatar) of each turn
    """

    wave: np.ndarray
    states: np.ndarray
    avatar: np.ndarray
    other: np.ndarray
    turns: tuple[tuple[int, int, bool], ...]


def assemble(turns: list[Turn], other_gain_db: float, tail_s: float, noise_seed: int) -> Conversation:
    """Lay ``turns`` end to end (each after its pause), the interlocutor ``other_gain_db`` relative
    to the avatar, ``tail_s`` of silence at the end, low noise under everything.

    The length is 640 T - 320 samples: T frames, the last one half long, so that both
    ceil(N / 640) and ceil(duration x 25) give T with no floating-point tie at a whole frame.
    A frame is speaking when its centre sample lies inside one of the avatar's turns.
    """
    if not turns:
        raise ValueError("a conversation needs at least one turn")
    spans, cursor = [], 0
    for turn in turns:
        start = cursor + round(turn.pause_s * SAMPLE_RATE)
        spans.append((start, start + len(turn.wave), turn.avatar))
        cursor = start + len(turn.wave)
    n = (n_frames_for(cursor + round(tail_s * SAMPLE_RATE)) + 1) * SAMPLES_PER_FRAME - LAST_FRAME_CUT
    avatar, other = np.zeros(n, np.float64), np.zeros(n, np.float64)
    other_gain = 10.0 ** (other_gain_db / 20.0)
    for turn, (start, stop, is_avatar) in zip(turns, spans, strict=True):
        if is_avatar:
            avatar[start:stop] += turn.wave
        else:
            other[start:stop] += other_gain * turn.wave
    noise = np.random.default_rng(noise_seed).standard_normal(n) * 10.0 ** (NOISE_DB / 20.0)
    mix = avatar + other + noise
    scale = min(1.0, PEAK_LIMIT / float(np.abs(mix).max()))
    centres = np.arange(n_frames_for(n)) * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME // 2
    speaking = np.zeros(len(centres), bool)
    for start, stop, is_avatar in spans:
        if is_avatar:
            speaking |= (centres >= start) & (centres < stop)
    states = np.where(speaking, SPEAK, LISTEN).astype(np.int8)
    f32 = np.float32
    return Conversation((mix * scale).astype(f32), states, (avatar * scale).astype(f32),
                        (other * scale).astype(f32), tuple(spans))


def quantise_pcm16(wave: np.ndarray) -> np.ndarray:
    """(N,) float -> (N,) int16, rounded and clipped: exactly what a 16-bit FLAC stores."""
    return np.clip(np.round(np.asarray(wave, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
