"""Procedural garments: rules over body coordinates that give coverage, a label and a thickness.

Every garment is a dataclass whose parameters have documented ranges (``RANGES``, checked on
construction) and a ``sample(rng, hard=False)`` class method. A garment answers three questions on a
:class:`~dsrbody.garments.geometry.BodyGeometry`:

- :meth:`Garment.cover` ``-> (V,) bool``: the vertices it covers;
- :meth:`Garment.vertex_labels` ``-> (V,) int64``: the CIHP label (docs/design.md, Clothing labels) it
gives them;
- :meth:`Garment.displacement` ``-> (V,) float64`` metres: how far its outer surface stands off the skin
  along the vertex normal (``thickness`` for tight garments; see :func:`envelope_offset` for loose ones).

Units: lengths in metres; ``sleeve`` in the arm coordinate (0 shoulder, 1 elbow, 2 wrist); ``length`` of
leg garments in the leg coordinate (0 hip joint, 1 knee, 2 ankle); ``hem`` / ``waist`` in the trunk
coordinate (0 hip joints, 1 shoulder joints); head lines in the head coordinate (0 chin, 1 top of head).

Layers: ``layer`` orders garments from the skin outwards (socks 0, shoes 1, tucked tops 1.5, bottoms 2,
tops and dresses 3, gloves 4, coats 5, short hair 6, long hair 7, hats 8); an outer garment's label wins
where two overlap (trousers over boot shafts, an untucked top over the waistband, long hair over a coat).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from dsrbody.garments.geometry import BodyGeometry
from dsrbody.semantics.labels import CIHP

_LEFT_RIGHT = {
    "arm": (CIHP.index("leftArm"), CIHP.index("rightArm")),
    "leg": (CIHP.index("leftLeg"), CIHP.index("rightLeg")),
    "shoe": (CIHP.index("leftShoe"), CIHP.index("rightShoe")),
}


def sided_label(g: BodyGeometry, kind: str) -> np.ndarray:
    """``(V,)`` int64: the left or right CIHP label of ``kind`` (``"arm"``, ``"leg"``, ``"shoe"``) per
    vertex, by the subject's side of the vertex (CIHP's leftArm is the person's left arm)."""
    left, right = _LEFT_RIGHT[kind]
    return np.where(g.side > 0, left, right).astype(np.int64)


def envelope_offset(
    g: BodyGeometry,
    sel: np.ndarray,
    y_start: float,
    flare: float,
    bin_height: float = 0.01,
    n_sectors: int = 32,
) -> np.ndarray:
    """Offset that moves the selected vertices out to a hanging envelope around both legs.

    The envelope of a skirt-like garment at height ``y`` and azimuth ``a`` (around the trunk's vertical
    axis) has the radius of the widest selected body point at or above ``y`` within the neighbouring
    azimuth sectors (cloth hangs down from the hips, it does not follow the legs inwards), plus
    ``flare * (y_start - y)``. A vertex gets the radial gap to that envelope. Vertices whose rest normal
    faces the trunk's axis (the inner sides of the legs) get at most the distance along their normal to
    the body's mid-plane ``x = trunk_x``, so the two legs' inner surfaces meet in the middle: the offset
    surface bridges the gap between the legs. Approximation: the offset is applied along each vertex's
    normal, so the result is a closed but self-intersecting surface whose silhouette and outer layer
    are those of the garment.

    Args:
        g: body coordinates.
        sel: ``(V,)`` bool, the vertices the loose part covers.
        y_start: height (metres) where the garment leaves the body and starts to hang.
        flare: horizontal widening per metre of drop (0 = straight down).
        bin_height, n_sectors: resolution of the envelope (metres, sectors per turn).

    Returns:
        ``(V,)`` float64 offsets in metres, >= 0, zero outside ``sel``.
    """
    out = np.zeros(g.num_vertices)
    if not sel.any():
        return out
    lm = g.landmarks
    p = g.rest_vertices[sel]
    dx, dz = p[:, 0] - lm["trunk_x"], p[:, 2] - lm["trunk_z"]
    r = np.hypot(dx, dz)
    drop = np.maximum(y_start - p[:, 1], 0.0)
    yb = np.floor(drop / bin_height).astype(np.int64)
    sec = np.floor((np.arctan2(dx, dz) + np.pi) / (2 * np.pi) * n_sectors).astype(np.int64) % n_sectors
    grid = np.zeros((int(yb.max()) + 1, n_sectors))
    np.maximum.at(grid, (yb, sec), r)
    grid = np.maximum(grid, np.maximum(np.roll(grid, 1, axis=1), np.roll(grid, -1, axis=1)))
    grid = np.maximum.accumulate(grid, axis=0)  # hang down: never narrower than above
    gap = np.maximum(grid[yb, sec] + flare * drop - r, 0.0)
    n = g.rest_normals[sel]
    inward = n[:, 0] * dx + n[:, 2] * dz < 0
    to_mid = np.abs(dx) / np.maximum(np.abs(n[:, 0]), 0.2)
    gap = np.where(inward, np.minimum(gap, to_mid), gap)
    out[sel] = gap
    return out


