"""Mixed training datasets with per-sample ratios, and plain concatenation for evaluation.

:class:`MixedDataset` follows SPIN/DSR's ``MixedDataset``: each item is drawn from dataset ``k`` with
probability ``ratios[k]``, an epoch has the size of the largest dataset, and the sample taken from
dataset ``k`` for item ``i`` is ``i mod len(dataset_k)``. Unlike the official code (global
``np.random``), the dataset choice comes from ``np.random.default_rng([seed, epoch, i, MIX_STREAM])``,
so it is reproducible and independent of DataLoader workers, and independent of the member datasets'
augmentation draws (:func:`~dsrbody.data.crop_augment.augment_rng`; when both were ``[seed, epoch,
i]``, a dataset's sample ``j == i`` drew its flip from the very number that chose the dataset, so under
:data:`DSR_MIX` every Human3.6M item was mirrored and no COCO one); call
:meth:`MixedDataset.set_epoch` each epoch (it is forwarded to the member datasets' augmentation; the
epoch is shared with persistent workers).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from dsrbody.data.spin_npz import SharedEpoch, SkipLog

__all__ = ["DSR_MIX", "DSR_MIX_WITH_3DPW", "MixedDataset", "EvalConcatDataset"]

#: Appended to ``[seed, epoch, i]`` for the dataset choice: a stream of its own, apart from the member
#: datasets' augmentation draws (:func:`~dsrbody.data.crop_augment.augment_rng`; ASCII "mix").
MIX_STREAM = 0x6D6978

#: The official DSR recipe: H36M / COCO (EFT) / MPI-INF-3DHP per-sample ratios (docs/design.md, Paper recipe).
DSR_MIX: dict[str, float] = {"h36m": 0.5, "coco": 0.3, "mpi-inf-3dhp": 0.2}
#: The official recipe with 3DPW training data.
DSR_MIX_WITH_3DPW: dict[str, float] = {"h36m": 0.3, "coco": 0.4, "mpi-inf-3dhp": 0.1, "3dpw": 0.2}


def _share_skip_log(datasets: Sequence[Dataset], log: SkipLog) -> None:
    for d in datasets:
        if hasattr(d, "skipped"):
            log.merge(d.skipped)
            d.skipped = log


class MixedDataset(Dataset):
    """Draw each item from one of several datasets with fixed probabilities.

    Args:
        datasets: the member datasets (non-empty).
        ratios: per-sample probabilities, one per dataset (normalised to sum 1), or a mapping from
            each dataset's ``name`` attribute to its ratio (e.g. :data:`DSR_MIX`).
        length: items per epoch (default: the size of the largest dataset).
        seed: seed of the dataset choice.
    """

    def __init__(
        self,
        datasets: Sequence[Dataset],
        ratios: Sequence[float] | Mapping[str, float],
        length: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("MixedDataset needs at least one dataset")
        for k, d in enumerate(self.datasets):
            if len(d) == 0:
                raise ValueError(f"member dataset {getattr(d, 'name', k)!r} is empty")
        if isinstance(ratios, Mapping):
            names = [getattr(d, "name", None) for d in self.datasets]
            missing = [n for n in names if n not in ratios]
            if missing:
                raise ValueError(f"no ratio given for dataset(s) {missing}; ratios name {sorted(ratios)}")
            unused = sorted(set(ratios) - set(names))
            if unused:
                raise ValueError(f"ratios name dataset(s) {unused} that are not among {names}")
            ratios = [ratios[n] for n in names]
        r = np.asarray(ratios, dtype=np.float64)
        if r.shape != (len(self.datasets),):
            raise ValueError(f"{len(self.datasets)} datasets but {r.size} ratios")
        if (r < 0).any() or not np.isfinite(r).all() or r.sum() <= 0:
            raise ValueError(f"ratios must be non-negative with a positive sum, got {list(ratios)}")
        self.ratios = r / r.sum()
        self.partition = np.cumsum(self.ratios)
        self.partition[-1] = 1.0
        self.length = int(length) if length is not None else max(len(d) for d in self.datasets)
        self.seed = seed
        self._epoch = SharedEpoch()
        self.skipped = SkipLog()
        _share_skip_log(self.datasets, self.skipped)

    def __len__(self) -> int:
        return self.length

    @property
    def epoch(self) -> int:
        """The epoch whose draws are used."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of an epoch (dataset choice and the members' augmentation)."""
        self._epoch.set(epoch)
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """Which dataset and which of its samples item ``index`` is: ``(k, j)``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range ({self.length} items)")
        u = np.random.default_rng([self.seed, self.epoch, int(index), MIX_STREAM]).uniform()
        k = min(bisect.bisect_right(self.partition.tolist(), u), len(self.datasets) - 1)
        return k, int(index) % len(self.datasets[k])

    def __getitem__(self, index: int) -> Any:
        k, j = self.locate(int(index))
        return self.datasets[k][j]

    def summary(self) -> str:
        """Skipped samples / missing parsing maps over all member datasets."""
        return self.skipped.summary()


class EvalConcatDataset(ConcatDataset):
    """Concatenation of datasets in order (evaluation: every sample once), sharing one :class:`SkipLog`."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        super().__init__(list(datasets))
        self.skipped = SkipLog()
        _share_skip_log(self.datasets, self.skipped)

    def summary(self) -> str:
        """Skipped samples / missing parsing maps over all member datasets."""
        return self.skipped.summary()
