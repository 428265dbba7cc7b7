"""A procedural pose distribution for 24-joint SMPL-like skeletons (the synthetic data's poses).

Poses are built in *T-pose semantics* on SMPL's 24 joints (``SMPL24`` names): each joint's rotation
is relative to its parent, in axes aligned with the body frame at rest (metres, y up, facing +z,
+x the subject's left), and the zero pose is a T-pose with the arms along +-x. Angles below are for
the subject's left side; the right side mirrors them (rotation vector ``(x, y, z) -> (x, -y, -z)``).
A family (standing, walking, arms raised, arms crossed, sitting, bending, lunging, free) sets a
base configuration, per-joint noise is added and every joint is clamped to its limits.

:func:`retarget_tpose` converts such a pose to a body model's own joints (through the anatomical
equivalents of :func:`smpl_equivalents`) and to a rest pose that is not a T-pose (Anny's rest pose
is an A-pose, arms ~47 degrees down) by conjugating the arm chains with the rotation that takes the
T-pose arm direction to the model's rest arm direction.

Sign conventions (checked by the tests on the skeleton): knee flexion is +x; hip flexion (thigh
forward) is -x; left hip abduction is +z; left shoulder: arm down is -z, arm forward is -y; left
elbow flexion is -y; spine/neck forward bend is +x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import roma
import torch

from dsrbody.body.keypoints import SMPL24

if TYPE_CHECKING:
    from dsrbody.body.base import BodyModel

__all__ = [
    "POSE_FAMILIES",
    "JOINT_LIMITS",
    "PoseSample",
    "sample_pose",
    "mirror_rotvec",
    "retarget_tpose",
    "smpl_equivalents",
]

J = len(SMPL24)
_IDX = {n: i for i, n in enumerate(SMPL24.names)}

#: Limits per joint of the subject's left side and the centre line, as (low, high) per x, y, z
#: Euler angle (radians, intrinsic "XYZ" in the rest-aligned parent frame).
_LEFT_LIMITS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "pelvis": ((0, 0), (0, 0), (0, 0)),  # the global orientation is sampled separately
    "spine1": ((-0.35, 0.6), (-0.35, 0.35), (-0.3, 0.3)),
    "spine2": ((-0.25, 0.5), (-0.3, 0.3), (-0.25, 0.25)),
    "spine3": ((-0.25, 0.5), (-0.3, 0.3), (-0.25, 0.25)),
    "neck": ((-0.5, 0.6), (-0.7, 0.7), (-0.35, 0.35)),
    "head": ((-0.4, 0.4), (-0.4, 0.4), (-0.3, 0.3)),
    "left_hip": ((-2.0, 0.5), (-0.5, 0.5), (-0.3, 1.0)),
    "left_knee": ((0.0, 2.4), (-0.1, 0.1), (-0.1, 0.1)),
    "left_ankle": ((-0.6, 0.6), (-0.3, 0.3), (-0.3, 0.3)),
    "left_foot": ((-0.3, 0.3), (-0.1, 0.1), (-0.1, 0.1)),
    "left_collar": ((-0.2, 0.2), (-0.25, 0.25), (-0.2, 0.35)),
    "left_shoulder": ((-1.0, 1.0), (-1.6, 0.6), (-1.55, 1.3)),
    "left_elbow": ((-0.4, 0.4), (-2.5, 0.0), (-0.15, 0.15)),
    "left_wrist": ((-0.6, 0.6), (-0.4, 0.4), (-0.6, 0.6)),
    "left_hand": ((-0.2, 0.2), (-0.2, 0.2), (-0.2, 0.2)),
}


def mirror_rotvec(v: np.ndarray) -> np.ndarray:
    """Mirror rotation vectors (or XYZ Euler triples) through the body's sagittal plane.

    Args:
        v: ``(..., 3)``.

    Returns:
        ``(..., 3)`` = ``(x, -y, -z)``.
    """
    return v * np.array([1.0, -1.0, -1.0])


def _limits_table() -> np.ndarray:
    lim = np.zeros((J, 3, 2))
    for name, i in _IDX.items():
        if name in _LEFT_LIMITS:
            lim[i] = np.array(_LEFT_LIMITS[name])
        elif name.startswith("right_"):
            lo, hi = np.array(_LEFT_LIMITS["left_" + name[6:]]).T  # (3,), (3,)
            lo_m, hi_m = mirror_rotvec(lo), mirror_rotvec(hi)
            lim[i, :, 0] = np.minimum(lo_m, hi_m)
            lim[i, :, 1] = np.maximum(lo_m, hi_m)
        else:  # pragma: no cover - every SMPL joint is listed
            raise KeyError(name)
    return lim


#: ``(24, 3, 2)`` Euler limits (radians) per SMPL24 joint and axis: ``[..., 0]`` low, ``[..., 1]`` high.
JOINT_LIMITS: np.ndarray = _limits_table()

#: Families and their probabilities in the default distribution.
POSE_FAMILIES: dict[str, float] = {
    "standing": 0.22,
    "walking": 0.22,
    "arms_raised": 0.12,
    "arms_crossed": 0.08,
    "sitting": 0.1,
    "bending": 0.08,
    "lunging": 0.08,
    "free": 0.1,
}


@dataclass
class PoseSample:
    """A sampled pose.

    Attributes:
        euler: ``(24, 3)`` XYZ Euler angles (radians) per joint, T-pose semantics; row 0 is zero.
        rotmats: ``(24, 3, 3)`` the same as rotation matrices (row 0 identity).
        family: the family name.
    """

    euler: np.ndarray
    rotmats: np.ndarray
    family: str


def _set(
    e: np.ndarray, name: str, x: float = 0.0, y: float = 0.0, z: float = 0.0, both: bool = False
) -> None:
    """Set a left (or centre) joint's Euler angles; ``both`` also sets the mirrored right joint."""
    e[_IDX[name]] = (x, y, z)
    if both and name.startswith("left_"):
        e[_IDX["right_" + name[5:]]] = mirror_rotvec(np.array([x, y, z]))


