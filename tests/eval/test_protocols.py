"""Evaluation protocols on tiny files in the exact formats of 3DPW, Human3.6M P1/P2 and MPI-INF-3DHP."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from protocol_files import (
    TablePredictor,
    random_smpl_params,
    smpl_vertices,
    write_3dpw,
    write_s_file,
)

from dsrbody.body.keypoints import H36M_TO_J17, H36M_TO_LSP14, SMPL24
from dsrbody.eval.protocols import (
    EVAL17_NAMES,
    J24_TO_J14,
    J24_TO_J17,
    IncompatibleBodyModelError,
    SMPLKit,
    auc,
    evaluate,
    find_protocol_file,
    flip_average,
    flip_permutation,
    get_protocol,
    mirror_rotations,
    pck,
    resolve_image_dir,
)
from dsrbody.geometry.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def kit(smpl_dir):
    return SMPLKit(smpl_dir)


def _np_h36m(kit, v: torch.Tensor) -> np.ndarray:
    """H36M joints by plain numpy (independent of the module's einsum)."""
    R = kit.J_regressor_h36m.double().numpy()
    return np.stack([R @ x for x in v.double().numpy()])


def _rotation(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


# ------------------------------------------------------------------------------------------------
# joint tables
# ------------------------------------------------------------------------------------------------


def test_spin_joint_tables_agree():
    """J24_TO_J17 picks, from S, the joints H36M_TO_J17 picks from the 17 H36M joints (SPIN's
    preprocessing puts H36M joint k at row global_idx[k] of S)."""
    from protocol_files import H36M17_TO_S24

    assert [H36M17_TO_S24[k] for k in H36M_TO_J17] == J24_TO_J17
    assert J24_TO_J14 == J24_TO_J17[:14] and J24_TO_J14[13] == 18
    assert EVAL17_NAMES[14] == "Pelvis" and len(EVAL17_NAMES) == 17


# ------------------------------------------------------------------------------------------------
# 3DPW
# ------------------------------------------------------------------------------------------------


def test_3dpw_ground_truth_as_prediction_is_zero_and_gender_switch(kit, tmp_path):
    rng = np.random.default_rng(0)
    arrays = write_3dpw(tmp_path, 6, rng)
    male = smpl_vertices(kit.models["male"], arrays["pose"], arrays["shape"])
    female = smpl_vertices(kit.models["female"], arrays["pose"], arrays["shape"])
    is_f = arrays["gender"] == "f"
    assert (male - female).norm(dim=-1).mean() > 1e-3  # the two models really differ
    gt = torch.where(torch.as_tensor(is_f)[:, None, None], female, male)
    bm = kit.models["neutral"]

    res = evaluate("3dpw", tmp_path / "3dpw_test.npz", tmp_path, TablePredictor(gt, bm), smpl_kit=kit,
                   batch_size=4, progress=False)  # fmt: skip
    assert res.num_evaluated == 6 and not res.skipped
    for m in ("mpjpe", "pa_mpjpe", "pve"):
        assert res.metrics[m] < 1e-3, m
    assert set(res.metrics) == {"mpjpe", "pa_mpjpe", "pve"}

    # the male body for everyone: zero on male samples, the hand-computed error on female ones
    res = evaluate("3dpw", tmp_path / "3dpw_test.npz", tmp_path, TablePredictor(male, bm), smpl_kit=kit,
                   batch_size=4, progress=False)  # fmt: skip
    j_m, j_f = _np_h36m(kit, male), _np_h36m(kit, female)
    pred = j_m[:, H36M_TO_LSP14] - j_m[:, :1]
    gtj = j_f[:, H36M_TO_LSP14] - j_f[:, :1]
    want_mpjpe = 1000 * np.linalg.norm(pred - gtj, axis=-1).mean(-1)
    want_pve = 1000 * np.linalg.norm(male.double().numpy() - female.double().numpy(), axis=-1).mean(-1)
    got = res.per_sample
    assert np.allclose(got["mpjpe"][~is_f], 0, atol=1e-3) and np.allclose(got["pve"][~is_f], 0, atol=1e-3)
    assert np.allclose(got["mpjpe"][is_f], want_mpjpe[is_f], rtol=1e-4, atol=1e-3)
    assert np.allclose(got["pve"][is_f], want_pve[is_f], rtol=1e-4, atol=1e-3)
    assert (got["mpjpe"][is_f] > 1).all()
    assert np.allclose(res.metrics["mpjpe"], want_mpjpe[is_f].sum() / 6, rtol=1e-4)
    assert list(got["gender"]) == [0, 1, 0, 1, 0, 1]


def test_3dpw_with_mmpose_file_and_occlusion_column(kit, tmp_path):
    rng = np.random.default_rng(1)
    arrays = write_3dpw(tmp_path, 4, rng, mmpose=True)
    assert find_protocol_file("3dpw", tmp_path).name == "3dpw_test_with_mmpose.npz"
    gt = torch.stack([
        smpl_vertices(kit.models["male" if g == "m" else "female"], arrays["pose"][i:i + 1],
                      arrays["shape"][i:i + 1])[0]
        for i, g in enumerate(arrays["gender"])
    ])  # fmt: skip
    res = evaluate("3dpw", find_protocol_file("3dpw", tmp_path), tmp_path, TablePredictor(gt), smpl_kit=kit,
                   progress=False)  # fmt: skip
    assert res.metrics["pve"] < 1e-3
    want = (arrays["part"][:, :12, 2] < 0.3).mean(1)  # only the 12 annotated columns count
    assert np.allclose(res.per_sample["occlusion"], want)
    assert np.allclose(res.per_sample["box_px"], arrays["scale"] * 200, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Human3.6M
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol,filename", [("h36m-p1", "h36m_valid_protocol1.npz"),
                                               ("h36m-p2", "h36m_valid_protocol2.npz")])  # fmt: skip
def test_h36m_zero_and_known_rotation_scale(kit, tmp_path, protocol, filename):
    rng = np.random.default_rng(2)
    pose, shape = random_smpl_params(5, rng)
    v = smpl_vertices(kit.models["neutral"], pose, shape)
    write_s_file(tmp_path, filename, _np_h36m(kit, v), rng)
    bm = kit.models["neutral"]
    res = evaluate(protocol, find_protocol_file(protocol, tmp_path), tmp_path, TablePredictor(v, bm),
                   smpl_kit=kit, batch_size=2, progress=False)  # fmt: skip
    assert res.metrics["mpjpe"] < 1e-3 and res.metrics["pa_mpjpe"] < 1e-3
    assert set(res.metrics) == {"mpjpe", "pa_mpjpe"}

    # prediction = s R v + t: PA-MPJPE 0; MPJPE by hand: mean_j |s R x_j - x_j| (x pelvis-relative)
    R, s, t = _rotation([0.3, 1.0, -0.2], 0.4), 1.3, np.array([0.2, -0.1, 3.0])
    v2 = torch.as_tensor(s * v.double().numpy() @ R.T + t, dtype=torch.float32)
    res = evaluate(protocol, tmp_path / filename, tmp_path, TablePredictor(v2, bm), smpl_kit=kit,
                   progress=False)  # fmt: skip
    j = _np_h36m(kit, v)
    x = j[:, H36M_TO_LSP14] - j[:, :1]
    want = 1000 * np.linalg.norm(s * x @ R.T - x, axis=-1).mean(-1)
    assert np.allclose(res.per_sample["mpjpe"], want, rtol=1e-4)
    assert res.metrics["mpjpe"] > 10
    assert res.metrics["pa_mpjpe"] < 1e-2
    assert res.per_joint["mpjpe"].shape == (5, 14)


def test_h36m_uses_S_as_stored_and_notes_an_uncentred_file(kit, tmp_path):
    """The official code does not re-centre S; a file whose pelvis is off the origin gets a note."""
    rng = np.random.default_rng(3)
    pose, shape = random_smpl_params(3, rng)
    v = smpl_vertices(kit.models["neutral"], pose, shape)
    arrays = write_s_file(tmp_path, "h36m_valid_protocol1.npz", _np_h36m(kit, v), rng)
    arrays["S"][:, :, :3] += np.array([0.0, 0.0, 0.1]) * (arrays["S"][:, :, 3:] > 0)
    np.savez(tmp_path / "h36m_valid_protocol1.npz", **arrays)
    res = evaluate("h36m-p1", tmp_path / "h36m_valid_protocol1.npz", tmp_path,
                   TablePredictor(v, kit.models["neutral"]), smpl_kit=kit, progress=False)  # fmt: skip
    assert abs(res.metrics["mpjpe"] - 100.0) < 1e-2  # every joint off by 10 cm
    assert any("not centred" in n for n in res.notes)


# ------------------------------------------------------------------------------------------------
# MPI-INF-3DHP
# ------------------------------------------------------------------------------------------------


def test_pck_auc_hand_values():
    e = np.array([[0.0, 50.0, 149.0, 150.0], [151.0, 300.0, 10.0, np.nan]])
    assert pck(e) == pytest.approx(100 * 5 / 7)  # <= 150 mm; NaN left out
    assert pck(e, 10.0) == pytest.approx(100 * 2 / 7)
    # AUC: mean over 0, 5, ..., 150 of the share within the threshold
    th = np.arange(0, 151, 5)
    vals = np.array([0.0, 50.0, 149.0, 150.0, 151.0, 300.0, 10.0])
    want = np.mean([100 * np.mean(vals <= t) for t in th])
    assert auc(e) == pytest.approx(want)
    assert auc(np.zeros((2, 3))) == pytest.approx(100.0)
    # a single joint at 72 mm: correct at thresholds 75..150 (16 of 31)
    assert auc(np.array([[72.0]])) == pytest.approx(100 * 16 / 31)


def test_mpi_inf_3dhp_17_joints_pck_auc(kit, tmp_path):
    rng = np.random.default_rng(4)
    pose, shape = random_smpl_params(4, rng)
    v = smpl_vertices(kit.models["neutral"], pose, shape)
    j = _np_h36m(kit, v)
    write_s_file(tmp_path, "mpi_inf_3dhp_valid.npz", j, rng)
    bm = kit.models["neutral"]
    res = evaluate("mpi-inf-3dhp", tmp_path / "mpi_inf_3dhp_valid.npz", tmp_path, TablePredictor(v, bm),
                   smpl_kit=kit, progress=False)  # fmt: skip
    assert res.metrics["mpjpe"] < 1e-3 and res.metrics["pa_mpjpe"] < 1e-3
    assert res.metrics["pck150"] == pytest.approx(100.0)
    # every joint within float noise of 0 mm: correct at every threshold from 5 mm (at exactly 0 mm it
    # depends on rounding), i.e. AUC >= 30/31
    assert res.metrics["auc"] >= 100 * 30 / 31 - 1e-9
    assert res.per_joint["mpjpe"].shape == (4, 17) and len(res.joint_names) == 17

    # twice the size about the origin: each joint's error is its distance to the pelvis
    res = evaluate("mpi-inf-3dhp", tmp_path / "mpi_inf_3dhp_valid.npz", tmp_path,
                   TablePredictor(2 * v, bm), smpl_kit=kit, progress=False)  # fmt: skip
    x = j[:, H36M_TO_J17] - j[:, :1]
    d = 1000 * np.linalg.norm(x, axis=-1)  # (4, 17) mm
    assert np.allclose(res.per_joint["mpjpe"], d, rtol=1e-4, atol=1e-3)
    assert res.metrics["mpjpe"] == pytest.approx(d.mean(), rel=1e-4)
    assert res.metrics["pck150"] == pytest.approx(100 * np.mean(d[:, :14] <= 150), abs=1e-6)
    want_auc = np.mean([100 * np.mean(d[:, :14] <= t) for t in np.arange(0, 151, 5)])
    assert res.metrics["auc"] == pytest.approx(want_auc, abs=1e-6)
    assert 0 < res.metrics["pck150"] < 100
    assert res.metrics["pa_mpjpe"] < 1e-2


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_missing_images_are_skipped_counted_listed(kit, tmp_path):
    rng = np.random.default_rng(5)
    pose, shape = random_smpl_params(6, rng)
    v = smpl_vertices(kit.models["neutral"], pose, shape)
    arrays = write_s_file(tmp_path, "h36m_valid_protocol2.npz", _np_h36m(kit, v), rng)
    for i in (1, 4):
        (tmp_path / arrays["imgname"][i]).unlink()
    v_bad = v.clone()
    v_bad[[0, 2, 3, 5]] *= 1.5
    res = evaluate("h36m-p2", tmp_path / "h36m_valid_protocol2.npz", tmp_path,
                   TablePredictor(v_bad, kit.models["neutral"]), smpl_kit=kit, batch_size=4,
                   progress=False)  # fmt: skip
    assert res.num_samples == 6 and res.num_evaluated == 4
    assert [s["sample_index"] for s in res.skipped] == [1, 4]
    assert {s["reason"] for s in res.skipped} == {"image_missing"}
    assert res.skipped[0]["path"].endswith(arrays["imgname"][1])
    assert list(res.per_sample["sample_index"]) == [0, 2, 3, 5]
    assert any("metrics on 4" in n for n in res.notes)
    assert res.to_json()["num_skipped"] == 2 and "4 of 6 samples" in res.format_table()


def test_all_images_missing_is_an_error(kit, tmp_path):
    rng = np.random.default_rng(6)
    pose, shape = random_smpl_params(2, rng)
    v = smpl_vertices(kit.models["neutral"], pose, shape)
    write_s_file(tmp_path, "h36m_valid_protocol1.npz", _np_h36m(kit, v), rng)
    empty = tmp_path / "no_images_here"
    empty.mkdir()
    with pytest.raises(ValueError, match="no sample could be evaluated.*image_missing"):
        evaluate("h36m-p1", tmp_path / "h36m_valid_protocol1.npz", empty, TablePredictor(v), smpl_kit=kit,
                 progress=False)  # fmt: skip


MISSING_KEY_CASES = [
    ("3dpw_test.npz", "gender", "3dpw"),
    ("h36m_valid_protocol1.npz", "S", "h36m-p1"),
    ("mpi_inf_3dhp_valid.npz", "S", "mpi-inf-3dhp"),
]


@pytest.mark.parametrize("filename,key,protocol", MISSING_KEY_CASES)
def test_missing_key_is_named_with_the_file(kit, tmp_path, filename, key, protocol):
    rng = np.random.default_rng(7)
    if protocol == "3dpw":
        arrays = write_3dpw(tmp_path, 2, rng)
    else:
        pose, shape = random_smpl_params(2, rng)
        v = smpl_vertices(kit.models["neutral"], pose, shape)
        arrays = write_s_file(tmp_path, filename, _np_h36m(kit, v), rng)
    arrays.pop(key)
    np.savez(tmp_path / filename, **arrays)
    with pytest.raises(ValueError, match=rf"{filename.replace('.', '[.]')}.*'{key}'"):
        evaluate(protocol, tmp_path / filename, tmp_path, TablePredictor(torch.zeros(2, 6890, 3)),
                 smpl_kit=kit, progress=False)  # fmt: skip


def test_non_smpl_checkpoint_is_refused_clearly(kit, tmp_path):
    rng = np.random.default_rng(8)
    write_3dpw(tmp_path, 2, rng)
    anny_like = SimpleNamespace(name="anny", num_vertices=13718, faces=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(IncompatibleBodyModelError, match="'anny'.*cannot be evaluated against SMPL"):
        evaluate("3dpw", tmp_path / "3dpw_test.npz", tmp_path, TablePredictor(torch.zeros(2, 13718, 3),
                 anny_like), smpl_kit=kit, progress=False)  # fmt: skip
    # a predictor that does not say its body model is caught by the vertex count
    with pytest.raises(IncompatibleBodyModelError, match="13718 vertices"):
        evaluate("3dpw", tmp_path / "3dpw_test.npz", tmp_path, TablePredictor(torch.zeros(2, 13718, 3)),
                 smpl_kit=kit, progress=False)  # fmt: skip


def test_protocol_lookup_and_image_dir(tmp_path):
    with pytest.raises(ValueError, match="unknown evaluation protocol 'lsp'.*3dpw"):
        get_protocol("lsp")
    with pytest.raises(FileNotFoundError, match="h36m_valid_protocol1.npz"):
        find_protocol_file("h36m-p1", tmp_path)
    (tmp_path / "dataset_extras").mkdir()
    (tmp_path / "dataset_extras" / "h36m_valid_protocol1.npz").write_bytes(b"")
    assert find_protocol_file("h36m-p1", tmp_path) == tmp_path / "dataset_extras" / "h36m_valid_protocol1.npz"
    (tmp_path / "h36m" / "images").mkdir(parents=True)
    (tmp_path / "h36m" / "images" / "a.jpg").write_bytes(b"x")
    assert resolve_image_dir("h36m-p1", tmp_path, ["images/a.jpg"]) == tmp_path / "h36m"
    assert resolve_image_dir("h36m-p1", tmp_path, ["images/zzz.jpg"]) == tmp_path


# ------------------------------------------------------------------------------------------------
# flip test-time augmentation
# ------------------------------------------------------------------------------------------------


def _random_rotations(shape, seed=0):
    import roma

    g = torch.Generator().manual_seed(seed)
    return roma.rotvec_to_rotmat(0.6 * torch.randn(*shape, 3, generator=g))


def test_mirror_rotations_matches_spin_flip_pose_and_is_an_involution():
    import roma

    names = SMPL24.names
    R = _random_rotations((2, 24))
    M = mirror_rotations(R, names)
    assert torch.allclose(mirror_rotations(M, names), R, atol=1e-6)
    # SPIN's flip_pose on axis-angle: swap left/right joints, negate y and z
    aa = roma.rotmat_to_rotvec(R)
    perm = [
        names.index(n.replace("left", "TMP").replace("right", "left").replace("TMP", "right")) for n in names
    ]
    spin = aa[:, perm] * torch.tensor([1.0, -1.0, -1.0])
    assert torch.allclose(roma.rotvec_to_rotmat(spin), M, atol=1e-5)


def test_flip_average_of_a_mirror_symmetric_estimate_is_the_estimate():
    names = SMPL24.names
    R = _random_rotations((3, 24), seed=1)
    out = {"rotmat": R, "shape": torch.randn(3, 10), "cam": torch.tensor([[0.9, 0.1, -0.2]] * 3)}
    mirrored = {
        "rotmat": mirror_rotations(R, names),
        "shape": out["shape"].clone(),
        "cam": out["cam"] * torch.tensor([1.0, -1.0, 1.0]),
    }
    rot, shape, cam = flip_average(out, mirrored, names)
    assert torch.allclose(rot, R, atol=1e-5)
    assert torch.allclose(shape, out["shape"]) and torch.allclose(cam, out["cam"])
    # two different estimates: the average is a rotation between them
    other = dict(mirrored, rotmat=mirror_rotations(_random_rotations((3, 24), seed=2), names))
    rot, _, _ = flip_average(out, other, names)
    eye = torch.eye(3).expand_as(rot)
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3, 24), atol=1e-5)