@dataclass
class Garment:
    """Base class. Subclasses set ``kind``, ``label`` (CIHP name), ``layer`` and ``RANGES``."""

    kind: ClassVar[str] = "garment"
    label: ClassVar[str] = "upperclothes"
    layer: ClassVar[float] = 3.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {}

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name in self.RANGES:
                lo, hi = self.RANGES[f.name]
                v = getattr(self, f.name)
                if not lo <= v <= hi:
                    raise ValueError(f"{type(self).__name__}.{f.name}={v} is outside [{lo}, {hi}]")

    @property
    def layer_order(self) -> float:
        """Position from the skin outwards (see the module doc)."""
        return self.layer

    def cover(self, g: BodyGeometry) -> np.ndarray:  # pragma: no cover - interface
        """``(V,)`` bool: the vertices this garment covers."""
        raise NotImplementedError

    def vertex_labels(self, g: BodyGeometry) -> np.ndarray:
        """``(V,)`` int64 CIHP label this garment gives a vertex it covers."""
        return np.full(g.num_vertices, CIHP.index(self.label), dtype=np.int64)

    def displacement(self, g: BodyGeometry, cover: np.ndarray) -> np.ndarray:
        """``(V,)`` float64 metres: outer surface offset over the skin on covered vertices."""
        return np.where(cover, float(getattr(self, "thickness", 0.0)), 0.0)

    @classmethod
    def sample(cls, rng: np.random.Generator, hard: bool = False) -> Garment:
        """A random instance: each parameter uniform in its range (subclasses narrow this)."""
        kw = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in cls.RANGES.items()}
        return cls(**kw)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# ---------------------------------------------------------------------------------------------- helpers
def _sleeves(g: BodyGeometry, sleeve: float) -> np.ndarray:
    """Upper-arm and forearm vertices up to ``sleeve`` (arm coordinate); none when ``sleeve <= 0``."""
    if sleeve <= 0:
        return np.zeros(g.num_vertices, dtype=bool)
    return (np.nan_to_num(g.arm, nan=np.inf) <= sleeve) & ~g.part_mask("left_hand", "right_hand")


def _neck_opening(g: BodyGeometry, depth: float) -> np.ndarray:
    """Trunk vertices inside a neckline whose front drops ``depth`` metres below the neck base."""
    lm = g.landmarks
    front = np.clip(g.trunk_front, 0.0, 1.0)
    near = np.abs(g.rest_vertices[:, 0] - lm["trunk_x"]) < 0.5 * lm["shoulder_x"] + depth
    return near & (g.y > lm["y_neck"] - 0.01 - depth * front)


def _upper_body(g: BodyGeometry, hem: float, neckline: float) -> np.ndarray:
    """Torso/hips (and thighs when ``hem < 0``) from trunk height ``hem`` up, minus the neckline."""
    trunk = g.part_mask("torso", "hips") | (g.part_mask("left_thigh", "right_thigh") & (hem < 0))
    return trunk & (g.trunk >= hem) & ~_neck_opening(g, neckline)


def _lower_body(g: BodyGeometry, waist: float, length: float) -> np.ndarray:
    """Trunk below ``waist`` (trunk coordinate) and legs down to ``length`` (leg coordinate)."""
    trunk = g.part_mask("torso", "hips") & (g.trunk <= waist)
    legs = np.nan_to_num(g.leg, nan=np.inf) <= length
    return trunk | (legs & g.part_mask("left_thigh", "right_thigh", "left_calf", "right_calf"))


def _below_ankle(g: BodyGeometry, height: float) -> np.ndarray:
    """Feet and calf vertices up to ``height`` metres above the ankle joint."""
    return g.part_mask("left_foot", "right_foot", "left_calf", "right_calf") & (
        g.y <= g.landmarks["y_ankle"] + height
    )


