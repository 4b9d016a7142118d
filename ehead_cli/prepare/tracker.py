"""The built-in face tracker: fit the face model to per-frame 2-D landmarks, batched in torch.

Unknowns: one identity per clip (the first ``n_shape`` = 100 shape coefficients) and per frame the
first ``n_expr`` = 50 expression coefficients, the jaw pose, the head rotation and translation.
68 landmarks cannot tell the higher-order coefficients apart, so they stay zero, as do the eye
poses unless iris centres are given (see "Eyes" below).

Camera (documented convention): a pinhole with square pixels, the principal point at the image
centre and a fixed vertical field of view (``fov_deg``, default 18 degrees, the renderer's
``HEAD_FOV_DEG``, so a tracked clip re-renders with the same framing). Camera coordinates are
OpenGL-style, as in the GAGAvatar importer: x right, y up, the camera at the origin looking down
-z, so a head in front of it has z < 0. A point (X, Y, Z) lands on pixel
``u = W/2 + f X / (-Z)``, ``v = H/2 - f Y / (-Z)`` with ``f = (H/2) / tan(fov/2)``. The motion's
ROT and TRANS are the head's pose in this camera frame (ROT = 0: the face looks into the lens).

Speed: evaluating the full mesh (thousands of vertices) for every frame and step is slow on a CPU,
so the fit runs on a *landmark basis* identified once per face model by probing it. With the
global pose removed, a blendshape model whose jaw is linear-blend skinned about a joint gives
each landmark (3-vectors; R = R(jaw), theta = the fitted shape and expression coefficients) as

    l(theta, R) = l0 + B theta + G0 vec(R - I) + (R - I) (Md theta)

l0 + B theta is the model without jaw rotation (affine in theta: one probe per coefficient);
G0 is the jaw's effect at theta = 0, a general linear map of the 9 entries of R - I, fitted by
least squares to ``PROBE_ROTATIONS`` jaw probes (it also absorbs FLAME's pose correctives, which
are linear in R - I); Md theta is how theta moves the skinned points relative to the jaw joint,
from two jaw probes per coefficient. This is exact for the built-in head and for FLAME up to the
product of its pose correctives with the jaw rotation (second order). The head pose is applied
to the basis landmarks rigidly (X = R_head l + tau); the model's own pivot is put back at the end
exactly: TRANS = tau - (model(rot=R_head) - R_head model(rot=0)) on the landmarks.
``Track.basis_error_m`` reports how far the basis is from the full model on the fitted frames.

Objective (all terms are means, image residuals divided by the face's size in pixels so the
weights hold at any resolution): landmark reprojection (jaw-line points weighted
``jaw_line_weight``, frames without a face weighted 0) + quadratic priors on the coefficients and
the jaw's sideways/twisting components + first-order temporal smoothness of every per-frame
quantity. Adam, first ``rigid_steps`` on the head pose from the rigid points (brows, nose, eyes),
then ``steps`` on everything with a cosine-decayed learning rate.

Eyes: with iris centres (MediaPipe's refined mesh), each eye's pose is the rotation that moves the
pupil by the iris's offset from the fitted eye-opening centre (mean of its six landmarks), read in
the head frame, on an eyeball of radius ``EYEBALL_RADIUS_M``, relative to the clip's median
offset (the iris and the eye-opening centre are different points, and the subject of a talking-
head video mostly looks one way), then smoothed over 3 frames: a geometric estimate, not part of
the fit. About 1 px of landmark error moves it by 0.1 rad at 100 px per face width.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ehead_cli.face.base import MOUTH_LOWER_INNER, MOUTH_UPPER_INNER, N_LANDMARKS, FaceModel
from ehead_cli.geometry import axis_angle_to_matrix
from ehead_cli.layout import EXPR, EYE_LEFT, EYE_RIGHT, JAW, MOTION_DIM, MOTION_FPS, N_SHAPE, ROT, TRANS
from ehead_cli.prepare.landmarks import FaceLandmarks, nearest_found
from ehead_cli.prepare.smoothing import moving_average
from ehead_cli.render.camera import HEAD_FOV_DEG

# --- landmark basis ------------------------------------------------------------------------------
PROBE_ANGLE = 0.5  # rad: large enough that the (1 - cos) part of R - I is well conditioned
PROBE_ROTATIONS = 13  # jaw probes for G0: >= 9, the dimension of vec(R - I)
PROBE_BATCH = 512  # frames per probing forward pass

# --- landmark groups (0-based iBUG 68) -----------------------------------------------------------
JAW_LINE = list(range(0, 17))
RIGHT_EYE, LEFT_EYE = list(range(36, 42)), list(range(42, 48))
RIGID_POINTS = list(range(17, 48))  # brows, nose and eyes: they move little with expression

EYEBALL_RADIUS_M = 0.012  # adult eyeball radius (about 24 mm across)
MAX_GAZE_RAD = 0.6  # clamp for eye poses estimated from the iris
GAZE_SMOOTH_S = 0.12  # 3 frames: suppresses the iris detector's frame-to-frame jitter
LR_FLOOR = 0.01  # the cosine schedule ends at this fraction of the peak learning rate


@dataclass(frozen=True)
class TrackerConfig:
    """Fit settings. Weights multiply mean squared residuals in face-size units (a residual of
    1 % of the face size costs 1e-4), coefficient magnitudes and frame-to-frame differences."""

    fov_deg: float = HEAD_FOV_DEG  # camera vertical field of view (degrees)
    n_shape: int = 100  # identity coefficients fitted (per clip)
    n_expr: int = 50  # expression coefficients fitted (per frame)
    rigid_steps: int = 100  # Adam steps on the head pose alone
    steps: int = 300  # Adam steps on everything
    lr: float = 0.03  # peak learning rate (Adam) on every unknown
    jaw_line_weight: float = 0.3  # relative weight of landmarks 0-16 (they slide with the silhouette)
    shape_prior: float = 1e-6  # per squared shape coefficient
    expr_prior: float = 1e-6  # per squared expression coefficient
    jaw_twist_prior: float = 1e-2  # per squared radian of the jaw's y/z rotation (it mostly opens about x)
    smooth_expr: float = 1e-5  # per squared frame-to-frame change of an expression coefficient
    smooth_jaw: float = 1e-3  # per squared radian of frame-to-frame jaw change
    smooth_rot: float = 1e-2  # per squared radian of frame-to-frame head rotation change
    smooth_trans: float = 1e-2  # per squared frame-to-frame translation change, in face sizes


@dataclass(frozen=True)
class Track:
    """A tracked clip. motion (T, 115) float32 in the motion layout (pose in camera coordinates);
    shape (300,) float32; found (T,) bool frames that had landmarks; rmse_px (T,) landmark
    reprojection RMS error in pixels (NaN where not found); lip_gap_m (T,) inner-lip gap
    (landmarks 62-66) in metres; basis_error_m: largest landmark distance between the basis and
    the full model; fov_deg and image_size (H, W) describe the camera."""

    motion: np.ndarray
    shape: np.ndarray
    found: np.ndarray
    rmse_px: np.ndarray
    lip_gap_m: np.ndarray
    basis_error_m: float
    fov_deg: float
    image_size: tuple[int, int]


def focal_px(height: int, fov_deg: float) -> float:
    """Focal length in pixels for an image ``height`` pixels tall (same as ``render.Camera``)."""
    return 0.5 * height / math.tan(math.radians(fov_deg) / 2)


def project(points: torch.Tensor, focal: float, height: int, width: int) -> torch.Tensor:
    """(..., 3) camera coordinates (x right, y up, looking down -z) -> (..., 2) pixels (x right, y down)."""
    depth = (-points[..., 2]).clamp_min(1e-6)
    return torch.stack([0.5 * width + focal * points[..., 0] / depth,
                        0.5 * height - focal * points[..., 1] / depth], dim=-1)


def _probe_rotations(dtype: torch.dtype) -> torch.Tensor:
    """(PROBE_ROTATIONS, 3) fixed axis-angles of length PROBE_ANGLE on well-spread axes."""
    k = torch.arange(PROBE_ROTATIONS, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / PROBE_ROTATIONS  # a Fibonacci sphere: deterministic, evenly spread
    phi = k * math.pi * (3 - math.sqrt(5))
    r = torch.sqrt(1 - z**2)
    axes = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)
    return (PROBE_ANGLE * axes).to(dtype)


def _vec_r_minus_i(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 9) row-major entries of R - I."""
    R = axis_angle_to_matrix(aa)
    return (R - torch.eye(3, dtype=aa.dtype, device=aa.device)).flatten(-2)