def test_regressor_predictor_with_flip(kit):
    from dsrbody.eval.protocols import RegressorPredictor
    from dsrbody.models.hmr import Regressor

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.ReLU())
    reg = Regressor(backbone, 8, kit.models["neutral"])
    img = torch.randn(2, 3, 64, 64)
    plain = RegressorPredictor(reg)({"img": img})
    pred = RegressorPredictor(reg, flip=True)({"img": img})
    with torch.no_grad():
        a, b = reg(img), reg(img.flip(-1))
        rot, shape, cam = flip_average(a, b, kit.models["neutral"].joint_names)
    assert torch.allclose(pred["vertices"], reg.pose_body(rot, shape, cam)["vertices"], atol=1e-6)
    assert torch.allclose(plain["vertices"], a["vertices"], atol=1e-6)
    assert not torch.allclose(pred["vertices"], plain["vertices"], atol=1e-4)
    # FlipAveraged is the same as a module, and passes the regressor's camera through
    from dsrbody.eval.protocols import FlipAveraged

    fa = FlipAveraged(reg)
    with torch.no_grad():
        torch.testing.assert_close(fa(img)["vertices"], pred["vertices"])
    assert fa.body_model is reg.body_model and fa.focal == reg.focal and fa.img_res == reg.img_res
    # ... and the head's vectors of the averaged parameters, which the demo's refinement and fit start from
    from dsrbody.geometry.rotations import rot6d_to_matrix

    with torch.no_grad():
        out = fa(img)
    J = out["rotmat"].shape[1]
    torch.testing.assert_close(
        rot6d_to_matrix(out["pose6d"].reshape(2, J, 6)), out["rotmat"], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(reg.shape_from_raw(out["shape_raw"]), out["shape"], atol=1e-5, rtol=0)
    # the estimate on an image equals the flipped-back estimate on its mirror
    pred_m = RegressorPredictor(reg, flip=True)({"img": img.flip(-1)})
    assert torch.allclose(pred_m["cam"] * torch.tensor([1.0, -1.0, 1.0]), pred["cam"], atol=1e-5)
    assert torch.allclose(mirror_rotations(pred_m["rotmat"], SMPL24.names), pred["rotmat"], atol=1e-4)


# ------------------------------------------------------------------------------------------------
# synthetic split (the checkpoint's own body model)
# ------------------------------------------------------------------------------------------------


class ParamPredictor:
    """Predicts the file's parameters plus noise through a body model (a regressor's output dict)."""

    def __init__(self, body_model, pose, shape, noise: float, seed: int = 0):
        self.body_model, self.faces = body_model, body_model.faces
        rng = np.random.default_rng(seed)
        self.pose = pose + noise * rng.normal(size=pose.shape)
        self.shape = shape + noise * rng.normal(size=shape.shape)

    def __call__(self, batch):
        from dsrbody.geometry.rotations import axis_angle_to_matrix

        i = torch.as_tensor(batch["sample_index"]).numpy()
        rot = axis_angle_to_matrix(torch.as_tensor(self.pose[i], dtype=torch.float32).reshape(len(i), 24, 3))
        shape = torch.as_tensor(self.shape[i], dtype=torch.float32)
        with torch.no_grad():
            out = self.body_model(rot[:, 0], rot[:, 1:], shape)
        return {"rotmat": rot, "shape": shape, "vertices": out.vertices, "joints": out.joints,
                "rest_vertices": out.rest_vertices}  # fmt: skip


def test_synth_protocol_agrees_with_synth_eval(kit, tmp_path):
    """On a synthetic-format file the protocol gives 0 for the ground truth and the same numbers as
    dsrbody.eval.synth_eval (what ``dsrbody eval --config`` reports) for a noisy prediction."""
    from protocol_files import base_arrays, write_images

    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import batch_metrics

    rng = np.random.default_rng(9)
    n = 5
    pose, shape = random_smpl_params(n, rng)
    arrays = base_arrays(n, rng, "images") | {
        "pose": pose, "shape": shape, "has_smpl": np.ones(n), "has_params": np.ones(n),
        "body_model": np.array(["smpl"] * n),
        "cam_t": np.tile([0.0, 0.2, 8.0], (n, 1)) * rng.uniform(0.5, 1.5, (n, 1)),
    }  # fmt: skip
    np.savez(tmp_path / "synth_test.npz", **arrays)
    write_images(tmp_path, arrays["imgname"], rng)
    bm = kit.models["neutral"]
    res = evaluate("synth", tmp_path / "synth_test.npz", tmp_path, ParamPredictor(bm, pose, shape, 0.0),
                   progress=False)  # fmt: skip
    assert set(res.metrics) == {"mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc"}
    assert max(res.metrics.values()) < 1e-3
    assert res.joint_names == list(eval_joints(bm).names)
    assert np.allclose(res.per_sample["distance_m"], np.linalg.norm(arrays["cam_t"], axis=1))

    pred = ParamPredictor(bm, pose, shape, 0.1, seed=1)
    res = evaluate("synth", tmp_path / "synth_test.npz", tmp_path, pred, batch_size=2, progress=False)
    idx = torch.arange(n)
    f32 = torch.float32
    batch = {
        "sample_index": idx, "keypoints": torch.zeros(n, 49, 3), "has_smpl": torch.ones(n),
        "pose": torch.as_tensor(pose, dtype=f32), "betas": torch.as_tensor(shape, dtype=f32),
    }  # fmt: skip
    want = batch_metrics(pred(batch), batch, bm, eval_joints(bm), rerun=False)
    for k in ("mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc"):
        assert np.allclose(res.per_sample[k], want[k].numpy(), rtol=1e-4, atol=1e-3), k
        assert res.per_sample[k].min() > (0.1 if k == "pve_t_sc" else 1)  # scale-corrected: small


def test_synth_protocol_refuses_another_body_model(kit, tmp_path):
    from protocol_files import base_arrays, write_images

    rng = np.random.default_rng(10)
    arrays = base_arrays(2, rng, "images") | {
        "pose": np.zeros((2, 72)), "shape": np.zeros((2, 6)), "has_params": np.ones(2),
        "body_model": np.array(["anny", "anny"]),
    }  # fmt: skip
    np.savez(tmp_path / "synth_test.npz", **arrays)
    write_images(tmp_path, arrays["imgname"], rng)
    bm = kit.models["neutral"]
    with pytest.raises(IncompatibleBodyModelError, match="anny parameters.*'smpl'"):
        evaluate("synth", tmp_path / "synth_test.npz", tmp_path,
                 ParamPredictor(bm, np.zeros((2, 72)), np.zeros((2, 10)), 0.0), progress=False)  # fmt: skip


def test_samples_without_a_metric_are_excluded_with_their_reason(kit, tmp_path):
    """A NaN ground-truth pose, a sample without parameters, a NaN prediction and a truncated JPEG (which
    decoders would fill with grey) leave the means; the sample count printed is the count behind the means,
    and the reasons are listed (no silent nanmean)."""
    from protocol_files import base_arrays, write_images

    rng = np.random.default_rng(11)
    n = 6
    pose, shape = random_smpl_params(n, rng)
    file_pose = pose.copy()
    file_pose[1, 5] = np.nan
    has = np.ones(n)
    has[3] = 0
    arrays = base_arrays(n, rng, "images") | {
        "pose": file_pose, "shape": shape, "has_smpl": has, "has_params": has,
        "body_model": np.array(["smpl"] * n),
    }  # fmt: skip
    np.savez(tmp_path / "synth_test.npz", **arrays)
    write_images(tmp_path, arrays["imgname"], rng)
    jpg = tmp_path / arrays["imgname"][5]
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])
    bm = kit.models["neutral"]
    pred_pose = pose.copy()
    pred_pose[4, 0] = np.nan
    res = evaluate("synth", tmp_path / "synth_test.npz", tmp_path, ParamPredictor(bm, pred_pose, shape, 0.0),
                   batch_size=4, progress=False)  # fmt: skip
    assert res.num_evaluated == 2 and res.num_samples == n
    assert res.per_sample["sample_index"].tolist() == [0, 2]
    assert all(np.isfinite(v) for v in res.metrics.values()) and max(res.metrics.values()) < 1e-3
    reasons = {s["sample_index"]: s["reason"] for s in res.skipped}
    assert reasons == {
        1: "nonfinite_ground_truth", 3: "no_ground_truth", 4: "nonfinite_prediction", 5: "image_corrupt"
    }  # fmt: skip
    head = res.format_table().splitlines()[0]
    assert head.startswith("synth: 2 of 6 samples evaluated (4 skipped:") and "non-finite prediction" in head
    assert "unreadable image (undecodable or truncated)" in head
    assert res.to_json()["num_evaluated"] == 2 and len(res.to_json()["skipped"]) == 4


