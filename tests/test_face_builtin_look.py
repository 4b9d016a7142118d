"""The built-in head as a user sees it rendered: the mouth's lower teeth and tongue, the chin's outline,
the lower lip's colour border and the skin between the brows and the eyes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ehead_cli.face.builtin import JAW_JOINT, BuiltinHead
from ehead_cli.face.builtin.proportions import LIPS, SKIN, TEETH, TONGUE
from ehead_cli.face.builtin.surface import head_distance
from ehead_cli.layout import JAW, MOTION_DIM, N_SHAPE
from ehead_cli.render import Camera, Light, MeshRenderer, Renderer, barycentrics, interpolate

SIZE = 512  # px; one pixel is about 0.8 mm on the face


@pytest.fixture(scope="module")
def head() -> BuiltinHead:
    return BuiltinHead().eval()


def _pose(jaw: float = 0.0) -> torch.Tensor:
    motion = torch.zeros(MOTION_DIM)
    motion[JAW.start] = jaw
    return motion


def _lower_sheet_ids(head: BuiltinHead, rgb) -> torch.Tensor:
    """(V,) bool: vertices of colour ``rgb`` that follow the jaw completely."""
    colour = (head.vertex_colors - torch.tensor(rgb)).abs().amax(1) < 1e-6
    return colour & (head.skin_weights[:, JAW_JOINT] == 1.0)


def _visible_pixels(head: BuiltinHead, ids: torch.Tensor, jaw: float) -> int:
    """Pixels at 256 px whose visible triangle has all three corners in ``ids``."""
    renderer = Renderer(head, size=256, antialias=False)
    with torch.no_grad():
        out = renderer.mesh(head(torch.zeros(N_SHAPE), _pose(jaw))[None], head.faces, head.vertex_colors)
    return int(ids[head.faces[out.fragments.face]].all(1).sum())


@pytest.mark.parametrize("rgb, min_vertices, min_pixels", [(TEETH, 20, 20), (TONGUE, 20, 30)],
                         ids=["lower_teeth", "tongue"])
def test_lower_teeth_and_tongue_hide_behind_the_closed_lips_and_show_with_the_jaw_open(
        head, rgb, min_vertices, min_pixels):
    ids = _lower_sheet_ids(head, rgb)
    assert int(ids.sum()) >= min_vertices
    # at rest they lie inside the head's surface, behind the closed lips
    assert (head_distance(head.v_template[ids].double().numpy()) < 0).all()
    assert _visible_pixels(head, ids, 0.0) == 0
    assert _visible_pixels(head, ids, 0.25) >= min_pixels


def _front_view(head: BuiltinHead):
    """Unlit (albedo) 512 px front render of the neutral head with its depth map and landmarks (px)."""
    with torch.no_grad():
        v = head(torch.zeros(N_SHAPE), _pose())
        camera = Camera.framing(v)
        out = MeshRenderer(SIZE, camera=camera, light=Light(ambient=1.0, diffuse=0.0), cull_backfaces=False)(
            v[None], head.faces, head.vertex_colors)
        points = camera.project_channels(v.T, SIZE, SIZE).view(3, 1, -1)
        weights, vid = barycentrics(out.fragments, points, head.faces)
        z = interpolate(points[2].reshape(1, -1), weights, vid)[0]
        far = camera.far  # background: farther than anything drawn
        depth = torch.full((SIZE * SIZE,), far).index_copy(0, out.fragments.pix, z).view(SIZE, SIZE)
        landmarks = camera.project(head.landmarks(v), SIZE, SIZE)[0]
    return out.image[0].numpy(), depth.numpy(), landmarks.numpy()


def test_the_chin_outline_has_no_notch(head):
    """Seen from the front the chin's lower outline, where the chin occludes the neck (a depth jump
    of over 1 cm), is one smooth convex curve: no step between neighbouring columns and no dent
    (its second difference never turns upward into the chin)."""
    _, depth, lmk = _front_view(head)
    top = int(lmk[57, 1])  # the lower lip's bottom
    outline = []
    for x in range(int(lmk[7, 0]), int(lmk[9, 0]) + 1):  # the chin, between landmarks 7 and 9
        jumps = np.flatnonzero(np.diff(depth[top:, x]) > 0.01)
        assert len(jumps), f"no chin outline in column {x}"
        outline.append(top + jumps[0])
    y = np.array(outline, float)  # image rows grow downward: the chin's lowest point is the largest y
    assert np.abs(np.diff(y)).max() <= 2
    assert (y[2:] - 2 * y[1:-1] + y[:-2]).max() <= 1
    assert abs(int(np.argmax(y)) - len(y) / 2) < len(y) / 4  # lowest near the middle


def test_the_lower_lip_colour_border_has_no_step(head):
    """The lower lip's colour border (half-way from lip to skin colour, to a sub-pixel) runs
    smoothly from corner to corner instead of stepping with the grid rows."""
    image, _, lmk = _front_view(head)
    half = (LIPS[1] + SKIN[1]) / 2  # the green channel separates them best
    top = int(lmk[66, 1])  # the inner lower lip
    border = []
    for x in range(int(lmk[48, 0]) + 6, int(lmk[54, 0]) - 5):
        column = image[top:top + 40, x, 1]
        k = int(np.flatnonzero(column > half)[0])
        border.append(top + k - 1 + (half - column[k - 1]) / (column[k] - column[k - 1]))
    assert np.abs(np.diff(border)).max() < 2.5  # px, one grid row is about 4


def test_no_pale_band_between_the_brows_and_the_eyes(head):
    """Rendered with the default light, the skin from each brow's middle down to the upper lid's
    margin is nowhere paler than the forehead just above the brow."""
    renderer = Renderer(head, size=SIZE)
    image = renderer.render(torch.zeros(N_SHAPE), _pose()[None])[0].numpy().astype(float).mean(-1)
    with torch.no_grad():
        lmk = renderer.mesh.camera.project(head.landmarks(head(torch.zeros(N_SHAPE), _pose())), SIZE, SIZE)[0]
    lmk = lmk.numpy()
    for brow, lid in ((19, [37, 38]), (24, [43, 44])):  # the middle of each brow, the upper lid above the iris
        x = int(round(lmk[lid, 0].mean()))
        brow_y, lid_y = int(lmk[brow, 1]), int(lmk[lid, 1].mean())
        band = image[brow_y + 1:lid_y - 1, x - 1:x + 2].mean(1)
        forehead = image[brow_y - 14:brow_y - 8, x - 1:x + 2].mean()
        assert band.max() <= forehead + 5, (brow, band.round(), forehead)
