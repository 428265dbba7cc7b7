"""Human-parsing label sets, palettes, the DSR label groups and the left/right swaps (docs/design.md,
Clothing labels).

Label sets
----------
- :data:`CIHP` (20 labels, CIHP/LIP order as produced by Graphonomy's universal model) with Graphonomy's
  colour palette. This is the set used everywhere in dsrbody: parsing maps, clothing priors, losses.
- :data:`ATR` (18 labels, the order of the ATR dataset and of the SCHP ``atr`` model) with the palette SCHP
  writes into its output PNGs (the PASCAL-VOC bit-interleaved colour map, ``get_palette(18)`` in SCHP).
  ATR maps are converted to CIHP with :func:`atr_to_cihp` (many-to-one, table :data:`ATR_TO_CIHP`).

Both sets are :class:`LabelSet` objects: ``names``, ``palette (L, 3) uint8`` RGB, ``index(name)`` and
``flip_perm`` (the left/right swap for horizontal flips: a label array ``y`` of a flipped image is
``flip_perm[y]``).

DSR groups
----------
- DSR-MC (minimally clothed) labels: :data:`MC_LABELS` (face, leftArm, rightArm, leftShoe, rightShoe);
  :data:`MC_MASK` is the ``(20,)`` bool indicator.
- DSR-C merged classes: :data:`MERGED_NAMES` (8 classes) with :data:`CIHP_TO_MERGED` (``(20,)`` int64, the
  class of each CIHP label) and :data:`MERGE_MATRIX` (``(20, 8)`` float32 one-hot: a per-label
  probability vector ``p (..., 20)`` becomes the merged one as ``p @ MERGE_MATRIX``); as tensors
  :data:`CIHP_TO_MERGED_TENSOR` and :data:`MERGE_MATRIX_TENSOR`.
  :data:`MERGED_FLIP_PERM` swaps leftArm/rightArm and leftLeg/rightLeg.

All arrays are numpy; :func:`as_torch` gives a cached tensor copy on a device (for batched torch code).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

__all__ = [
    "LabelSet",
    "CIHP",
    "ATR",
    "LABEL_SETS",
    "get_label_set",
    "CIHP_NAMES",
    "CIHP_PALETTE",
    "ATR_NAMES",
    "ATR_PALETTE",
    "NUM_LABELS",
    "ATR_TO_CIHP",
    "CIHP_TO_ATR",
    "atr_to_cihp",
    "cihp_to_atr",
    "MC_LABELS",
    "MC_INDICES",
    "MC_MASK",
    "MERGED_NAMES",
    "NUM_MERGED",
    "MERGED_GROUPS",
    "CIHP_TO_MERGED",
    "MERGE_MATRIX",
    "CIHP_TO_MERGED_TENSOR",
    "MERGE_MATRIX_TENSOR",
    "MERGED_FLIP_PERM",
    "CIHP_FLIP_PERM",
    "ATR_FLIP_PERM",
    "label_indices",
    "as_torch",
    "voc_palette",
]


def voc_palette(num_labels: int) -> np.ndarray:
    """The PASCAL-VOC colour map (bit-interleaved label index), as written by SCHP into its PNGs.

    Args:
        num_labels: number of labels L.

    Returns:
        ``(L, 3)`` uint8 RGB colours; label 0 is black.
    """
    lab = np.arange(num_labels, dtype=np.int64)
    pal = np.zeros((num_labels, 3), dtype=np.int64)
    for bit in range(8):  # 8 rounds of 3 bits cover any label < 2**24
        shifted = lab >> (3 * bit)
        for ch in range(3):
            pal[:, ch] |= ((shifted >> ch) & 1) << (7 - bit)
    return pal.astype(np.uint8)


@dataclass(frozen=True)
class LabelSet:
    """A human-parsing label set.

    Attributes:
        name: short identifier (``"cihp"``, ``"atr"``).
        names: label names in index order.
        palette: ``(L, 3)`` uint8 RGB colour of each label (all distinct).
        swaps: pairs of label names exchanged by a horizontal flip.
    """

    name: str
    names: tuple[str, ...]
    palette: np.ndarray = field(repr=False)
    swaps: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.palette.shape != (len(self.names), 3):
            raise ValueError(f"{self.name}: palette {self.palette.shape} != ({len(self.names)}, 3)")
        if len({tuple(c) for c in self.palette.tolist()}) != len(self.names):
            raise ValueError(f"{self.name}: palette colours are not distinct")
        self.palette.setflags(write=False)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of a label given by name (exact, or case-insensitive ignoring '-', '_' and spaces)."""
        if name in self.names:
            return self.names.index(name)
        key = _norm(name)
        for i, n in enumerate(self.names):
            if _norm(n) == key:
                return i
        raise KeyError(f"label {name!r} is not in the {self.name} label set {list(self.names)}")

    @cached_property
    def flip_perm(self) -> np.ndarray:
        """``(L,)`` int64: the label that label ``i`` becomes under a horizontal flip (an involution)."""
        perm = np.arange(len(self.names), dtype=np.int64)
        for a, b in self.swaps:
            ia, ib = self.index(a), self.index(b)
            perm[ia], perm[ib] = ib, ia
        perm.setflags(write=False)
        return perm