def test_synth_eval_counts_the_samples_behind_the_means(kit):
    """dsrbody.eval.synth_eval: a NaN prediction gives NaN metrics (no SVD error) and a reason."""
    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import batch_metrics, exclusion_reasons

    rng = np.random.default_rng(12)
    n = 4
    pose, shape = random_smpl_params(n, rng)
    pred_pose = pose.copy()
    pred_pose[2, 3] = np.nan
    f32 = torch.float32
    batch = {
        "sample_index": torch.arange(n), "keypoints": torch.zeros(n, 49, 3),
        "has_smpl": torch.tensor([1.0, 1.0, 1.0, 0.0]), "params_nonfinite": torch.zeros(n, dtype=torch.bool),
        "pose": torch.as_tensor(pose, dtype=f32), "betas": torch.as_tensor(shape, dtype=f32),
    }  # fmt: skip
    bm = kit.models["neutral"]
    pred = ParamPredictor(bm, pred_pose, shape, 0.0)(batch)
    values = batch_metrics(pred, batch, bm, eval_joints(bm), rerun=False)
    finite = torch.stack([v.isfinite() for v in values.values()]).any(0)
    assert finite.tolist() == [True, True, False, False]
    assert exclusion_reasons(values, pred, batch) == ["nonfinite_prediction", "no_ground_truth"]


