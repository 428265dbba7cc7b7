"""The evaluation report: metrics.json, per-sample CSV, self-contained report.html with embedded PNGs."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from protocol_files import TablePredictor, random_smpl_params, smpl_vertices, write_s_file

from dsrbody.eval.protocols import SMPLKit, evaluate
from dsrbody.eval.report import worst_sample_panels, write_report


@pytest.fixture(scope="module")
def h36m_result(smpl_dir, tmp_path_factory):
    """A Human3.6M P2 evaluation of 7 samples (one image missing) with noisy predictions."""
    kit = SMPLKit(smpl_dir, genders=("neutral",))
    root = tmp_path_factory.mktemp("h36m")
    rng = np.random.default_rng(0)
    pose, shape = random_smpl_params(7, rng)
    v = smpl_vertices(kit.models["neutral"], pose, shape)
    R = kit.J_regressor_h36m.double().numpy()
    arrays = write_s_file(
        root, "h36m_valid_protocol2.npz", np.stack([R @ x for x in v.double().numpy()]), rng
    )
    (root / arrays["imgname"][3]).unlink()
    pose2 = pose + rng.normal(0, 0.15, pose.shape)
    pred = smpl_vertices(kit.models["neutral"], pose2, shape)
    t = torch.tensor([[0.0, 0.0, 2 * 5000 / (224 * 0.9)]]).expand(7, 3)
    res = evaluate("h36m-p2", root / "h36m_valid_protocol2.npz", root,
                   TablePredictor(pred, kit.models["neutral"], translation=t), smpl_kit=kit, num_worst=2,
                   progress=False)  # fmt: skip
    res.checkpoint = "test predictor"
    return res


def test_report_files(h36m_result, tmp_path):
    res = h36m_result
    paths = write_report(res, tmp_path / "out")
    for name in ("metrics", "per_sample", "report"):
        assert paths[name].is_file()

    js = json.loads(paths["metrics"].read_text())
    assert js["protocol"] == "h36m-p2" and js["num_evaluated"] == 6 and js["num_skipped"] == 1
    assert js["metrics"]["pa_mpjpe"] == pytest.approx(res.metrics["pa_mpjpe"], abs=1e-3)
    assert js["paper"] == {"pa_mpjpe": 40.3}
    assert js["skipped"][0]["sample_index"] == 3 and js["skipped"][0]["reason"] == "image_missing"
    assert set(js["per_joint_mpjpe"]) == set(res.joint_names)

    with open(paths["per_sample"]) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["sample_index"]) for r in rows] == list(range(7))
    assert rows[3]["skipped"] == "image_missing" and rows[3]["mpjpe"] == ""
    got = np.array([float(r["pa_mpjpe"]) for r in rows if not r["skipped"]])
    assert np.allclose(got, res.per_sample["pa_mpjpe"], atol=1e-3)
    assert "box_px" in rows[0] and float(rows[0]["occlusion"]) == 0.0  # every annotated keypoint visible

    page = paths["report"].read_text()
    assert "<script" not in page and 'src="http' not in page  # self-contained
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) == len(list((tmp_path / "out" / "plots").glob("*.png"))) >= 5
    for b64 in pngs:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 150
    assert "40.3" in page and "image_missing" in page and "6 evaluated of 7" in page
    assert (tmp_path / "out" / "plots" / "worst.png").is_file()


def test_worst_panels_show_the_mesh(h36m_result):
    panels = worst_sample_panels(h36m_result)
    assert [p["sample_index"] for p in panels] == [w["sample_index"] for w in h36m_result.worst]
    errs = [p["error"] for p in panels]
    assert errs == sorted(errs, reverse=True) and errs[0] == pytest.approx(
        np.max(h36m_result.per_sample["pa_mpjpe"])
    )
    for p in panels:
        assert p["image"].shape == (224, 224, 3) and p["image"].dtype == np.uint8
        changed = np.abs(p["overlay"].astype(int) - p["image"].astype(int)).sum(-1) > 30
        assert 0.05 < changed.mean() < 0.8  # the body covers part of the crop
        assert (p["side"] != 245).any(axis=-1).mean() > 0.02  # something drawn on the plain background


def test_report_without_camera_or_images(h36m_result, tmp_path):
    """Predictions without a translation get no overlay; an image folder that vanished, no image."""
    import dataclasses

    res = dataclasses.replace(
        h36m_result,
        worst=[dict(w, translation=None) for w in h36m_result.worst],
        image_dir=str(tmp_path / "gone"),
    )
    panels = worst_sample_panels(res)
    assert all(p["overlay"] is None and p["image"] is None for p in panels)
    paths = write_report(res, tmp_path / "out2", save_pngs=False)
    assert "no camera" not in paths["report"].read_text()  # drawn inside the picture, not as text
    assert not (tmp_path / "out2" / "plots").exists()


def test_side_view_shows_a_ground_truth_mesh_in_green(h36m_result):
    import dataclasses

    assert not any(p["has_gt"] for p in worst_sample_panels(h36m_result))  # H36M: joints only
    shifted = [
        dict(w, gt_vertices=w["vertices"] + np.array([0.0, 0.0, 0.4], np.float32)) for w in h36m_result.worst
    ]
    panels = worst_sample_panels(dataclasses.replace(h36m_result, worst=shifted))
    assert all(p["has_gt"] for p in panels)
    side = panels[0]["side"].astype(int)
    green = (side[..., 1] > side[..., 0] + 40) & (side[..., 1] > side[..., 2] + 40)
    assert green.mean() > 0.01  # the ground truth, turned 90 degrees, stands beside the prediction


def test_sequence_names():
    from dsrbody.eval.report import sequence_of

    assert sequence_of("imageFiles/downtown_walking_00/image_00012.jpg") == "downtown_walking_00"
    assert sequence_of("mpi_inf_3dhp_test_set/TS3/imageSequence/img_000101.jpg") == "TS3"
    assert sequence_of("images/S9_Directions_1.54138969_000001.jpg") == "S9_Directions_1"
    assert sequence_of("images/test_000004.jpg") == "test"
