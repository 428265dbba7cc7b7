"""dsrbody.body.stature: the height of rest meshes, and the shape that gives a body a known height."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsrbody.body.stature import rest_stature, stature, with_stature


def test_stature_is_the_vertical_extent():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 50, 3))
    want = v[..., 1].max(axis=1) - v[..., 1].min(axis=1)
    np.testing.assert_allclose(stature(torch.from_numpy(v)).numpy(), want)


def test_anny_reaches_the_height_asked_for_and_keeps_the_other_phenotypes(anny_body):
    shape = torch.tensor([[0.5, 0.812, 0.35, 0.56, 0.37, 0.5], [1.0, 0.9, 0.6, 0.2, 0.5, 0.3]])
    target = torch.tensor([1.80, 1.58])
    fit = with_stature(anny_body, shape, target)
    assert not bool(fit.clamped.any())
    torch.testing.assert_close(fit.stature, target, atol=5e-4, rtol=0)
    torch.testing.assert_close(rest_stature(anny_body, fit.shape), fit.stature)  # measured, not assumed
    keep = [i for i in range(6) if i != anny_body.stature_index]
    torch.testing.assert_close(fit.shape[:, keep], shape[:, keep])
    taller = fit.shape.clone()
    taller[:, anny_body.stature_index] += 0.05
    assert bool((rest_stature(anny_body, taller) > fit.stature).all())  # the phenotype is the height


def test_a_height_out_of_reach_is_clamped_at_the_nearest_bound(anny_body):
    shape = torch.tensor([[0.5, 0.812, 0.35, 0.56, 0.37, 0.5]] * 2)
    fit = with_stature(anny_body, shape, torch.tensor([3.5, 0.9]))
    assert fit.clamped.tolist() == [True, True]
    assert fit.shape[:, anny_body.stature_index].tolist() == [1.0, 0.0]  # Anny's height range [0, 1]
    assert 2.0 < float(fit.stature[0]) < 3.5 and 0.9 < float(fit.stature[1]) < 1.5


def test_smpl_sets_its_first_beta(smpl_dir):
    from dsrbody.body.smpl import SMPL

    body = SMPL(smpl_dir)
    shape = torch.tensor(np.random.default_rng(1).normal(0, 0.5, (2, 10)), dtype=torch.float32)
    start = rest_stature(body, shape)
    fit = with_stature(body, shape, start + torch.tensor([0.03, -0.02]))
    assert not bool(fit.clamped.any())
    torch.testing.assert_close(fit.stature, start + torch.tensor([0.03, -0.02]), atol=5e-4, rtol=0)
    torch.testing.assert_close(fit.shape[:, 1:], shape[:, 1:])
    assert bool(with_stature(body, shape, 25.0).clamped.all())


def test_bad_requests_are_one_line_errors(anny_body):
    with pytest.raises(ValueError, match="positive number of metres"):
        with_stature(anny_body, torch.zeros(1, 6), -1.7)
    with pytest.raises(ValueError, match="positive number of metres"):
        with_stature(anny_body, torch.zeros(1, 6), float("nan"))

    class NoStature(torch.nn.Module):
        name, stature_index, faces = "box", None, torch.zeros(1, 3)

    with pytest.raises(ValueError, match="box: its shape has no stature coefficient"):
        with_stature(NoStature(), torch.zeros(1, 6), 1.7)


class _Parabola(torch.nn.Module):
    """A stand-in body whose rest mesh is ``1 + c**2`` metres tall for its one shape coefficient ``c``:
    not monotonic, so a height of 2 m has two answers, c = -1 and c = +1."""

    name, stature_index, stature_range, shape_bounds, num_joints = "parabola", 0, (-2.0, 2.0), None, 1
    faces = torch.zeros(1, 3, dtype=torch.long)

    def pad_shape(self, shape):
        return shape

    def forward(self, global_orient, body_pose, shape):
        from types import SimpleNamespace

        rest = torch.zeros(shape.shape[0], 2, 3)
        rest[:, 1, 1] = 1 + shape[:, 0] ** 2
        return SimpleNamespace(rest_vertices=rest)


def test_the_answer_nearest_the_shapes_own_coefficient_is_taken():
    """Where the stature is not monotonic in the coefficient, the crossing nearest the shape's value is
    the one narrowed (the smallest change), found and clamped rows may share a batch, and an unreachable
    height keeps the grid point nearest in stature."""
    fit = with_stature(
        _Parabola(), torch.tensor([[0.8], [-0.4], [1.7], [0.3]]), torch.tensor([2.0, 2.0, 2.0, 0.5])
    )
    torch.testing.assert_close(fit.shape[:3, 0], torch.tensor([1.0, -1.0, 1.0]), atol=1e-5, rtol=0)
    assert fit.clamped.tolist() == [False, False, False, True]
    assert float(fit.shape[3, 0]) == 0.0 and float(fit.stature[3]) == 1.0  # the lowest it gets


def test_one_height_or_one_per_shape():
    with pytest.raises(ValueError, match="3 statures for 2 shapes"):
        with_stature(_Parabola(), torch.zeros(2, 1), torch.tensor([1.5, 2.0, 2.5]))
    fit = with_stature(_Parabola(), torch.tensor([[0.5], [-0.5]]), torch.tensor([2.0]))
    torch.testing.assert_close(fit.shape[:, 0], torch.tensor([1.0, -1.0]), atol=1e-5, rtol=0)
