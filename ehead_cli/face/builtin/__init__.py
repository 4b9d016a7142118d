"""The built-in procedural head: the offline default face model, made entirely by code.

A stylised adult head with FLAME's parameter layout, so every motion file drives it unchanged:
300 identity (shape) and 100 expression blendshapes, a jaw joint, two eyeball joints, a rigid
global rotation about a neck pivot and a translation. Same conventions as FLAME: metres, y up,
the face looks toward +z, x toward the subject's left.

How it is made (all deterministic), one module per step:
- ``proportions``: the named components, the proportions and grid layout, the colours.
- ``surface``: the bare head as a smooth union of ellipsoids (cranium, face, jaw, chin, cheeks,
  brow ridge, nose, lips, eyelid bulges, neck), and the skin rays cast onto it.
- ``topology``: the vertex and triangle lists, the skin grid's rows and columns (rows above the
  forehead fan out to the crown, rows over the face are horizontal slices, so the mouth and the
  eye slits are straight grid rows, rows below the lips fan under the chin and down the neck),
  strips and fans.
- ``parts``: the skin with its hair cap and doubled slit rows (the upper lip or lid on one copy,
  the lower on the other), eyelids on a sphere around each eyeball, eyeballs (sclera, iris,
  pupil), ears (closed thin shells) and the mouth cavity with upper and lower teeth and a tongue.
- ``appearance``: the per-vertex colours (lips, brows, hair, lash lines, eyes, cavity).
- ``rig``: skin weights (a head and a jaw joint, rigid eyeballs), the joint anchors, the 68
  landmarks and the ``lips`` / ``upper_face`` masks.
- ``blendshapes``: the shape and expression bases (metres per unit coefficient).
- ``model``: ``HeadArrays``, ``build_head_arrays`` (cached per process) and ``BuiltinHead``.

Lips part when the jaw turns or with ``EXPR_LIPS_PART``; the eyelids close with ``EXPR_BLINK``.
Units of the coefficients: the named components move a few millimetres per unit (listed where
they are defined in ``proportions``), so +-1 is a clear, plausible expression and +-3 of shape a
plausible other person; ``EXPR_BLINK`` = 1 closes the eyes exactly. The other components are
small localised deformations whose peak displacement decreases with the index.

Size: about 5.7k vertices and 11k triangles; building takes about half a second.
"""

from ehead_cli.face.builtin.model import BuiltinHead, HeadArrays, build_head_arrays
from ehead_cli.face.builtin.proportions import (
    EAR_PART,
    EXPR_BLINK,
    EXPR_BROW_FROWN,
    EXPR_BROW_RAISE,
    EXPR_CHEEK_PUFF,
    EXPR_LIP_ROUND,
    EXPR_LIP_STRETCH,
    EXPR_LIPS_PART,
    EXPR_MOUTH_SIDEWAYS,
    EXPR_NOSE_WRINKLE,
    EXPR_SMILE,
    EXPR_SQUINT,
    EYE_LEFT_JOINT,
    EYE_LEFT_PART,
    EYE_RIGHT_JOINT,
    EYE_RIGHT_PART,
    HEAD_JOINT,
    JAW_JOINT,
    MOUTH_PART,
    N_NAMED_EXPR,
    N_NAMED_SHAPE,
    NECK_PIVOT,
    SHAPE_BROW_RIDGE,
    SHAPE_CHEEK_FULLNESS,
    SHAPE_CHIN_LENGTH,
    SHAPE_EAR_SIZE,
    SHAPE_EYE_SPACING,
    SHAPE_FOREHEAD_SLOPE,
    SHAPE_HEAD_DEPTH,
    SHAPE_HEAD_HEIGHT,
    SHAPE_HEAD_WIDTH,
    SHAPE_JAW_WIDTH,
    SHAPE_LIP_FULLNESS,
    SHAPE_MOUTH_WIDTH,
    SHAPE_NOSE_PROJECTION,
    SHAPE_NOSE_SIZE,
    SKIN_PART,
)

__all__ = [
    "EAR_PART",
    "EXPR_BLINK",
    "EXPR_BROW_FROWN",
    "EXPR_BROW_RAISE",
    "EXPR_CHEEK_PUFF",
    "EXPR_LIPS_PART",
    "EXPR_LIP_ROUND",
    "EXPR_LIP_STRETCH",
    "EXPR_MOUTH_SIDEWAYS",
    "EXPR_NOSE_WRINKLE",
    "EXPR_SMILE",
    "EXPR_SQUINT",
    "EYE_LEFT_JOINT",
    "EYE_LEFT_PART",
    "EYE_RIGHT_JOINT",
    "EYE_RIGHT_PART",
    "HEAD_JOINT",
    "JAW_JOINT",
    "MOUTH_PART",
    "NECK_PIVOT",
    "N_NAMED_EXPR",
    "N_NAMED_SHAPE",
    "SHAPE_BROW_RIDGE",
    "SHAPE_CHEEK_FULLNESS",
    "SHAPE_CHIN_LENGTH",
    "SHAPE_EAR_SIZE",
    "SHAPE_EYE_SPACING",
    "SHAPE_FOREHEAD_SLOPE",
    "SHAPE_HEAD_DEPTH",
    "SHAPE_HEAD_HEIGHT",
    "SHAPE_HEAD_WIDTH",
    "SHAPE_JAW_WIDTH",
    "SHAPE_LIP_FULLNESS",
    "SHAPE_MOUTH_WIDTH",
    "SHAPE_NOSE_PROJECTION",
    "SHAPE_NOSE_SIZE",
    "SKIN_PART",
    "BuiltinHead",
    "HeadArrays",
    "build_head_arrays",
]
