"""BodyFitter: keypoint fitting converges, DSR terms take part when a parsing map exists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsrbody.fit import BodyFitter, FitConfig, mean_regressor, parse_losses
from dsrbody.geometry.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def mean_reg(anny_body):
    return mean_regressor(anny_body)


def _target(reg, B=1):
    """Keypoints of a known body: the mean body with bent knees and a raised arm, moved in the crop."""
    start = BodyFitter(reg, FitConfig(losses=("kp",))).start_from_mean(B)
    rot = start["rotmat"].clone()
    names = list(reg.body_model.joint_names)
    for name, aa in (
        ("lowerleg01.L", (0.7, 0, 0)),
        ("lowerleg01.R", (0.4, 0, 0)),
        ("upperarm01.L", (0, 0, 0.8)),
    ):
        rot[:, names.index(name)] = rot[:, names.index(name)] @ axis_angle_to_matrix(torch.tensor(aa))
    cam = start["cam"] + torch.tensor([0.05, 0.05, -0.03])
    with torch.no_grad():
        pred = reg.pose_body(rot, reg.shape_from_raw(start["shape_raw"]), cam)
    kp = torch.cat(
        [pred["keypoints_2d"], reg.body_model.keypoint_confidence[None, :, None].expand(B, -1, 1)], -1
    )
    return kp


def test_parse_losses():
    assert parse_losses("kp, mc,c") == ("kp", "mc", "c")
    with pytest.raises(ValueError, match="unknown term"):
        parse_losses("kp,foo")


def test_keypoint_fit_lowers_the_keypoint_loss(mean_reg):
    kp = _target(mean_reg)
    fitter = BodyFitter(mean_reg, FitConfig(losses=("kp",), iters=25, lr=0.02))
    res = fitter.fit(kp)
    k0, k1 = float(res.terms_start["keypoints"][0]), float(res.terms_end["keypoints"][0])
    assert k1 < 0.3 * k0, (k0, k1)
    assert res.history[-1] < res.history[0]
    assert res.rotmat.shape == (1, 24, 3, 3) and res.shape.shape == (1, 6)
    # the bounded shape stays inside Anny's box
    assert bool(((res.shape >= mean_reg.shape_lo) & (res.shape <= mean_reg.shape_hi)).all())


def test_a_nan_keypoint_counts_as_absent(mean_reg):
    """A NaN keypoint is masked before the loss (0 * NaN would still be NaN in the gradients): the
    sample is fitted from its other keypoints, as if that one had confidence 0."""
    kp = _target(mean_reg, B=2)
    absent = kp.clone()
    absent[0, 3] = 0.0
    nan = kp.clone()
    nan[0, 3, 0] = float("nan")
    cfg = FitConfig(losses=("kp",), iters=6, lr=0.02)
    ref, res = BodyFitter(mean_reg, cfg).fit(absent), BodyFitter(mean_reg, cfg).fit(nan)
    assert torch.isfinite(res.rotmat).all() and torch.isfinite(res.cam).all()
    assert float(res.terms_end["keypoints"][0]) < float(res.terms_start["keypoints"][0])
    torch.testing.assert_close(res.rotmat, ref.rotmat)
    torch.testing.assert_close(res.cam, ref.cam)


def test_dsr_terms_active_with_a_parsing_map(mean_reg, anny_body, synth_dir):
    from dsrbody.data import SpinNpzDataset, collate_samples
    from dsrbody.garments import default_prior
    from dsrbody.losses import DSRTargets

    ds = SpinNpzDataset(synth_dir / "synth_test.npz", synth_dir, parsing=True)
    batch = collate_samples([ds[0], ds[1]])
    assert bool(batch["has_parsing"].all())
    has = batch["has_parsing"].clone()
    has[1] = False  # the second sample has no parsing map: no DSR term for it
    targets = DSRTargets.from_parsing(batch["parsing"].long(), has_parsing=has)
    fitter = BodyFitter(
        mean_reg, FitConfig(losses=("mc", "c"), iters=2, lr=0.05), prior=default_prior(anny_body)
    )
    res = fitter.fit(batch["keypoints"], targets)
    for term in ("dsr_mc", "dsr_c"):
        v = res.terms_start[term]
        assert torch.isfinite(v[0]) and float(v[0]) > 0, term
        assert torch.isnan(v[1]), term
    start = fitter.start_from_mean(2)
    # the DSR gradient moved the first sample; the second (no data term) only moved by its priors
    assert float((res.rotmat[0] - start["rotmat"][0]).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="clothing prior"):
        BodyFitter(mean_reg, FitConfig(losses=("kp", "mc")))


@pytest.mark.parametrize("clean", [True, False])
def test_fit_dataset_fits_to_the_training_targets(
    mean_reg, anny_body, synth_dir, tmp_path, monkeypatch, clean
):
    """fit_dataset gives the fitter the DSR targets training builds (dsrbody.losses.targets.dsr_targets):
    the crops' parsing maps at the regressor's crop size, cleaned around the keypoints unless told not
    to, with the distance maps of the "distance" form."""
    from dsrbody.data import SpinNpzDataset, collate_samples
    from dsrbody.fit.dataset import fit_dataset
    from dsrbody.garments import default_prior
    from dsrbody.losses.targets import dsr_targets

    seen = []
    real_fit = BodyFitter.fit

    def fit(self, keypoints, targets=None, start=None):
        seen.append((keypoints, targets))
        return real_fit(self, keypoints, targets, start)

    monkeypatch.setattr(BodyFitter, "fit", fit)
    # only the neck and head top are confident: cleaning clears the body below the box around them
    data = dict(np.load(synth_dir / "synth_test.npz"))
    data["part"][..., 2] = 0.0
    data["part"][:, 12:14, 2] = 1.0
    if "openpose" in data:
        data["openpose"][..., 2] = 0.0
    npz, res = tmp_path / "head_only.npz", int(mean_reg.img_res)
    np.savez(npz, **data)
    cfg = FitConfig(losses=("kp", "mc"), iters=0, mc_form="distance")
    prior = default_prior(anny_body)
    fit_dataset(
        mean_reg, npz, synth_dir, tmp_path / "fit", cfg, prior=prior, start="mean", batch_size=8,
        clean_parsing=clean, progress=False,
    )  # fmt: skip
    ds = SpinNpzDataset(npz, synth_dir, augment=False, parsing=True, res=res)
    batch = collate_samples([ds[i] for i in range(len(ds))])
    ref = dsr_targets(batch, res, clean=clean, with_distance=True)
    other = dsr_targets(batch, res, clean=not clean, with_distance=True)
    assert not torch.equal(ref.merged, other.merged)  # the test tells cleaning from not cleaning
    ((kp, targets),) = seen
    torch.testing.assert_close(kp, batch["keypoints"].float())
    for key in ("mc_present", "mc_mask", "merged", "class_weights", "distance", "has_parsing"):
        assert torch.equal(getattr(targets, key), getattr(ref, key)), key


def test_flip_start_finds_a_body_seen_from_behind(mean_reg):
    """The mean body faces the camera; a target turned round (seen from behind) matches the 2D keypoints
    only with the limbs crossed from that start. ``flip_start`` also fits from the turned start and
    keeps, per sample, the fit with the lower objective, so the turned sample is found and the facing
    one keeps its own fit."""
    from dsrbody.fit.fitter import TURN_AROUND

    reg = mean_reg
    fitter = BodyFitter(reg, FitConfig(losses=("kp",), iters=60, lr=0.03))
    start = fitter.start_from_mean(2)
    rot = start["rotmat"].clone()
    rot[1, 0] = TURN_AROUND @ rot[1, 0]  # sample 1: the mean body turned round
    with torch.no_grad():
        pred = reg.pose_body(rot, reg.shape_from_raw(start["shape_raw"]), start["cam"])
    conf = reg.body_model.keypoint_confidence[None, :, None].expand(2, -1, 1)
    kp = torch.cat([pred["keypoints_2d"], conf], -1)

    def facing(result) -> torch.Tensor:  # cosine between fitted and true forward axes
        return (result.rotmat[:, 0, :, 2] * rot[:, 0, :, 2]).sum(-1)

    one = fitter.fit(kp)
    both = BodyFitter(reg, FitConfig(losses=("kp",), iters=60, lr=0.03, flip_start=True)).fit(kp)
    assert facing(both)[1] > 0.9 and facing(both)[0] > 0.9
    assert float(both.terms_end["keypoints"][1]) < float(one.terms_end["keypoints"][1])
    assert torch.allclose(both.rotmat[0], one.rotmat[0])  # the facing sample keeps the first fit
    assert len(both.history) == len(one.history)


def test_snapshots_follow_the_kept_start_and_end_at_the_result(mean_reg):
    """``record_every`` keeps the states at iterations 0, N, 2N, ..., last; with ``flip_start`` each
    sample's snapshots come from the start its result came from, and the last one is the result."""
    from dsrbody.fit.fitter import TURN_AROUND

    reg = mean_reg
    fitter = BodyFitter(reg, FitConfig(losses=("kp",), iters=25, lr=0.03, flip_start=True, record_every=10))
    start = fitter.start_from_mean(2)
    rot = start["rotmat"].clone()
    rot[1, 0] = TURN_AROUND @ rot[1, 0]
    with torch.no_grad():
        pred = reg.pose_body(rot, reg.shape_from_raw(start["shape_raw"]), start["cam"])
    kp = torch.cat(
        [pred["keypoints_2d"], reg.body_model.keypoint_confidence[None, :, None].expand(2, -1, 1)], -1
    )
    r = fitter.fit(kp)
    assert [it for it, *_ in r.snapshots] == [0, 10, 20, 25]
    it0, rot0, _, obj0 = r.snapshots[0]
    torch.testing.assert_close(rot0[0], start["rotmat"][0], atol=1e-5, rtol=0)  # sample 0: as it started
    torch.testing.assert_close(rot0[1, 0], TURN_AROUND @ start["rotmat"][1, 0], atol=1e-5, rtol=0)
    _, rot_end, shape_end, obj_end = r.snapshots[-1]
    torch.testing.assert_close(rot_end, r.rotmat, atol=1e-5, rtol=0)
    torch.testing.assert_close(shape_end, r.shape)
    assert (obj0 < 1e-6).all()  # both kept branches started on their target: objective 0
    assert torch.isfinite(obj_end).all()


