"""The Streaming Audio Scheduler (paper Algorithm 1): microphone + agent audio -> one window of
T frames of single-stream audio with per-frame LS states, once per tick.

Two queues, both counted in 25 fps frames of 640 samples:

* Q_L, the listening queue: a rolling buffer of the microphone (the user);
* Q_S, the speaking queue: the agent's (LLM's) speech, consumed monotonically from cursor c_S.

Each tick emits exactly T frames:

* U = unconsumed speaking frames >= T: the next T frames of Q_S, states all +1, tail mode speak;
* 0 < U < T: the U speaking frames and the most recent T - U listening frames, ordered
  speak|listen if the previous window ended speaking, else listen|speak (temporal continuity);
  each frame labelled by its source; the tracked tail mode flips;
* U = 0: the most recent T listening frames, states all -1, tail mode listen.

At the start the microphone buffer may hold fewer frames than asked for; the missing (oldest)
frames are silence. At inference the states come from audio provenance alone.

Hop streaming (past the paper, ``generate.streaming``) ticks n = H <= T frames at a time, the same
three branches over n frames, and reads what is known past them without consuming it (``ahead``):
the most recent microphone frames of a look-ahead and the agent audio already queued. With a
look-ahead of A frames a tick fires A frames after its frames end, so its listening frames are the
microphone frames A before the newest (``tick(n, skip=A)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ehead_cli.layout import LISTEN, MOTION_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, SPEAK, n_frames_for

SPEAK_MODE, LISTEN_MODE = "speak", "listen"


@dataclass
class Tick:
    """One emitted window: audio (T * 640,) float32, states (T,) int8, and which branch ran."""

    audio: np.ndarray
    states: np.ndarray
    branch: str  # "speak", "mixed" or "listen"
    order: str  # "speak|listen", "listen|speak", "speak" or "listen"


def _whole_frames(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) samples -> (n, 640) whole frames and the samples of the incomplete frame left over."""
    n = len(buf) // SAMPLES_PER_FRAME
    return buf[: n * SAMPLES_PER_FRAME].reshape(n, SAMPLES_PER_FRAME), buf[n * SAMPLES_PER_FRAME:]


class StreamingAudioScheduler:
    """Algorithm 1. ``push_listening`` / ``push_speaking`` feed the queues; ``tick`` emits a window."""

    def __init__(self, window: int = 100, listen_capacity: int | None = None):
        self.T = window
        self._mic = np.zeros((0, SAMPLES_PER_FRAME), np.float32)  # Q_L (whole frames)
        self._mic_new: list[np.ndarray] = []  # whole frames pushed since, joined onto Q_L when read
        self._mic_new_frames = 0
        self._mic_tail = np.zeros(0, np.float32)  # samples of an incomplete frame
        self._speak = np.zeros((0, SAMPLES_PER_FRAME), np.float32)  # Q_S
        self._speak_tail = np.zeros(0, np.float32)
        self.c_S = 0  # speaking cursor, in frames
        self.m_prev = LISTEN_MODE
        self.capacity = listen_capacity or 4 * window  # the rolling buffer keeps this many frames

    # --- queues ---------------------------------------------------------------------------------
    def push_listening(self, samples: np.ndarray) -> None:
        """Append microphone samples (16 kHz float) to Q_L."""
        frames, self._mic_tail = _whole_frames(np.concatenate([self._mic_tail, np.asarray(samples, np.float32)]))
        if len(frames):  # kept aside: copying the whole rolling buffer on every 20 ms push costs a server dearly
            self._mic_new.append(frames)
            self._mic_new_frames += len(frames)
            if self._mic_new_frames > self.capacity:
                self._join_mic()

    def _join_mic(self) -> None:
        if self._mic_new:
            self._mic = np.concatenate([self._mic, *self._mic_new])[-self.capacity:]
            self._mic_new, self._mic_new_frames = [], 0

    def push_speaking(self, samples: np.ndarray, flush: bool = False) -> None:
        """Append agent samples to Q_S. ``flush`` pads an utterance's last partial frame so it
        becomes consumable (utterances end on frame boundaries)."""
        buf = np.concatenate([self._speak_tail, np.asarray(samples, np.float32)])
        if flush and len(buf) % SAMPLES_PER_FRAME:
            buf = np.concatenate([buf, np.zeros(SAMPLES_PER_FRAME - len(buf) % SAMPLES_PER_FRAME, np.float32)])
        frames, self._speak_tail = _whole_frames(buf)
        self._speak = np.concatenate([self._speak, frames])

    @property
    def unconsumed(self) -> int:
        """U: speaking frames not yet emitted."""
        return len(self._speak) - self.c_S

    def _slice_head(self, n: int) -> np.ndarray:
        out = self._speak[self.c_S:self.c_S + n]
        self.c_S += n
        return out

    def _slice_tail(self, n: int, skip: int = 0) -> np.ndarray:
        """The n microphone frames that end ``skip`` frames before the newest; silence where the
        buffer is shorter."""
        self._join_mic()
        end = max(0, len(self._mic) - skip)
        have = self._mic[end - min(n, end):end] if n > 0 else self._mic[:0]
        if len(have) < n:
            have = np.concatenate([np.zeros((n - len(have), SAMPLES_PER_FRAME), np.float32), have])
        return have

    # --- Algorithm 1 ------------------------------------------------------------------------------
    def tick(self, n: int | None = None, skip: int = 0) -> Tick:
        """Emit the next n frames (default T: the paper's tick); ``skip``: microphone frames newer
        than the emitted ones (a look-ahead), left for ``ahead``."""
        T, U = (self.T if n is None else int(n)), self.unconsumed
        if U >= T:
            a, q = self._slice_head(T), np.full(T, SPEAK, np.int8)
            self.m_prev, branch, order = SPEAK_MODE, "speak", "speak"
        elif U > 0:
            x_s, x_l = self._slice_head(U), self._slice_tail(T - U, skip)
            q_s, q_l = np.full(U, SPEAK, np.int8), np.full(T - U, LISTEN, np.int8)
            if self.m_prev == SPEAK_MODE:
                a, q, order = np.concatenate([x_s, x_l]), np.concatenate([q_s, q_l]), "speak|listen"
            else:
                a, q, order = np.concatenate([x_l, x_s]), np.concatenate([q_l, q_s]), "listen|speak"
            self.m_prev = LISTEN_MODE if self.m_prev == SPEAK_MODE else SPEAK_MODE
            branch = "mixed"
        else:
            a, q = self._slice_tail(T, skip), np.full(T, LISTEN, np.int8)
            self.m_prev, branch, order = LISTEN_MODE, "listen", "listen"
        # trim the consumed part of Q_S so memory stays bounded over long sessions
        if self.c_S > 4 * self.T:
            self._speak, self.c_S = self._speak[self.c_S:], 0
        return Tick(a.reshape(-1).astype(np.float32), q, branch, order)


    def ahead(self, lookahead: int, room: int) -> tuple[np.ndarray, np.ndarray]:
        """What is known past the emitted frames, up to ``room`` frames, consuming nothing: the next
        ``lookahead`` frames as a tick would emit them now (the newest microphone frames or queued
        agent audio), then the agent audio still queued after them (speaking). Returns (audio
        (m * 640,), states (m,)), m <= room; the window's frames past them are end padding."""
        room = max(0, int(room))
        if room == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int8)
        saved = (self.c_S, self.m_prev, self._speak)
        try:
            parts, states = [], []
            if lookahead > 0:
                t = self.tick(min(lookahead, room))
                parts.append(t.audio)
                states.append(t.states)
            more = min(self.unconsumed, room - sum(len(q) for q in states))
            if more > 0:
                parts.append(self._speak[self.c_S:self.c_S + more].reshape(-1))
                states.append(np.full(more, SPEAK, np.int8))
        finally:
            self.c_S, self.m_prev, self._speak = saved
        if not states:
            return np.zeros(0, np.float32), np.zeros(0, np.int8)
        return np.concatenate(parts).astype(np.float32), np.concatenate(states)


