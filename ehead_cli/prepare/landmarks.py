"""2-D face landmarks per video frame, from MediaPipe Face Mesh (the optional ``landmarks`` extra).

MediaPipe 0.10.14 is the pinned detector: the last release whose wheel ships the Face Mesh graph
and its TFLite models inside the package (``mediapipe/modules/face_detection`` and
``face_landmark``; later releases dropped the legacy solutions and need a downloaded ``.task``
file) and whose requirements do not cap numpy below 2 (0.10.15-0.10.21 do). It runs on
Python 3.10-3.12 next to torch 2.x and numpy 2.x. Install it with ``pip install -e ".[landmarks]"``.

The mesh has 468 points (478 with the iris refinement). ``MEDIAPIPE_TO_IBUG68`` maps them to the
68-point iBUG 300-W layout (0-based: 0-16 jaw line from the subject's right ear to the left,
17-21 right brow, 22-26 left brow, 27-30 nose bridge, 31-35 nostrils, 36-41 right eye, 42-47
left eye, 48-59 outer lips, 60-67 inner lips; "right" is the subject's right, on the image's
left). Each iBUG point is one mesh vertex or the mean of two neighbours where the iBUG point lies
between mesh vertices (jaw line points 3, 4 and 12, nose bridge 28). The mesh has no true jaw
*contour* (the silhouette slides over the skin as the head turns), so the jaw-line points are the
least reliable; the tracker weights them down. Iris centres (refined mesh 473 and 468) come out as
``iris`` in the motion layout's eye order, left then right.

Coordinates are pixels: x to the right, y down, pixel (i, j) covering [i, i+1) x [j, j+1).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ehead_cli.errors import AssetError

EXTRA = "landmarks"
INSTALL_COMMAND = 'pip install -e ".[landmarks]"'
MEDIAPIPE_VERSION = "0.10.14"
MISSING_EXTRA = (f"2-D face landmarks (--tracker landmarks, --states talknet) need the optional '{EXTRA}' extra "
                 f"(MediaPipe {MEDIAPIPE_VERSION}): run {INSTALL_COMMAND} in the ehead checkout")

# iBUG 68 index -> MediaPipe Face Mesh vertex (or the mean of two). See the module docstring.
MEDIAPIPE_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    # 0-16 jaw line, subject's right ear -> chin (8) -> left ear
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # 17-21 right brow (outer -> inner), 22-26 left brow (inner -> outer)
    (70,), (63,), (105,), (66,), (107,),
    (336,), (296,), (334,), (293,), (300,),
    # 27-30 nose bridge (top -> tip), 31-35 lower nose (right ala -> left ala)
    (168,), (197, 6), (5,), (4,),
    (75,), (97,), (2,), (326,), (305,),
    # 36-41 right eye: outer corner, upper lid x2, inner corner, lower lid x2
    (33,), (160,), (158,), (133,), (153,), (144,),
    # 42-47 left eye: inner corner, upper lid x2, outer corner, lower lid x2
    (362,), (385,), (387,), (263,), (373,), (380,),
    # 48-59 outer lips: right corner, upper lip to the left corner, lower lip back
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (405,), (314,), (17,), (84,), (181,),
    # 60-67 inner lips: right corner, upper inner lip, left corner, lower inner lip
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)
IRIS_LEFT, IRIS_RIGHT = 473, 468  # refined-mesh iris centres of the subject's left and right eye
JAW_LINE = slice(0, 17)  # iBUG indices of the jaw line

# Detector settings: MediaPipe's defaults, video mode (each frame seeds the next one's search).
MIN_DETECTION_CONFIDENCE = 0.5
MIN_TRACKING_CONFIDENCE = 0.5


@dataclass(frozen=True)
class FaceLandmarks:
    """Landmarks of one clip. points (T, 68, 2) float32 pixels, NaN where no face was found;
    found (T,) bool; iris (T, 2, 2) float32 pixels (left, right eye), NaN where not found;
    image_size (height, width) in pixels."""

    points: np.ndarray
    found: np.ndarray
    iris: np.ndarray
    image_size: tuple[int, int]

    @property
    def n_frames(self) -> int:
        return int(self.points.shape[0])


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Silence what MediaPipe's C++ side (glog, absl, TFLite's "Created TensorFlow Lite XNNPACK
    delegate", "Feedback manager requires ...") writes straight to file descriptor 2, also from its
    graph threads, for as long as the block runs; Python's ``sys.stderr`` (errors, warnings, the
    progress bar) keeps writing to the real stderr meanwhile."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    real = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                     errors="backslashreplace")
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        sys.stderr = real
        yield
    finally:
        sys.stderr = python_stderr
        real.flush()
        os.dup2(saved, 2)
        os.close(saved)
        real.close()


def require_mediapipe():
    """Import MediaPipe's Face Mesh solution or raise the one-line AssetError naming the extra."""
    # protobuf's deprecation notice, raised from MediaPipe's own calls on every frame: nothing a user can act on
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated", category=UserWarning)
    try:
        with quiet_native_logs():
            from mediapipe.python.solutions import face_mesh
    except ImportError:
        raise AssetError(MISSING_EXTRA) from None
    return face_mesh


