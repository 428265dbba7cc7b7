"""Keypoint sets as data: names, flip permutations and subsets (docs/design.md, Keypoints).

A :class:`KeypointSet` is an ordered list of names. Flip permutations are derived from the names
(left <-> right), so a set's flip is right by construction and flipping twice is the identity.
How each keypoint is obtained from a given body family (a skeleton joint, a vertex, a regressor
row) is recorded next to that family (see :data:`SMPL_SPIN49_SOURCES` for SMPL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

__all__ = [
    "KeypointSet",
    "OPENPOSE25",
    "SPIN_GT24",
    "SPIN49",
    "COCO17",
    "H36M17",
    "LSP14",
    "H36M_TO_LSP14",
    "H36M_TO_J17",
    "SMPL24",
    "SMPL_SPIN49_SOURCES",
    "SMPLH_EXTRA_VERTEX_IDS",
    "flip_keypoints",
    "swap_left_right",
]

_LR_PATTERNS = [
    (r"\bLeft\b", "Right"),
    (r"\bRight\b", "Left"),
    (r"\bleft_", "right_"),
    (r"\bright_", "left_"),
    (r"(?<=OP )L", "R"),
    (r"(?<=OP )R", "L"),
    (r"^L_", "R_"),
    (r"^R_", "L_"),
    (r"\.L$", ".R"),
    (r"\.R$", ".L"),
]


def swap_left_right(name: str) -> str:
    """The mirror name of a keypoint or joint: ``"Left Knee" -> "Right Knee"``, ``"OP LEye" -> "OP REye"``,
    ``"left_hip" -> "right_hip"``, ``"L_Hip" -> "R_Hip"``, ``"upperarm01.L" -> "upperarm01.R"`` (Anny's
    bones); names without a side are unchanged."""
    for pattern, repl in _LR_PATTERNS:
        new, n = re.subn(pattern, repl, name, count=1)
        if n:
            return new
    return name


@dataclass(frozen=True)
class KeypointSet:
    """An ordered set of named keypoints.

    Attributes:
        name: identifier, e.g. ``"spin49"``.
        names: the keypoint names in order.
    """

    name: str
    names: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"keypoint set {self.name!r} has duplicate names")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.names)})

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of ``name``; ``KeyError`` naming the set if absent."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"keypoint {name!r} is not in set {self.name!r}") from None

    def indices(self, names: list[str] | tuple[str, ...]) -> list[int]:
        """Positions of several names."""
        return [self.index(n) for n in names]

    @property
    def flip_perm(self) -> list[int]:
        """Permutation ``p`` such that ``flipped[i] = kp[p[i]]`` after a horizontal image flip."""
        return [self.index(swap_left_right(n)) for n in self.names]


# --- OpenPose BODY_25 in OpenPose order, as SPIN names them -------------------------------------
OPENPOSE25 = KeypointSet(
    "openpose25",
    (
        "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder",
        "OP LElbow", "OP LWrist", "OP MidHip", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip",
        "OP LKnee", "OP LAnkle", "OP REye", "OP LEye", "OP REar", "OP LEar", "OP LBigToe",
        "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
    ),
)  # fmt: skip

# --- SPIN's 24 "GT" joints (the `part` array of SPIN/DSR .npz files) ------------------------------
SPIN_GT24 = KeypointSet(
    "spin_gt24",
    (
        "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle",
        "Right Wrist", "Right Elbow", "Right Shoulder", "Left Shoulder", "Left Elbow",
        "Left Wrist", "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)",
        "Spine (H36M)", "Jaw (H36M)", "Head (H36M)", "Nose", "Left Eye", "Right Eye",
        "Left Ear", "Right Ear",
    ),
)  # fmt: skip

#: SPIN's 49-keypoint set: the 25 OpenPose joints, then the 24 GT joints.
SPIN49 = KeypointSet("spin49", OPENPOSE25.names + SPIN_GT24.names)

COCO17 = KeypointSet(
    "coco17",
    (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
        "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
)  # fmt: skip

#: The 17 joints of ``J_regressor_h36m.npy`` in the order the field (SPIN, DSR) uses them. The side
#: names follow the field's convention, under which ``H36M_TO_LSP14`` yields LSP order.
H36M17 = KeypointSet(
    "h36m17",
    (
        "Pelvis", "Left Hip", "Left Knee", "Left Ankle", "Right Hip", "Right Knee",
        "Right Ankle", "Spine", "Thorax", "Neck/Nose", "Head", "Left Shoulder", "Left Elbow",
        "Left Wrist", "Right Shoulder", "Right Elbow", "Right Wrist",
    ),
)  # fmt: skip

#: The 14 LSP joints used by evaluation (the first 14 of SPIN_GT24).
LSP14 = KeypointSet("lsp14", SPIN_GT24.names[:14])

#: SPIN's ``H36M_TO_J17``: H36M-17 rows giving the 14 LSP joints, then pelvis, spine, neck/nose.
H36M_TO_J17: list[int] = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9]
#: SPIN's ``H36M_TO_J14``: the H36M-17 rows of the 14 LSP joints, in LSP order.
H36M_TO_LSP14: list[int] = H36M_TO_J17[:14]

#: SMPL's 24 kinematic joints, in the official order.
SMPL24 = KeypointSet(
    "smpl24",
    (
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
        "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
        "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
    ),
)  # fmt: skip

#: The SMPL vertices SPIN (through ``smplx``'s ``vertex_ids['smplh']``) uses as extra joints.
SMPLH_EXTRA_VERTEX_IDS: dict[str, int] = {
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583,
    "LBigToe": 3216, "LSmallToe": 3226, "LHeel": 3387,
    "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787,
}  # fmt: skip

#: How each SPIN-49 keypoint is obtained from SMPL: ``("joint", j)`` a kinematic joint,
#: ``("vertex", v)`` a mesh vertex, ``("extra", r)`` row ``r`` of ``J_regressor_extra.npy``
#: (9 x 6890). Equal to SPIN's ``JOINT_MAP`` over its 24 joints + 21 smplh extras + 9 regressed.
SMPL_SPIN49_SOURCES: list[tuple[str, int]] = [
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["nose"]),  # OP Nose
    ("joint", 12), ("joint", 17), ("joint", 19), ("joint", 21),  # OP Neck, RShoulder, RElbow, RWrist
    ("joint", 16), ("joint", 18), ("joint", 20),  # OP LShoulder, LElbow, LWrist
    ("joint", 0),  # OP MidHip
    ("joint", 2), ("joint", 5), ("joint", 8),  # OP RHip, RKnee, RAnkle
    ("joint", 1), ("joint", 4), ("joint", 7),  # OP LHip, LKnee, LAnkle
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["reye"]), ("vertex", SMPLH_EXTRA_VERTEX_IDS["leye"]),
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["rear"]), ("vertex", SMPLH_EXTRA_VERTEX_IDS["lear"]),
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["LBigToe"]), ("vertex", SMPLH_EXTRA_VERTEX_IDS["LSmallToe"]),
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["LHeel"]), ("vertex", SMPLH_EXTRA_VERTEX_IDS["RBigToe"]),
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["RSmallToe"]), ("vertex", SMPLH_EXTRA_VERTEX_IDS["RHeel"]),
    # GT 24
    ("joint", 8), ("joint", 5), ("extra", 0), ("extra", 1), ("joint", 4), ("joint", 7),
    ("joint", 21), ("joint", 19), ("joint", 17), ("joint", 16), ("joint", 18), ("joint", 20),
    ("extra", 2), ("extra", 3), ("extra", 4), ("extra", 5), ("extra", 6), ("extra", 7),
    ("extra", 8),
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["nose"]),  # Nose
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["leye"]), ("vertex", SMPLH_EXTRA_VERTEX_IDS["reye"]),
    ("vertex", SMPLH_EXTRA_VERTEX_IDS["lear"]), ("vertex", SMPLH_EXTRA_VERTEX_IDS["rear"]),
]  # fmt: skip
assert len(SMPL_SPIN49_SOURCES) == len(SPIN49)


def flip_keypoints(keypoints: torch.Tensor, kp_set: KeypointSet, width: float | None = None) -> torch.Tensor:
    """Mirror keypoints for a horizontal image flip.

    Args:
        keypoints: ``(..., K, D)`` with ``D >= 2``; the first coordinate is x. When ``width`` is
            given, x is in pixels of an image ``width`` wide and becomes ``width - x``; otherwise x
            is centred (normalised [-1, 1] or metres) and becomes ``-x``. Further columns (y,
            confidence) are kept.
        kp_set: the set the K keypoints follow (gives the left/right permutation).
        width: image width in pixels, or ``None`` for centred coordinates.

    Returns:
        ``(..., K, D)`` mirrored and re-ordered keypoints.
    """
    if keypoints.shape[-2] != len(kp_set):
        raise ValueError(
            f"expected {len(kp_set)} keypoints for set {kp_set.name!r}, got {keypoints.shape[-2]}"
        )
    out = keypoints[..., kp_set.flip_perm, :].clone()
    out[..., 0] = (width - out[..., 0]) if width is not None else -out[..., 0]
    return out