@dataclass(frozen=True)
class AgentUtterance:
    """An agent utterance: samples of the agent track [start, end) that become available at ``available`` s."""

    start: float
    end: float
    available: float


def schedule_session(user_audio: np.ndarray, agent_audio: np.ndarray, utterances: list[AgentUtterance],
                     window: int = 100) -> tuple[np.ndarray, np.ndarray, list[Tick]]:
    """Offline simulation of a live session, tick by tick.

    Session time runs with the microphone: tick k fires when the microphone has delivered
    (k + 1) T frames. Before it fires, every agent utterance whose ``available`` time has passed
    is pushed onto Q_S (in order of availability). Ticks continue until the microphone has ended
    and every utterance has been emitted. Returns the single-stream audio (K T 640,), the states
    (K T,) and the ticks.
    """
    T = window
    mic = np.asarray(user_audio, np.float32)
    pending = sorted(utterances, key=lambda u: (u.available, u.start))
    sched = StreamingAudioScheduler(T)
    ticks: list[Tick] = []
    n_mic_frames = n_frames_for(len(mic))
    k = 0
    while True:
        now = (k + 1) * T  # session time of this tick, in frames
        lo, hi = k * T * SAMPLES_PER_FRAME, now * SAMPLES_PER_FRAME
        piece = np.zeros(hi - lo, np.float32)  # after the microphone ends, time goes on in silence
        seg = mic[lo:hi]
        piece[: len(seg)] = seg
        sched.push_listening(piece)
        while pending and pending[0].available * MOTION_FPS <= now:
            u = pending.pop(0)
            a, b = int(round(u.start * SAMPLE_RATE)), int(round(u.end * SAMPLE_RATE))
            sched.push_speaking(agent_audio[a:b], flush=True)
        if k * T >= n_mic_frames and not pending and sched.unconsumed == 0 and k > 0:
            break  # the microphone ended before this tick and nothing is left to say
        ticks.append(sched.tick())
        k += 1
    audio = np.concatenate([t.audio for t in ticks]) if ticks else np.zeros(0, np.float32)
    states = np.concatenate([t.states for t in ticks]) if ticks else np.zeros(0, np.int8)
    return audio, states, ticks


def trim_to_content(audio: np.ndarray, states: np.ndarray, n_mic_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a scheduled session's whole windows to where its content ends: the later of the
    microphone's end and the last speaking frame. What is cut is silence in the listening state,
    exactly the padding generation gives a last partial window, so the motion of what is kept is
    unchanged."""
    speaking = np.flatnonzero(np.asarray(states) == SPEAK)
    end = max(int(n_mic_samples), (int(speaking[-1]) + 1) * SAMPLES_PER_FRAME if speaking.size else 0)
    end = min(end, len(audio))
    return audio[:end], states[: n_frames_for(end)]
