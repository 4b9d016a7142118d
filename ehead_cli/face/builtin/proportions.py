"""The built-in head's numbers: the named shape and expression components, the proportions and
layout of the mesh (metres, degrees), the colours, and the ids of vertex parts and joints.

Conventions as FLAME's: metres, y up, the face looks toward +z, x toward the subject's left.
"""

from __future__ import annotations

# --- named expression components (index into the 100 expression coefficients) --------------------
# (peak displacement per unit coefficient)
EXPR_SMILE = 0  # mouth corners 4.5 mm up and 3.5 mm out, cheeks 2 mm up
EXPR_LIP_ROUND = 1  # pucker: lips 7 mm forward, corners ~4 mm in
EXPR_LIP_STRETCH = 2  # corners 5 mm out, 1.5 mm down
EXPR_LIPS_PART = 3  # upper lip 2.5 mm up, lower 2.5 mm down (the mouth opens without the jaw)
EXPR_BROW_RAISE = 4  # both brows 6.5 mm up
EXPR_BROW_FROWN = 5  # inner brows 3 mm down and 2.5 mm together
EXPR_BLINK = 6  # 1.0 closes both eyelids exactly (the upper lid travels ~8 mm)
EXPR_SQUINT = 7  # lower eyelids 9 degrees up, the skin under the eyes 1 mm up
EXPR_CHEEK_PUFF = 8  # cheeks 5 mm out
EXPR_NOSE_WRINKLE = 9  # nose sides 2.5 mm up, upper lip 1 mm up
EXPR_MOUTH_SIDEWAYS = 10  # the mouth 5 mm toward the subject's left (+x); negative: right
N_NAMED_EXPR = 11

# --- named shape components -------------------------------------------------------------------------
SHAPE_HEAD_WIDTH = 0
SHAPE_HEAD_HEIGHT = 1
SHAPE_HEAD_DEPTH = 2
SHAPE_JAW_WIDTH = 3
SHAPE_NOSE_SIZE = 4
SHAPE_EYE_SPACING = 5
SHAPE_MOUTH_WIDTH = 6
SHAPE_LIP_FULLNESS = 7
SHAPE_CHIN_LENGTH = 8
SHAPE_FOREHEAD_SLOPE = 9
SHAPE_CHEEK_FULLNESS = 10
SHAPE_NOSE_PROJECTION = 11
SHAPE_EAR_SIZE = 12
SHAPE_BROW_RIDGE = 13
N_NAMED_SHAPE = 14

SEED = 20240617  # fixes the unnamed components; changing it changes every unnamed blendshape

# --- proportions (metres) -----------------------------------------------------------------------------
AXIS_Z = -0.010  # the vertical axis the skin rays start from (x = 0)
TOP_FAN_Y = 0.085  # rows above fan out from (0, TOP_FAN_Y, AXIS_Z) to the crown
BOTTOM_FAN_Y = -0.092  # rows below fan out from (0, BOTTOM_FAN_Y, AXIS_Z) under the chin and down the neck
NECK_CUT_Y = -0.180  # the neck ends in a flat cut here
MAX_RAY = 0.17  # longest skin ray
RAY_STEP = 0.004  # ray-marching step before bisection
MIN_RAY = 0.025  # every skin point is at least this far from its ray origin
EYE_Y = -0.001  # eyelid slit row
MOUTH_Y = -0.067  # lip slit row
EYE_CENTER = (0.031, 0.0005, 0.060)  # left eyeball centre; the right one mirrors x
EYE_RADIUS = 0.0125
LID_RADIUS = 0.0137  # eyelids lie on this sphere around the eyeball centre
EYE_CORNERS_DEG = (12.0, 34.0)  # azimuth of the inner and outer eye corner columns
MOUTH_CORNER_DEG = 16.0  # azimuth of the mouth corner columns
HAIR_THICKNESS = 0.009
# hairline height (m) by azimuth from the front: forehead, temples, the sideburn in front of the
# ear, behind the ear, a level nape
HAIRLINE_AZIMUTH_DEG = (0.0, 30.0, 55.0, 70.0, 76.0, 80.0, 84.0, 92.0, 102.0, 115.0, 130.0, 180.0)
HAIRLINE_Y = (0.072, 0.068, 0.052, 0.030, 0.005, 0.000, 0.018, 0.020, 0.000, -0.045, -0.060, -0.064)
NECK_PIVOT_ROW_DEG = -40.0  # the bottom-fan row whose ring centroid is the neck pivot