def test_pose_gmm_term_pulls_towards_the_mixture(mean_reg):
    """With only the pose prior (no data term), a fit from a bent pose moves towards the GMM's mode."""
    import roma

    from dsrbody.fit import FitWeights
    from dsrbody.fit.priors import PoseGMM

    J = mean_reg.body_model.num_joints
    mode = 0.3 * torch.ones(3 * (J - 1))
    gmm = PoseGMM(mode[None], torch.eye(3 * (J - 1))[None] * 10, torch.ones(1))
    w = FitWeights(keypoints=0.0, pose_prior=0.0, joint_limits=0.0, shape_prior=0.0, camera=0.0, pose_gmm=1.0)
    fitter = BodyFitter(mean_reg, FitConfig(losses=("kp",), iters=60, lr=0.02, weights=w), pose_gmm=gmm)
    kp = torch.zeros(1, mean_reg.body_model.keypoint_confidence.numel(), 3)
    r = fitter.fit(kp)
    end = roma.rotmat_to_rotvec(r.rotmat[0, 1:]).reshape(-1)
    start = roma.rotmat_to_rotvec(fitter.start_from_mean(1)["rotmat"][0, 1:]).reshape(-1)
    assert (end - mode).norm() < 0.5 * (start - mode).norm()
    assert r.terms_end["pose_gmm"] < r.terms_start["pose_gmm"]