def test_a_new_protocol_is_one_registry_entry(kit, tmp_path, monkeypatch):
    """A protocol is a :class:`Protocol` in ``PROTOCOLS`` naming its files and a ground-truth kind: a
    12-joint "legs and arms only" variant of Human3.6M on a file name of its own evaluates through the
    same loop (and a new kind of ground truth is a :class:`GroundTruth` subclass in ``GROUND_TRUTHS``)."""
    from dsrbody.eval import ground_truth as gtm
    from dsrbody.eval import protocols as pm

    class FirstTwelveJoints(gtm.FileJoints3D):
        kind = "S12"

        def batch(self, protocol, ds, index, pred, pred_vertices, smpl_kit, device):
            g = super().batch(protocol, ds, index, pred, pred_vertices, smpl_kit, device)
            g.pred_joints, g.gt_joints = g.pred_joints[:, :12], g.gt_joints[:, :12]
            return g

        def joint_names(self, protocol):
            return list(protocol.joint_names)[:12]

    monkeypatch.setitem(gtm.GROUND_TRUTHS, "S12", FirstTwelveJoints)
    tiny = pm.Protocol("tiny-limbs", ("tiny_limbs.npz",), "S12", 14, ("mpjpe", "pa_mpjpe"), ("S",), "test")
    monkeypatch.setitem(pm.PROTOCOLS, tiny.name, tiny)
    assert get_protocol("TINY-limbs") is tiny and tiny.smpl_only

    rng = np.random.default_rng(5)
    pose, shape = random_smpl_params(3, rng)
    v = smpl_vertices(kit.models["neutral"], pose, shape)
    write_s_file(tmp_path, "tiny_limbs.npz", _np_h36m(kit, v), rng)
    R = _rotation([0.0, 1.0, 0.0], 0.3)
    v2 = torch.as_tensor(v.double().numpy() @ R.T, dtype=torch.float32)
    res = evaluate("tiny-limbs", find_protocol_file("tiny-limbs", tmp_path), tmp_path,
                   TablePredictor(v2, kit.models["neutral"]), smpl_kit=kit, progress=False)  # fmt: skip
    j = _np_h36m(kit, v)
    x = (j[:, H36M_TO_LSP14] - j[:, :1])[:, :12]
    want = 1000 * np.linalg.norm(x @ R.T - x, axis=-1).mean(-1)
    assert np.allclose(res.per_sample["mpjpe"], want, rtol=1e-4)
    assert res.per_joint["mpjpe"].shape == (3, 12) and len(res.joint_names) == 12
    assert res.metrics["pa_mpjpe"] < 1e-2


