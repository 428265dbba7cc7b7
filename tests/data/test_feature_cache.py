"""Cached backbone features: the stored rows are the backbone's output on each plain (or mirrored) crop,
a killed build resumes at the first incomplete row, wrong caches are refused with the file named, and
with a mirrored cache an item's features and labels are those of the same crop."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from dsrbody.data import SpinNpzDataset
from dsrbody.data.crop_augment import AugmentParams
from dsrbody.data.feature_cache import (
    MirroredCrops,
    attach_feature_cache,
    build_feature_cache,
    feature_cache_path,
    file_fingerprint,
    load_feature_cache,
)


class StatsBackbone(nn.Module):
    """A frozen stand-in: per crop, the mean and standard deviation of each colour channel ``(B, 6, 1, 1)``;
    counts the crops it saw and can fail after ``fail_after`` batches (a killed run)."""

    frozen = True

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.seen, self.batches, self.fail_after = 0, 0, fail_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.batches += 1
        self.seen += len(x)
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)[:, :, None, None]


def _dataset(make_dataset, n=5, **kw) -> SpinNpzDataset:
    npz, img_dir, _ = make_dataset(n=n)
    return SpinNpzDataset(npz, img_dir, parsing=False, res=32, **kw)


def test_rows_are_the_backbone_on_each_plain_crop(make_dataset):
    ds = _dataset(make_dataset)
    path = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32)
    assert path == ds.img_dir / "features" / "train.stats_32.npy"
    build_feature_cache(ds, StatsBackbone(), path, batch_size=2, progress=False)
    feats = load_feature_cache(path, len(ds), 6)
    assert feats.dtype == np.float16
    for i in range(len(ds)):
        want = StatsBackbone()(ds[i]["img"][None]).flatten()
        np.testing.assert_allclose(feats[i], want.numpy(), rtol=2e-3, atol=2e-3)
    attach_feature_cache(ds, path, 6)
    item = pickle.loads(pickle.dumps(ds))[3]  # as a DataLoader worker gets it
    np.testing.assert_allclose(item["features"].numpy(), feats[3].astype(np.float32))
    assert item["features"].dtype == torch.float32


def test_a_killed_build_resumes_where_it_stopped(make_dataset):
    ds = _dataset(make_dataset)
    path = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32)
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(ds, StatsBackbone(fail_after=2), path, batch_size=2, progress=False)
    assert not path.exists()
    record = json.loads(path.with_name(path.stem + ".partial.json").read_text())
    assert record == {"done": 4, "n": 5, "fingerprint": None}
    again = StatsBackbone()
    build_feature_cache(ds, again, path, batch_size=2, progress=False)
    assert again.seen == 1  # only the fifth crop was left
    assert not path.with_name(path.stem + ".partial.npy").exists()
    fresh = path.with_name("fresh.npy")
    build_feature_cache(ds, StatsBackbone(), fresh, batch_size=2, progress=False)
    np.testing.assert_array_equal(np.load(path), np.load(fresh))


def test_wrong_caches_and_augmented_datasets_are_refused(make_dataset):
    ds = _dataset(make_dataset)
    path = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32)
    build_feature_cache(ds, StatsBackbone(), path, batch_size=4, progress=False)
    wrong = r"train\.stats_32\.npy: feature cache of shape \(5, 6\), expected \(5, 7\)"
    with pytest.raises(ValueError, match=wrong):
        attach_feature_cache(ds, path, 7)
    with pytest.raises(FileNotFoundError, match="no feature cache"):
        load_feature_cache(path.with_name("missing.npy"), 5, 6)
    path.with_name("junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="junk.npy: not a feature cache"):
        load_feature_cache(path.with_name("junk.npy"), 5, 6)
    aug = _dataset(make_dataset, augment=True)
    with pytest.raises(ValueError, match="plain crops"):
        build_feature_cache(aug, StatsBackbone(), path.with_name("aug.npy"), progress=False)


def test_unreadable_images_get_zero_rows(make_dataset):
    ds = _dataset(make_dataset)
    (ds.img_dir / ds.imgname[1]).write_bytes(b"\xff\xd8broken")
    path = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32)
    build_feature_cache(ds, StatsBackbone(), path, batch_size=5, progress=False)
    feats = np.load(path)
    assert not feats[1].any() and feats[0].any()


def test_a_cache_of_other_data_is_refused(make_dataset):
    ds = _dataset(make_dataset)
    path = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32)
    before = file_fingerprint(ds.npz_path)
    build_feature_cache(ds, StatsBackbone(), path, batch_size=4, progress=False, fingerprint=before)
    assert json.loads(path.with_suffix(".json").read_text()) == {"fingerprint": before, "rows": 5}
    attach_feature_cache(ds, path, 6, fingerprint=before)
    with np.load(ds.npz_path) as z:  # the annotation file regenerated: same samples, other values
        arrays = {k: z[k] for k in z.files}
    arrays["scale"] = arrays["scale"] * 1.1
    np.savez(ds.npz_path, **arrays)
    with pytest.raises(ValueError, match=r"train\.stats_32\.npy: feature cache made from another version"):
        attach_feature_cache(ds, path, 6, fingerprint=file_fingerprint(ds.npz_path))


def test_an_unfinished_cache_of_other_data_starts_again(make_dataset):
    ds = _dataset(make_dataset)
    path = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32)
    with pytest.raises(KeyboardInterrupt):
        killed = StatsBackbone(fail_after=1)
        build_feature_cache(ds, killed, path, batch_size=2, progress=False, fingerprint="a")
    again = StatsBackbone()
    build_feature_cache(ds, again, path, batch_size=2, progress=False, fingerprint="b")
    assert again.seen == 5  # every row recomputed, none kept from the other data


class SplitStats(StatsBackbone):
    """A backbone with a frozen part (``cache_rows``): the channel means of each crop."""

    def cache_rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # never called by the cache builder
        raise AssertionError("the cache holds cache_rows, not the whole backbone")


def test_a_backbone_with_a_frozen_part_caches_that_part(make_dataset):
    ds = _dataset(make_dataset, n=3)
    path = feature_cache_path(ds.npz_path, ds.img_dir, "split", 32)
    build_feature_cache(ds, SplitStats(), path, batch_size=2, progress=False)
    feats = load_feature_cache(path, len(ds), 3)
    for i in range(len(ds)):
        np.testing.assert_allclose(feats[i], ds[i]["img"].mean((1, 2)).numpy(), rtol=2e-3, atol=2e-3)


def test_a_backbone_without_a_frozen_part_is_refused(make_dataset):
    from dsrbody.train.build import attach_feature_caches
    from dsrbody.train.config import ConfigError, load_config

    ds = _dataset(make_dataset, n=2)
    cfg = load_config(None, ["model.backbone=resnet18", "model.feature_cache=true"])
    with pytest.raises(ConfigError, match="'resnet18' trains as a whole"):
        attach_feature_caches([ds], cfg)


def test_mirrored_cache_rows_are_the_backbone_on_each_mirrored_crop(make_dataset):
    ds = _dataset(make_dataset)
    path = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32, mirrored=True)
    assert path == ds.img_dir / "features" / "train.stats_32.mirrored.npy"
    mirrored = MirroredCrops(ds)
    build_feature_cache(mirrored, StatsBackbone(), path, batch_size=2, progress=False)
    feats = load_feature_cache(path, len(ds), 6)
    for i in range(len(ds)):
        crop = mirrored[i]["img"]
        torch.testing.assert_close(crop, ds[i]["img"].flip(-1))  # u -> res - u, nothing else
        assert bool(mirrored[i]["is_flipped"])
        want = StatsBackbone()(crop[None]).flatten()
        np.testing.assert_allclose(feats[i], want.numpy(), rtol=2e-3, atol=2e-3)
    with pytest.raises(ValueError, match="augments"):
        MirroredCrops(_dataset(make_dataset, augment=True))


class ColumnBackbone(nn.Module):
    """A frozen stand-in that tells a crop from its mirror: the mean of the crop's leftmost column."""

    frozen = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :, 0].mean(2)[:, :, None, None]


