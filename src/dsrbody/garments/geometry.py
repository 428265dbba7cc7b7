"""Per-vertex body coordinates that procedural garments are defined on (any body topology).

A garment never refers to vertex indices: it is a rule over coordinates that every body model has once
its vertices carry body-part labels (``dsrbody.body.parts``) and positions along the limbs. This module
turns a body mesh in its rest pose into those coordinates, once per body (:class:`BodyGeometry`); the
garments then only do vectorised comparisons on ``(V,)`` arrays.

Coordinates (all ``(V,)`` arrays; frame of the body models: metres, y up, facing +z, +x the subject's
left):

- ``arm``: position along the arm of the arm vertices: upper arm ``[0, 1]`` (shoulder joint to elbow),
  forearm ``[1, 2]`` (elbow to wrist), hand ``2``; ``nan`` elsewhere.
- ``leg``: the same along the leg: thigh ``[0, 1]`` (hip joint to knee), calf ``[1, 2]`` (knee to ankle),
  foot ``2``; ``nan`` elsewhere.
- ``trunk``: height normalised on the trunk, ``(y - y_hip) / (y_shoulder - y_hip)``: 0 at the hip joints,
  1 at the shoulder joints (defined for every vertex; garments use it on trunk and thigh vertices).
- ``head_u``: height on the head, 0 at the chin, 1 at the top of the head.
- ``head_front`` / ``trunk_front``: cosine of the azimuth around the vertical axis of the head / trunk,
  +1 facing forward (+z), -1 at the back.
- ``side``: +1 on the subject's left (+x), -1 on the right (from the part label on limbs, from x on the
  trunk and head).

Landmark heights (``y_hip``, ``y_knee``, ``y_ankle``, ``y_shoulder``, ``y_neck``, ``y_chin``, ``y_top``)
are measured from the mesh: a joint's height is read off a straight-line fit of the limb vertices' heights
against their limb coordinate (the limb's axis), evaluated at the joint (0 or 1), so no joint regressor is
needed and meshes with few vertices near a joint work too.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from dsrbody.geometry.mesh import vertex_normals

# The 16 body parts of dsrbody.body.parts, in its order (left/right = the subject's).
PART_NAMES: tuple[str, ...] = (
    "head",
    "neck",
    "torso",
    "hips",
    "left_upper_arm",
    "right_upper_arm",
    "left_forearm",
    "right_forearm",
    "left_hand",
    "right_hand",
    "left_thigh",
    "right_thigh",
    "left_calf",
    "right_calf",
    "left_foot",
    "right_foot",
)
LIMB_PARTS: tuple[str, ...] = tuple(
    f"{s}_{p}" for p in ("upper_arm", "forearm", "thigh", "calf") for s in ("left", "right")
)


@dataclass
class BodyGeometry:
    """A body mesh in its rest pose with the coordinates garments are defined on (see the module doc).

    Attributes:
        rest_vertices: ``(V, 3)`` float64 rest-pose vertices, metres.
        faces: ``(F, 3)`` int64 triangles.
        vertex_parts: ``(V,)`` int64 index into :data:`PART_NAMES`.
        arm, leg, trunk, head_u, head_front, trunk_front, side: ``(V,)`` float64 coordinates.
        rest_normals: ``(V, 3)`` float64 unit vertex normals of the rest mesh.
        landmarks: heights (``y_hip``, ``y_knee``, ``y_ankle``, ``y_shoulder``, ``y_neck``, ``y_chin``,
            ``y_top``, metres), horizontal centres (``trunk_x``, ``trunk_z``, ``head_x``, ``head_z``) and
            ``shoulder_x`` (half distance between the shoulder joints), metres.
    """

    rest_vertices: np.ndarray
    faces: np.ndarray
    vertex_parts: np.ndarray
    arm: np.ndarray
    leg: np.ndarray
    trunk: np.ndarray
    head_u: np.ndarray
    head_front: np.ndarray
    trunk_front: np.ndarray
    side: np.ndarray
    rest_normals: np.ndarray
    landmarks: dict[str, float] = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        """V."""
        return int(self.rest_vertices.shape[0])

    @property
    def num_faces(self) -> int:
        """F."""
        return int(self.faces.shape[0])

    @property
    def y(self) -> np.ndarray:
        """``(V,)`` rest-pose heights, metres."""
        return self.rest_vertices[:, 1]

    def part_mask(self, *names: str) -> np.ndarray:
        """``(V,)`` bool: vertices whose body part is one of ``names`` (names from :data:`PART_NAMES`)."""
        idx = [PART_NAMES.index(n) for n in names]
        return np.isin(self.vertex_parts, idx)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        rest_vertices: np.ndarray | torch.Tensor,
        faces: np.ndarray | torch.Tensor,
        vertex_parts: np.ndarray | torch.Tensor,
        limb_coordinates: dict[str, np.ndarray | torch.Tensor],
    ) -> BodyGeometry:
        """Build the coordinates from a rest mesh, its part labels and the limb coordinates.

        Args:
            rest_vertices: ``(V, 3)`` rest-pose vertices, metres, model frame (y up, facing +z).
            faces: ``(F, 3)`` triangles.
            vertex_parts: ``(V,)`` index into :data:`PART_NAMES` per vertex.
            limb_coordinates: for each name of :data:`LIMB_PARTS`, a ``(V,)`` or ``(n_part,)`` array:
                0 at the proximal joint, 1 at the distal joint (values outside [0, 1] are clipped). A
                ``(V,)`` array is read at that part's vertices only.

        Raises:
            ValueError: shapes disagree, a limb is missing, or a part has no vertex.
        """
        verts = _np(rest_vertices, np.float64)
        faces_np = _np(faces, np.int64)
        parts = _np(vertex_parts, np.int64)
        V = verts.shape[0]
        if verts.ndim != 2 or verts.shape[1] != 3:
            raise ValueError(f"rest_vertices must be (V, 3), got {verts.shape}")
        if parts.shape != (V,):
            raise ValueError(f"vertex_parts must be ({V},), got {parts.shape}")
        if faces_np.ndim != 2 or faces_np.shape[1] != 3 or (faces_np.size and faces_np.max() >= V):
            raise ValueError(f"faces must be (F, 3) indices below {V}, got {faces_np.shape}")
        counts = np.bincount(parts, minlength=len(PART_NAMES))
        missing = [PART_NAMES[i] for i in range(len(PART_NAMES)) if counts[i] == 0]
        if missing:
            raise ValueError(f"body parts without any vertex: {missing}")

        masks = {n: parts == i for i, n in enumerate(PART_NAMES)}
        limb_t: dict[str, np.ndarray] = {}
        for name in LIMB_PARTS:
            if name not in limb_coordinates:
                raise ValueError(f"limb_coordinates lacks {name!r}")
            t = _np(limb_coordinates[name], np.float64)
            if t.shape == (V,):
                t = t[masks[name]]
            elif t.shape != (int(masks[name].sum()),):
                raise ValueError(f"limb coordinate of {name} has shape {t.shape}, expected ({V},)")
            limb_t[name] = np.clip(t, 0.0, 1.0)

        y = verts[:, 1]

        def axis_value(names: tuple[str, ...], values: np.ndarray, at: float) -> float:
            """Mean over ``names`` of the straight-line fit ``values ~ a + b t`` on each limb's vertices,
            evaluated at ``t = at``: the value on the limb's axis there (e.g. a joint's height), robust to
            meshes with few vertices near the joint."""
            out = []
            for n in names:
                t, val = limb_t[n], values[masks[n]]
                inner = (t > 0) & (t < 1)
                if inner.sum() >= 3:
                    t, val = t[inner], val[inner]
                if np.ptp(t) < 1e-6:
                    out.append(float(val.mean()))
                    continue
                b, a = np.polyfit(t, val, 1)
                out.append(float(a + b * at))
            return float(np.mean(out))

        thighs, calves = ("left_thigh", "right_thigh"), ("left_calf", "right_calf")
        uarms = ("left_upper_arm", "right_upper_arm")
        lm: dict[str, float] = {}
        lm["y_hip"] = axis_value(thighs, y, 0.0)
        lm["y_knee"] = 0.5 * (axis_value(thighs, y, 1.0) + axis_value(calves, y, 0.0))
        lm["y_ankle"] = axis_value(calves, y, 1.0)
        lm["y_shoulder"] = axis_value(uarms, y, 0.0)
        if lm["y_shoulder"] - lm["y_hip"] < 1e-3:
            raise ValueError("degenerate body: the shoulders are not above the hips")
        neck_y = y[masks["neck"]]
        head_y = y[masks["head"]]
        lm["y_neck"] = float(np.percentile(neck_y, 20))
        lm["y_chin"] = float(np.percentile(head_y, 2))
        lm["y_top"] = float(head_y.max())
        trunk_sel = masks["torso"] | masks["hips"]
        lm["trunk_x"], lm["trunk_z"] = (float(v) for v in verts[trunk_sel][:, [0, 2]].mean(0))
        cranium = masks["head"] & (y > 0.5 * (lm["y_chin"] + lm["y_top"]))
        lm["head_x"], lm["head_z"] = (float(v) for v in verts[cranium][:, [0, 2]].mean(0))
        lm["shoulder_x"] = axis_value(uarms, np.abs(verts[:, 0] - lm["trunk_x"]), 0.0)

        arm = np.full(V, np.nan)
        leg = np.full(V, np.nan)
        for s in ("left", "right"):
            arm[masks[f"{s}_upper_arm"]] = limb_t[f"{s}_upper_arm"]
            arm[masks[f"{s}_forearm"]] = 1.0 + limb_t[f"{s}_forearm"]
            arm[masks[f"{s}_hand"]] = 2.0
            leg[masks[f"{s}_thigh"]] = limb_t[f"{s}_thigh"]
            leg[masks[f"{s}_calf"]] = 1.0 + limb_t[f"{s}_calf"]
            leg[masks[f"{s}_foot"]] = 2.0
        trunk = (y - lm["y_hip"]) / (lm["y_shoulder"] - lm["y_hip"])
        head_u = (y - lm["y_chin"]) / max(lm["y_top"] - lm["y_chin"], 1e-6)
        head_front = _azimuth_cos(verts, lm["head_x"], lm["head_z"])
        trunk_front = _azimuth_cos(verts, lm["trunk_x"], lm["trunk_z"])
        side = np.where(verts[:, 0] >= lm["trunk_x"], 1.0, -1.0)
        for i, n in enumerate(PART_NAMES):
            if n.startswith("left_"):
                side[parts == i] = 1.0
            elif n.startswith("right_"):
                side[parts == i] = -1.0
        return cls(
            rest_vertices=verts,
            faces=faces_np,
            vertex_parts=parts,
            arm=arm,
            leg=leg,
            trunk=trunk,
            head_u=head_u,
            head_front=head_front,
            trunk_front=trunk_front,
            side=side,
            rest_normals=vertex_normals(torch.from_numpy(verts), torch.from_numpy(faces_np)).numpy(),
            landmarks=lm,
        )

    @classmethod
    def from_model(cls, model: torch.nn.Module, rest_vertices: torch.Tensor | None = None) -> BodyGeometry:
        """Coordinates of a :class:`~dsrbody.body.base.BodyModel`'s mesh.

        Args:
            model: a body model (Anny, SMPL, ...); its parts come from ``dsrbody.body.parts``.
            rest_vertices: ``(V, 3)`` (or ``(1, V, 3)``) rest-pose vertices of a particular body, metres;
                default: the model's mean parameters in the rest pose. Results for the default are cached
                per model object. The limb coordinates are always those of the mean body
                (``dsrbody.body.parts.limb_coordinate``): a vertex keeps its relative position along its
                limb across body shapes; heights and landmarks come from ``rest_vertices``.
        """
        if rest_vertices is None and model in _MODEL_CACHE:
            return _MODEL_CACHE[model]
        from dsrbody.body import parts as body_parts

        if tuple(body_parts.BODY_PARTS) != PART_NAMES:
            raise ValueError(f"dsrbody.body.parts.BODY_PARTS {body_parts.BODY_PARTS} != {PART_NAMES}")
        if rest_vertices is None:
            rest = _mean_rest_vertices(model)
        else:
            rest = rest_vertices.detach().reshape(-1, 3)
        coords = {n: body_parts.limb_coordinate(model, n) for n in LIMB_PARTS}
        geom = cls.from_arrays(rest, model.faces, body_parts.vertex_body_parts(model), coords)
        if rest_vertices is None:
            _MODEL_CACHE[model] = geom
        return geom


_MODEL_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _mean_rest_vertices(model: torch.nn.Module) -> torch.Tensor:
    """``(V, 3)`` rest vertices of the model's mean parameters."""
    mp = model.mean_params()
    with torch.no_grad():
        out = model(mp["global_orient"][None], mp["body_pose"][None], mp["shape"][None])
    return out.rest_vertices[0]


def _np(x: np.ndarray | torch.Tensor, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _azimuth_cos(verts: np.ndarray, cx: float, cz: float) -> np.ndarray:
    """``(V,)`` cosine of the angle between +z and the horizontal direction from ``(cx, cz)``."""
    dx = verts[:, 0] - cx
    dz = verts[:, 2] - cz
    return dz / np.maximum(np.hypot(dx, dz), 1e-9)