class LandmarkBasis:
    """The face model's 68 landmarks with the global pose removed, as a cheap function of
    (shape, expression, jaw); identified by probing the model (see the module docstring)."""

    def __init__(self, face: FaceModel, n_shape: int, n_expr: int) -> None:
        self.n_shape, self.n_expr = int(n_shape), int(n_expr)
        D = self.n_shape + self.n_expr
        dtype = face.vertex_colors.dtype
        # 1. no jaw rotation: landmarks are affine in theta; one probe per unit coefficient
        theta = torch.cat([torch.zeros(1, D), torch.eye(D)]).to(dtype)  # (D+1, D)
        rest = self._probe(face, theta, torch.zeros(D + 1, 3, dtype=dtype)).flatten(1)  # (D+1, 204)
        self.l0 = rest[0].float()
        self.B = (rest[1:] - rest[0]).float()  # (D, 204)
        # 2. jaw at theta = 0: a general linear map of vec(R - I), by least squares over the probes
        probes = _probe_rotations(dtype)  # (P, 3)
        turned = self._probe(face, theta[:1].expand(len(probes), D), probes).flatten(1)  # (P, 204)
        V = _vec_r_minus_i(probes.double())  # (P, 9)
        self.G0 = torch.linalg.lstsq(V, (turned - rest[0]).double()).solution.float()  # (9, 204)
        # 3. how theta changes the jaw's lever arms: (R - I) Md_i, from two probes about
        #    different axes per coefficient ((R - I) has rank 2, two of them rank 3)
        pair = torch.tensor([[PROBE_ANGLE, 0.0, 0.0], [0.0, PROBE_ANGLE, 0.0]], dtype=dtype)
        moved = torch.stack([self._probe(face, theta[1:], pair[k].expand(D, 3)) for k in range(2)], 1)
        base = torch.stack([self._probe(face, theta[:1], pair[k: k + 1])[0] for k in range(2)])  # (2, 68, 3)
        diff = (moved - rest[1:].view(D, 1, N_LANDMARKS, 3)) - (base - rest[0].view(N_LANDMARKS, 3))  # (D, 2, 68, 3)
        A = (axis_angle_to_matrix(pair.double()) - torch.eye(3, dtype=torch.float64)).reshape(6, 3)
        rhs = diff.double().permute(1, 3, 0, 2).reshape(6, D * N_LANDMARKS)  # rows: (probe, xyz)
        self.Md = torch.linalg.lstsq(A, rhs).solution.T.reshape(D, N_LANDMARKS * 3).float()

    def _probe(self, face: FaceModel, theta: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
        """(N, D) coefficients (shape first), (N, 3) jaw -> (N, 68, 3) landmarks of the full model,
        global pose zero."""
        N = theta.shape[0]
        shape = theta.new_zeros(N, N_SHAPE)
        shape[:, : self.n_shape] = theta[:, : self.n_shape]
        motion = theta.new_zeros(N, MOTION_DIM)
        motion[:, EXPR.start: EXPR.start + self.n_expr] = theta[:, self.n_shape:]
        motion[:, JAW] = jaw
        return _model_landmarks(face, shape, motion)

    def __call__(self, shape: torch.Tensor, expr: torch.Tensor, jaw: torch.Tensor) -> torch.Tensor:
        """shape (n_shape,), expr (T, n_expr), jaw (T, 3) axis-angle -> (T, 68, 3) metres."""
        T = expr.shape[0]
        theta = torch.cat([shape.expand(T, self.n_shape), expr], dim=-1)  # (T, D)
        rest = (self.l0 + theta @ self.B).view(T, N_LANDMARKS, 3)
        R_minus_I = axis_angle_to_matrix(jaw) - torch.eye(3, dtype=jaw.dtype, device=jaw.device)  # (T, 3, 3)
        at_zero = (R_minus_I.flatten(1) @ self.G0).view(T, N_LANDMARKS, 3)
        arms = (theta @ self.Md).view(T, N_LANDMARKS, 3)
        return rest + at_zero + arms @ R_minus_I.transpose(1, 2)


_BASES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def landmark_basis(face: FaceModel, n_shape: int, n_expr: int) -> LandmarkBasis:
    """``LandmarkBasis`` of ``face``, identified once per model object and size."""
    per_face = _BASES.setdefault(face, {})
    key = (int(n_shape), int(n_expr))
    if key not in per_face:
        per_face[key] = LandmarkBasis(face, *key)
    return per_face[key]


@torch.no_grad()
def _model_landmarks(face: FaceModel, shape: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """(N, 300), (N, 115) -> (N, 68, 3) landmarks of the full model on the CPU, in batches run on
    the model's device and dtype."""
    like = face.vertex_colors
    out = [face.landmarks(face(shape[a: a + PROBE_BATCH].to(like), motion[a: a + PROBE_BATCH].to(like))).cpu()
           for a in range(0, shape.shape[0], PROBE_BATCH)]
    return torch.cat(out)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore: the fit's tensors are small (T x 68 x 3), so
    thread hand-offs cost more than they give, and far more on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_landmarks(face: FaceModel, landmarks: FaceLandmarks, config: TrackerConfig | None = None) -> Track:
    """Fit ``face`` to a clip's 2-D landmarks (T frames at 25 fps); see the module docstring.

    Raises ValueError when no frame has a face.
    """
    with _one_thread():
        return _fit(face, landmarks, config or TrackerConfig())


def _fit(face: FaceModel, landmarks: FaceLandmarks, cfg: TrackerConfig) -> Track:
    found = np.asarray(landmarks.found, dtype=bool)
    if not found.any():
        raise ValueError("no face was found in any frame")
    T = len(found)
    H, W = landmarks.image_size
    f = focal_px(H, cfg.fov_deg)
    basis = landmark_basis(face, cfg.n_shape, cfg.n_expr)

    # targets: frames without a face borrow the nearest found frame's points (their weight is 0)
    target = torch.from_numpy(np.asarray(landmarks.points, np.float32)[nearest_found(found)])  # (T, 68, 2)
    frame_w = torch.from_numpy(found.astype(np.float32))
    point_w = torch.ones(N_LANDMARKS)
    point_w[JAW_LINE] = cfg.jaw_line_weight
    face_px = float(torch.sqrt(((target - target.mean(1, keepdim=True)) ** 2).sum(-1).mean()).median())
    l0 = basis.l0.view(N_LANDMARKS, 3)
    face_m = float(torch.sqrt(((l0[:, :2] - l0[:, :2].mean(0)) ** 2).sum(-1).mean()))

    # initial pose: no rotation, depth from the face's size, position from its centroid
    depth = f * face_m / face_px
    centre = target.mean(1)  # (T, 2) pixels
    tau0 = torch.stack([(centre[:, 0] - 0.5 * W) * depth / f, -(centre[:, 1] - 0.5 * H) * depth / f,
                        torch.full((T,), -depth)], dim=-1) - l0.mean(0)
    shape = torch.zeros(cfg.n_shape, requires_grad=True)
    expr = torch.zeros(T, cfg.n_expr, requires_grad=True)
    jaw = torch.zeros(T, 3, requires_grad=True)
    rot = torch.zeros(T, 3, requires_grad=True)
    delta = torch.zeros(T, 3, requires_grad=True)  # translation offset from tau0, in face sizes

    def camera_points(shape, expr, jaw, rot, delta):
        local = basis(shape, expr, jaw)  # (T, 68, 3)
        return local @ axis_angle_to_matrix(rot).transpose(1, 2) + (tau0 + delta * face_m)[:, None]

    def data_term(points, weights):
        err = ((project(points, f, H, W) - target) / face_px).pow(2).sum(-1)  # (T, 68)
        return (err * weights * frame_w[:, None]).sum() / (frame_w.sum() * weights.sum())

    def smooth(x):
        return (x[1:] - x[:-1]).pow(2).sum(-1).mean() if x.shape[0] > 1 else x.new_zeros(())

    rigid_w = torch.zeros(N_LANDMARKS)
    rigid_w[RIGID_POINTS] = 1.0
    _adam([rot, delta], cfg.rigid_steps, cfg.lr, lambda: (
        data_term(camera_points(shape, expr, jaw, rot, delta), rigid_w)
        + cfg.smooth_rot * smooth(rot) + cfg.smooth_trans * smooth(delta)))

    def full_objective():
        points = camera_points(shape, expr, jaw, rot, delta)
        return (data_term(points, point_w)
                + cfg.shape_prior * shape.pow(2).sum()
                + cfg.expr_prior * expr.pow(2).sum(-1).mean()
                + cfg.jaw_twist_prior * jaw[:, 1:].pow(2).sum(-1).mean()
                + cfg.smooth_expr * smooth(expr) + cfg.smooth_jaw * smooth(jaw)
                + cfg.smooth_rot * smooth(rot) + cfg.smooth_trans * smooth(delta))

    _adam([shape, expr, jaw, rot, delta], cfg.steps, cfg.lr, full_objective)

    with torch.no_grad():
        points = camera_points(shape, expr, jaw, rot, delta)
        rmse = ((project(points, f, H, W) - target) ** 2).sum(-1).mean(-1).sqrt().numpy()
        return _finish(face, cfg, landmarks, found, shape, expr, jaw, rot, tau0 + delta * face_m,
                       np.where(found, rmse, np.nan), basis)


def _adam(params: list[torch.Tensor], steps: int, lr: float, objective) -> None:
    """Minimise ``objective()`` over ``params`` with Adam and a cosine-decayed learning rate."""
    if steps <= 0:
        return
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * LR_FLOOR)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        objective().backward()
        opt.step()
        sched.step()


def _finish(face: FaceModel, cfg: TrackerConfig, landmarks: FaceLandmarks, found: np.ndarray,
            shape: torch.Tensor, expr: torch.Tensor, jaw: torch.Tensor, rot: torch.Tensor, tau: torch.Tensor,
            rmse: np.ndarray, basis: LandmarkBasis) -> Track:
    """Assemble the motion: the model's own pivot goes back into TRANS; eyes from the irises."""
    T = expr.shape[0]
    full_shape = torch.zeros(N_SHAPE)
    full_shape[: cfg.n_shape] = shape
    motion = torch.zeros(T, MOTION_DIM)
    motion[:, EXPR][:, : cfg.n_expr] = expr
    motion[:, JAW] = jaw
    rotated = motion.clone()
    rotated[:, ROT] = rot
    shape_b = full_shape.expand(T, N_SHAPE)
    l_rest = _model_landmarks(face, shape_b, motion).float()  # (T, 68, 3) pose removed
    l_rot = _model_landmarks(face, shape_b, rotated).float()  # turned about the model's pivot
    R = axis_angle_to_matrix(rot)
    pivot_shift = (l_rot - l_rest @ R.transpose(1, 2)).mean(1)  # (T, 3) = (I - R) pivot, for every landmark
    motion[:, ROT] = rot
    motion[:, TRANS] = tau - pivot_shift
    basis_error = float((basis(shape, expr, jaw) - l_rest).norm(dim=-1).max())
    gap = (l_rest[:, MOUTH_UPPER_INNER] - l_rest[:, MOUTH_LOWER_INNER]).norm(dim=-1)
    if landmarks.iris is not None and np.isfinite(landmarks.iris).any():
        eyes = _eyes_from_iris(landmarks, found, l_rest, R, tau, focal_px(landmarks.image_size[0], cfg.fov_deg))
        motion[:, EYE_LEFT], motion[:, EYE_RIGHT] = eyes[:, 0], eyes[:, 1]
    return Track(motion.numpy().astype(np.float32), full_shape.numpy().astype(np.float32), found,
                 rmse.astype(np.float32), gap.numpy().astype(np.float32), basis_error, cfg.fov_deg,
                 tuple(landmarks.image_size))


def _eyes_from_iris(landmarks: FaceLandmarks, found: np.ndarray, l_rest: torch.Tensor, R: torch.Tensor,
                    tau: torch.Tensor, focal: float) -> torch.Tensor:
    """(T, 2, 3) eye axis-angles (left, right) from the iris offsets; see the module docstring."""
    T = l_rest.shape[0]
    iris = torch.from_numpy(np.asarray(landmarks.iris, np.float32))  # (T, 2, 2) px, left then right
    centres = torch.stack([l_rest[:, LEFT_EYE].mean(1), l_rest[:, RIGHT_EYE].mean(1)], dim=1)  # (T, 2, 3)
    cam = centres @ R.transpose(1, 2) + tau[:, None]  # camera coordinates
    H, W = landmarks.image_size
    pix = project(cam, focal, H, W)
    depth = -cam[..., 2]
    offset = torch.stack([(iris[..., 0] - pix[..., 0]), -(iris[..., 1] - pix[..., 1])], -1) * (depth / focal)[..., None]
    offset3 = torch.cat([offset, torch.zeros(T, 2, 1)], dim=-1)  # (T, 2, 3) camera frame, metres
    head = (offset3 @ R)[..., :2]  # rotate into the head frame: R^T applied to row vectors
    ok = torch.from_numpy(found & np.isfinite(landmarks.iris).all(axis=(1, 2)))
    if not ok.any():
        return torch.zeros(T, 2, 3)
    # relative to the clip's median: removes the constant offset between the detector's iris and
    # the model's eye-opening centre (they are different anatomical points)
    head = head - head[ok].median(dim=0).values
    sin = (head / EYEBALL_RADIUS_M).clamp(-1.0, 1.0)
    # look toward +x: rotate about +y; look up (+y): rotate about -x
    eyes = torch.stack([-torch.asin(sin[..., 1]), torch.asin(sin[..., 0]), torch.zeros(T, 2)], dim=-1)
    eyes = eyes.clamp(-MAX_GAZE_RAD, MAX_GAZE_RAD)
    eyes = eyes.double().numpy()
    idx = np.flatnonzero(ok.numpy())
    window = max(1, round(GAZE_SMOOTH_S * MOTION_FPS))
    out = np.zeros_like(eyes)
    for e in range(2):
        for c in range(3):
            filled = np.interp(np.arange(T), idx, eyes[idx, e, c])
            out[:, e, c] = moving_average(filled, window)
    return torch.from_numpy(out).float()


def lip_gap(face: FaceModel, shape: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """(T,) inner-lip gap (landmarks 62-66, metres) of a motion clip on ``face``."""
    m = torch.as_tensor(np.asarray(motion), dtype=torch.float32)
    s = torch.as_tensor(np.asarray(shape), dtype=torch.float32).expand(m.shape[0], N_SHAPE)
    lmk = _model_landmarks(face, s, m)
    return (lmk[:, MOUTH_UPPER_INNER] - lmk[:, MOUTH_LOWER_INNER]).norm(dim=-1).numpy().astype(np.float32)