# ---------------------------------------------------------------------------------------------- tops
@dataclass
class _Top(Garment):
    sleeve: float = 0.5
    hem: float = 0.0
    neckline: float = 0.05
    thickness: float = 0.004
    looseness: float = 0.01
    tucked: bool = False

    label: ClassVar[str] = "upperclothes"
    layer: ClassVar[float] = 3.0

    @property
    def layer_order(self) -> float:
        """Tucked tops go under the bottoms (1.5), others over them (3)."""
        return 1.5 if self.tucked else self.layer

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Torso from the hem up (minus the neckline) and the arms down to the sleeve end."""
        return _upper_body(g, self.hem, self.neckline) | _sleeves(g, self.sleeve)

    def displacement(self, g: BodyGeometry, cover: np.ndarray) -> np.ndarray:
        """``thickness`` on the sleeves, ``thickness + looseness`` on the trunk."""
        trunk = g.part_mask("torso", "hips", "left_thigh", "right_thigh")
        return np.where(cover, self.thickness + np.where(trunk, self.looseness, 0.0), 0.0)

    @classmethod
    def sample(cls, rng: np.random.Generator, hard: bool = False) -> _Top:
        """Parameters uniform in their ranges; tucked with probability 0.3."""
        kw = {name: _u(rng, lo, hi) for name, (lo, hi) in cls.RANGES.items()}
        return cls(**kw, tucked=bool(rng.random() < 0.3))


@dataclass
class TShirt(_Top):
    """Short-sleeved top. ``sleeve``: arm coordinate of the sleeve end (0.15 cap sleeve .. 0.9 elbow);
    ``hem``: trunk coordinate of the hem (-0.25 tunic .. 0.3 cropped); ``neckline``: front depth (m);
    ``looseness``: extra offset on the trunk (m)."""

    kind: ClassVar[str] = "tshirt"
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "sleeve": (0.15, 0.9),
        "hem": (-0.25, 0.3),
        "neckline": (0.01, 0.12),
        "thickness": (0.001, 0.01),
        "looseness": (0.0, 0.04),
    }


@dataclass
class LongSleeve(_Top):
    """Long-sleeved top (shirt, sweater): ``sleeve`` from 1.5 (three-quarter) to 2.0 (wrist)."""

    sleeve: float = 1.95
    kind: ClassVar[str] = "long_sleeve"
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "sleeve": (1.5, 2.0),
        "hem": (-0.25, 0.3),
        "neckline": (0.01, 0.12),
        "thickness": (0.002, 0.015),
        "looseness": (0.0, 0.05),
    }


@dataclass
class TankTop(_Top):
    """Sleeveless top. ``strap``: half-width of the straps' outer edge as a fraction of the shoulder
    half-width (the shoulder tips outside it stay bare)."""

    sleeve: float = 0.0
    strap: float = 0.7
    kind: ClassVar[str] = "tank_top"
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "sleeve": (0.0, 0.0),
        "hem": (-0.2, 0.3),
        "neckline": (0.03, 0.18),
        "strap": (0.5, 0.9),
        "thickness": (0.001, 0.006),
        "looseness": (0.0, 0.03),
    }

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """The trunk from the hem up minus the neckline and the shoulder tips; no sleeves."""
        lm = g.landmarks
        tips = (g.trunk > 0.8) & (
            np.abs(g.rest_vertices[:, 0] - lm["trunk_x"]) > self.strap * lm["shoulder_x"]
        )
        return _upper_body(g, self.hem, self.neckline) & ~tips


# ------------------------------------------------------------------------------ dresses, coats
@dataclass
class Dress(Garment):
    """One-piece dress. ``length``: hem in the leg coordinate (0.3 mini .. 1.95 floor); ``sleeve``: 0
    (sleeveless) .. 1.0 (elbow); ``flare``: widening of the skirt per metre of drop."""

    length: float = 1.0
    sleeve: float = 0.3
    neckline: float = 0.06
    flare: float = 0.2
    thickness: float = 0.004

    kind: ClassVar[str] = "dress"
    label: ClassVar[str] = "dress"
    layer: ClassVar[float] = 3.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "length": (0.3, 1.95),
        "sleeve": (0.0, 1.0),
        "neckline": (0.01, 0.15),
        "flare": (0.02, 0.5),
        "thickness": (0.002, 0.01),
    }

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Trunk minus the neckline, arms to the sleeve end, legs down to the hem."""
        return (
            (_upper_body(g, -np.inf, self.neckline) & ~g.part_mask("left_thigh", "right_thigh"))
            | _lower_body(g, 0.0, self.length)
            | _sleeves(g, self.sleeve)
        )

    def displacement(self, g: BodyGeometry, cover: np.ndarray) -> np.ndarray:
        """``thickness`` above the hip joints; the hanging skirt envelope below them."""
        loose = cover & (g.y <= g.landmarks["y_hip"]) & ~np.isfinite(g.arm)
        return np.where(cover, self.thickness, 0.0) + envelope_offset(
            g, loose, g.landmarks["y_hip"], self.flare
        )

    @classmethod
    def sample(cls, rng: np.random.Generator, hard: bool = False) -> Dress:
        """Knee-length on average; ``hard`` favours long, wide dresses."""
        length = _u(rng, 1.0, 1.95) if hard else _u(rng, 0.3, 1.6)
        flare = _u(rng, 0.15, 0.5) if hard else _u(rng, 0.02, 0.35)
        sleeve = 0.0 if rng.random() < 0.4 else _u(rng, 0.1, 1.0)
        return cls(length, sleeve, _u(rng, 0.01, 0.15), flare, _u(rng, 0.002, 0.01))


