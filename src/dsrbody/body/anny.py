"""The Anny body model (PyPI ``anny``, Apache-2.0) behind dsrbody's :class:`BodyModel` interface.

Anny is dsrbody's default body: it needs no licence step and no download. This adapter

- reduces Anny's 104-bone rig to 24 bones (:data:`ANNY24_BONES`), one per SMPL joint slot;
- takes SMPL-like inputs: a global orientation and per-joint rotations *relative to the parent*
  in the model frame's axes, the zero rotation everywhere being the rest pose (an A-pose), and
  converts them to Anny's ``"local-ref"`` per-bone 4x4 parameterisation
  (:func:`relative_to_local_ref`);
- expresses every output in SMPL's canonical frame (metres, y up, the body facing +z, +x the
  subject's left). Anny's own frame is z up, facing -y, +x the subject's left, so a fixed
  rotation :data:`ANNY_TO_SMPL_FRAME` (-90 degrees about x) maps one onto the other;
- maps the COCO-17 (+ 6 foot points) keypoints of Anny's shipped vertex regressor into SPIN's
  49-keypoint set (:data:`ANNY_SPIN49_SOURCES`), the others at confidence 0
  (``keypoint_confidence``).

Joint order of the default rig (parents always come before their children; the names are Anny's
bone labels; ``.L`` / ``.R`` are the subject's left / right)::

     0 root          (SMPL 0 pelvis)     12 spine02
     1 pelvis.L      (no SMPL joint)     13 spine01          (SMPL 9 spine3)
     2 pelvis.R      (no SMPL joint)     14 neck01           (SMPL 12 neck)
     3 spine05       (SMPL 3 spine1)     15 head             (SMPL 15 head)
     4 upperleg01.L  (SMPL 1 left_hip)   16 clavicle.L       (SMPL 13 left_collar)
     5 upperleg01.R  (SMPL 2 right_hip)  17 clavicle.R       (SMPL 14 right_collar)
     6 spine04                           18 upperarm01.L     (SMPL 16 left_shoulder)
     7 lowerleg01.L  (SMPL 4 left_knee)  19 upperarm01.R     (SMPL 17 right_shoulder)
     8 lowerleg01.R  (SMPL 5 right_knee) 20 lowerarm01.L     (SMPL 18 left_elbow)
     9 spine03       (SMPL 6 spine2)     21 lowerarm01.R     (SMPL 19 right_elbow)
    10 foot.L        (SMPL 7 left_ankle) 22 wrist.L          (SMPL 20 left_wrist)
    11 foot.R        (SMPL 8 right_ankle)23 wrist.R          (SMPL 21 right_wrist)

The legs and the spine are interleaved level by level as in SMPL. A bone is listed next to the
SMPL joint it *is* (same anatomical joint, rotating the same body segment) in
:data:`ANNY_SMPL_EQUIVALENTS`; Anny has no toe or finger bones in this rig (SMPL's ``*_foot`` and
``*_hand`` joints), and SMPL has no ``pelvis.L``/``pelvis.R``/``spine04``/``spine02``. The
network predicts 24 rotations for either family; which joint a rotation drives follows
``joint_names``.

Shape: six phenotypes ``(gender, age, muscle, weight, height, proportions)``. Gender, muscle,
weight, height and proportions lie in ``[0, 1]`` (gender 0 male, 1 female); age lies in Anny's
``[-1/3, 1]`` (anchors newborn -1/3, baby 0, child 1/3, young 2/3, old 1). Values outside are
clamped by Anny; user-facing entry points refuse them with :func:`check_phenotypes`. The mid
values :data:`MID_PHENOTYPES` are all 0.5 (Anny's own defaults: an androgynous, average-muscle,
average-weight teenager-to-young-adult body, about 1.6 m tall); trailing phenotypes left out of
``shape`` take these mid values.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dsrbody.body.base import BodyModel, BodyOutput
from dsrbody.body.keypoints import SPIN49, KeypointSet

log = logging.getLogger(__name__)

__all__ = [
    "ANNY24_BONES",
    "ANNY_SMPL_EQUIVALENTS",
    "ANNY_LIMITED_JOINTS",
    "ANNY_TO_SMPL_FRAME",
    "ANNY_PHENOTYPES",
    "PHENOTYPE_RANGES",
    "MID_PHENOTYPES",
    "check_phenotypes",
    "ANNY_COCO23",
    "ANNY_SPIN49_SOURCES",
    "TOPOLOGIES",
    "AnnyBody",
    "relative_to_local_ref",
    "load_anny",
]

#: The default 24-bone rig, in the adapter's joint order (see the module docstring).
ANNY24_BONES: tuple[str, ...] = (
    "root", "pelvis.L", "pelvis.R", "spine05", "upperleg01.L", "upperleg01.R", "spine04",
    "lowerleg01.L", "lowerleg01.R", "spine03", "foot.L", "foot.R", "spine02", "spine01", "neck01",
    "head", "clavicle.L", "clavicle.R", "upperarm01.L", "upperarm01.R", "lowerarm01.L",
    "lowerarm01.R", "wrist.L", "wrist.R",
)  # fmt: skip

#: Anny bone -> the SMPL-24 joint (``SMPL24`` name) that is the same anatomical joint.
ANNY_SMPL_EQUIVALENTS: dict[str, str] = {
    "root": "pelvis", "upperleg01.L": "left_hip", "upperleg01.R": "right_hip",
    "lowerleg01.L": "left_knee", "lowerleg01.R": "right_knee", "foot.L": "left_ankle",
    "foot.R": "right_ankle", "spine05": "spine1", "spine03": "spine2", "spine01": "spine3",
    "neck01": "neck", "head": "head", "clavicle.L": "left_collar", "clavicle.R": "right_collar",
    "upperarm01.L": "left_shoulder", "upperarm01.R": "right_shoulder",
    "lowerarm01.L": "left_elbow", "lowerarm01.R": "right_elbow", "wrist.L": "left_wrist",
    "wrist.R": "right_wrist",
}  # fmt: skip

#: SMPL24 names of the joints whose anatomical limits (written for SMPL's T-pose) hold for this rig as
#: they are: legs, spine, neck, head. The arm chain rests 47 degrees lower (an A-pose), so its limits do
#: not transfer (``AnnyBody.limited_joints``; fitting gives it the angle prior only).
ANNY_LIMITED_JOINTS: tuple[str, ...] = (
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "spine1", "spine2", "spine3", "neck", "head",
)  # fmt: skip

#: ``v_smpl = ANNY_TO_SMPL_FRAME @ v_anny``: Anny (z up, facing -y) to SMPL (y up, facing +z),
#: a rotation of -90 degrees about x; x (the subject's left) is unchanged.
ANNY_TO_SMPL_FRAME = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

#: The shape vector of :class:`AnnyBody`: Anny's six default phenotypes, in Anny's order.
ANNY_PHENOTYPES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")
#: Valid range of each phenotype (Anny clamps values outside).
PHENOTYPE_RANGES: dict[str, tuple[float, float]] = {
    "gender": (0.0, 1.0), "age": (-1.0 / 3.0, 1.0), "muscle": (0.0, 1.0), "weight": (0.0, 1.0),
    "height": (0.0, 1.0), "proportions": (0.0, 1.0),
}  # fmt: skip
#: Mid phenotype values (Anny's defaults), used by ``mean_params`` and for left-out phenotypes.
MID_PHENOTYPES: tuple[float, ...] = (0.5, 0.5, 0.5, 0.5, 0.5, 0.5)


def check_phenotypes(values: Sequence[float], source: str = "shape") -> list[float]:
    """Check phenotypes given by a user (``--shape``, a pose file's ``shape``) against the valid ranges.

    For user-facing entry points only: :meth:`AnnyBody.forward` does not check (Anny clamps values
    outside :data:`PHENOTYPE_RANGES`, and the regressor maps its outputs into the ranges), so an
    out-of-range value would silently give the body of the range's end.

    Args:
        values: the first ``S' <= 6`` phenotypes, in :data:`ANNY_PHENOTYPES` order.
        source: where they come from, for the message (``"--shape"``, ``"pose.json 'shape'"``).

    Returns:
        The values as floats.

    Raises:
        ValueError: one line naming the source, the phenotype, its value and its range, for more
            than six values, a non-finite value or a value outside its range.
    """
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{source}: Anny phenotypes must be numbers") from None
    if len(vals) > len(ANNY_PHENOTYPES):
        raise ValueError(
            f"{source}: {len(vals)} values but anny takes at most {len(ANNY_PHENOTYPES)} "
            f"({', '.join(ANNY_PHENOTYPES)})"
        )
    for name, v in zip(ANNY_PHENOTYPES, vals):
        lo, hi = PHENOTYPE_RANGES[name]
        if not np.isfinite(v) or not lo - 1e-6 <= v <= hi + 1e-6:
            what = "is not a finite number" if not np.isfinite(v) else "is out of range"
            raise ValueError(
                f"{source}: Anny phenotype {name} = {v:g} {what}; valid range [{lo:.4g}, {hi:.4g}]"
                + (" (-1/3 newborn, 0 baby, 1/3 child, 2/3 young, 1 old)" if name == "age" else "")
            )
    return vals


#: The keypoints of Anny's shipped regressor ``anny.KeypointsRegressor.coco``: COCO-17 in COCO
#: order, then the big toe, small toe and heel of each foot.
ANNY_COCO23: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_big_toe", "right_big_toe",
    "left_small_toe", "right_small_toe", "left_heel", "right_heel",
)  # fmt: skip

#: For each SPIN-49 keypoint, the Anny COCO-23 keypoints it is the mean of (one name: that very
#: keypoint), or ``()`` when Anny has no keypoint with that meaning (confidence 0). OpenPose's
#: neck and mid-hip are the midpoints of the shoulders and of the hips, as in OpenPose's own
#: COCO conversion. The head top, LSP neck, MPII pelvis/thorax and H36M spine/jaw/head come from
#: SMPL-specific vertex regressors with no Anny counterpart.
ANNY_SPIN49_SOURCES: dict[str, tuple[str, ...]] = {
    "OP Nose": ("nose",), "OP Neck": ("left_shoulder", "right_shoulder"),
    "OP RShoulder": ("right_shoulder",), "OP RElbow": ("right_elbow",),
    "OP RWrist": ("right_wrist",), "OP LShoulder": ("left_shoulder",),
    "OP LElbow": ("left_elbow",), "OP LWrist": ("left_wrist",),
    "OP MidHip": ("left_hip", "right_hip"), "OP RHip": ("right_hip",), "OP RKnee": ("right_knee",),
    "OP RAnkle": ("right_ankle",), "OP LHip": ("left_hip",), "OP LKnee": ("left_knee",),
    "OP LAnkle": ("left_ankle",), "OP REye": ("right_eye",), "OP LEye": ("left_eye",),
    "OP REar": ("right_ear",), "OP LEar": ("left_ear",), "OP LBigToe": ("left_big_toe",),
    "OP LSmallToe": ("left_small_toe",), "OP LHeel": ("left_heel",),
    "OP RBigToe": ("right_big_toe",), "OP RSmallToe": ("right_small_toe",),
    "OP RHeel": ("right_heel",),
    "Right Ankle": ("right_ankle",), "Right Knee": ("right_knee",), "Right Hip": ("right_hip",),
    "Left Hip": ("left_hip",), "Left Knee": ("left_knee",), "Left Ankle": ("left_ankle",),
    "Right Wrist": ("right_wrist",), "Right Elbow": ("right_elbow",),
    "Right Shoulder": ("right_shoulder",), "Left Shoulder": ("left_shoulder",),
    "Left Elbow": ("left_elbow",), "Left Wrist": ("left_wrist",), "Neck (LSP)": (),
    "Top of Head (LSP)": (), "Pelvis (MPII)": (), "Thorax (MPII)": (), "Spine (H36M)": (),
    "Jaw (H36M)": (), "Head (H36M)": (), "Nose": ("nose",), "Left Eye": ("left_eye",),
    "Right Eye": ("right_eye",), "Left Ear": ("left_ear",), "Right Ear": ("right_ear",),
}  # fmt: skip
assert tuple(ANNY_SPIN49_SOURCES) == SPIN49.names

#: Mesh topologies the adapter accepts: Anny's full mesh (13,718 vertices) and its low-poly
#: variant (1,229 vertices) for fast training-time rendering. Anny's SMPL/SMPL-X topologies are
#: refused on purpose: they download a non-commercial file at run time.
TOPOLOGIES: tuple[str, ...] = ("anny", "notoes_collapse10pc")
_FORBIDDEN_TOPOLOGIES = ("smpl", "smplx")


# --------------------------------------------------------------------------------------------
# Loading (cached per process)
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 (warp's C library prints its CUDA
    driver warning there); the captured lines are returned in the yielded list."""
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no stderr descriptor
        yield lines
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors="replace").splitlines())


