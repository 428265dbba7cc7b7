"""Metrics against hand-computed values (docs/design.md, Metrics)."""

from __future__ import annotations

import math

import pytest
import torch

from dsrbody.eval.metrics import (
    LSP14_IN_SPIN49,
    MetricAccumulator,
    align_pelvis,
    eval_joints,
    mpjpe,
    pa_mpjpe,
    pve,
    pve_t,
    pve_t_sc,
    selection_score,
)


def _rot_z(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def test_mpjpe_hand_computed_with_pelvis_alignment():
    gt = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    # a pure translation is removed by the pelvis alignment (pelvis = joint 0)
    assert mpjpe(gt + torch.tensor([5.0, -2.0, 3.0]), gt, pelvis=0).item() == pytest.approx(0.0, abs=1e-6)
    pred = gt.clone()
    pred[0, 1] += torch.tensor([0.003, 0.004, 0.0])  # 5 mm off on one joint of three
    assert mpjpe(pred, gt, pelvis=0).item() == pytest.approx(5.0 / 3.0, rel=1e-5)
    # pelvis = mean of joints 1 and 2: moving joint 1 by d moves the pelvis by d/2
    # errors after alignment: joint0 |d/2|, joint1 |d/2|, joint2 |d/2| -> mean 2.5 mm
    assert mpjpe(pred, gt, pelvis=(1, 2)).item() == pytest.approx(2.5, rel=1e-5)
    assert mpjpe(pred, gt, pelvis=None).item() == pytest.approx(5.0 / 3.0, rel=1e-5)


def test_pa_mpjpe_removes_known_rotation_scale_translation():
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 14, 3, generator=g) * 0.3
    R = _rot_z(37.0)
    pred = 1.7 * gt @ R.T + torch.tensor([0.2, -0.1, 3.0])
    assert pa_mpjpe(pred, gt).max().item() < 1e-3  # mm (float32 inputs)
    assert mpjpe(pred, gt, pelvis=(2, 3)).min().item() > 10.0  # the rotation/scale stays in MPJPE


def test_pa_mpjpe_hand_computed_residual():
    # square (+-1, +-1, 0) with z = h * x * y on the prediction: x*y is orthogonal to every linear field,
    # so the optimal rotation is the identity, the scale s = 8 / (8 + 4 h^2), and every point's error is
    # sqrt(2 (1 - s)^2 + (s h)^2). A known rotation + scale + translation of the prediction changes nothing.
    h = 0.1
    xy = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]])
    gt = torch.cat([xy, torch.zeros(4, 1)], dim=1)[None]
    pred = torch.cat([xy, (h * xy[:, 0] * xy[:, 1])[:, None]], dim=1)[None]
    s = 8.0 / (8.0 + 4.0 * h * h)
    expected = 1000.0 * math.sqrt(2.0 * (1.0 - s) ** 2 + (s * h) ** 2)
    assert pa_mpjpe(pred, gt).item() == pytest.approx(expected, rel=1e-5)
    moved = 0.6 * pred @ _rot_z(-73.0).T + torch.tensor([1.0, 2.0, 3.0])
    assert pa_mpjpe(moved, gt).item() == pytest.approx(expected, rel=1e-5)


def test_pa_mpjpe_hand_computed_two_point_case():
    # two points: Procrustes fits them exactly (scale + rotation + translation), error 0;
    # three collinear points with one off the line by h: the best similarity fit spreads the error.
    gt = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    pred = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    assert pa_mpjpe(pred, gt).item() == pytest.approx(0.0, abs=1e-6)


def test_pve_and_pve_t_hand_computed():
    a = torch.zeros(1, 4, 3)
    b = a.clone()
    b[0, :, 2] = torch.tensor([0.001, 0.002, 0.003, 0.006])
    assert pve(a, b).item() == pytest.approx(3.0, rel=1e-6)
    assert pve_t(a, b).item() == pytest.approx(3.0, rel=1e-6)
    # no alignment: a global shift counts fully
    assert pve(a + 0.01, a).item() == pytest.approx(10.0 * math.sqrt(3), rel=1e-6)
    with pytest.raises(ValueError, match="pve"):
        pve(a, torch.zeros(1, 5, 3))


def _pve_t_sc_reference(pred, gt):
    """Brute force, one sample and one vertex at a time (float64)."""
    out = []
    for p, g in zip(pred.double(), gt.double()):
        pc = [v - p.mean(0) for v in p]
        gc = [v - g.mean(0) for v in g]
        rp = math.sqrt(sum(float(v @ v) for v in pc) / len(pc))
        rg = math.sqrt(sum(float(v @ v) for v in gc) / len(gc))
        out.append(1000.0 * sum(float((v * rg / rp - w).norm()) for v, w in zip(pc, gc)) / len(pc))
    return torch.tensor(out, dtype=torch.float64)


def test_pve_t_sc_removes_stature_and_placement_only():
    torch.manual_seed(0)
    gt = torch.randn(3, 50, 3) * 0.3
    shape_err = gt + 0.01 * torch.randn(3, 50, 3)
    # a taller, shifted copy of the same body: PVE-T counts it, PVE-T-SC does not
    taller = 1.1 * gt + torch.tensor([0.0, 0.05, 0.02])
    assert pve_t(taller, gt).min() > 10.0
    assert torch.allclose(pve_t_sc(taller, gt), torch.zeros(3), atol=1e-3)
    # a shape difference stays, and scaling or shifting the prediction changes nothing
    base = pve_t_sc(shape_err, gt)
    assert base.min() > 5.0
    assert torch.allclose(pve_t_sc(0.8 * shape_err - 0.3, gt), base, atol=1e-3)
    assert torch.allclose(base.double(), _pve_t_sc_reference(shape_err, gt), atol=1e-3)
    # a rotation is not removed (rest poses share the canonical frame)
    rotated = gt @ _rot_z(20.0).T
    assert pve_t_sc(rotated, gt).min() > 10.0
    with pytest.raises(ValueError, match="pve_t_sc"):
        pve_t_sc(gt, gt[:, :10])


def test_align_pelvis_and_selection_score():
    j = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]])
    out = align_pelvis(j, (0, 1))
    assert torch.allclose(out.mean(1), torch.zeros(1, 3))
    assert selection_score(40.0, 70.0) == pytest.approx(130.0)


def test_accumulator_leaves_out_nan():
    acc = MetricAccumulator()
    acc.add({"mpjpe": torch.tensor([1.0, float("nan"), 3.0])})
    acc.add({"mpjpe": torch.tensor([5.0])})
    assert acc.means()["mpjpe"] == pytest.approx(3.0)
    assert acc.count("mpjpe") == 3


def test_eval_joints_of_anny_are_the_12_limb_joints(anny_body):
    sel = eval_joints(anny_body)
    assert len(sel.indices) == 12 and set(sel.indices) <= set(LSP14_IN_SPIN49)
    assert "Neck (LSP)" not in sel.names and "Top of Head (LSP)" not in sel.names
    assert [sel.names[i] for i in sel.pelvis] == ["Right Hip", "Left Hip"]