@dataclass
class Coat(Garment):
    """Coat or jacket worn over the other clothes. ``length``: hem in the leg coordinate (0.1 jacket ..
    1.6 long coat, upper thigh = ~0.2); ``sleeve``: 1.8 .. 2.0; ``thickness``: 1 .. 4 cm."""

    length: float = 0.3
    sleeve: float = 2.0
    neckline: float = 0.04
    flare: float = 0.1
    thickness: float = 0.02

    kind: ClassVar[str] = "coat"
    label: ClassVar[str] = "coat"
    layer: ClassVar[float] = 5.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "length": (0.1, 1.6),
        "sleeve": (1.8, 2.0),
        "neckline": (0.0, 0.15),
        "flare": (0.0, 0.25),
        "thickness": (0.01, 0.04),
    }

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Trunk minus the neckline, arms to the sleeve end, legs down to the hem."""
        return (
            (_upper_body(g, -np.inf, self.neckline) & ~g.part_mask("left_thigh", "right_thigh"))
            | _lower_body(g, 0.0, self.length)
            | _sleeves(g, self.sleeve)
        )

    def displacement(self, g: BodyGeometry, cover: np.ndarray) -> np.ndarray:
        """``thickness`` everywhere plus the hanging envelope below the hip joints."""
        loose = cover & (g.y <= g.landmarks["y_hip"]) & ~np.isfinite(g.arm)
        return np.where(cover, self.thickness, 0.0) + envelope_offset(
            g, loose, g.landmarks["y_hip"], self.flare
        )

    @classmethod
    def sample(cls, rng: np.random.Generator, hard: bool = False) -> Coat:
        """Jackets (hip length) and coats; ``hard`` favours long coats."""
        length = _u(rng, 0.5, 1.6) if hard else _u(rng, 0.1, 1.2)
        return cls(length, _u(rng, 1.8, 2.0), _u(rng, 0.0, 0.15), _u(rng, 0.0, 0.25), _u(rng, 0.01, 0.04))


# ---------------------------------------------------------------------------------------------- bottoms
@dataclass
class Skirt(Garment):
    """Skirt. ``waist``: trunk coordinate of the waistband; ``length``: hem in the leg coordinate."""

    waist: float = 0.35
    length: float = 1.0
    flare: float = 0.2
    thickness: float = 0.003

    kind: ClassVar[str] = "skirt"
    label: ClassVar[str] = "skirt"
    layer: ClassVar[float] = 2.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "waist": (0.15, 0.5),
        "length": (0.2, 1.95),
        "flare": (0.02, 0.6),
        "thickness": (0.001, 0.01),
    }

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Trunk below the waistband and legs down to the hem."""
        return _lower_body(g, self.waist, self.length)

    def displacement(self, g: BodyGeometry, cover: np.ndarray) -> np.ndarray:
        """``thickness`` above the hip joints; the hanging envelope below them (grows toward the hem)."""
        loose = cover & (g.y <= g.landmarks["y_hip"])
        return np.where(cover, self.thickness, 0.0) + envelope_offset(
            g, loose, g.landmarks["y_hip"], self.flare
        )

    @classmethod
    def sample(cls, rng: np.random.Generator, hard: bool = False) -> Skirt:
        """Mini to maxi; ``hard`` favours long, wide skirts."""
        length = _u(rng, 1.0, 1.95) if hard else _u(rng, 0.2, 1.7)
        flare = _u(rng, 0.15, 0.6) if hard else _u(rng, 0.02, 0.4)
        return cls(_u(rng, 0.15, 0.5), length, flare, _u(rng, 0.001, 0.01))


