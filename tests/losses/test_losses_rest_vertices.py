"""The metric shape terms (rest-pose vertex distance, and the same after removing size and placement):
explicit-loop references, finite-difference gradients, shape checks, and their wiring into
``spin_loss_terms`` / ``combine_losses``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dsrbody.eval.metrics import pve_t_sc
from dsrbody.geometry.rotations import axis_angle_to_matrix
from dsrbody.losses import LossWeights, combine_losses, spin_loss_terms
from dsrbody.losses.params import rest_vertex_loss, scale_free_vertex_loss


def _reference(pred: np.ndarray, gt: np.ndarray, eps: float) -> np.ndarray:
    """``mean_v sqrt(sum_c (p - g)^2 + eps)`` per sample, with explicit loops."""
    B, V, C = pred.shape
    out = np.zeros(B)
    for b in range(B):
        acc = 0.0
        for v in range(V):
            d2 = 0.0
            for c in range(C):
                d2 += (float(pred[b, v, c]) - float(gt[b, v, c])) ** 2
            acc += math.sqrt(d2 + eps)
        out[b] = acc / V
    return out


def test_matches_brute_force_reference():
    g = torch.Generator().manual_seed(0)
    pred = 0.1 * torch.randn(3, 17, 3, generator=g, dtype=torch.float64)
    gt = 0.1 * torch.randn(3, 17, 3, generator=g, dtype=torch.float64)
    for eps in (1e-8, 1e-3):
        out = rest_vertex_loss(pred, gt, eps=eps)
        assert out.shape == (3,)
        ref = _reference(pred.numpy(), gt.numpy(), eps)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-15)
    # float32 prediction, float64 ground truth: the ground truth follows the prediction's dtype
    out32 = rest_vertex_loss(pred.float(), gt)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), _reference(pred.numpy(), gt.numpy(), 1e-8), rtol=1e-5)


def test_hand_computed_and_metres():
    gt = torch.zeros(1, 2, 3)
    pred = torch.tensor([[[0.03, 0.04, 0.0], [0.0, 0.0, 0.01]]])  # 5 cm and 1 cm away
    assert rest_vertex_loss(pred, gt, eps=0.0).item() == pytest.approx(0.03)
    # identical meshes: sqrt(eps), and a finite gradient (zero by symmetry)
    p = torch.zeros(2, 4, 3, requires_grad=True)
    out = rest_vertex_loss(p, torch.zeros(2, 4, 3))
    assert torch.allclose(out, torch.full((2,), 1e-4))
    out.sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().max() == 0


def test_gradient_by_finite_differences():
    g = torch.Generator().manual_seed(1)
    pred = (0.1 * torch.randn(2, 5, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    gt = (0.1 * torch.randn(2, 5, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(rest_vertex_loss, (pred, gt), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradgradcheck(rest_vertex_loss, (pred, gt), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "a, b",
    [
        ((2, 5, 3), (2, 6, 3)),  # other mesh
        ((2, 5, 3), (3, 5, 3)),  # other batch
        ((5, 3), (5, 3)),  # no batch dimension
        ((2, 5, 2), (2, 5, 2)),  # not 3D points
        ((1, 2, 5, 3), (1, 2, 5, 3)),
    ],
)
def test_shape_errors(a, b):
    with pytest.raises(ValueError, match=r"rest vertices must both be \(B, V, 3\)"):
        rest_vertex_loss(torch.zeros(a), torch.zeros(b))


def _batch(B: int = 4, V: int = 7, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    pred = {
        "keypoints_2d": torch.randn(B, 49, 2, generator=g),
        "joints": torch.randn(B, 49, 3, generator=g),
        "rotmat": axis_angle_to_matrix(torch.randn(B, 24, 3, generator=g)),
        "shape": torch.randn(B, 10, generator=g),
        "cam": torch.rand(B, 3, generator=g),
        "vertices": torch.randn(B, V, 3, generator=g),
        "rest_vertices": 0.1 * torch.randn(B, V, 3, generator=g),
    }
    gt = {
        "keypoints": torch.cat([torch.randn(B, 49, 2, generator=g), torch.rand(B, 49, 1, generator=g)], -1),
        "pose": torch.randn(B, 72, generator=g),
        "betas": torch.randn(B, 10, generator=g),
        "has_smpl": torch.tensor([1, 0, 1, 0]),
        "rest_vertices": 0.1 * torch.randn(B, V, 3, generator=g),
    }
    return pred, gt


def test_spin_terms_include_rest_vertices_only_with_weight_and_target():
    pred, gt = _batch()
    # weight 0 (the default): not computed at all
    assert LossWeights().rest_vertices == 0.0
    assert "rest_vertices" not in spin_loss_terms(pred, gt, LossWeights())
    # non-zero weight, but no ground truth rest mesh
    w = LossWeights(rest_vertices=2.0)
    no_target = {k: v for k, v in gt.items() if k != "rest_vertices"}
    assert "rest_vertices" not in spin_loss_terms(pred, no_target, w)
    # both: the per-sample loss, masked by has_smpl
    terms = spin_loss_terms(pred, gt, w)
    per_sample, valid = terms["rest_vertices"]
    ref = _reference(pred["rest_vertices"].double().numpy(), gt["rest_vertices"].double().numpy(), 1e-8)
    np.testing.assert_allclose(per_sample.numpy(), ref, rtol=1e-5)
    assert torch.equal(valid, torch.tensor([True, False, True, False]))
    # the vertex L1 term stays off (its weight is 0) although pred has vertices
    assert "vertices" not in terms


def test_combine_applies_the_has_smpl_mask_and_the_weight():
    pred, gt = _batch()
    ref = _reference(pred["rest_vertices"].double().numpy(), gt["rest_vertices"].double().numpy(), 1e-8)
    w0 = LossWeights()
    w = LossWeights(rest_vertices=2.0)
    total0, _, _ = combine_losses(spin_loss_terms(pred, gt, w0), w0)
    total, means, dropped = combine_losses(spin_loss_terms(pred, gt, w), w)
    masked_mean = (ref[0] + ref[2]) / 2  # samples 1 and 3 have no parameters
    assert means["rest_vertices"].item() == pytest.approx(masked_mean, rel=1e-5)
    assert dropped["rest_vertices"] == 0
    assert (total - total0).item() == pytest.approx(w.overall * 2.0 * masked_mean, rel=1e-4)
    # a sample without parameters does not count, whatever its target (DSRModule fills zeros there),
    # and gets no gradient
    gt_far = dict(gt)
    gt_far["rest_vertices"] = gt["rest_vertices"].clone()
    gt_far["rest_vertices"][1] = 1e3
    p = {k: (v.clone().requires_grad_(True) if k == "rest_vertices" else v) for k, v in pred.items()}
    total_b, means_b, dropped_b = combine_losses(spin_loss_terms(p, gt_far, w), w)
    assert means_b["rest_vertices"].item() == pytest.approx(masked_mean, rel=1e-5)
    assert dropped_b["rest_vertices"] == 0
    total_b.backward()
    grad = p["rest_vertices"].grad
    assert torch.isfinite(grad).all()
    assert grad[[1, 3]].abs().max() == 0 and grad[0].abs().sum() > 0 and grad[2].abs().sum() > 0
    # NaN: an invalid sample is neither counted nor dropped; a valid one is dropped and counted
    gt_bad = dict(gt)
    gt_bad["rest_vertices"] = gt["rest_vertices"].clone()
    gt_bad["rest_vertices"][1] = float("nan")
    _, means_n, dropped_n = combine_losses(spin_loss_terms(pred, gt_bad, w), w)
    assert means_n["rest_vertices"].item() == pytest.approx(masked_mean, rel=1e-5)
    assert dropped_n["rest_vertices"] == 0
    gt_bad["rest_vertices"][2] = float("nan")
    _, means_c, dropped_c = combine_losses(spin_loss_terms(pred, gt_bad, w), w)
    assert dropped_c["rest_vertices"] == 1
    assert means_c["rest_vertices"].item() == pytest.approx(ref[0], rel=1e-5)


# ----------------------------------------------------------------------------------------------
# the scale-free term
# ----------------------------------------------------------------------------------------------


def _sc_reference(pred: np.ndarray, gt: np.ndarray, eps: float) -> np.ndarray:
    """Centre both and scale pred to gt's RMS radius with explicit loops, then :func:`_reference`."""
    B, V, _ = pred.shape
    aligned, centred = np.zeros((B, V, 3)), np.zeros((B, V, 3))
    for b in range(B):
        mp = [sum(float(pred[b, v, c]) for v in range(V)) / V for c in range(3)]
        mg = [sum(float(gt[b, v, c]) for v in range(V)) / V for c in range(3)]
        rp = math.sqrt(sum((float(pred[b, v, c]) - mp[c]) ** 2 for v in range(V) for c in range(3)) / V)
        rg = math.sqrt(sum((float(gt[b, v, c]) - mg[c]) ** 2 for v in range(V) for c in range(3)) / V)
        for v in range(V):
            for c in range(3):
                aligned[b, v, c] = (float(pred[b, v, c]) - mp[c]) * rg / rp
                centred[b, v, c] = float(gt[b, v, c]) - mg[c]
    return _reference(aligned, centred, eps)


