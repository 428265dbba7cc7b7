"""Mixed datasets: per-sample ratios, epoch length, determinism; concatenation for evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import Dataset

from dsrbody.data.mixed import DSR_MIX, DSR_MIX_WITH_3DPW, EvalConcatDataset, MixedDataset
from dsrbody.data.spin_npz import SkipLog, SpinNpzDataset


class Named(Dataset):
    """A dataset of ``(name, index)`` pairs."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n
        self.epochs: list[int] = []
        self.skipped = SkipLog()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.name, i

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def _members():
    return [Named("h36m", 5000), Named("coco", 300), Named("mpi-inf-3dhp", 70)]


def test_ratios_over_many_draws():
    mix = MixedDataset(_members(), DSR_MIX, seed=0)
    assert len(mix) == 5000  # the largest dataset
    names = [mix[i][0] for i in range(len(mix))]
    for name, target in DSR_MIX.items():
        assert abs(names.count(name) / len(names) - target) < 0.02, name
    # the sample of dataset k for item i is i mod len(k), always a valid index
    for i in (0, 123, 4999):
        k, j = mix.locate(i)
        assert j == i % len(mix.datasets[k])


def test_list_ratios_are_normalised_and_length_override():
    mix = MixedDataset([Named("a", 10), Named("b", 20)], [1.0, 3.0], length=4000, seed=5)
    np.testing.assert_allclose(mix.ratios, [0.25, 0.75])
    frac_a = np.mean([mix.locate(i)[0] == 0 for i in range(len(mix))])
    assert abs(frac_a - 0.25) < 0.03


def test_zero_ratio_dataset_is_never_drawn():
    mix = MixedDataset([Named("a", 10), Named("b", 10)], [1.0, 0.0])
    assert all(mix.locate(i)[0] == 0 for i in range(len(mix)))


def test_deterministic_per_seed_and_epoch():
    a = MixedDataset(_members(), DSR_MIX, seed=7)
    b = MixedDataset(_members(), DSR_MIX, seed=7)
    c = MixedDataset(_members(), DSR_MIX, seed=8)
    draws_a = [a.locate(i) for i in range(300)]
    assert draws_a == [b.locate(i) for i in range(300)]
    assert draws_a != [c.locate(i) for i in range(300)]
    a.set_epoch(1)
    assert draws_a != [a.locate(i) for i in range(300)]
    assert all(d.epochs == [1] for d in a.datasets)  # forwarded to the members' augmentation


def test_bad_ratios():
    with pytest.raises(ValueError, match="no ratio given"):
        MixedDataset([Named("x", 3)], DSR_MIX)
    with pytest.raises(ValueError, match="not among"):
        MixedDataset(_members(), DSR_MIX_WITH_3DPW)
    with pytest.raises(ValueError, match="2 ratios"):
        MixedDataset([Named("a", 3)], [0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        MixedDataset([Named("a", 3), Named("b", 3)], [1.0, -0.5])
    with pytest.raises(ValueError, match="empty"):
        MixedDataset([Named("a", 0)], [1.0])
    with pytest.raises(IndexError):
        MixedDataset([Named("a", 3)], [1.0])[3]


def test_eval_concat_every_sample_once_and_shared_log():
    parts = [Named("a", 3), Named("b", 2)]
    cat = EvalConcatDataset(parts)
    assert [cat[i] for i in range(len(cat))] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    parts[1].skipped.record("b", 1, "image_missing", "/x/b1.jpg")
    assert cat.skipped.dropped == 1 and "b: 1 x missing image" in cat.summary()


def test_mixed_over_real_readers(make_dataset, tmp_path):
    npz, img_dir, arr = make_dataset(n=3)
    (img_dir / arr["imgname"][0]).unlink()
    a = SpinNpzDataset(npz, img_dir, name="h36m", augment=True)
    b = SpinNpzDataset(npz, img_dir, name="coco", augment=True)
    mix = MixedDataset([a, b], {"h36m": 0.5, "coco": 0.5}, seed=2)
    items = [mix[i] for i in range(len(mix))]
    assert {it["dataset_name"] for it in items} <= {"h36m", "coco"}
    assert all(bool(it["valid"]) == (it["sample_index"] != 0) for it in items)
    assert mix.skipped.dropped == sum(1 for it in items if not bool(it["valid"]))
    assert a.skipped is mix.skipped and b.skipped is mix.skipped


def test_the_dataset_choice_does_not_decide_the_augmentation(make_dataset):
    """Item ``i`` of a dataset as long as the epoch is its sample ``i``, which draws its augmentation
    from ``[seed, epoch, i]``; the choice of dataset must not come from that same draw (it made every
    item of a first dataset with ratio <= flip_prob mirrored, and none of the next)."""
    npz, img_dir, _ = make_dataset(n=300)
    sets = [
        SpinNpzDataset(npz, img_dir, name=name, augment=True, parsing=False, res=32, seed=3)
        for name in ("h36m", "coco")
    ]
    mix = MixedDataset(sets, {"h36m": 0.5, "coco": 0.5}, seed=3)
    flips = {"h36m": [], "coco": []}
    for i in range(len(mix)):
        k, j = mix.locate(i)
        assert j == i
        flips[sets[k].name].append(sets[k].augment_params(j).flip)
    for name, f in flips.items():
        assert len(f) > 100 and 0.38 < np.mean(f) < 0.62, (name, np.mean(f))