def _init_warp_quietly() -> None:
    """Initialise NVIDIA warp (Anny's skinning kernels) without its banner.

    Warp prints a greeting at ``LOG_INFO`` and its C library prints "could not load the CUDA driver"
    on machines without a GPU; both are noise for a CPU user. Other native messages are re-emitted.
    """
    try:
        import warp
    except ImportError:  # anny falls back to its pure-torch skinning
        return
    warp.config.log_level = max(int(warp.config.log_level), int(warp.LOG_WARNING))
    try:
        if warp._src.context.runtime is not None:  # already initialised
            return
    except AttributeError:  # another warp layout: just initialise (init is idempotent)
        pass
    with _quiet_stderr_fd() as captured:
        warp.init()
    for line in captured:
        if "CUDA driver" not in line:
            log.warning(line)


@dataclass(frozen=True)
class _CacheKey:
    rig: object
    topology: str
    skinning_method: str | None


_ANNY_CACHE: dict[_CacheKey, torch.nn.Module] = {}


def _rig_config(rig: str | Sequence[str]) -> object:
    """An ``anny`` ``RigConfig`` (or spec string): ``"smpl24"`` is :data:`ANNY24_BONES`; a
    sequence of bone labels keeps exactly those bones; other strings are Anny rig specs."""
    from anny.models.model_data import RigConfig

    if isinstance(rig, str) and rig != "smpl24":
        return rig
    keep = ANNY24_BONES if rig == "smpl24" else tuple(rig)
    base = RigConfig.from_string("anny")
    all_bones = _all_anny_bones()
    unknown = sorted(set(keep) - set(all_bones))
    if unknown:
        raise ValueError(f"anny: unknown bones {unknown}; Anny's bones are {list(all_bones)}")
    remove = frozenset(b for b in all_bones if b not in keep) | base.bones_to_remove
    return RigConfig(
        base_rig=base.base_rig,
        bone_orientation=base.bone_orientation,
        root_identity_orientation=base.root_identity_orientation,
        bones_to_remove=frozenset(remove),
    )


