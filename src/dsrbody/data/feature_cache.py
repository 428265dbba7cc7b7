"""The output of a backbone's frozen part, computed once per sample and read back in training.

A backbone with a frozen part (``cache_rows(images) -> (B, C)`` and ``from_cache(rows)``, such as
:class:`~dsrbody.models.backbones.BlazePoseBackbone`: all of it frozen, or its stages before the tuned
ones) gives the same rows for the same crop every time, so a recipe with ``model.feature_cache: true``
runs that part once over each dataset's plain (un-augmented) crops and trains the rest on the stored
rows: for BlazePose that is a 50 ms forward per image once instead of on every step (docs/training.md,
"BlazePose features").

A cache is one ``.npy`` file per annotation file and backbone: ``(N, C)`` float16, row ``i`` the frozen
part's output for sample ``i``, in ``<img_dir>/features/<npz stem>.<backbone>_<res>.npy``. It is written into
``<name>.partial.npy`` with a small JSON record of how many rows are complete (updated after the rows
are flushed), so a killed run resumes at the first incomplete row; the file takes its final name when
every row is written, beside ``<name>.json`` holding a fingerprint of the annotation file it was made
from. A sample whose image cannot be read gets a row of zeros (training skips it anyway: its item is
invalid). Reading checks the shape against the annotation file and the fingerprint against the file as
it is now, and refuses a cache of another backbone, size or version of the data with a one-line error
naming the file.

A *mirrored* cache (``<stem>.<backbone>_<res>.mirrored.npy``, same format) holds the rows of each
sample's horizontally mirrored plain crop (:class:`MirroredCrops`). With both attached, a training set
without augmentation still mirrors: each item takes the mirrored crop's rows and the mirrored labels
(keypoints re-ordered left/right, pose mirrored) with probability ``flip_prob``, the one augmentation
that fixed crops allow (docs/training.md, "Mirrored caches").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

__all__ = [
    "feature_cache_path",
    "file_fingerprint",
    "build_feature_cache",
    "load_feature_cache",
    "attach_feature_cache",
    "MirroredCrops",
]

_log = logging.getLogger(__name__)


def feature_cache_path(
    npz_path: str | os.PathLike,
    img_dir: str | os.PathLike,
    backbone: str,
    res: int,
    mirrored: bool = False,
) -> Path:
    """Where the cache of an annotation file lives: ``<img_dir>/features/<stem>.<backbone>_<res>.npy``,
    or ``....mirrored.npy`` for that of its mirrored crops."""
    tail = ".mirrored" if mirrored else ""
    return Path(img_dir) / "features" / f"{Path(npz_path).stem}.{backbone}_{int(res)}{tail}.npy"


class MirroredCrops(Dataset):
    """The plain crops of a :class:`~dsrbody.data.SpinNpzDataset`, horizontally mirrored: item ``i`` is
    ``dataset.item(i, AugmentParams(flip=True))`` (image ``u -> res - u``, labels mirrored), what a
    mirrored feature cache is built from."""

    augment = False

    def __init__(self, dataset: Any) -> None:
        if getattr(dataset, "augment", False):
            raise ValueError(f"{dataset.name}: mirrored crops are of the plain crops; the dataset augments")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from dsrbody.data.crop_augment import AugmentParams

        return self.dataset.item(int(index), AugmentParams(flip=True))


def file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes (an annotation file: a few MB, milliseconds)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _collate_images(items: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    imgs = torch.stack([it["img"] for it in items])
    valid = torch.tensor([bool(it["valid"]) for it in items])
    return imgs, valid


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def build_feature_cache(
    dataset: Dataset,
    backbone: nn.Module,
    path: str | os.PathLike,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
    fingerprint: str | None = None,
    position: int | None = None,
) -> Path:
    """Compute (or finish) the cache of ``dataset``'s crops under ``backbone``.

    Args:
        dataset: a dataset without augmentation whose items have ``img (3, res, res)`` and ``valid``
            (the plain crops, or :class:`MirroredCrops` of them).
        backbone: a backbone with ``cache_rows (B, 3, res, res) -> (B, C)`` (its frozen part), or a
            frozen module ``(B, 3, res, res) -> (B, C, 1, 1)`` or ``(B, C)``.
        path: the cache file (:func:`feature_cache_path`).
        batch_size, num_workers: how the crops are read.
        progress: show a progress bar.
        fingerprint: what the data were (:func:`file_fingerprint` of the annotation file), stored
            beside the cache for :func:`attach_feature_cache` to check.
        position: the progress bar's line (several processes building caches at once).

    Returns:
        ``path``, complete.

    Raises:
        ValueError: the dataset draws augmentation, or an unfinished cache at ``path`` was started
            for another number of samples or channels.
    """
    path = Path(path)
    if path.is_file():
        return path
    if getattr(dataset, "augment", False):
        raise ValueError(f"{path}: features are cached for plain crops; the dataset draws augmentation")
    partial = path.with_name(path.stem + ".partial.npy")
    record_path = path.with_name(path.stem + ".partial.json")
    n = len(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    feats = None
    if partial.is_file() and record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
            feats = np.load(partial, mmap_mode="r+")
        except (ValueError, OSError) as e:
            _log.warning("%s: unreadable partial cache (%s); starting again", partial, e)
            feats = None
        else:
            if record.get("fingerprint") != fingerprint:  # the annotation file changed since: start again
                _log.warning("%s: unfinished cache of another version of the data; starting again", partial)
                feats = None
            elif feats.shape[0] != n:
                raise ValueError(
                    f"{partial}: an unfinished cache of {feats.shape[0]} samples, the dataset has {n}"
                )
            else:
                done = int(record.get("done", 0))
    backbone = backbone.eval()
    rows = getattr(backbone, "cache_rows", backbone)
    bar = tqdm(
        total=n,
        initial=done,
        desc=f"features {path.name}",
        unit="img",
        disable=not progress,
        position=position,
    )
    loader = DataLoader(
        Subset(dataset, range(done, n)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate_images,
    )
    with torch.no_grad():
        for imgs, valid in loader:
            f = rows(imgs).reshape(len(imgs), -1)
            f[~valid] = 0.0
            if feats is None:
                feats = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(n, f.shape[1]))
            elif feats.shape[1] != f.shape[1]:
                raise ValueError(
                    f"{partial}: an unfinished cache of {feats.shape[1]} channels, "
                    f"the backbone gives {f.shape[1]}"
                )
            feats[done : done + len(imgs)] = f.numpy().astype(np.float16)
            feats.flush()
            done += len(imgs)
            _write_record(record_path, {"done": done, "n": n, "fingerprint": fingerprint})
            bar.update(len(imgs))
    bar.close()
    if feats is None:  # an empty dataset
        feats = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(0, 0))
    del feats
    _write_record(_meta_path(path), {"fingerprint": fingerprint, "rows": n})
    os.replace(partial, path)
    record_path.unlink(missing_ok=True)
    return path


def load_feature_cache(path: str | os.PathLike, n: int, channels: int) -> np.ndarray:
    """Open a complete cache (memory-mapped, read-only) and check it is ``(n, channels)``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a ``.npy`` array of that shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no feature cache (it is built at the start of training)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a feature cache ({e})") from None
    if arr.shape != (n, channels):
        raise ValueError(
            f"{path}: feature cache of shape {arr.shape}, expected ({n}, {channels}) (another dataset or "
            "backbone? delete it to rebuild)"
        )
    return arr


