"""The synthetic generator: format, geometry of the annotations, determinism, workers, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsrbody.data.synth import SynthConfig, generate
from dsrbody.data.synth import generator as gen
from dsrbody.semantics.labels import CIHP
from dsrbody.semantics.parsing import read_parsing

N = 16


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, anny_body):  # anny_body: the cache is built once per session
    out = tmp_path_factory.mktemp("synth_a")
    generate(SynthConfig(num=N, seed=3, split="train"), out, workers=1, progress=False)
    return out


def test_format_loads_with_numpy_and_spin_reader(dataset):
    data = np.load(dataset / "synth_train.npz")
    for key, shape in [
        ("imgname", (N,)),
        ("center", (N, 2)),
        ("scale", (N,)),
        ("part", (N, 24, 3)),
        ("openpose", (N, 25, 3)),
        ("S", (N, 24, 4)),
        ("pose", (N, 72)),
        ("shape", (N, 6)),
        ("has_smpl", (N,)),
        ("gender", (N,)),
        ("phenotype", (N, 6)),
        ("body_model", (N,)),
    ]:
        assert data[key].shape == shape, key
    assert set(np.unique(data["gender"])) <= {"m", "f"}
    assert (data["body_model"] == "anny").all()
    for name in data["imgname"]:
        assert (dataset / name).is_file()
        assert (dataset / "grph_sequences" / name.replace(".jpg", ".png")).is_file()
    card = (dataset / "README.md").read_text()
    assert "synthetic" in card and "| train | 16 | 3 |" in card

    from dsrbody.data.spin_npz import SpinNpzDataset

    ds = SpinNpzDataset(dataset / "synth_train.npz", dataset, augment=False)
    item = ds[0]
    assert item["img"].shape == (3, 224, 224) and bool(item["valid"]) and bool(item["has_parsing"])


def test_keypoints_are_projections_of_3d_joints(dataset):
    data = np.load(dataset / "synth_train.npz")
    S, part = data["S"], data["part"]
    f, pp = data["focal_length"], data["principal_point"]
    have = S[..., 3] > 0
    z = np.where(have, S[..., 2], 1.0)
    uv = S[..., :2] / z[..., None] * f[:, None, None] + pp[:, None, :]
    assert have.sum() > N * 10
    np.testing.assert_allclose(part[..., :2][have], uv[have], atol=1e-2)
    # visible keypoints lie in the image and on the person (or within 2 px of it)
    vis = part[..., 2] > 0
    assert vis.sum() > N * 8
    for i in range(N):
        lab = read_parsing(dataset / "grph_sequences" / data["imgname"][i].replace(".jpg", ".png"))
        from scipy.ndimage import binary_dilation

        person = binary_dilation(lab > 0, iterations=2)
        pts = part[i][vis[i]][:, :2].astype(int)
        assert person[pts[:, 1], pts[:, 0]].mean() > 0.9


def test_parsing_maps_have_no_skin_where_garments_cover(dataset):
    data = np.load(dataset / "synth_train.npz")
    legs = {CIHP.index("leftLeg"), CIHP.index("rightLeg")}
    checked = 0
    for i in range(N):
        kinds = {g["kind"] for g in json.loads(str(data["outfit"][i]))}
        lab = read_parsing(dataset / "grph_sequences" / data["imgname"][i].replace(".jpg", ".png"))
        present = set(np.unique(lab).tolist())
        assert present <= set(range(20))
        assert (lab > 0).sum() > 500  # a person, not a speck
        if "trousers" in kinds and "shoes" in kinds and not {"dress", "skirt", "shorts"} & kinds:
            full = [g for g in json.loads(str(data["outfit"][i])) if g["kind"] == "trousers"]
            if full and full[0].get("length", 1.0) >= 0.95:
                # full-length trousers with shoes: leg skin shows at most at the ankles (the gap
                # between hem and shoe), i.e. in the lowest fifth of the person
                leg = np.isin(lab, list(legs))
                rows = np.nonzero((lab > 0).any(1))[0]
                low = rows[0] + 0.8 * (rows[-1] - rows[0])
                assert leg.sum() <= 0.03 * (lab > 0).sum(), (i, kinds)
                assert (np.nonzero(leg)[0] >= low).all(), (i, kinds)
                checked += 1
    assert checked >= 1  # the seed gives at least one full-trousers sample
    skin = {CIHP.index("face"), CIHP.index("leftArm"), CIHP.index("rightArm")}
    # every image shows some skin (face or arms) and some garment
    assert all(
        set(np.unique(read_parsing(dataset / "grph_sequences" / n.replace(".jpg", ".png")))) & skin
        for n in data["imgname"]
    )


def test_same_seed_same_bytes_and_workers_do_not_matter(dataset, tmp_path):
    generate(SynthConfig(num=N, seed=3, split="train"), tmp_path, workers=2, progress=False)
    a, b = _files(dataset), _files(tmp_path)
    a.pop("README.md"), b.pop("README.md")
    a.pop("synth_train.json"), b.pop("synth_train.json")
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)


def test_test_split_differs_from_train(dataset, tmp_path):
    generate(SynthConfig(num=8, seed=3, split="test"), tmp_path, workers=1, progress=False)
    tr = np.load(dataset / "synth_train.npz")["pose"][:8]
    te = np.load(tmp_path / "synth_test.npz")["pose"]
    assert not np.allclose(tr, te)


def test_resume_after_interruption(dataset, tmp_path, monkeypatch):
    cfg = SynthConfig(num=N, seed=3, split="train")
    real = gen._make_chunk
    calls = {"n": 0}

    def dying(job):
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(job)

    monkeypatch.setattr(gen, "_make_chunk", dying)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg, tmp_path, workers=1, progress=False)
    monkeypatch.setattr(gen, "_make_chunk", real)
    assert not (tmp_path / "synth_train.npz").exists()
    with pytest.raises(ValueError, match="--resume"):
        generate(cfg, tmp_path, workers=1, progress=False)
    generate(cfg, tmp_path, workers=1, resume=True, progress=False)
    a, b = _files(dataset), _files(tmp_path)
    for k in ("README.md", "synth_train.json"):
        a.pop(k), b.pop(k)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_bad_input(tmp_path, dataset):
    with pytest.raises(ValueError, match="--num"):
        generate(SynthConfig(num=0), tmp_path / "x", progress=False)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate(SynthConfig(num=2), tmp_path / "user", progress=False)
    with pytest.raises(ValueError, match="did not write"):
        generate(SynthConfig(num=2), tmp_path / "user", overwrite=True, progress=False)
    # another configuration in the same folder
    with pytest.raises(ValueError, match="another configuration.*seed"):
        generate(SynthConfig(num=N, seed=4, split="train"), dataset, progress=False)


def test_subjects_and_withheld_labels():
    """``subjects=K``: every body is one of K fixed by the seed (the same for any split); ``labels``:
    "3d" drops the parameters, "2d" also the 3D joints; the images, 2D keypoints and parsing stay."""
    full = gen.SampleMaker(SynthConfig(num=6, seed=3, res=48, subjects=2))
    shapes = {tuple(np.round(full.make(i)[2]["shape"], 6)) for i in range(6)}
    assert len(shapes) == 2
    other_split = gen.SampleMaker(SynthConfig(num=6, seed=3, res=48, subjects=2, split="test"))
    assert {tuple(np.round(other_split.make(i)[2]["shape"], 6)) for i in range(6)} == shapes
    assert (
        len(
            {tuple(np.round(full.make(i)[2]["shape"], 6)) for i in range(6)}
            | {
                tuple(
                    np.round(
                        gen.SampleMaker(SynthConfig(num=1, seed=4, res=48, subjects=2)).make(0)[2]["shape"], 6
                    )
                )
            }
        )
        == 3
    )  # another seed, other subjects
    rgb, lab, ann = full.make(1)
    for labels in ("3d", "2d"):
        rgb2, lab2, a = gen.SampleMaker(SynthConfig(num=6, seed=3, res=48, subjects=2, labels=labels)).make(1)
        assert np.array_equal(rgb, rgb2) and np.array_equal(lab, lab2)
        assert np.array_equal(a["part"], ann["part"]) and np.array_equal(a["openpose"], ann["openpose"])
        assert a["has_params"] == 0 and not a["pose"].any() and not a["shape"].any()
        assert np.array_equal(a["S"], ann["S"]) if labels == "3d" else not a["S"].any()
    with pytest.raises(ValueError, match="--labels must be one of"):
        SynthConfig(num=1, labels="3D").validate()
    with pytest.raises(ValueError, match="--subjects must be >= 0"):
        SynthConfig(num=1, subjects=-1).validate()
    assert "subjects" not in SynthConfig(num=1).to_json()  # splits made before the option still resume