def test_raw_from_shape_inverts_shape_from_raw(mean_reg):
    raw = torch.randn(4, mean_reg.body_model.shape_dim)
    torch.testing.assert_close(
        mean_reg.raw_from_shape(mean_reg.shape_from_raw(raw)), raw, atol=1e-4, rtol=1e-4
    )


def test_fit_dataset_continues_an_earlier_fit_and_keeps_per_sample_metrics(mean_reg, synth_dir, tmp_path):
    """``start=fits.npz`` starts every row where the earlier fit ended (the first snapshot's metrics are
    the earlier fit's); fit_per_sample.npz holds the per-sample metrics, volume ratios and curves."""
    from dsrbody.fit.dataset import fit_dataset

    cfg = FitConfig(losses=("kp",), iters=6, lr=0.02, record_every=3)
    one = fit_dataset(mean_reg, synth_dir / "synth_test.npz", synth_dir, tmp_path / "one", cfg,
                      start="mean", batch_size=2, limit=3, progress=False)  # fmt: skip
    two = fit_dataset(mean_reg, synth_dir / "synth_test.npz", synth_dir, tmp_path / "two", cfg,
                      start=tmp_path / "one" / "fits.npz", batch_size=2, limit=3, progress=False)  # fmt: skip
    a = np.load(tmp_path / "one" / "fit_per_sample.npz")
    b = np.load(tmp_path / "two" / "fit_per_sample.npz")
    assert list(a["sample_index"]) == [0, 1, 2] and list(a["curve_iters"]) == [0, 3, 6]
    assert a["curve_pa_mpjpe"].shape == (3, 3) and a["curve_objective"].shape == (3, 3)
    np.testing.assert_allclose(a["curve_pa_mpjpe"][-1], a["fit_pa_mpjpe"], atol=0.05)
    np.testing.assert_allclose(b["start_pa_mpjpe"], a["fit_pa_mpjpe"], atol=0.05)
    np.testing.assert_allclose(b["curve_pa_mpjpe"][0], a["fit_pa_mpjpe"], atol=0.05)
    assert np.isfinite(a["volume_ratio"]).all() and (a["volume_ratio"] > 0).all()
    assert two["metrics_start"]["pa_mpjpe"] == pytest.approx(one["metrics_fit"]["pa_mpjpe"], abs=0.05)
    with pytest.raises(ValueError, match="not a dsrbody fits file"):
        fit_dataset(mean_reg, synth_dir / "synth_test.npz", synth_dir, tmp_path / "x", cfg,
                    start=synth_dir / "synth_test.npz", progress=False)  # fmt: skip
    cut = tmp_path / "cut.npz"
    cut.write_bytes((tmp_path / "one" / "fits.npz").read_bytes()[:3000])
    with pytest.raises(ValueError, match=r"cut\.npz: not a dsrbody fits file"):
        fit_dataset(mean_reg, synth_dir / "synth_test.npz", synth_dir, tmp_path / "x", cfg,
                    start=cut, progress=False)  # fmt: skip
    assert not list((tmp_path / "one").glob("*.part.npz"))  # the per-sample file was moved into place