def _check_cache(path: Path, n: int, channels: int, fingerprint: str | None) -> None:
    load_feature_cache(path, n, channels)
    meta = _meta_path(path)
    if fingerprint is not None and meta.is_file():
        try:
            stored = json.loads(meta.read_text()).get("fingerprint")
        except (ValueError, OSError, AttributeError):
            stored = None
        if stored is not None and stored != fingerprint:
            raise ValueError(
                f"{path}: feature cache made from another version of the annotation file; delete it "
                "(and its .json) to rebuild"
            )


def attach_feature_cache(
    dataset: Any,
    path: str | os.PathLike,
    channels: int,
    fingerprint: str | None = None,
    mirrored_path: str | os.PathLike | None = None,
) -> None:
    """Make ``dataset`` (a :class:`~dsrbody.data.SpinNpzDataset`) add ``features (C,)`` float32 to its
    items, read from the cache at ``path`` (checked now, opened lazily in each worker).

    Args:
        fingerprint: the annotation file's :func:`file_fingerprint` now; a cache that stored another
            one was made from other data and is refused.
        mirrored_path: the cache of the mirrored crops, or None. With it, an item of a dataset without
            augmentation is mirrored (crop rows from this cache, labels mirrored) with probability
            ``flip_prob``, drawn per seed, epoch and index.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_feature_cache`; ValueError also for a stale cache.
    """
    _check_cache(Path(path), len(dataset), channels, fingerprint)
    if mirrored_path is not None:
        if getattr(dataset, "augment", False):
            raise ValueError(
                f"{mirrored_path}: mirrored crops replace the augmentation; the dataset augments"
            )
        _check_cache(Path(mirrored_path), len(dataset), channels, fingerprint)
    dataset.feature_file = Path(path)
    dataset.feature_channels = int(channels)
    dataset.mirrored_feature_file = Path(mirrored_path) if mirrored_path is not None else None