def _norm(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


CIHP_NAMES: tuple[str, ...] = (
    "background",
    "hat",
    "hair",
    "glove",
    "sunglasses",
    "upperclothes",
    "dress",
    "coat",
    "socks",
    "pants",
    "jumpsuits",
    "scarf",
    "skirt",
    "face",
    "leftArm",
    "rightArm",
    "leftLeg",
    "rightLeg",
    "leftShoe",
    "rightShoe",
)
CIHP_PALETTE: np.ndarray = np.array(
    [
        (0, 0, 0),
        (128, 0, 0),
        (255, 0, 0),
        (0, 85, 0),
        (170, 0, 51),
        (255, 85, 0),
        (0, 0, 85),
        (0, 119, 221),
        (85, 85, 0),
        (0, 85, 85),
        (85, 51, 0),
        (52, 86, 128),
        (0, 128, 0),
        (0, 0, 255),
        (51, 170, 221),
        (0, 255, 255),
        (85, 255, 170),
        (170, 255, 85),
        (255, 255, 0),
        (255, 170, 0),
    ],
    dtype=np.uint8,
)
NUM_LABELS: int = len(CIHP_NAMES)

CIHP = LabelSet(
    name="cihp",
    names=CIHP_NAMES,
    palette=CIHP_PALETTE,
    swaps=(("leftArm", "rightArm"), ("leftLeg", "rightLeg"), ("leftShoe", "rightShoe")),
)

ATR_NAMES: tuple[str, ...] = (
    "background",
    "hat",
    "hair",
    "sunglasses",
    "upper-clothes",
    "skirt",
    "pants",
    "dress",
    "belt",
    "left-shoe",
    "right-shoe",
    "face",
    "left-leg",
    "right-leg",
    "left-arm",
    "right-arm",
    "bag",
    "scarf",
)
ATR_PALETTE: np.ndarray = voc_palette(len(ATR_NAMES))

ATR = LabelSet(
    name="atr",
    names=ATR_NAMES,
    palette=ATR_PALETTE,
    swaps=(("left-shoe", "right-shoe"), ("left-leg", "right-leg"), ("left-arm", "right-arm")),
)

LABEL_SETS: dict[str, LabelSet] = {"cihp": CIHP, "lip": CIHP, "atr": ATR}


def get_label_set(label_set: str | LabelSet) -> LabelSet:
    """A :class:`LabelSet` from itself or its name (``"cihp"``/``"lip"`` or ``"atr"``)."""
    if isinstance(label_set, LabelSet):
        return label_set
    try:
        return LABEL_SETS[label_set.lower()]
    except KeyError:
        raise ValueError(f"unknown label set {label_set!r}; known: {sorted(LABEL_SETS)}") from None


# ----------------------------------------------------------------------------------------------
# Conversions (many-to-one tables; documented choices where a label has no counterpart)
# ----------------------------------------------------------------------------------------------

#: ATR label name -> CIHP label name. Choices: ``belt`` -> ``pants`` (worn at the waist of the lower
#: garment, and DSR-C merges lower garments); ``bag`` -> ``background`` (not part of the body or its
#: clothing: the clothing prior has no bag). Everything else has a same-meaning label.
ATR_TO_CIHP_NAMES: dict[str, str] = {
    "background": "background",
    "hat": "hat",
    "hair": "hair",
    "sunglasses": "sunglasses",
    "upper-clothes": "upperclothes",
    "skirt": "skirt",
    "pants": "pants",
    "dress": "dress",
    "belt": "pants",
    "left-shoe": "leftShoe",
    "right-shoe": "rightShoe",
    "face": "face",
    "left-leg": "leftLeg",
    "right-leg": "rightLeg",
    "left-arm": "leftArm",
    "right-arm": "rightArm",
    "bag": "background",
    "scarf": "scarf",
}

#: CIHP label name -> ATR label name. Choices: ``glove``, ``coat`` and ``jumpsuits`` -> ``upper-clothes``
#: and ``socks`` -> ``pants`` (the same grouping as the DSR-C merged classes).
CIHP_TO_ATR_NAMES: dict[str, str] = {
    "background": "background",
    "hat": "hat",
    "hair": "hair",
    "glove": "upper-clothes",
    "sunglasses": "sunglasses",
    "upperclothes": "upper-clothes",
    "dress": "dress",
    "coat": "upper-clothes",
    "socks": "pants",
    "pants": "pants",
    "jumpsuits": "upper-clothes",
    "scarf": "scarf",
    "skirt": "skirt",
    "face": "face",
    "leftArm": "left-arm",
    "rightArm": "right-arm",
    "leftLeg": "left-leg",
    "rightLeg": "right-leg",
    "leftShoe": "left-shoe",
    "rightShoe": "right-shoe",
}

#: ``(18,)`` int64: CIHP index of each ATR label.
ATR_TO_CIHP: np.ndarray = np.array([CIHP.index(ATR_TO_CIHP_NAMES[n]) for n in ATR_NAMES], dtype=np.int64)
#: ``(20,)`` int64: ATR index of each CIHP label.
CIHP_TO_ATR: np.ndarray = np.array([ATR.index(CIHP_TO_ATR_NAMES[n]) for n in CIHP_NAMES], dtype=np.int64)
ATR_TO_CIHP.setflags(write=False)
CIHP_TO_ATR.setflags(write=False)


def _convert(labels: np.ndarray | torch.Tensor, table: np.ndarray, what: str) -> np.ndarray | torch.Tensor:
    if isinstance(labels, torch.Tensor):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(table)):
            raise ValueError(f"{what}: labels outside [0, {len(table) - 1}]")
        return as_torch(table, labels.device)[labels.long()].to(labels.dtype)
    arr = np.asarray(labels)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= len(table)):
        raise ValueError(f"{what}: labels outside [0, {len(table) - 1}]")
    return table[arr].astype(arr.dtype if np.issubdtype(arr.dtype, np.integer) else np.int64)