# Grid: (segment end, intervals) from 0 to 180 degrees azimuth on each side, and the rows.
AZIMUTH_SEGMENTS = ((EYE_CORNERS_DEG[0], 4), (MOUTH_CORNER_DEG, 2), (EYE_CORNERS_DEG[1], 6),
                    (100.0, 14), (180.0, 7))
TOP_FAN_DEG = (80.0, 70.0, 60.0, 50.0, 40.0, 30.0, 21.0, 13.0, 6.0)  # elevations below the crown pole
BAND_SEGMENTS = ((0.035, 10), (EYE_Y, 11), (-0.022, 6), (-0.050, 8), (MOUTH_Y, 6),
                 (BOTTOM_FAN_Y, 8))  # slice heights from TOP_FAN_Y down, (segment end, intervals)
BOTTOM_FAN_DEG = (-3.0, -6.0, -9.0, -12.0, -15.0, -18.0, -21.0, -25.0, -30.0, -35.0, -40.0, -50.0, -60.0, -70.0,
                  -80.0)

# Eyelids: angles about the eyeball centre (degrees). Margins follow e(t) = peak * (1 - t^2)^p
# across the eye, t = -1 inner corner, +1 outer corner.
LID_CENTER_DEG = 8.0  # the eye opening is turned this much outward
LID_HALF_WIDTH_DEG = 60.0
UPPER_MARGIN_DEG = 23.0
LOWER_MARGIN_DEG = 20.0
LID_TOP_DEG = 72.0  # where the upper lid rows end (then they blend into the skin)
LID_BOTTOM_DEG = -62.0
BLINK_MEET = 0.2  # closed lids meet this fraction of the way up from the lower margin
EYE_PATCH_TOP = 0.024  # slice heights where the lid patch ends
EYE_PATCH_BOTTOM = -0.020

HAIR_RAMP = 0.03  # hair reaches its full thickness this far above the hairline
LID_PATCH_HALF_WIDTH = 1.5  # the lid patch spans |t| <= this (t = +-1 at the eye corners)
LID_BLEND_START = 0.0  # lid rows follow the lid sphere at the margin and blend into the skin from s = this to s = 1
EYEBALL_RINGS_DEG = (4.0, 9.0, 14.0, 20.0, 25.0, 29.0, 40.0, 60.0, 90.0, 120.0, 150.0)  # from the front
EQUATOR = EYEBALL_RINGS_DEG.index(90.0)  # this ring's mean is the eyeball centre
EYEBALL_SEGMENTS = 16
PUPIL_DEG = 4.5  # angular radius of the pupil seen from the eyeball centre
IRIS_DEG = 25.0
CORNEA_BULGE = 0.0006  # metres the cornea stands out over the iris
SQUINT_DEG = 9.0  # how far EXPR_SQUINT = 1 lifts the lower lid margin
EAR_SEGMENTS = 16
EAR_FLARE_DEG = 28.0  # the back of the ear stands out this much from the head
EAR_ROOT = (0.066, -0.014, -0.004)  # left ear's front edge, where it joins the head
EAR_HALF_WIDTH, EAR_HALF_HEIGHT = 0.017, 0.031
EAR_LATERAL = ((0.25, -0.002), (0.5, -0.0015), (0.72, 0.0015), (0.86, 0.0035), (0.95, 0.0032))  # (u, height)
EAR_MEDIAL = (0.9, 0.6, 0.3)
JAW_BAND = 0.0025  # metres over which the jaw weight rises below the lips
JAW_BAND_WIDENING = 0.0013  # metres more per degree of azimuth beyond the mouth corner
JAW_BORDER_Y = (-0.122, -0.090)  # height of the mandible's lower border under the chin and at the jaw angle
JAW_HINGE_SKIN = (0.066, -0.022, -0.002)  # skin in front of the left ear; the hinge is the mean of both sides
JAW_LINE = (0.066, -0.012, 0.103)  # jaw-line landmarks: half width, top height, depth to the chin
LANDMARK_TIE = 0.0015  # metres: candidates this close in the frontal view count as a tie
CHEEK_BLUSH = (0.04, -0.03, 0.07)
UPPER_LID_SHADE = 0.15  # the upper lid's skin is this much darker at the margin (the brow's missing shadow)
VERMILION_RAMP = 0.003  # metres over which the lip colour fades into the skin (about one grid row)