def test_mirror_rotations_mirror_anny():
    """Anny's rig: posing with the mirrored rotations gives the mirror image (x negated, left and right
    swapped) of the posed skeleton, so flip test-time augmentation is right for Anny, not only SMPL."""
    from dsrbody.body.factory import build_body_model

    body = build_body_model("anny", topology="notoes_collapse10pc")
    torch.manual_seed(0)
    R = axis_angle_to_matrix(0.4 * torch.randn(2, body.num_joints, 3))
    shape = torch.tensor([[0.2, 0.8, 0.3, 0.7, 0.4, 0.6], [0.9, 0.7, 0.6, 0.2, 0.5, 0.3]])
    with torch.no_grad():
        posed = body(R[:, 0], R[:, 1:], shape).skeleton_joints
        Rm = mirror_rotations(R, body.joint_names)
        mirrored = body(Rm[:, 0], Rm[:, 1:], shape).skeleton_joints
    perm = flip_permutation(body.joint_names)
    assert perm != list(range(body.num_joints))  # there are left/right pairs to swap
    expected = (posed * torch.tensor([-1.0, 1.0, 1.0]))[:, perm]
    torch.testing.assert_close(mirrored, expected, atol=1e-5, rtol=0)
    assert (mirrored - posed).abs().max() > 0.05  # a real pose change, not a symmetric pose