def _all_anny_bones() -> tuple[str, ...]:
    """Every bone label of Anny's source rig (MakeHuman's default rig file shipped with anny)."""
    import json

    from anny.paths import get_anny_root_dir

    path = get_anny_root_dir() / "data" / "mpfb2" / "rigs" / "standard" / "rig.default.json"
    with open(path) as f:
        data = json.load(f)
    return tuple(data.get("bones", data))


def load_anny(rig: object = "smpl24", topology: str = "anny", skinning_method: str | None = None):
    """The ``anny.Anny`` model for these options, in float32, built once per process.

    Args:
        rig: ``"smpl24"`` (the 24-bone rig), a sequence of bone labels to keep, an Anny rig spec
            string (``"anny"``, ``"anny-nohands-notoes"``) or an ``anny`` ``RigConfig``.
        topology: ``"anny"`` or ``"notoes_collapse10pc"`` (any Anny topology string except the
            SMPL ones).
        skinning_method: Anny's ``"warp_lbs"``, ``"lbs"``, ``"dqs"`` or ``None`` (warp when
            available).

    Returns:
        A shared ``anny.Anny`` module: treat it as read-only (callers needing their own device
        or dtype copy it with :func:`_clone_module`).
    """
    base_topology = str(topology).split("-")[0]
    if base_topology in _FORBIDDEN_TOPOLOGIES:
        raise ValueError(
            f"anny: topology {topology!r} is not allowed: Anny's SMPL topologies download a "
            "non-commercial file at run time; use dsrbody's SMPL model with your own files instead"
        )
    rig_key = tuple(rig) if isinstance(rig, (list, tuple)) else rig
    key = _CacheKey(rig_key, str(topology), skinning_method)
    model = _ANNY_CACHE.get(key)
    if model is None:
        if skinning_method in (None, "warp_lbs"):
            _init_warp_quietly()
        import anny

        rig_config = _rig_config(rig_key) if isinstance(rig_key, (str, tuple)) else rig_key
        try:
            model = anny.Anny(rig=rig_config, topology=topology, skinning_method=skinning_method)
        except ValueError as exc:
            raise ValueError(f"anny: cannot build rig={rig!r} topology={topology!r}: {exc}") from None
        model = model.to(torch.float32).requires_grad_(False)
        _ANNY_CACHE[key] = model
    return model


