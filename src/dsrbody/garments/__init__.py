"""Procedural garments on any body topology, the outfit distribution and the procedural clothing prior.

- :mod:`dsrbody.garments.geometry`: :class:`BodyGeometry`, the per-vertex coordinates garments are
  defined on (body parts, positions along the limbs, heights on the trunk and head).
- :mod:`dsrbody.garments.garments`: the garment dataclasses (t-shirt, long sleeve, tank top, coat, dress,
  skirt, shorts, trousers, socks, shoes, gloves, hat, short hair, long hair).
- :mod:`dsrbody.garments.outfit`: :class:`Outfit`, :func:`dress_body` -> :class:`ClothedBody` (labels
  per vertex and face, outward displacement), :func:`sample_outfit` (the outfit distribution).
- :mod:`dsrbody.garments.prior`: :func:`build_procedural_prior` and the shipped :func:`default_prior`.
"""

from dsrbody.garments.garments import (
    GARMENT_TYPES,
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
)
from dsrbody.garments.geometry import PART_NAMES, BodyGeometry
from dsrbody.garments.outfit import ClothedBody, Outfit, dress_body, sample_outfit, skin_labels
from dsrbody.garments.prior import build_procedural_prior, default_prior, default_prior_path
from dsrbody.geometry.mesh import vertex_normals  # its home; kept importable from here

__all__ = [
    "GARMENT_TYPES",
    "PART_NAMES",
    "BodyGeometry",
    "ClothedBody",
    "Coat",
    "Dress",
    "Garment",
    "Gloves",
    "Hat",
    "LongHair",
    "LongSleeve",
    "Outfit",
    "Shoes",
    "ShortHair",
    "Shorts",
    "Skirt",
    "Socks",
    "TShirt",
    "TankTop",
    "Trousers",
    "build_procedural_prior",
    "default_prior",
    "default_prior_path",
    "dress_body",
    "sample_outfit",
    "skin_labels",
    "vertex_normals",
]
