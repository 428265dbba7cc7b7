"""Synthetic data streamed on the fly: same items as the generated files, deterministic, robust."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from dsrbody.data import MixedDataset, SpinNpzDataset, collate_samples
from dsrbody.data.synth import SampleMaker, SynthConfig, generate
from dsrbody.data.synth.stream import SynthStreamDataset

CFG = SynthConfig(num=4, seed=5, res=64)
CROP = 64  # crop side (the model's img_res; 224 in training)
PATH_KEYS = ("img_path", "parsing_path")  # the stream names no file


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_stream")
    generate(SynthConfig(**CFG.to_json()), out, workers=1, progress=False)
    return out


def _same(a, b, key: str) -> None:
    assert type(a) is type(b), key
    if torch.is_tensor(a):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), key
    elif isinstance(a, list):
        assert len(a) == len(b), key
        for x, y in zip(a, b):
            _same(x, y, key)
    else:
        assert a == b, key


@pytest.mark.parametrize("augment", [False, True])
def test_items_equal_those_read_from_the_generated_files(files, augment):
    from_files = SpinNpzDataset(files / "synth_train.npz", files, augment=augment, seed=7, res=CROP)
    stream = SynthStreamDataset(CFG, augment=augment, seed=7, res=CROP)
    assert len(stream) == len(from_files) == CFG.num
    for ds in (from_files, stream):
        ds.set_epoch(4)  # seed 7, epoch 4: flips, rotations and both at once among the 4 samples
    flips, rots = set(), set()
    for i in range(CFG.num):
        a, b = from_files[i], stream[i]
        assert list(a) == list(b)  # same keys, same order
        for k in a:
            if k == "img":
                assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape == (3, CROP, CROP)
                assert (a[k] - b[k]).abs().mean() < 0.12, "more than the JPEG error of the files"
            elif k not in PATH_KEYS:
                _same(a[k], b[k], k)
        assert bool(b["valid"]) and bool(b["has_parsing"]) and b["parsing_status"] == "ok"
        assert b["img_path"] == f"synth:train:seed5/images/train_{i:06d}.jpg"
        flips.add(bool(b["is_flipped"]))
        rots.add(float(b["rot_angle"]) != 0)
    if augment:
        assert flips == rots == {False, True}
    assert stream.skipped.count() == 0


def _batches(ds, num_workers: int) -> list[dict]:
    loader = DataLoader(ds, batch_size=2, num_workers=num_workers, collate_fn=collate_samples)
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == 2:
            break
    return out


def test_same_batches_with_and_without_workers():
    ds = SynthStreamDataset(CFG, augment=True, seed=1, res=CROP)
    ds.set_epoch(2)
    with_workers = _batches(ds, num_workers=2)
    assert ds._maker is None  # each worker built its own generator, on first use
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        without = _batches(ds, num_workers=0)
        assert torch.get_num_threads() == 2  # generation ran single-threaded, the caller's count is back
    finally:
        torch.set_num_threads(threads)
    assert ds._maker is not None and pickle.loads(pickle.dumps(ds))._maker is None
    assert len(with_workers) == len(without) == 2
    for a, b in zip(with_workers, without):
        assert list(a) == list(b) and a["num_valid"] == 2
        for k in a:
            _same(a[k], b[k], k)
    ds.set_epoch(3)  # another epoch, other augmentation draws of the same samples
    other = _batches(ds, num_workers=0)[0]
    assert torch.equal(other["betas"], without[0]["betas"])
    assert not torch.equal(other["img"], without[0]["img"])


def test_generation_error_skips_and_counts_the_sample(monkeypatch):
    make = SampleMaker.make

    def failing(self, index):
        if index == 1:
            raise RuntimeError("no body today")
        return make(self, index)

    monkeypatch.setattr(SampleMaker, "make", failing)
    ds = SynthStreamDataset(CFG, augment=True, res=CROP)
    with pytest.warns(RuntimeWarning, match=r"generating sample 1 failed \(RuntimeError: no body today\)"):
        batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_samples)))
    assert batch["num_valid"] == 2 and batch["sample_index"].tolist() == [0, 2]
    assert batch["img"].shape == (2, 3, CROP, CROP) and batch["valid"].all()
    assert [(s["sample_index"], s["reason"], s["dataset_name"]) for s in batch["skipped"]] == [
        (1, "generation_failed", "synth_train")
    ]
    assert ds.skipped.count("generation_failed") == 1 and ds.skipped.dropped == 1
    ds.skipped.update(batch)  # what DataHealth does with batches from workers: no double count
    assert ds.skipped.dropped == 1
    assert "1 x failed generation" in ds.summary()


def test_recipe_names_a_streamed_split(tmp_path):
    from dsrbody.train.build import build_dataset, build_eval_set, build_train_set
    from dsrbody.train.config import ConfigError, load_config

    recipe = tmp_path / "stream.yaml"
    recipe.write_text(
        "seed: 4\n"
        "model: {img_res: 96}\n"
        "data:\n"
        "  train:\n"
        "    - synth: {num: 100, seed: 2, hard: true, res: 96}\n"
        "      ratio: 0.5\n"
        "    - synth: {num: 50, seed: 3}\n"
        "      name: easy\n"
        "      ratio: 0.5\n"
        "  val:\n"
        "    - synth: {num: 8, split: val}\n"
    )
    cfg = load_config(recipe)
    ds = build_dataset(cfg.data.train[0], cfg, augment=True)
    assert isinstance(ds, SynthStreamDataset) and len(ds) == 100 and ds.name == "synth_train"
    assert ds.cfg == SynthConfig(num=100, seed=2, hard=True, res=96)
    assert ds.augment and ds.seed == 4 and ds.res == 96 and ds.parsing
    mix = build_train_set(cfg)
    assert isinstance(mix, MixedDataset) and [d.name for d in mix.datasets] == ["synth_train", "easy"]
    assert all(d.skipped is mix.skipped for d in mix.datasets)  # one log for DataHealth
    val = build_eval_set(cfg).datasets[0]
    assert isinstance(val, SynthStreamDataset) and val.cfg.split == "val" and not val.augment

    with pytest.raises(ConfigError, match=r"data\.train\.0: give exactly one of 'npz'.*got both"):
        load_config(recipe, ["data.train.0.npz=a.npz", "data.train.0.img_dir=."])
    with pytest.raises(ConfigError, match=r"data\.train\.1: give exactly one of 'npz'.*got neither"):
        load_config(recipe, ["data.train.1.synth=null"])
    with pytest.raises(ConfigError, match=r"data\.val\.0: synth: --split must be one of"):
        load_config(recipe, ["data.val.0.synth.split=dev"])
    with pytest.raises(ConfigError, match=r"without a value: data\.train\[0\]\.synth\.num"):
        load_config(recipe, ["data.train.0.synth.num=???"])
    # an entry switched from files to a stream by overrides
    recipe.write_text("data:\n  train:\n    - npz: a.npz\n      img_dir: .\n")
    cfg = load_config(
        recipe, ["data.train.0.npz=null", "data.train.0.img_dir=null", "data.train.0.synth={num: 7}"]
    )
    assert build_dataset(cfg.data.train[0], cfg, augment=False).cfg == SynthConfig(num=7)
