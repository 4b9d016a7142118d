"""2-D landmarks: the MediaPipe -> iBUG 68 table, the missing-extra message, face boxes, and the
detector on a real GRID frame (skipped without ../shared/data; MediaPipe comes with `make install`)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ehead_cli.errors import AssetError
from ehead_cli.prepare.landmarks import (
    INSTALL_COMMAND,
    MEDIAPIPE_TO_IBUG68,
    FaceLandmarks,
    face_boxes,
    mesh_to_ibug68,
    require_mediapipe,
)

MESH_POINTS = 468


def test_table_has_68_points_on_the_mesh_and_averages_pairs():
    assert len(MEDIAPIPE_TO_IBUG68) == 68
    flat = [i for ids in MEDIAPIPE_TO_IBUG68 for i in ids]
    assert all(0 <= i < MESH_POINTS for i in flat) and all(1 <= len(ids) <= 2 for ids in MEDIAPIPE_TO_IBUG68)
    singles = [ids[0] for ids in MEDIAPIPE_TO_IBUG68 if len(ids) == 1]
    assert len(set(singles)) == len(singles)  # no mesh point stands for two iBUG points
    mesh = np.random.default_rng(0).normal(size=(2, 478, 3))
    out = mesh_to_ibug68(mesh)
    assert out.shape == (2, 68, 3)
    for k, ids in enumerate(MEDIAPIPE_TO_IBUG68):
        np.testing.assert_allclose(out[:, k], mesh[:, list(ids)].mean(axis=1))


def test_missing_extra_is_one_line_naming_the_extra_and_the_install_command(monkeypatch):
    for name in [m for m in sys.modules if m == "mediapipe" or m.startswith("mediapipe.")] + ["mediapipe"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    with pytest.raises(AssetError) as err:
        require_mediapipe()
    message = str(err.value)
    assert "\n" not in message and "'landmarks' extra" in message and INSTALL_COMMAND in message


def test_face_boxes_cover_the_points_and_fill_frames_without_a_face():
    points = np.full((4, 68, 2), np.nan, np.float32)
    points[1] = np.stack(np.meshgrid(np.linspace(10, 50, 17), np.linspace(20, 80, 4)), -1).reshape(-1, 2)[:68]
    points[3] = points[1] + 100
    found = np.array([False, True, False, True])
    boxes = face_boxes(FaceLandmarks(points, found, np.full((4, 2, 2), np.nan, np.float32), (200, 200)))
    np.testing.assert_allclose(boxes[1], [10, 20, 50, 80])
    np.testing.assert_allclose(boxes[0], boxes[1])  # nearest frame with a face
    np.testing.assert_allclose(boxes[3], [110, 120, 150, 180])
    with pytest.raises(ValueError, match="no face"):
        face_boxes(FaceLandmarks(points, np.zeros(4, bool), points[:, :2], (200, 200)))


@pytest.mark.media
def test_mediapipe_finds_the_grid_speakers_face_in_ibug_order(shared_data):
    import mediapipe  # noqa: F401 (the landmarks extra, installed by `make install`: fail, not skip)

    from ehead_cli.prepare.ingest import load_clip_audio, read_video_frames
    from ehead_cli.prepare.landmarks import detect_landmarks

    path = shared_data / "grid" / "bbaf2n.mpg"
    audio = load_clip_audio(path)
    frames = read_video_frames(path, audio.n_frames, audio.start)[::15]  # 5 frames across the clip
    lm = detect_landmarks(frames)
    assert lm.found.all() and lm.image_size == (288, 360)
    p = lm.points  # (5, 68, 2), x right, y down
    right_eye, left_eye = p[:, 36:42].mean(1), p[:, 42:48].mean(1)
    mouth, chin, nose_tip = p[:, 48:68].mean(1), p[:, 8], p[:, 30]
    assert (right_eye[:, 0] < left_eye[:, 0]).all()  # the subject's right eye is on the image's left
    assert (right_eye[:, 1] < nose_tip[:, 1]).all() and (nose_tip[:, 1] < mouth[:, 1]).all()
    assert (mouth[:, 1] < chin[:, 1]).all()
    assert (p[:, 0, 0] < p[:, 16, 0]).all() and (p[:, 48, 0] < p[:, 54, 0]).all()  # jaw line and mouth corners
    eye_width = np.linalg.norm(p[:, 39] - p[:, 36], axis=-1)
    assert (np.linalg.norm(lm.iris[:, 1] - right_eye, axis=-1) < eye_width).all()  # iris (left, right) in its eye
    assert (np.linalg.norm(lm.iris[:, 0] - left_eye, axis=-1) < eye_width).all()
    assert ((p >= 0) & (p < [360, 288])).all()