def test_sc_matches_brute_force_and_the_metric():
    g = torch.Generator().manual_seed(4)
    pred = 0.3 * torch.randn(3, 17, 3, generator=g, dtype=torch.float64)
    gt = 0.3 * torch.randn(3, 17, 3, generator=g, dtype=torch.float64)
    for eps in (1e-8, 1e-3):
        out = scale_free_vertex_loss(pred, gt, eps=eps)
        assert out.shape == (3,)
        np.testing.assert_allclose(out.numpy(), _sc_reference(pred.numpy(), gt.numpy(), eps), rtol=1e-12)
    # eps = 0: PVE-T-SC in metres
    metric = pve_t_sc(pred, gt).numpy() / 1000
    np.testing.assert_allclose(scale_free_vertex_loss(pred, gt, eps=0.0).numpy(), metric)


def test_sc_ignores_stature_and_placement_but_not_shape():
    g = torch.Generator().manual_seed(5)
    gt = 0.3 * torch.randn(2, 40, 3, generator=g)
    taller = 1.15 * gt + torch.tensor([0.0, 0.1, -0.05])
    assert rest_vertex_loss(taller, gt).min() > 0.02  # the metric term counts the stature ...
    assert scale_free_vertex_loss(taller, gt).max() < 1e-3  # ... this one does not (sqrt(eps) = 1e-4)
    other = gt + 0.01 * torch.randn(2, 40, 3, generator=g)
    base = scale_free_vertex_loss(other, gt)
    assert base.min() > 5e-3
    torch.testing.assert_close(scale_free_vertex_loss(0.7 * other + 0.2, gt), base)