def _clone_module(module: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of ``module`` (recursively) with its own parameter/buffer/submodule dicts, so
    that ``.to()`` on the copy leaves the cached original alone; tensors are shared until moved."""
    clone = module.__class__.__new__(module.__class__)
    clone.__dict__ = dict(module.__dict__)
    clone._parameters = dict(module._parameters)
    clone._buffers = dict(module._buffers)
    clone._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    clone._modules = {
        name: _clone_module(m) if m is not None else None for name, m in module._modules.items()
    }
    return clone


# --------------------------------------------------------------------------------------------
# Pose conversion
# --------------------------------------------------------------------------------------------


def relative_to_local_ref(
    relative: torch.Tensor,
    root_position: torch.Tensor,
    rest_bone_poses: torch.Tensor,
    reference_orientations: torch.Tensor | None,
    parents: Sequence[int],
    frame: torch.Tensor | None = None,
) -> torch.Tensor:
    """Anny ``"local-ref"`` deltas that produce SMPL-style forward kinematics.

    SMPL-style kinematics in an output frame ``F`` (``x_out = F x_anny``; ``F = I`` by default):
    bone ``c`` of parent ``p`` gets the skinning transform ``T_c = [G_c | w_c - G_c h_c]`` (Anny
    rest coordinates in, output coordinates out) with ``G_0 = X_0 F``, ``G_c = G_p F^T X_c F``
    (i.e. the output-frame world rotations compose as ``X_0 X_1 ... X_c``), posed joints
    ``w_c = w_p + G_p (h_c - h_p)`` and ``w_0 = root_position``; ``h`` are the rest bone heads. So the
    zero pose (all ``X = I``, ``root_position = F h_0``) is the rest pose in the output frame, and
    rotating one joint moves only its descendants.

    Anny's ``"local-ref"`` chain (``anny.utils.kinematics.forward_kinematic``), with rest bone
    orientations ``O_c``, reference orientations ``U_c`` and ``B_c = U_c O_c^T``, posed bone poses
    ``W_c = W_p [U_p^T D_c U_c | U_p^T (d_c + q_c - q_p)]``, ``W_0 = [U_0^T D_0 U_0 | U_0^T d_0]``,
    ``q_c - q_p = B_p (h_c - h_p)`` (``B_0`` taken as ``I`` there) and ``T_c = W_c P_c^-1``, gives
    ``G_c = G_p B_p^T D_c B_c`` and ``w_c = w_p + G_p B_p^T (d_c + q_c - q_p)``. Hence the deltas

    - ``D_0 = U_0 X_0 F B_0^T``, ``d_0 = U_0 w_0``;
    - ``D_c = B_p F^T X_c F B_c^T`` for every other bone;
    - ``d_c = (B_0 - I)(h_c - h_0)`` for the children of the root, ``d_c = 0`` for the others.

    Args:
        relative: ``(B, J, 3, 3)`` the ``X_c`` in Anny's bone order (``X_0`` the root's rotation),
            in the output frame's axes.
        root_position: ``(B, 3)`` posed position of the root's head ``w_0`` (output frame).
        rest_bone_poses: ``(B, J, 4, 4)`` Anny's rest bone poses ``P_c = [O_c | h_c]`` (Anny frame).
        reference_orientations: ``(J, 3, 3)`` the ``U_c``, or ``None`` (then ``U = O``).
        parents: ``J`` parent indices in Anny's order (``-1`` for the root at index 0).
        frame: ``(3, 3)`` rotation ``F`` from Anny's frame to the output frame, or ``None`` (``I``).

    Returns:
        ``(B, J, 4, 4)`` deltas for ``anny`` with ``pose_parameterization="local-ref"``.
    """
    O = rest_bone_poses[..., :3, :3]
    h = rest_bone_poses[..., :3, 3]
    U = O if reference_orientations is None else reference_orientations.expand_as(O)
    Bm = U @ O.transpose(-1, -2)  # (B, J, 3, 3): rest -> reference orientation
    parents = list(parents)
    left = Bm[:, parents[1:]]
    right = Bm.transpose(-1, -2)
    if frame is not None:
        frame = frame.to(O.dtype)
        left = left @ frame.T
        right = frame @ right
    D = torch.cat([U[:, :1], left], dim=1) @ relative @ right
    root_child = torch.tensor([[float(p == 0)] for p in parents], dtype=O.dtype, device=O.device)
    is_root = torch.zeros_like(root_child)
    is_root[0] = 1.0
    eye = torch.eye(3, dtype=O.dtype, device=O.device)
    d = ((h - h[:, :1]) @ (Bm[:, 0] - eye).transpose(-1, -2)) * root_child
    d = d + is_root * (U[:, 0] @ root_position[..., None]).transpose(-1, -2)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=O.dtype, device=O.device).expand(*D.shape[:2], 1, 4)
    return torch.cat([torch.cat([D, d[..., None]], dim=-1), bottom], dim=-2)


# --------------------------------------------------------------------------------------------
# Keypoints
# --------------------------------------------------------------------------------------------


def _coco_regressor(model, topology: str, rig_key: object, skinning_method: str | None) -> torch.Tensor:
    """``(23, V)`` Anny's COCO regressor on this model's vertices (rows sum to 1).

    On Anny's own mesh it is anny's shipped regressor. On another topology the regressor is carried
    over through the surface: each full-mesh vertex is written as the barycentric combination of its
    closest point on the other mesh (both in the mid-phenotype rest pose), so each keypoint becomes
    a combination of the other mesh's vertices.
    """
    import anny

    if str(topology).split("-")[0] in ("anny", "makehuman"):
        return anny.KeypointsRegressor.coco(model, labels=list(ANNY_COCO23)).regression_weights.float()
    full = load_anny(rig_key, "anny", skinning_method)
    full_weights = anny.KeypointsRegressor.coco(full, labels=list(ANNY_COCO23)).regression_weights
    support = torch.nonzero(full_weights.abs().sum(0) > 0)[:, 0]  # the vertices the keypoints use
    src = _mid_rest_vertices(full).double()[support]
    dst = _mid_rest_vertices(model).double()
    faces = torch.as_tensor(np.asarray(model.faces), dtype=torch.int64)
    face_ids, bary = _closest_point_barycentrics(src, dst, faces)
    corners = faces[face_ids]  # (n, 3)
    transfer = torch.zeros(src.shape[0], dst.shape[0], dtype=torch.float64)
    transfer.scatter_add_(1, corners, bary)
    return (full_weights[:, support].double() @ transfer).float()


def _mid_rest_vertices(model) -> torch.Tensor:
    """``(V, 3)`` rest vertices of an ``anny.Anny`` at the mid phenotypes (Anny frame)."""
    with torch.no_grad():
        phen = torch.tensor([MID_PHENOTYPES], dtype=model.dtype)
        coeffs = model._get_phenotype_blendshape_coefficients(
            phen,
            torch.zeros(1, len(model.local_change_labels), dtype=model.dtype),
            torch.zeros(1, len(model.facial_action_labels), dtype=model.dtype),
        )
        return model.get_rest_vertices(coeffs)[0]


def _closest_point_barycentrics(
    points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, candidates: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each point ``(N, 3)``, the closest triangle of the mesh ``(vertices (V, 3), faces (F, 3))``
    and the barycentric coordinates ``(N, 3)`` of the closest point on it (Ericson's
    closest-point-on-triangle regions), searched among the ``candidates`` faces with the nearest
    centroids."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))  # (F, 3)
    centroids = (a + b + c) / 3
    k = min(candidates, faces.shape[0])
    cand = torch.cdist(points, centroids).topk(k, dim=1, largest=False).indices  # (N, k)
    p = points[:, None, :]
    bary = _triangle_closest_barycentrics(p, a[cand], b[cand], c[cand])  # (N, k, 3)
    closest = bary[..., 0:1] * a[cand] + bary[..., 1:2] * b[cand] + bary[..., 2:3] * c[cand]
    best = ((closest - p) ** 2).sum(-1).argmin(dim=1)
    rows = torch.arange(points.shape[0])
    return cand[rows, best], bary[rows, best]


def _triangle_closest_barycentrics(
    p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor
) -> torch.Tensor:
    """Barycentric coordinates ``(..., 3)`` of the point of triangle ``abc`` closest to ``p``."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-30
    denom = va + vb + vc
    v = vb / (denom + eps)
    w = vc / (denom + eps)
    out = torch.stack([1 - v - w, v, w], dim=-1)  # interior

    def set_(mask: torch.Tensor, value: torch.Tensor) -> None:
        nonlocal out
        out = torch.where(mask[..., None], value, out)

    one, zero = torch.ones_like(d1), torch.zeros_like(d1)
    # edge regions (assigned first, vertex regions override)
    t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6) + eps)
    set_((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), torch.stack([zero, 1 - t_bc, t_bc], -1))
    t_ac = d2 / (d2 - d6 + eps)
    set_((vb <= 0) & (d2 >= 0) & (d6 <= 0), torch.stack([1 - t_ac, zero, t_ac], -1))
    t_ab = d1 / (d1 - d3 + eps)
    set_((vc <= 0) & (d1 >= 0) & (d3 <= 0), torch.stack([1 - t_ab, t_ab, zero], -1))
    set_((d6 >= 0) & (d5 <= d6), torch.stack([zero, zero, one], -1))
    set_((d3 >= 0) & (d4 <= d3), torch.stack([zero, one, zero], -1))
    set_((d1 <= 0) & (d2 <= 0), torch.stack([one, zero, zero], -1))
    return out