@dataclass
class Shorts(Garment):
    """Shorts. ``length``: hem in the leg coordinate (0.15 hot pants .. 0.95 knee)."""

    waist: float = 0.35
    length: float = 0.6
    looseness: float = 0.01
    thickness: float = 0.003

    kind: ClassVar[str] = "shorts"
    label: ClassVar[str] = "pants"
    layer: ClassVar[float] = 2.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "waist": (0.15, 0.5),
        "length": (0.15, 0.95),
        "looseness": (0.0, 0.04),
        "thickness": (0.001, 0.01),
    }

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Trunk below the waistband and thighs down to the hem."""
        return _lower_body(g, self.waist, self.length)

    def displacement(self, g: BodyGeometry, cover: np.ndarray) -> np.ndarray:
        """``thickness`` plus ``looseness`` on the legs."""
        legs = np.isfinite(g.leg)
        return np.where(cover, self.thickness + np.where(legs, self.looseness, 0.0), 0.0)


@dataclass
class Trousers(Garment):
    """Long trousers. ``length``: hem in the leg coordinate (1.7 cropped .. 2.0 ankle); ``looseness``:
    extra offset at the hem (m), growing linearly down the leg (0 skinny .. 8 cm wide-legged)."""

    waist: float = 0.35
    length: float = 2.0
    looseness: float = 0.01
    thickness: float = 0.004

    kind: ClassVar[str] = "trousers"
    label: ClassVar[str] = "pants"
    layer: ClassVar[float] = 2.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "waist": (0.15, 0.5),
        "length": (1.7, 2.0),
        "looseness": (0.0, 0.08),
        "thickness": (0.002, 0.012),
    }

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Trunk below the waistband and legs down to the hem."""
        return _lower_body(g, self.waist, self.length)

    def displacement(self, g: BodyGeometry, cover: np.ndarray) -> np.ndarray:
        """``thickness + looseness * leg / 2`` (looser toward the hem)."""
        extra = self.looseness * np.clip(np.nan_to_num(g.leg, nan=0.0) / 2.0, 0.0, 1.0)
        return np.where(cover, self.thickness + extra, 0.0)

    @classmethod
    def sample(cls, rng: np.random.Generator, hard: bool = False) -> Trousers:
        """Mostly slim; ``hard`` favours loose, wide-legged trousers."""
        loose = _u(rng, 0.03, 0.08) if hard else _u(rng, 0.0, 0.04)
        return cls(_u(rng, 0.15, 0.5), _u(rng, 1.7, 2.0), loose, _u(rng, 0.002, 0.012))


# ---------------------------------------------------------------------------------------------- feet, hands
@dataclass
class Socks(Garment):
    """Socks up to ``height`` metres above the ankle joint (-0.02 trainer socks .. 0.35 knee socks)."""

    height: float = 0.08
    thickness: float = 0.002

    kind: ClassVar[str] = "socks"
    label: ClassVar[str] = "socks"
    layer: ClassVar[float] = 0.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"height": (-0.02, 0.35), "thickness": (0.001, 0.004)}

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Feet and calves up to ``height`` above the ankle."""
        return _below_ankle(g, self.height)


@dataclass
class Shoes(Garment):
    """Shoes; ``collar``: height of the top edge above the ankle joint (-0.03 low shoes .. 0.35 boots).
    Labels leftShoe / rightShoe by the subject's side."""

    collar: float = 0.0
    thickness: float = 0.01

    kind: ClassVar[str] = "shoes"
    label: ClassVar[str] = "leftShoe"
    layer: ClassVar[float] = 1.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"collar": (-0.03, 0.35), "thickness": (0.004, 0.025)}

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Feet (always whole) and calves up to the collar."""
        return g.part_mask("left_foot", "right_foot") | _below_ankle(g, self.collar)

    def vertex_labels(self, g: BodyGeometry) -> np.ndarray:
        """leftShoe on the subject's left foot, rightShoe on the right."""
        return sided_label(g, "shoe")

    @classmethod
    def sample(cls, rng: np.random.Generator, hard: bool = False) -> Shoes:
        """Low shoes and trainers; boots with probability 0.15 (0.4 when ``hard``)."""
        boots = rng.random() < (0.4 if hard else 0.15)
        collar = _u(rng, 0.1, 0.35) if boots else _u(rng, -0.03, 0.05)
        return cls(collar, _u(rng, 0.004, 0.025))


