"""``dsrbody prior build|show``: files, procedural determinism, scans with bad files, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from dsrbody.cli import main
from dsrbody.semantics.labels import CIHP
from dsrbody.semantics.prior import ClothingPrior


@pytest.fixture(scope="module")
def smpl_model(smpl_dir):
    from dsrbody.body.smpl import SMPL

    return SMPL(smpl_dir)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dsrbody prior: error:"), err
    return err


def test_build_procedural_and_show(tmp_path, smpl_dir, smpl_model, capsys):
    from dsrbody.garments import build_procedural_prior

    out = tmp_path / "prior.npz"
    argv = ["prior", "build", "--procedural", "12", "--model", "smpl", "--model-path", str(smpl_dir)]
    assert main([*argv, "--seed", "3", "--out", str(out)]) == 0
    assert out.is_file()
    prior = ClothingPrior.load(out, expected_topology=smpl_model)
    np.testing.assert_allclose(prior.probs.sum(1).numpy(), 1.0, atol=1e-6)
    # the same prior as the library call with that seed; probabilities are multiples of 1/12
    ref = build_procedural_prior(smpl_model, 12, seed=3)
    np.testing.assert_array_equal(prior.probs.numpy(), ref.probs.numpy())
    np.testing.assert_allclose(prior.probs.numpy() * 12, np.round(prior.probs.numpy() * 12), atol=1e-4)
    with np.load(out) as z:
        assert z["face_centroids"].shape == (prior.num_faces, 3)

    png = tmp_path / "grid.png"
    capsys.readouterr()
    rc = main(
        ["prior", "show", str(out), "--model", "smpl", "--model-path", str(smpl_dir), "--out", str(png)]
    )
    assert rc == 0
    import imageio.v3 as iio

    img = iio.imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    assert img[..., :3].std() > 10  # not a blank picture


def test_build_from_scans_skips_and_lists_bad_files(tmp_path, smpl_dir, smpl_model, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    V = smpl_model.num_vertices
    a = np.full(V, CIHP.index("pants"))
    b = np.full(V, CIHP.index("skirt"))
    np.savez(scans / "a.npz", labels=a)
    np.savez(scans / "b.npz", labels=b)
    (scans / "broken.npz").write_bytes(b"not a zip file")
    out = tmp_path / "scan_prior.npz"
    argv = ["prior", "build", "--from-scans", str(scans), "--model", "smpl", "--model-path", str(smpl_dir)]
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped 1" in err and "broken.npz" in err
    prior = ClothingPrior.load(out, expected_topology=smpl_model)
    np.testing.assert_allclose(prior.probs[:, CIHP.index("pants")].numpy(), 0.5)
    np.testing.assert_allclose(prior.probs[:, CIHP.index("skirt")].numpy(), 0.5)


def test_errors_are_one_line(tmp_path, smpl_dir, capsys):
    smpl = ["--model", "smpl", "--model-path", str(smpl_dir)]
    assert main(["prior", "build", "--from-scans", str(tmp_path / "nope"), *smpl, "--out", "x.npz"]) == 1
    assert "nope" in one_line_error(capsys)
    assert main(["prior", "build", "--procedural", "0", *smpl, "--out", str(tmp_path / "x.npz")]) == 1
    assert "--procedural" in one_line_error(capsys)
    assert main(["prior", "show", str(tmp_path / "missing.npz"), *smpl, "--out", "g.png"]) == 1
    assert "missing.npz" in one_line_error(capsys)
    # a prior for another topology
    other = ClothingPrior(np.full((5, 20), 0.05, dtype=np.float32), "5f-0123456789abcdef", source="test")
    path = tmp_path / "other.npz"
    other.save(path)
    assert main(["prior", "show", str(path), *smpl, "--out", str(tmp_path / "g.png")]) == 1
    err = one_line_error(capsys)
    assert "topology" in err and "other.npz" in err
    assert not (tmp_path / "g.png").exists()


def test_pose_prior_from_data_files(tmp_path, capsys):
    """``dsrbody prior pose``: the rows whose parameters are the model's; the file loads as a PoseGMM."""
    pytest.importorskip("sklearn")
    from dsrbody.fit.priors import PoseGMM

    rng = np.random.default_rng(0)
    n = 200
    pose = np.concatenate([rng.normal(0, 0.1, (n, 3)), rng.normal(0, 0.2, (n, 69))], 1)
    has = np.ones(n, np.float32)
    has[:50] = 0  # rows without parameters are left out
    names = np.array(["anny"] * (n - 10) + ["smpl"] * 10)
    np.savez(tmp_path / "a.npz", pose=pose, has_params=has, body_model=names)
    out = tmp_path / "gmm.npz"
    assert (
        main(["prior", "pose", "--data", str(tmp_path / "a.npz"), "--components", "2", "--out", str(out)])
        == 0
    )
    assert "2 components over 23 joints" in capsys.readouterr().out
    gmm = PoseGMM.load(out)
    assert gmm.body_model == "anny" and gmm.num_joints == 23 and not list(tmp_path.glob("*.part*"))
    # errors: a missing file, a file with no such rows, too few poses
    assert main(["prior", "pose", "--data", str(tmp_path / "nope.npz"), "--out", str(out)]) == 1
    assert "nope.npz: --data file not found" in one_line_error(capsys)
    np.savez(tmp_path / "s.npz", pose=pose[:5], has_params=has[:5])
    assert main(["prior", "pose", "--data", str(tmp_path / "s.npz"), "--out", str(out)]) == 1
    assert "s.npz: no anny poses" in one_line_error(capsys)
    np.savez(tmp_path / "few.npz", pose=pose[60:70], has_params=has[60:70], body_model=names[60:70])
    assert main(["prior", "pose", "--data", str(tmp_path / "few.npz"), "--out", str(out)]) == 1
    assert "10 Anny poses in --data, need >= 80" in one_line_error(capsys)