def test_synth_protocol_scores_gendered_smpl_against_that_gender(kit, smpl_dir, tmp_path):
    """``dsrbody synth`` renders SMPL people with their gender's model: the protocol's ground truth is that
    body (as ``dsrbody eval --data`` with ``gender_models``), not the checkpoint's neutral one, so the
    neutral body at the true parameters is not scored 0; without the male and female files it says so."""
    from protocol_files import base_arrays, write_images

    from dsrbody.eval.metrics import eval_joints
    from dsrbody.eval.synth_eval import batch_metrics

    rng = np.random.default_rng(11)
    n = 4
    pose, shape = random_smpl_params(n, rng)
    arrays = base_arrays(n, rng, "images") | {
        "pose": pose, "shape": shape, "has_smpl": np.ones(n), "has_params": np.ones(n),
        "body_model": np.array(["smpl"] * n), "gender": np.array(["m", "f", "m", "f"]),
    }  # fmt: skip
    np.savez(tmp_path / "synth_test.npz", **arrays)
    write_images(tmp_path, arrays["imgname"], rng)
    bm = kit.models["neutral"]
    pred = ParamPredictor(bm, pose, shape, 0.0)
    res = evaluate("synth", tmp_path / "synth_test.npz", tmp_path, pred, smpl_kit=kit, progress=False)
    batch = {
        "sample_index": torch.arange(n), "keypoints": torch.zeros(n, 49, 3), "has_smpl": torch.ones(n),
        "pose": torch.as_tensor(pose, dtype=torch.float32),
        "betas": torch.as_tensor(shape, dtype=torch.float32), "gender": torch.tensor([0, 1, 0, 1]),
    }  # fmt: skip
    gt_models = {0: kit.models["male"], 1: kit.models["female"]}
    want = batch_metrics(pred(batch), batch, bm, eval_joints(bm), rerun=False, gt_models=gt_models)
    for k in ("mpjpe", "pve", "pve_t"):
        assert np.allclose(res.per_sample[k], want[k].numpy(), rtol=1e-4, atol=1e-3), k
        assert res.per_sample[k].min() > 1.0, k  # the neutral body is not the rendered one
    by_dir = evaluate("synth", tmp_path / "synth_test.npz", tmp_path, pred, smpl_dir=smpl_dir, progress=False)
    assert np.allclose(by_dir.per_sample["pve"], res.per_sample["pve"], atol=1e-3)
    with pytest.raises(ValueError, match="4 of its bodies are male or female smpl"):
        evaluate("synth", tmp_path / "synth_test.npz", tmp_path, pred, progress=False)


def test_samples_are_cropped_at_the_predictors_resolution(kit, tmp_path):
    """A model trained on 96-px crops is given 96-px crops (``img_res``), not SPIN's 224."""
    from protocol_files import base_arrays, write_images

    rng = np.random.default_rng(12)
    n = 2
    pose, shape = random_smpl_params(n, rng)
    arrays = base_arrays(n, rng, "images") | {
        "pose": pose, "shape": shape, "has_smpl": np.ones(n), "has_params": np.ones(n),
    }  # fmt: skip
    np.savez(tmp_path / "synth_test.npz", **arrays)
    write_images(tmp_path, arrays["imgname"], rng)
    seen = []

    class Recording(ParamPredictor):
        def __call__(self, batch):
            seen.append(tuple(batch["img"].shape[-2:]))
            return super().__call__(batch)

    pred = Recording(kit.models["neutral"], pose, shape, 0.0)
    evaluate("synth", tmp_path / "synth_test.npz", tmp_path, pred, progress=False)
    pred.img_res = 96
    evaluate("synth", tmp_path / "synth_test.npz", tmp_path, pred, progress=False)
    assert seen == [(224, 224), (96, 96)]