def _set_right(e: np.ndarray, name: str, x: float = 0.0, y: float = 0.0, z: float = 0.0) -> None:
    """Set a right joint from the left-side convention values (mirrored)."""
    e[_IDX["right_" + name]] = mirror_rotvec(np.array([x, y, z]))


def _base_pose(family: str, rng: np.random.Generator) -> np.ndarray:
    """The family's base configuration (before noise), ``(24, 3)`` Euler angles."""
    e = np.zeros((J, 3))
    u = rng.uniform
    arm_down = lambda: -u(1.05, 1.45)  # noqa: E731 - shoulder z for an arm hanging down
    if family == "standing":
        _set(e, "left_shoulder", 0, u(-0.3, 0.2), arm_down())
        _set_right(e, "shoulder", 0, u(-0.3, 0.2), arm_down())
        _set(e, "left_elbow", 0, -u(0.0, 0.6), 0)
        _set_right(e, "elbow", 0, -u(0.0, 0.6), 0)
        _set(e, "left_hip", 0, u(-0.2, 0.2), u(0.0, 0.2))
        _set_right(e, "hip", 0, u(-0.2, 0.2), u(0.0, 0.2))
    elif family == "walking":
        phase = u(-1.0, 1.0)  # which leg leads and how far
        swing = u(0.25, 0.55)
        _set(e, "left_hip", -swing * phase, 0, 0.03)
        _set_right(e, "hip", swing * phase, 0, 0.03)
        _set(e, "left_knee", u(0.05, 0.7) if phase < 0 else u(0.0, 0.25))
        _set_right(e, "knee", u(0.05, 0.7) if phase > 0 else u(0.0, 0.25))
        # arms swing against the legs: left leg forward (phase > 0) -> left arm back (+y)
        _set(e, "left_shoulder", 0, 0.6 * swing * phase, arm_down())
        _set_right(e, "shoulder", 0, -0.6 * swing * phase, arm_down())
        _set(e, "left_elbow", 0, -u(0.1, 0.7), 0)
        _set_right(e, "elbow", 0, -u(0.1, 0.7), 0)
        _set(e, "spine2", 0, 0.15 * phase, 0)
    elif family == "arms_raised":
        which = rng.integers(0, 3)  # 0 left, 1 right, 2 both
        for side, sel in (("left", 0), ("right", 1)):
            raised = which in (sel, 2)
            z = u(0.2, 1.25) if raised else arm_down()
            y = u(-0.5, 0.2)
            elbow = -u(0.0, 1.6) if raised else -u(0.0, 0.4)
            if side == "left":
                _set(e, "left_shoulder", u(-0.5, 0.5), y, z)
                _set(e, "left_elbow", 0, elbow, 0)
            else:
                _set_right(e, "shoulder", u(-0.5, 0.5), y, z)
                _set_right(e, "elbow", 0, elbow, 0)
    elif family == "arms_crossed":
        for setter in (lambda *a: _set(e, "left_" + a[0], *a[1:]), lambda *a: _set_right(e, *a)):
            setter("shoulder", u(-0.3, 0.3), -u(0.7, 1.1), -u(0.9, 1.2))
            setter("elbow", 0, -u(1.7, 2.3), 0)
    elif family == "sitting":
        for setter in (lambda *a: _set(e, "left_" + a[0], *a[1:]), lambda *a: _set_right(e, *a)):
            setter("hip", -u(1.2, 1.7), u(-0.2, 0.2), u(0.0, 0.35))
            setter("knee", u(1.2, 1.8))
            setter("shoulder", 0, u(-0.6, 0.1), arm_down())
            setter("elbow", 0, -u(0.3, 1.5), 0)
        _set(e, "spine1", u(0.0, 0.3))
    elif family == "bending":
        bend = u(0.4, 1.2)
        for n in ("spine1", "spine2", "spine3"):
            _set(e, n, bend / 3 + u(-0.05, 0.05), u(-0.1, 0.1), u(-0.1, 0.1))
        hip = -u(0.3, 1.0)
        _set(e, "left_hip", hip, 0, 0.05)
        _set_right(e, "hip", hip, 0, 0.05)
        knee = u(0.0, 0.6)
        _set(e, "left_knee", knee)
        _set_right(e, "knee", knee)
        _set(e, "left_shoulder", 0, -u(0.3, 1.2), arm_down())
        _set_right(e, "shoulder", 0, -u(0.3, 1.2), arm_down())
    elif family == "lunging":
        front, back = ("left", "right") if rng.random() < 0.5 else ("right", "left")
        vals = {front: (-u(0.9, 1.5), u(0.9, 1.6)), back: (u(0.2, 0.5), u(0.1, 0.9))}
        for side, (hip_x, knee_x) in vals.items():
            if side == "left":
                _set(e, "left_hip", hip_x, 0, 0.05)
                _set(e, "left_knee", knee_x)
            else:
                _set_right(e, "hip", hip_x, 0, 0.05)
                _set_right(e, "knee", knee_x)
        _set(e, "left_shoulder", 0, u(-1.0, 0.3), -u(0.3, 1.3))
        _set_right(e, "shoulder", 0, u(-1.0, 0.3), -u(0.3, 1.3))
    elif family == "free":
        lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
        mid = 0.5 * (lo + hi)
        e = mid + (hi - lo) * 0.35 * rng.uniform(-1.0, 1.0, size=(J, 3))
    else:
        raise ValueError(f"unknown pose family {family!r}; choose from {sorted(POSE_FAMILIES)}")
    return e