def mesh_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    """(..., 468 or 478, D) Face Mesh points -> (..., 68, D) iBUG points (pairs averaged)."""
    mesh = np.asarray(mesh)
    return np.stack([mesh[..., list(ids), :].mean(axis=-2) for ids in MEDIAPIPE_TO_IBUG68], axis=-2)


class LandmarkDetector:
    """MediaPipe Face Mesh over the frames of one video, in order; use as a context manager.

    ``detector(frame)`` takes an (H, W, 3) uint8 RGB frame and returns ((68, 2), (2, 2)) pixel
    arrays (iBUG points, iris centres left/right) or None when no face is found.
    """

    def __init__(self) -> None:
        face_mesh = require_mediapipe()
        self._quiet = quiet_native_logs()  # for the detector's lifetime: its graph threads log late
        self._quiet.__enter__()
        try:
            self._mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                                            min_detection_confidence=MIN_DETECTION_CONFIDENCE,
                                            min_tracking_confidence=MIN_TRACKING_CONFIDENCE)
        except BaseException:
            self._quiet.__exit__(None, None, None)
            raise

    def __enter__(self) -> LandmarkDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._mesh.close()
        finally:
            self._quiet.__exit__(None, None, None)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        frame = np.ascontiguousarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            return None
        height, width = frame.shape[:2]
        # normalised [0, 1] image coordinates -> pixels (x by the width, y by the height)
        mesh = np.array([(p.x * width, p.y * height) for p in result.multi_face_landmarks[0].landmark],
                        dtype=np.float64)
        iris = mesh[[IRIS_LEFT, IRIS_RIGHT]] if len(mesh) > IRIS_LEFT else np.full((2, 2), np.nan)
        return mesh_to_ibug68(mesh).astype(np.float32), iris.astype(np.float32)


def detect_landmarks(frames: Iterable[np.ndarray], detector: LandmarkDetector | None = None) -> FaceLandmarks:
    """Run the detector over (H, W, 3) uint8 RGB frames (any iterable, consumed once, in order)."""
    own = detector is None
    detector = detector if detector is not None else LandmarkDetector()
    points, iris, found = [], [], []
    size = (0, 0)
    try:
        for frame in frames:
            size = tuple(frame.shape[:2])
            hit = detector(frame)
            found.append(hit is not None)
            points.append(hit[0] if hit is not None else np.full((68, 2), np.nan, np.float32))
            iris.append(hit[1] if hit is not None else np.full((2, 2), np.nan, np.float32))
    finally:
        if own:
            detector.close()
    if not points:
        return FaceLandmarks(np.zeros((0, 68, 2), np.float32), np.zeros(0, bool), np.zeros((0, 2, 2), np.float32),
                             size)
    return FaceLandmarks(np.stack(points), np.array(found), np.stack(iris), size)


def face_boxes(landmarks: FaceLandmarks) -> np.ndarray:
    """(T, 4) x1 y1 x2 y2 pixel boxes around the 68 points; frames without a face take the box of
    the nearest frame with one. Raises ValueError when no frame has a face."""
    if not np.any(landmarks.found):
        raise ValueError("no face was found in any frame")
    pts = landmarks.points[nearest_found(landmarks.found)]  # (T, 68, 2)
    return np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1).astype(np.float32)


def nearest_found(found: np.ndarray) -> np.ndarray:
    """(T,) index of the nearest frame with a face, for every frame (ties: the earlier one)."""
    idx = np.flatnonzero(found)
    return idx[np.abs(np.arange(len(found))[:, None] - idx[None]).argmin(axis=1)]
