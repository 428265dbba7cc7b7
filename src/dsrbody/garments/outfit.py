"""Outfits (layered garments), dressing a body, and the random outfit distribution.

Skin labels (CIHP has no torso-, hand- or foot-skin label; these follow how CIHP/LIP annotators label
exposed skin):

- head and neck: ``face`` (ears and neck included);
- upper arms, forearms and hands: ``leftArm`` / ``rightArm`` (hands belong to the arms in CIHP);
- thighs, calves and bare feet: ``leftLeg`` / ``rightLeg``;
- bare trunk: ``face`` above trunk height 0.8 within half the shoulder half-width of the midline (the
  neck opening / décolleté, annotated with the neck), else the arm label of that side (bare shoulders
  go with the arms); bare hips: the leg label of that side.

Left/right are the subject's (CIHP's ``leftArm`` is the person's left arm, on the image's right for a
person facing the camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dsrbody.garments.garments import (
    Coat,
    Dress,
    Garment,
    Gloves,
    Hat,
    LongHair,
    LongSleeve,
    Shoes,
    ShortHair,
    Shorts,
    Skirt,
    Socks,
    TankTop,
    Trousers,
    TShirt,
    sided_label,
)
from dsrbody.garments.geometry import BodyGeometry
from dsrbody.geometry.mesh import vertex_normals
from dsrbody.semantics.labels import CIHP

FACE = CIHP.index("face")


@dataclass
class Outfit:
    """A set of garments. :meth:`layered` orders them from the skin outwards by ``layer_order`` (stable
    for equal layers, so the list order decides between them)."""

    garments: list[Garment] = field(default_factory=list)

    def layered(self) -> list[Garment]:
        """Garments from the innermost to the outermost."""
        return sorted(self.garments, key=lambda g: g.layer_order)

    def kinds(self) -> list[str]:
        """The garment kinds, innermost first."""
        return [g.kind for g in self.layered()]

    def __len__(self) -> int:
        return len(self.garments)


@dataclass
class ClothedBody:
    """A body dressed in an outfit.

    Attributes:
        vertex_labels: ``(V,)`` int64 CIHP label per vertex (the outermost garment, else skin).
        face_labels: ``(F,)`` int64 CIHP label per face (majority of its vertices; when all three
            differ, the label of the vertex with the largest displacement, i.e. the outer layer).
        displacement: ``(V,)`` float32 metres, >= 0: offset of the clothed surface along the vertex
            normal (0 on skin).
        faces: ``(F, 3)`` int64.
        outfit: the outfit.
    """

    vertex_labels: np.ndarray
    face_labels: np.ndarray
    displacement: np.ndarray
    faces: np.ndarray
    outfit: Outfit

    def displace(self, vertices: torch.Tensor) -> torch.Tensor:
        """The clothed surface of a posed body: each vertex moved by its displacement along its normal.

        Args:
            vertices: ``(B, V, 3)`` or ``(V, 3)`` posed vertices of the same topology, metres.

        Returns:
            Clothed vertices, same shape, metres.
        """
        n = vertex_normals(vertices, torch.as_tensor(self.faces, device=vertices.device))
        d = torch.as_tensor(self.displacement, dtype=vertices.dtype, device=vertices.device)
        return vertices + d[:, None] * n


def skin_labels(g: BodyGeometry) -> np.ndarray:
    """``(V,)`` int64 CIHP label of every vertex of the naked body (see the module doc)."""
    labels = np.full(g.num_vertices, FACE, dtype=np.int64)
    arm = sided_label(g, "arm")
    leg = sided_label(g, "leg")
    arms = g.part_mask(
        "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm", "left_hand", "right_hand"
    )
    legs = g.part_mask("left_thigh", "right_thigh", "left_calf", "right_calf", "left_foot", "right_foot")
    labels[arms] = arm[arms]
    labels[legs] = leg[legs]
    lm = g.landmarks
    neck_opening = (g.trunk > 0.8) & (np.abs(g.rest_vertices[:, 0] - lm["trunk_x"]) < 0.5 * lm["shoulder_x"])
    rest_of_torso = g.part_mask("torso") & ~neck_opening
    labels[rest_of_torso] = arm[rest_of_torso]
    hips = g.part_mask("hips")
    labels[hips] = leg[hips]
    return labels


def face_labels_from_vertices(
    faces: np.ndarray, vertex_labels: np.ndarray, displacement: np.ndarray
) -> np.ndarray:
    """``(F,)`` int64 face labels: the majority label of a face's three vertices; when all three differ,
    the label of its vertex with the largest displacement (the outer layer)."""
    la, lb, lc = (vertex_labels[faces[:, k]] for k in range(3))
    outer = np.argmax(displacement[faces], axis=1)
    out = np.stack([la, lb, lc], 1)[np.arange(len(faces)), outer]
    out = np.where(lb == lc, lb, out)
    return np.where((la == lb) | (la == lc), la, out)


def dress_body(
    model_or_geometry: BodyGeometry | torch.nn.Module,
    outfit: Outfit,
    rest_vertices: torch.Tensor | None = None,
) -> ClothedBody:
    """Dress a body.

    Garments are applied from the skin outwards (:meth:`Outfit.layered`): a garment's label replaces the
    labels of the vertices it covers, and its outer surface is at ``max(own offset, offset so far +
    own thickness)`` there.

    Args:
        model_or_geometry: a :class:`BodyGeometry`, or a body model (its geometry is computed with
            :meth:`BodyGeometry.from_model` and cached per model when ``rest_vertices`` is None).
        outfit: the garments.
        rest_vertices: ``(V, 3)`` rest vertices of a particular body (models only).

    Returns:
        :class:`ClothedBody`.
    """
    if isinstance(model_or_geometry, BodyGeometry):
        if rest_vertices is not None:
            raise ValueError("rest_vertices only applies when a body model is given, not a BodyGeometry")
        g = model_or_geometry
    else:
        g = BodyGeometry.from_model(model_or_geometry, rest_vertices)
    labels = skin_labels(g)
    disp = np.zeros(g.num_vertices)
    for garment in outfit.layered():
        cover = garment.cover(g)
        if not cover.any():
            continue
        own = garment.displacement(g, cover)
        thick = float(getattr(garment, "thickness", 0.0))
        disp = np.where(cover, np.maximum(own, disp + thick), disp)
        labels = np.where(cover, garment.vertex_labels(g), labels)
    return ClothedBody(
        vertex_labels=labels,
        face_labels=face_labels_from_vertices(g.faces, labels, disp),
        displacement=disp.astype(np.float32),
        faces=g.faces,
        outfit=outfit,
    )


# Probabilities of the outfit distribution (normal, hard). See sample_outfit.
OUTFIT_PROBS: dict[str, tuple[float, float]] = {
    "dress": (0.12, 0.3),
    "coat": (0.12, 0.45),
    "hat": (0.1, 0.25),
    "gloves": (0.03, 0.15),
    "shoes": (0.95, 1.0),
    "socks_visible": (0.5, 0.5),
}
# Conditional choices: (names, normal weights, hard weights).
TOP_CHOICES = (("tshirt", "long_sleeve", "tank_top"), (0.45, 0.35, 0.2), (0.2, 0.7, 0.1))
BOTTOM_CHOICES = (("trousers", "shorts", "skirt"), (0.55, 0.22, 0.23), (0.55, 0.05, 0.4))
HAIR_CHOICES = (("short_hair", "long_hair", "none"), (0.45, 0.4, 0.15), (0.45, 0.4, 0.15))
_TYPES = {c.kind: c for c in (TShirt, LongSleeve, TankTop, Trousers, Shorts, Skirt, ShortHair, LongHair)}


def _choose(rng: np.random.Generator, choices: tuple, hard: bool) -> str:
    names, p_normal, p_hard = choices
    return str(rng.choice(names, p=np.asarray(p_hard if hard else p_normal)))


def sample_outfit(rng: np.random.Generator, hard: bool = False) -> Outfit:
    """A random everyday outfit.

    The distribution (probabilities as ``normal / hard``; the parameter ranges are those of each garment's
    ``sample``):

    - a dress (0.12 / 0.30), otherwise a top (t-shirt 0.45 / 0.2, long sleeve 0.35 / 0.7, tank top
      0.2 / 0.1) and a bottom (trousers 0.55 / 0.55, shorts 0.22 / 0.05, skirt 0.23 / 0.4);
    - a coat over it (0.12 / 0.45);
    - shoes (0.95 / 1.0); socks (0.5; hidden under trousers and most shoes, they show with shorts,
      skirts and low shoes);
    - hair: short 0.45, long 0.4, none 0.15; a hat (0.1 / 0.25); gloves (0.03 / 0.15).

    ``hard=True`` is the heavier-clothing variant (coats, dresses, long and wide skirts, loose trousers,
    boots) used to stress a method on loose garments.

    Args:
        rng: numpy random generator (the outfit is a deterministic function of its state).
        hard: sample the heavier-clothing distribution.

    Returns:
        :class:`Outfit`.
    """
    h = int(hard)
    garments: list[Garment] = []
    if rng.random() < OUTFIT_PROBS["dress"][h]:
        garments.append(Dress.sample(rng, hard))
    else:
        garments.append(_TYPES[_choose(rng, TOP_CHOICES, hard)].sample(rng, hard))
        garments.append(_TYPES[_choose(rng, BOTTOM_CHOICES, hard)].sample(rng, hard))
    if rng.random() < OUTFIT_PROBS["coat"][h]:
        garments.append(Coat.sample(rng, hard))
    if rng.random() < OUTFIT_PROBS["shoes"][h]:
        garments.append(Shoes.sample(rng, hard))
    if rng.random() < OUTFIT_PROBS["socks_visible"][h]:
        garments.append(Socks.sample(rng, hard))
    hair = _choose(rng, HAIR_CHOICES, hard)
    if hair != "none":
        garments.append(_TYPES[hair].sample(rng, hard))
    if rng.random() < OUTFIT_PROBS["hat"][h]:
        garments.append(Hat.sample(rng, hard))
    if rng.random() < OUTFIT_PROBS["gloves"][h]:
        garments.append(Gloves.sample(rng, hard))
    return Outfit(garments)