# --- colours (linear RGB albedo) -------------------------------------------------------------------
SKIN = (0.86, 0.67, 0.57)
LIPS = (0.73, 0.40, 0.40)
HAIR = (0.22, 0.15, 0.10)
BROWS = (0.26, 0.18, 0.12)
LASH_LINE = (0.20, 0.13, 0.10)
SCLERA = (0.94, 0.92, 0.88)
IRIS = (0.33, 0.44, 0.55)
IRIS_RIM = (0.16, 0.20, 0.26)
PUPIL = (0.03, 0.03, 0.03)
MOUTH_INSIDE = (0.22, 0.05, 0.06)
THROAT = (0.08, 0.02, 0.02)
TEETH = (0.93, 0.91, 0.84)
TONGUE = (0.72, 0.38, 0.40)
INNER_LIP = (0.60, 0.28, 0.29)

# Mouth cavity rings hanging from the lip slit: (depth behind the slit, height above it at the
# middle, x scale, colour), in metres. The upper incisors face forward just behind the upper lip,
# their tips 3 mm below the slit, hidden by the lower lip until the mouth opens. The lower sheet
# follows the jaw: the inner lower lip and gum, the lower incisors standing 1 mm behind the upper
# ones (their tips 0.5 mm above the slit, overlapped by the upper teeth), then the tongue, whose
# top rises to 1.5 mm above the slit 1.5 cm back, and the throat.
CAVITY_UPPER = ((0.0020, 0.0005, 0.97, INNER_LIP), (0.0035, 0.0010, 0.93, TEETH),
                (0.0037, -0.0030, 0.93, TEETH), (0.0065, -0.0025, 0.90, MOUTH_INSIDE),
                (0.015, 0.012, 1.0, MOUTH_INSIDE), (0.032, 0.009, 0.92, THROAT))
CAVITY_LOWER = ((0.0025, -0.0008, 0.97, INNER_LIP), (0.0042, -0.0060, 0.92, INNER_LIP),
                (0.0045, -0.0050, 0.91, TEETH), (0.0048, 0.0005, 0.90, TEETH),
                (0.0068, -0.0055, 0.86, MOUTH_INSIDE), (0.0085, -0.0040, 0.78, TONGUE), (0.015, 0.0015, 0.80, TONGUE),
                (0.022, 0.0005, 0.78, tuple(0.8 * c for c in TONGUE)), (0.030, -0.006, 0.85, THROAT))
CAVITY_BACK = (0.045, 0.0, 0.6, THROAT)

# vertex parts (``BuiltinHead.vertex_part``)
SKIN_PART, EYE_LEFT_PART, EYE_RIGHT_PART, EAR_PART, MOUTH_PART = 0, 1, 2, 3, 4

# skinning joints: columns of ``skin_weights``, rows of ``joint_regressor`` (the neck pivot is not skinned)
HEAD_JOINT, JAW_JOINT, EYE_LEFT_JOINT, EYE_RIGHT_JOINT = 0, 1, 2, 3
NECK_PIVOT = 3  # row of ``joint_regressor`` after the three rotating joints (jaw, left eye, right eye)
