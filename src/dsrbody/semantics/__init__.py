"""Clothing semantics (docs/design.md, Clothing labels, Losses).

- :mod:`dsrbody.semantics.labels`: CIHP (20) and ATR (18) label sets and palettes, conversions, the DSR-MC
  labels, the 8 DSR-C merged classes and the left/right swaps for flips.
- :mod:`dsrbody.semantics.parsing`: read/write parsing maps, clean them with keypoints, and compute the
  DSR targets (MC mask, distance map, merged classes, class weights), batched (torch); the losses build
  them from a batch with :func:`dsrbody.losses.targets.dsr_targets`.
- :mod:`dsrbody.semantics.prior`: :class:`ClothingPrior`, the per-face label distribution of a body
  topology (built from scans or face labellings; ``.npz``/official ``.npy`` files; renderer helpers).
"""

from dsrbody.semantics.labels import ATR, CIHP, MC_LABELS, MERGED_NAMES, LabelSet
from dsrbody.semantics.parsing import (
    ParsingError,
    ParsingWarning,
    read_parsing,
    write_parsing,
)
from dsrbody.semantics.prior import ClothingPrior, PriorTopologyError

__all__ = [
    "ATR",
    "CIHP",
    "MC_LABELS",
    "MERGED_NAMES",
    "LabelSet",
    "ParsingError",
    "ParsingWarning",
    "read_parsing",
    "write_parsing",
    "ClothingPrior",
    "PriorTopologyError",
]