def test_with_a_mirrored_cache_items_are_mirrored_half_the_time(make_dataset):
    ds = _dataset(make_dataset, n=40)
    plain = feature_cache_path(ds.npz_path, ds.img_dir, "col", 32)
    mirrored = feature_cache_path(ds.npz_path, ds.img_dir, "col", 32, mirrored=True)
    build_feature_cache(ds, ColumnBackbone(), plain, progress=False)
    build_feature_cache(MirroredCrops(ds), ColumnBackbone(), mirrored, progress=False)
    attach_feature_cache(ds, plain, 3, fingerprint=file_fingerprint(ds.npz_path), mirrored_path=mirrored)
    ds = pickle.loads(pickle.dumps(ds))  # as a DataLoader worker gets it
    flips = []
    for i in range(len(ds)):
        item = ds[i]
        flip = bool(item["is_flipped"])
        flips.append(flip)
        # the features are those of the crop the labels describe
        want = MirroredCrops(ds)[i] if flip else ds.item(i, AugmentParams())
        torch.testing.assert_close(item["keypoints"], want["keypoints"])
        torch.testing.assert_close(item["pose"], want["pose"])
        np.testing.assert_allclose(
            item["features"].numpy(), ColumnBackbone()(want["img"][None]).flatten().numpy(), atol=2e-3
        )
    assert 10 <= sum(flips) <= 30  # flip_prob 0.5
    assert flips == [bool(ds[i]["is_flipped"]) for i in range(len(ds))]  # drawn per seed, epoch, index
    ds.set_epoch(1)
    assert flips != [bool(ds[i]["is_flipped"]) for i in range(len(ds))]