@dataclass
class Gloves(Garment):
    """Gloves; ``cuff``: how far up the forearm they reach (fraction of the forearm)."""

    cuff: float = 0.1
    thickness: float = 0.004

    kind: ClassVar[str] = "gloves"
    label: ClassVar[str] = "glove"
    layer: ClassVar[float] = 4.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"cuff": (0.0, 0.5), "thickness": (0.001, 0.01)}

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Hands and the distal ``cuff`` of the forearms."""
        return np.nan_to_num(g.arm, nan=-np.inf) >= 2.0 - self.cuff


# ---------------------------------------------------------------------------------------------- head
@dataclass
class Hat(Garment):
    """Hat or cap covering the head above ``line`` (head coordinate: 0.75 cap .. 0.55 deep beanie)."""

    line: float = 0.7
    thickness: float = 0.01

    kind: ClassVar[str] = "hat"
    label: ClassVar[str] = "hat"
    layer: ClassVar[float] = 8.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"line": (0.55, 0.85), "thickness": (0.003, 0.04)}

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Head vertices above the line."""
        return g.part_mask("head") & (g.head_u >= self.line)


def _hairline(g: BodyGeometry, front: float, side: float, back: float) -> np.ndarray:
    """``(V,)`` head-coordinate height of a hairline that is ``front`` at the forehead, ``side`` above
    the ears and ``back`` at the nape (piecewise linear in the cosine of the azimuth)."""
    return np.interp(g.head_front, [-1.0, 0.0, 0.5, 1.0], [back, side, front, front])


@dataclass
class ShortHair(Garment):
    """Short hair on the scalp. ``length`` in [0, 1] lowers the hairline at the sides and back
    (0 crew cut .. 1 chin-length bob)."""

    length: float = 0.3
    thickness: float = 0.01

    kind: ClassVar[str] = "short_hair"
    label: ClassVar[str] = "hair"
    layer: ClassVar[float] = 6.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"length": (0.0, 1.0), "thickness": (0.003, 0.03)}

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Head vertices above the hairline (forehead ~0.8, ears 0.6 -> 0.3, nape 0.35 -> 0.0)."""
        line = _hairline(g, 0.8, 0.6 - 0.3 * self.length, 0.35 - 0.35 * self.length)
        return g.part_mask("head") & (g.head_u >= line)


@dataclass
class LongHair(Garment):
    """Long hair: the scalp down over the ears plus a fall down the back of the neck and trunk,
    ``length`` metres below the neck base, ``width`` times the shoulder half-width wide."""

    length: float = 0.2
    width: float = 0.6
    thickness: float = 0.02

    kind: ClassVar[str] = "long_hair"
    label: ClassVar[str] = "hair"
    layer: ClassVar[float] = 7.0
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "length": (0.02, 0.4),
        "width": (0.4, 0.9),
        "thickness": (0.01, 0.05),
    }

    def cover(self, g: BodyGeometry) -> np.ndarray:
        """Scalp (over the ears) and the back of the neck/trunk down to ``length`` below the neck base."""
        lm = g.landmarks
        scalp = g.part_mask("head") & (g.head_u >= _hairline(g, 0.8, 0.25, 0.0))
        back = (
            g.part_mask("neck", "torso")
            & (g.trunk_front < -0.2)
            & (g.y >= lm["y_neck"] - self.length)
            & (np.abs(g.rest_vertices[:, 0] - lm["trunk_x"]) <= self.width * lm["shoulder_x"])
        )
        return scalp | back


GARMENT_TYPES: dict[str, type[Garment]] = {
    cls.kind: cls
    for cls in (
        TShirt,
        LongSleeve,
        TankTop,
        Coat,
        Dress,
        Skirt,
        Shorts,
        Trousers,
        Socks,
        Shoes,
        Gloves,
        Hat,
        ShortHair,
        LongHair,
    )
}