def atr_to_cihp(labels: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Convert an ATR label array (any shape, values in [0, 18)) to CIHP labels (same shape and dtype)."""
    return _convert(labels, ATR_TO_CIHP, "atr_to_cihp")


def cihp_to_atr(labels: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Convert a CIHP label array (any shape, values in [0, 20)) to ATR labels (same shape and dtype)."""
    return _convert(labels, CIHP_TO_ATR, "cihp_to_atr")


# ----------------------------------------------------------------------------------------------
# DSR groups
# ----------------------------------------------------------------------------------------------

#: DSR-MC (minimally clothed) labels.
MC_LABELS: tuple[str, ...] = ("face", "leftArm", "rightArm", "leftShoe", "rightShoe")
#: ``(5,)`` int64 CIHP indices of the MC labels (13, 14, 15, 18, 19).
MC_INDICES: np.ndarray = np.array([CIHP.index(n) for n in MC_LABELS], dtype=np.int64)
#: ``(20,)`` bool, True for MC labels.
MC_MASK: np.ndarray = np.isin(np.arange(NUM_LABELS), MC_INDICES)
MC_INDICES.setflags(write=False)
MC_MASK.setflags(write=False)

#: DSR-C merged classes, in index order.
MERGED_NAMES: tuple[str, ...] = (
    "background",
    "head",
    "upperclothes",
    "pants",
    "leftArm",
    "rightArm",
    "leftLeg",
    "rightLeg",
)
NUM_MERGED: int = len(MERGED_NAMES)
#: Members (CIHP names) of each merged class.
MERGED_GROUPS: dict[str, tuple[str, ...]] = {
    "background": ("background",),
    "head": ("hat", "hair", "sunglasses", "scarf", "face"),
    "upperclothes": ("glove", "upperclothes", "dress", "coat", "jumpsuits"),
    "pants": ("socks", "pants", "skirt"),
    "leftArm": ("leftArm",),
    "rightArm": ("rightArm",),
    "leftLeg": ("leftLeg", "leftShoe"),
    "rightLeg": ("rightLeg", "rightShoe"),
}


def _merged_table() -> np.ndarray:
    table = np.full(NUM_LABELS, -1, dtype=np.int64)
    for c, cname in enumerate(MERGED_NAMES):
        for member in MERGED_GROUPS[cname]:
            table[CIHP.index(member)] = c
    if (table < 0).any():  # pragma: no cover - static table
        raise AssertionError("a CIHP label has no merged class")
    return table


#: ``(20,)`` int64: merged DSR-C class of each CIHP label.
CIHP_TO_MERGED: np.ndarray = _merged_table()
#: ``(20, 8)`` float32 one-hot: row i is the merged class of CIHP label i.
MERGE_MATRIX: np.ndarray = np.eye(NUM_MERGED, dtype=np.float32)[CIHP_TO_MERGED]
#: ``(8,)`` int64: left/right swap of the merged classes.
_MERGED_SWAP = {"leftArm": "rightArm", "rightArm": "leftArm", "leftLeg": "rightLeg", "rightLeg": "leftLeg"}
MERGED_FLIP_PERM: np.ndarray = np.array(
    [MERGED_NAMES.index(_MERGED_SWAP.get(n, n)) for n in MERGED_NAMES], dtype=np.int64
)
#: The same two tables as CPU tensors (``(20,)`` int64 and ``(20, 8)`` float32); :func:`as_torch` gives
#: cached copies on other devices.
CIHP_TO_MERGED_TENSOR: torch.Tensor = torch.from_numpy(CIHP_TO_MERGED.copy())
MERGE_MATRIX_TENSOR: torch.Tensor = torch.from_numpy(MERGE_MATRIX.copy())
#: ``(20,)`` int64 CIHP flip permutation; ``(18,)`` ATR flip permutation.
CIHP_FLIP_PERM: np.ndarray = CIHP.flip_perm
ATR_FLIP_PERM: np.ndarray = ATR.flip_perm
for _a in (CIHP_TO_MERGED, MERGE_MATRIX, MERGED_FLIP_PERM):
    _a.setflags(write=False)


def label_indices(labels: Iterable[int | str], label_set: str | LabelSet = CIHP) -> list[int]:
    """Indices of labels given by index or name (names resolved with :meth:`LabelSet.index`).

    Raises:
        KeyError: an unknown name; ValueError: an index outside the set.
    """
    ls = get_label_set(label_set)
    out = []
    for lab in labels:
        if isinstance(lab, str):
            out.append(ls.index(lab))
        else:
            i = int(lab)
            if not 0 <= i < len(ls):
                raise ValueError(f"label index {i} outside the {ls.name} label set (0..{len(ls) - 1})")
            out.append(i)
    return out


_TORCH_CACHE: dict[tuple[int, str], tuple[np.ndarray, torch.Tensor]] = {}


def as_torch(array: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """A tensor copy of a constant table of this module on ``device``, cached per table and device.

    Meant for the module-level read-only tables (the cache keeps a reference to the array, so the key
    stays valid); do not use it for arrays that change.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    key = (id(array), str(dev))
    hit = _TORCH_CACHE.get(key)
    if hit is None or hit[0] is not array:
        hit = (array, torch.as_tensor(np.array(array)).to(dev))
        _TORCH_CACHE[key] = hit
    return hit[1]