def test_sc_gradient_by_finite_differences_and_errors():
    g = torch.Generator().manual_seed(6)
    pred = (0.1 * torch.randn(2, 5, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    gt = (0.1 * torch.randn(2, 5, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(scale_free_vertex_loss, (pred, gt), eps=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match=r"vertices must both be \(B, V, 3\)"):
        scale_free_vertex_loss(torch.zeros(2, 5, 3), torch.zeros(2, 6, 3))


def test_spin_terms_include_the_sc_term_only_with_its_weight():
    pred, gt = _batch()
    assert LossWeights().rest_vertices_sc == 0.0
    assert "rest_vertices_sc" not in spin_loss_terms(pred, gt, LossWeights(rest_vertices=2.0))
    w = LossWeights(rest_vertices_sc=10.0)
    terms = spin_loss_terms(pred, gt, w)
    assert "rest_vertices" not in terms  # each term has its own weight
    per_sample, valid = terms["rest_vertices_sc"]
    ref = _sc_reference(pred["rest_vertices"].double().numpy(), gt["rest_vertices"].double().numpy(), 1e-8)
    np.testing.assert_allclose(per_sample.numpy(), ref, rtol=1e-5)
    assert torch.equal(valid, torch.tensor([True, False, True, False]))
    total0, _, _ = combine_losses(spin_loss_terms(pred, gt, LossWeights()), LossWeights())
    total, means, _ = combine_losses(terms, w)
    assert means["rest_vertices_sc"].item() == pytest.approx((ref[0] + ref[2]) / 2, rel=1e-5)
    assert (total - total0).item() == pytest.approx(w.overall * 10.0 * (ref[0] + ref[2]) / 2, rel=1e-4)


def test_spin_terms_posed_scale_free_term_uses_the_posed_vertices():
    pred, gt = _batch()
    gt["vertices"] = 0.1 * torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(7))
    assert LossWeights().vertices_sc == 0.0
    assert "vertices_sc" not in spin_loss_terms(pred, gt, LossWeights(vertices=1.0))
    terms = spin_loss_terms(pred, gt, LossWeights(vertices_sc=2.0))
    assert "vertices" not in terms and "rest_vertices_sc" not in terms
    per_sample, valid = terms["vertices_sc"]
    ref = _sc_reference(pred["vertices"].double().numpy(), gt["vertices"].double().numpy(), 1e-8)
    np.testing.assert_allclose(per_sample.numpy(), ref, rtol=1e-5)
    assert torch.equal(valid, torch.tensor([True, False, True, False]))
    no_target = {k: v for k, v in gt.items() if k != "vertices"}
    assert "vertices_sc" not in spin_loss_terms(pred, no_target, LossWeights(vertices_sc=2.0))