def sample_pose(rng: np.random.Generator, family: str | None = None, noise: float = 0.08) -> PoseSample:
    """Draw one pose in T-pose semantics (see the module docstring).

    Args:
        rng: numpy random generator (the only source of randomness).
        family: one of :data:`POSE_FAMILIES`, or ``None`` to draw one with its probability.
        noise: standard deviation (radians) of the Gaussian noise added to every joint.

    Returns:
        :class:`PoseSample` with every joint inside :data:`JOINT_LIMITS`.
    """
    if family is None:
        names = list(POSE_FAMILIES)
        p = np.array([POSE_FAMILIES[n] for n in names])
        family = names[int(rng.choice(len(names), p=p / p.sum()))]
    e = _base_pose(family, rng)
    e = e + rng.normal(0.0, noise, size=e.shape)
    e = np.clip(e, JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1])
    e[0] = 0.0
    R = roma.euler_to_rotmat("XYZ", torch.from_numpy(e)).numpy()
    return PoseSample(euler=e, rotmats=R, family=family)


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotation ``(3, 3)`` taking unit vector ``a`` to unit vector ``b``."""
    axis = torch.linalg.cross(a, b)
    s = axis.norm()
    c = (a * b).sum()
    if s < 1e-9:
        return torch.eye(3, dtype=a.dtype)
    return roma.rotvec_to_rotmat(axis / s * torch.atan2(s, c))


def smpl_equivalents(model: BodyModel) -> dict[str, str]:
    """Model joint name -> the SMPL24 joint that is the same anatomical joint (the model's
    ``smpl_equivalents``).

    SMPL-named skeletons map onto themselves; Anny uses ``dsrbody.body.anny.ANNY_SMPL_EQUIVALENTS``
    (its extra bones, e.g. ``pelvis.L`` or ``spine04``, stay at rest).

    Raises:
        ValueError: the model has no joint with an SMPL24 equivalent.
    """
    eq = dict(model.smpl_equivalents)
    if not eq:
        raise ValueError(f"no SMPL24 joint correspondence is known for body model {model.name!r}")
    return eq


def _descendants(parents: list[int], j: int) -> list[int]:
    out: list[int] = []
    for c, p in enumerate(parents):
        if c != j and p >= 0 and (p == j or p in out):
            out.append(c)
    return out


def retarget_tpose(
    rotmats: torch.Tensor,
    rest_joints: torch.Tensor,
    joint_names: list[str] | tuple[str, ...],
    parents: list[int] | torch.Tensor,
    equivalents: dict[str, str],
) -> torch.Tensor:
    """Convert relative rotations from T-pose semantics on SMPL24 to a body model's joints.

    Each model joint with an SMPL24 equivalent takes that joint's rotation; the others stay at rest.
    Then, along each arm (shoulder, elbow, wrist, hand), ``O_j`` is the smallest rotation taking the
    T-pose direction (``+-x``) to the model's rest direction of segment ``j`` (joint ``j`` to the
    next joint); joint ``j``'s rotation becomes ``O_parent R_j O_j^T``, so every posed segment points
    where it would on a straight-armed T-pose skeleton. For a T-pose model every ``O`` is the
    identity and nothing changes.

    Args:
        rotmats: ``(B, 24, 3, 3)`` relative rotations (T-pose semantics), SMPL24 order.
        rest_joints: ``(J, 3)`` the model's skeleton joints in its rest pose, metres.
        joint_names: the model's ``J`` joint names.
        parents: ``(J,)`` the model's parent indices (``-1`` for the root).
        equivalents: model joint name -> SMPL24 name (:func:`smpl_equivalents`).

    Returns:
        ``(B, J, 3, 3)`` relative rotations for the model (index 0, the root, is the identity).
    """
    names = list(joint_names)
    par = [int(p) for p in (parents.tolist() if isinstance(parents, torch.Tensor) else parents)]
    B = rotmats.shape[0]
    out = torch.eye(3, dtype=rotmats.dtype).expand(B, len(names), 3, 3).clone()
    by_smpl = {v: names.index(k) for k, v in equivalents.items()}
    for smpl_name, m in by_smpl.items():
        if smpl_name != "pelvis":
            out[:, m] = rotmats[:, _IDX[smpl_name]]
    rest = rest_joints.to(rotmats.dtype)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        chain = [
            by_smpl[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand") if f"{side}_{n}" in by_smpl
        ]
        if len(chain) < 2:
            continue
        t_dir = torch.tensor([sign, 0.0, 0.0], dtype=rotmats.dtype)
        offsets = []
        for k, j in enumerate(chain):
            if k + 1 < len(chain):
                d = rest[chain[k + 1]] - rest[j]
                offsets.append(_rotation_between(t_dir, d / d.norm()))
            else:  # the last segment keeps the direction of the one before
                offsets.append(offsets[-1])
        prev = torch.eye(3, dtype=rotmats.dtype)
        for j, R_off in zip(chain, offsets):
            out[:, j] = prev @ out[:, j] @ R_off.T
            prev = R_off
        for j in _descendants(par, chain[-1]):
            out[:, j] = prev @ out[:, j] @ prev.T
    return out