def test_a_mirrored_cache_of_other_data_is_refused(make_dataset):
    ds = _dataset(make_dataset)
    plain = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32)
    mirrored = feature_cache_path(ds.npz_path, ds.img_dir, "stats", 32, mirrored=True)
    build_feature_cache(ds, StatsBackbone(), plain, progress=False, fingerprint="a")
    build_feature_cache(MirroredCrops(ds), StatsBackbone(), mirrored, progress=False, fingerprint="b")
    with pytest.raises(ValueError, match=r"mirrored\.npy: feature cache made from another version"):
        attach_feature_cache(ds, plain, 6, fingerprint="a", mirrored_path=mirrored)
    augmenting = _dataset(make_dataset, augment=True)
    with pytest.raises(ValueError, match=r"mirrored\.npy: mirrored crops replace the augmentation"):
        attach_feature_cache(augmenting, plain, 6, fingerprint="a", mirrored_path=mirrored)


def test_mirrored_items_keep_their_rows_through_a_mix_and_workers(make_dataset):
    """As training reads them: two mirrored-cache datasets in a :class:`MixedDataset`, loaded by two
    persistent workers over two epochs; every item's features are the frozen part on the crop it
    carries (its ``img``, mirrored or not), and the epochs mirror different items."""
    from torch.utils.data import DataLoader

    from dsrbody.data import MixedDataset
    from dsrbody.data.spin_npz import collate_samples

    sets = []
    for name in ("a", "b"):
        ds = _dataset(make_dataset, n=12, name=name)
        plain = feature_cache_path(ds.npz_path, ds.img_dir, "col", 32)
        mirrored = feature_cache_path(ds.npz_path, ds.img_dir, "col", 32, mirrored=True)
        if not mirrored.is_file():
            build_feature_cache(ds, ColumnBackbone(), plain, progress=False)
            build_feature_cache(MirroredCrops(ds), ColumnBackbone(), mirrored, progress=False)
        attach_feature_cache(ds, plain, 3, mirrored_path=mirrored)
        sets.append(ds)
    mix = MixedDataset(sets, [0.5, 0.5], seed=1)
    loader = DataLoader(mix, batch_size=4, num_workers=2, persistent_workers=True, collate_fn=collate_samples)
    epochs = []
    for epoch in range(2):
        mix.set_epoch(epoch)
        flipped = []
        for batch in loader:
            want = ColumnBackbone()(batch["img"]).flatten(1)
            torch.testing.assert_close(batch["features"], want, atol=2e-3, rtol=0)
            flipped += batch["is_flipped"].tolist()
        assert 0 < sum(flipped) < len(flipped)
        epochs.append(flipped)
    assert epochs[0] != epochs[1]
