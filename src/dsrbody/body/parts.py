"""Body-part labels per vertex and per face, derived from skinning weights, for SMPL and Anny.

Later code puts garments and priors on these parts (a sleeve covers the upper arm and part of the
forearm, a skirt the hips and part of the thighs, ...), so the labels and the along-the-limb
coordinate must mean the same thing on every body family:

- :data:`BODY_PARTS`: the 16 part names; ``left`` / ``right`` are the *subject's* sides (the
  SMPL frame's +x is the subject's left).
- :func:`joint_body_parts`: each kinematic joint's part, from a joint-name table per family
  (SMPL's 24 joint names, or Anny's bone labels for any Anny rig).
- :func:`vertex_body_parts`: each vertex's part: the part with the largest total skinning weight
  (the dominant joint's part whenever one joint dominates; summing per part first keeps a vertex
  shared by three spine bones in the torso).
- :func:`face_body_parts`: the majority part of a face's three vertices (ties: the part with the
  largest summed weight over them).
- :func:`limb_coordinate`: a normalised position along a limb, 0 at the proximal joint and 1 at the
  distal joint, from the rest-pose joints (zero pose, the model's mean shape).
"""

from __future__ import annotations

import torch

from dsrbody.body.base import BodyModel
from dsrbody.body.keypoints import SMPL24

__all__ = [
    "BODY_PARTS",
    "SMPL_JOINT_PARTS",
    "LIMBS",
    "anny_bone_part",
    "joint_body_parts",
    "vertex_part_weights",
    "vertex_body_parts",
    "face_body_parts",
    "limb_coordinate",
    "rest_skeleton",
]

#: The body parts, in label order (left/right: the subject's).
BODY_PARTS: tuple[str, ...] = (
    "head", "neck", "torso", "hips", "left_upper_arm", "right_upper_arm", "left_forearm",
    "right_forearm", "left_hand", "right_hand", "left_thigh", "right_thigh", "left_calf",
    "right_calf", "left_foot", "right_foot",
)  # fmt: skip
_PART_INDEX = {p: i for i, p in enumerate(BODY_PARTS)}

#: SMPL joint -> part. A joint's skinning weights move the body segment that hangs from it: the
#: hip joint moves the thigh, the knee the calf, the collar the upper chest and shoulder top.
SMPL_JOINT_PARTS: dict[str, str] = {
    "pelvis": "hips", "left_hip": "left_thigh", "right_hip": "right_thigh", "spine1": "torso",
    "left_knee": "left_calf", "right_knee": "right_calf", "spine2": "torso",
    "left_ankle": "left_foot", "right_ankle": "right_foot", "spine3": "torso",
    "left_foot": "left_foot", "right_foot": "right_foot", "neck": "neck",
    "left_collar": "torso", "right_collar": "torso", "head": "head",
    "left_shoulder": "left_upper_arm", "right_shoulder": "right_upper_arm",
    "left_elbow": "left_forearm", "right_elbow": "right_forearm", "left_wrist": "left_hand",
    "right_wrist": "right_hand", "left_hand": "left_hand", "right_hand": "right_hand",
}  # fmt: skip
assert set(SMPL_JOINT_PARTS) == set(SMPL24.names)

#: Limb -> (proximal joint, distal joint), by SMPL joint name (Anny bones are matched through
#: ``dsrbody.body.anny.ANNY_SMPL_EQUIVALENTS``). ``left_arm`` / ``left_leg`` span the whole limb
#: (shoulder to wrist, hip to ankle); ``torso`` runs from the pelvis joint up to the neck joint.
LIMBS: dict[str, tuple[str, str]] = {
    "left_upper_arm": ("left_shoulder", "left_elbow"), "right_upper_arm": ("right_shoulder", "right_elbow"),
    "left_forearm": ("left_elbow", "left_wrist"), "right_forearm": ("right_elbow", "right_wrist"),
    "left_thigh": ("left_hip", "left_knee"), "right_thigh": ("right_hip", "right_knee"),
    "left_calf": ("left_knee", "left_ankle"), "right_calf": ("right_knee", "right_ankle"),
    "left_arm": ("left_shoulder", "left_wrist"), "right_arm": ("right_shoulder", "right_wrist"),
    "left_leg": ("left_hip", "left_ankle"), "right_leg": ("right_hip", "right_ankle"),
    "torso": ("pelvis", "neck"), "neck": ("neck", "head"),
}  # fmt: skip


def anny_bone_part(bone: str) -> str:
    """The part of an Anny bone label (any Anny rig: the 24-bone one, the 104-bone default, or the
    full MakeHuman rig with face bones).

    Raises:
        ValueError: a label outside Anny's naming scheme.
    """
    side = {"L": "left", "R": "right"}.get(bone.rsplit(".", 1)[-1]) if "." in bone else None
    base = bone.rsplit(".", 1)[0] if side else bone
    limb_parts = {
        "upperleg": "thigh", "lowerleg": "calf", "foot": "foot", "toe": "foot",
        "shoulder": "upper_arm", "upperarm": "upper_arm", "lowerarm": "forearm", "wrist": "hand",
        "finger": "hand", "metacarpal": "hand",
    }  # fmt: skip
    for prefix, part in limb_parts.items():
        if base.startswith(prefix):
            if side is None:
                raise ValueError(f"anny bone {bone!r} has no side (.L/.R)")
            return f"{side}_{part}"
    if base in ("root", "pelvis"):
        return "hips"
    if base == "spine05":  # the lowest spine bone: the pelvis block
        return "hips"
    if base.startswith(("spine", "clavicle", "breast")):
        return "torso"
    if base.startswith("neck"):
        return "neck"
    # head, eyes, jaw, tongue and the facial-expression bones
    face = ("head", "eye", "jaw", "tongue", "oris", "levator", "special", "orbicularis", "oculi",
            "temporalis", "risorius")  # fmt: skip
    if base.startswith(face):
        return "head"
    raise ValueError(f"unknown anny bone {bone!r}: cannot assign it a body part")