def _spin49_mix() -> tuple[torch.Tensor, torch.Tensor]:
    """``(49, 23)`` matrix taking Anny's COCO-23 keypoints to SPIN-49, and the ``(49,)`` confidence."""
    mix = torch.zeros(len(SPIN49), len(ANNY_COCO23))
    conf = torch.zeros(len(SPIN49))
    for i, name in enumerate(SPIN49.names):
        sources = ANNY_SPIN49_SOURCES[name]
        for s in sources:
            mix[i, ANNY_COCO23.index(s)] = 1.0 / len(sources)
        conf[i] = 1.0 if sources else 0.0
    return mix, conf


def _sparse_rows(weights: torch.Tensor, mass: float = 0.999) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a ``(K, V)`` non-negative regressor, the fewest vertices holding ``mass`` of its
    weight, renormalised to sum to 1: ``(indices (K, S), weights (K, S))``, zero-padded.

    Anny's COCO rows spread over up to 4,105 vertices (the ears), 8,795 in all, most with negligible
    weight; keeping 99.9 % of each row's mass (at most 210 vertices a row, 2,273 in all) moves a
    keypoint by a fraction of a millimetre and makes the regression ~5x cheaper (forward + backward).
    """
    sorted_w, order = weights.abs().sort(dim=1, descending=True)
    keep = (sorted_w.cumsum(1) - sorted_w) < mass * sorted_w.sum(1, keepdim=True)
    keep &= sorted_w > 0
    S = int(keep.sum(1).max())
    idx = order[:, :S].clone()
    w = torch.where(keep[:, :S], weights.gather(1, idx), torch.zeros(()))
    idx = torch.where(keep[:, :S], idx, torch.zeros((), dtype=idx.dtype))
    return idx, w / w.sum(1, keepdim=True)


# --------------------------------------------------------------------------------------------
# The body model
# --------------------------------------------------------------------------------------------


class AnnyBody(BodyModel):
    """Anny behind the :class:`BodyModel` interface, in SMPL's canonical frame.

    Args:
        rig: ``"smpl24"`` (default, :data:`ANNY24_BONES` in that order) or a sequence of Anny bone
            labels to keep (joint order: the given order, which must list parents before
            children and start with ``"root"``).
        topology: ``"anny"`` (13,718 vertices, 27,420 triangles) or ``"notoes_collapse10pc"``
            (1,229 vertices; for fast training-time rendering). Anny's SMPL topologies are refused.
        skinning_method: ``None`` (warp when installed, else ``"lbs"``), ``"warp_lbs"``, ``"lbs"``.

    Attributes (besides :class:`BodyModel`'s): ``keypoint_set`` (SPIN-49),
    ``keypoint_confidence (49,)`` (1 where Anny provides the keypoint, 0 where not: mask losses
    with it), ``keypoint_regressor (49, V)``, ``topology``.

    Capabilities (:class:`BodyModel`): bounded shape (:data:`PHENOTYPE_RANGES`), missing phenotypes
    filled with :data:`MID_PHENOTYPES`, SMPL equivalents :data:`ANNY_SMPL_EQUIVALENTS`, joint limits on
    :data:`ANNY_LIMITED_JOINTS`, Anny's shape distribution for synthetic data.

    Construction is cached per process (the first build on a fresh machine takes ~40 s and fills
    ``~/.cache/anny``; later ones take milliseconds).
    """

    name = "anny"
    keypoint_set: KeypointSet = SPIN49
    shape_dim = len(ANNY_PHENOTYPES)
    shape_names = ANNY_PHENOTYPES
    stature_index = ANNY_PHENOTYPES.index("height")  # [0, 1]: its shape bounds are searched

    def __init__(
        self,
        rig: str | Sequence[str] = "smpl24",
        topology: str = "anny",
        skinning_method: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(rig, str) and rig != "smpl24":
            raise ValueError(f"anny: rig must be 'smpl24' or a list of Anny bone labels, got {rig!r}")
        order = ANNY24_BONES if rig == "smpl24" else tuple(rig)
        if not order or order[0] != "root":
            raise ValueError("anny: the rig's first bone must be 'root'")
        rig_key = "smpl24" if rig == "smpl24" else order
        self.topology = str(topology)
        self._model = _clone_module(load_anny(rig_key, self.topology, skinning_method))
        m = self._model
        labels = list(m.bone_labels)
        if sorted(labels) != sorted(order):  # pragma: no cover - anny kept other bones
            raise ValueError(f"anny: the built rig has bones {labels}, expected {list(order)}")
        # perm[i] = Anny index of our joint i; inv[k] = our index of Anny bone k
        perm = [labels.index(b) for b in order]
        anny_parents = list(m.bone_parents)
        parents = [-1] + [order.index(labels[anny_parents[perm[i]]]) for i in range(1, len(order))]
        for i, p in enumerate(parents[1:], start=1):
            if p >= i:
                raise ValueError(
                    f"anny: joint order must list parents first; {order[i]} comes before {order[p]}"
                )
        self.joint_names = list(order)
        self.num_joints = len(order)
        self._anny_parents = anny_parents
        self.register_buffer("parents", torch.tensor(parents, dtype=torch.long), persistent=False)
        self.register_buffer("_perm", torch.tensor(perm, dtype=torch.long), persistent=False)
        self.register_buffer("_inv_perm", torch.argsort(torch.tensor(perm)), persistent=False)
        faces = torch.as_tensor(np.asarray(m.faces), dtype=torch.long)
        self.register_buffer("faces", faces, persistent=False)
        dense = torch.zeros(m.template_vertices.shape[0], len(labels), dtype=torch.float32)
        dense.scatter_add_(1, m.vertex_bone_indices.long(), m.vertex_bone_weights.float())
        self.register_buffer("lbs_weights", dense[:, perm].contiguous(), persistent=False)
        self.register_buffer("frame", ANNY_TO_SMPL_FRAME.clone(), persistent=False)
        coco = _cached_regressor(m, self.topology, rig_key, skinning_method)
        idx, w = _sparse_rows(coco)
        mix, conf = _spin49_mix()
        sparse_coco = torch.zeros_like(coco).scatter_add_(1, idx, w)
        support = torch.nonzero(sparse_coco.sum(0) > 0)[:, 0]  # ~2,300 of the 13,718 vertices
        self.register_buffer("keypoint_regressor", mix @ sparse_coco, persistent=False)
        self.register_buffer("keypoint_confidence", conf, persistent=False)
        self.register_buffer("_kp_support", support, persistent=False)
        self.register_buffer("_coco_w", sparse_coco[:, support].contiguous(), persistent=False)
        self.register_buffer("_coco_to_spin", mix, persistent=False)
        self.register_buffer("_no_local", torch.zeros(1, len(m.local_change_labels)), persistent=False)
        self.register_buffer("_no_face", torch.zeros(1, len(m.facial_action_labels)), persistent=False)

    # ---------------------------------------------------------------------------------------
    @property
    def anny_model(self) -> torch.nn.Module:
        """The wrapped ``anny.Anny`` module (bones in Anny's order, Anny's frame)."""
        return self._model

    def full_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """``(B, S')`` phenotypes -> ``(B, 6)``, trailing ones filled with :data:`MID_PHENOTYPES`."""
        B, S = shape.shape
        if S == self.shape_dim:
            return shape
        fill = shape.new_tensor(MID_PHENOTYPES[S:]).expand(B, -1)
        return torch.cat([shape, fill], dim=1)

    # capabilities (BodyModel) -------------------------------------------------------------------
    @property
    def mesh_name(self) -> str:
        """The ``topology`` option: ``"anny"`` or ``"notoes_collapse10pc"``."""
        return self.topology

    @property
    def shape_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The phenotypes' ranges :data:`PHENOTYPE_RANGES`: ``[0, 1]``, age ``[-1/3, 1]``."""
        lo, hi = zip(*(PHENOTYPE_RANGES[n] for n in ANNY_PHENOTYPES[: self.shape_dim]))
        return torch.tensor(lo), torch.tensor(hi)

    def pad_shape(self, shape: torch.Tensor) -> torch.Tensor:
        """Missing trailing phenotypes take the mid values (:meth:`full_shape`)."""
        return self.full_shape(shape)

    def default_shape(self, gender: str = "neutral") -> list[float]:
        """The mid phenotypes with the gender phenotype of ``gender`` (neutral 0.5, male 0, female 1)."""
        base = list(MID_PHENOTYPES)
        base[0] = {"neutral": 0.5, "male": 0.0, "female": 1.0}[gender]
        return base

    def check_shape(self, values, source: str = "shape") -> list[float]:
        """:func:`check_phenotypes` (Anny would clamp values outside their range silently)."""
        return check_phenotypes(values, source)

    @property
    def shape_help(self) -> str:
        return ", ".join(ANNY_PHENOTYPES)

    @property
    def smpl_equivalents(self) -> dict[str, str]:
        """:data:`ANNY_SMPL_EQUIVALENTS` of this rig's bones."""
        return {k: v for k, v in ANNY_SMPL_EQUIVALENTS.items() if k in self.joint_names}

    @property
    def limited_joints(self) -> tuple[str, ...]:
        """:data:`ANNY_LIMITED_JOINTS` (not the arms: they rest in an A-pose)."""
        return ANNY_LIMITED_JOINTS

    def sample_shape(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """The synthetic data's phenotypes: Anny's ``SimpleShapeDistribution`` with ages uniform in 16-80
        years (seeded from ``rng``), one body in five pushed toward slim or heavy (weight in [0, 0.15] or
        [0.85, 1]); gender ``"m"`` below 0.5, else ``"f"``."""
        cache = self.__dict__.setdefault("_shape_distribution", {})
        dist = cache.get("dist")
        if dist is None:
            import anny.shape_distribution as sd

            raw = self.anny_model
            dist = cache["dist"] = sd.SimpleShapeDistribution(
                raw,
                morphological_age_distribution=torch.distributions.Uniform(
                    torch.tensor(16.0, dtype=raw.dtype), torch.tensor(80.0, dtype=raw.dtype)
                ),
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**62)))
            _, ph = dist.sample(1)
        vec = np.array([float(ph[n][0]) for n in ANNY_PHENOTYPES])
        if rng.random() < 0.2:  # push toward slim or heavy bodies
            vec[3] = rng.uniform(0.0, 0.15) if rng.random() < 0.5 else rng.uniform(0.85, 1.0)
        vec[[0, 2, 3, 4, 5]] = np.clip(vec[[0, 2, 3, 4, 5]], 0.0, 1.0)
        return vec, ("m" if vec[0] < 0.5 else "f")

    def forward(
        self, global_orient: torch.Tensor, body_pose: torch.Tensor, shape: torch.Tensor
    ) -> BodyOutput:
        """Pose and shape Anny.

        Args:
            global_orient: ``(B, 3, 3)`` root rotation in the SMPL frame (about the root joint, which
                stays at its rest position, like SMPL's pelvis).
            body_pose: ``(B, J-1, 3, 3)`` rotations relative to the parent, in ``joint_names[1:]``
                order; identity everywhere gives the rest pose (an A-pose).
            shape: ``(B, S')`` phenotypes, ``S' <= 6`` (see the module docstring).

        Returns:
            :class:`BodyOutput`: ``vertices (B, V, 3)``, ``joints (B, 49, 3)`` (SPIN-49; mask with
            ``keypoint_confidence``), ``skeleton_joints (B, J, 3)`` (posed bone heads),
            ``rest_vertices (B, V, 3)``, all metres in the SMPL frame.
        """
        self.check_inputs(global_orient, body_pose, shape)
        m = self._model
        dtype = m.template_vertices.dtype
        B = global_orient.shape[0]
        C = self.frame.to(dtype)
        # all rotations in Anny's bone order; the frame change is folded into the deltas so that
        # the skinned output comes out directly in the SMPL frame
        rel = torch.cat([global_orient.to(dtype)[:, None], body_pose.to(dtype)], dim=1)[:, self._inv_perm]
        phen = self.full_shape(shape).to(dtype)
        coeffs = m._get_phenotype_blendshape_coefficients(
            phen, self._no_local.to(dtype), self._no_face.to(dtype)
        )
        rest = m.get_rest_model(coeffs)
        rest_poses = rest["rest_bone_poses"]
        if rest_poses.shape[0] != B:
            rest_poses = rest_poses.expand(B, -1, -1, -1)
        root = rest_poses[:, 0, :3, 3] @ C.T
        deltas = relative_to_local_ref(
            rel, root, rest_poses, m.reference_bone_orientations, self._anny_parents, frame=C
        )
        transforms, poses = m.get_bone_transforms(deltas, rest_poses, pose_parameterization="local-ref")
        vertices = m.get_skinned_vertices(rest["rest_vertices"].expand(B, -1, -1), transforms)
        joints = self._keypoints(vertices)
        return BodyOutput(
            vertices=vertices,
            joints=joints,
            skeleton_joints=poses[:, self._perm, :3, 3],
            rest_vertices=_anny_to_smpl_coordinates(rest["rest_vertices"]).expand(B, -1, -1),
        )

    def _keypoints(self, vertices: torch.Tensor) -> torch.Tensor:
        """SPIN-49 keypoints ``(B, 49, 3)`` from vertices ``(B, V, 3)``: Anny's COCO-23 rows on the
        vertices they use (one gather, one small product), then the COCO -> SPIN-49 mix."""
        B = vertices.shape[0]
        used = vertices.index_select(1, self._kp_support)  # (B, U, 3)
        coco = self._coco_w @ used.transpose(0, 1).reshape(used.shape[1], B * 3)  # (23, 3 B)
        spin = self._coco_to_spin @ coco  # (49, 3 B)
        return spin.view(-1, B, 3).transpose(0, 1).contiguous()

    def mean_params(self) -> dict[str, torch.Tensor]:
        """Rest pose (identity rotations) and the mid phenotypes :data:`MID_PHENOTYPES`.

        Returns:
            ``{"global_orient": (3, 3), "body_pose": (J-1, 3, 3), "shape": (6,)}``.
        """
        eye = torch.eye(3, device=self.faces.device)
        return {
            "global_orient": eye.clone(),
            "body_pose": eye.expand(self.num_joints - 1, 3, 3).clone(),
            "shape": torch.tensor(MID_PHENOTYPES, device=self.faces.device),
        }


def _anny_to_smpl_coordinates(v: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` Anny-frame points in the SMPL frame: ``(x, y, z) -> (x, z, -y)``, i.e.
    ``ANNY_TO_SMPL_FRAME @ v`` (a copy, ~10x faster than the matrix product on CPU)."""
    return torch.stack([v[..., 0], v[..., 2], -v[..., 1]], dim=-1)


_REGRESSOR_CACHE: dict[tuple, torch.Tensor] = {}


def _cached_regressor(model, topology: str, rig_key: object, skinning_method: str | None) -> torch.Tensor:
    key = (rig_key, topology)
    if key not in _REGRESSOR_CACHE:
        _REGRESSOR_CACHE[key] = _coco_regressor(model, topology, rig_key, skinning_method)
    return _REGRESSOR_CACHE[key]