def _family(model: BodyModel) -> str:
    names = list(model.joint_names)
    if set(SMPL24.names) <= set(names):
        return "smpl"
    if getattr(model, "name", "") == "anny" or "root" in names:
        return "anny"
    raise ValueError(
        f"{getattr(model, 'name', type(model).__name__)}: cannot derive body parts: its joint names are "
        "neither SMPL's nor Anny's bone labels"
    )


def joint_body_parts(model: BodyModel) -> list[str]:
    """Each kinematic joint's body part (a name of :data:`BODY_PARTS`), in ``joint_names`` order."""
    if _family(model) == "smpl":
        return [SMPL_JOINT_PARTS.get(n, "torso") for n in model.joint_names]
    return [anny_bone_part(n) for n in model.joint_names]


def vertex_part_weights(model: BodyModel) -> torch.Tensor:
    """``(V, P)`` total skinning weight of each body part per vertex (P = ``len(BODY_PARTS)``)."""
    parts = torch.tensor([_PART_INDEX[p] for p in joint_body_parts(model)], device=model.lbs_weights.device)
    W = model.lbs_weights.float()
    out = torch.zeros(W.shape[0], len(BODY_PARTS), device=W.device)
    return out.index_add_(1, parts, W)


def vertex_body_parts(model: BodyModel) -> torch.Tensor:
    """``(V,)`` long: index into :data:`BODY_PARTS` of each vertex's part (largest total weight)."""
    return vertex_part_weights(model).argmax(dim=1)


def face_body_parts(model: BodyModel) -> torch.Tensor:
    """``(F,)`` long: index into :data:`BODY_PARTS` of each face's part: the part of at least two
    of its vertices, else the part with the largest summed weight over its three vertices."""
    weights = vertex_part_weights(model)
    labels = weights.argmax(dim=1)
    faces = model.faces.long().to(labels.device)
    votes = torch.nn.functional.one_hot(labels[faces], len(BODY_PARTS)).sum(dim=1).float()  # (F, P)
    tie_break = weights[faces].sum(dim=1)  # (F, P), each row sums to 3
    return (votes + 1e-3 * tie_break).argmax(dim=1)


@torch.no_grad()
def rest_skeleton(model: BodyModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Rest-pose vertices ``(V, 3)`` and joints ``(J, 3)`` of ``model``: zero pose (identity
    rotations), the shape of ``model.mean_params()``; metres, model frame."""
    shape = model.mean_params()["shape"]
    dev = model.lbs_weights.device
    eye = torch.eye(3, device=dev, dtype=model.lbs_weights.dtype)
    out = model(
        eye[None].clone(),
        eye.expand(1, model.num_joints - 1, 3, 3).clone(),
        shape.to(device=dev, dtype=model.lbs_weights.dtype)[None],
    )
    return out.vertices[0], out.skeleton_joints[0]


def _joint_index(model: BodyModel, smpl_name: str) -> int:
    names = list(model.joint_names)
    if _family(model) == "smpl":
        return names.index(smpl_name)
    from dsrbody.body.anny import ANNY_SMPL_EQUIVALENTS

    for bone, smpl in ANNY_SMPL_EQUIVALENTS.items():
        if smpl == smpl_name and bone in names:
            return names.index(bone)
    raise ValueError(f"{model.name}: no joint is SMPL's {smpl_name!r}")


def limb_coordinate(model: BodyModel, part: str) -> torch.Tensor:
    """Normalised position of every vertex along a limb, in the rest pose.

    ``t = <v - p, d - p> / |d - p|^2`` with ``p`` / ``d`` the limb's proximal / distal rest-pose
    joints (:data:`LIMBS`): 0 at the proximal joint, 1 at the distal joint, not clamped (the
    shoulder cap of an upper arm is slightly negative). It is computed for every vertex; combine it
    with :func:`vertex_body_parts` to select a limb's vertices (e.g. a short sleeve: upper-arm
    vertices with ``t < 0.5``).

    Args:
        model: a body model with SMPL joint names or Anny bone labels.
        part: a key of :data:`LIMBS` (``"left_forearm"``, ``"right_thigh"``, ``"left_arm"``, ...).

    Returns:
        ``(V,)`` float.
    """
    if part not in LIMBS:
        raise ValueError(f"limb_coordinate: unknown limb {part!r}; known: {', '.join(LIMBS)}")
    proximal, distal = LIMBS[part]
    vertices, joints = rest_skeleton(model)
    p = joints[_joint_index(model, proximal)]
    d = joints[_joint_index(model, distal)]
    axis = d - p
    return ((vertices - p) @ axis) / axis.dot(axis)
