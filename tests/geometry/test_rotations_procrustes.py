import math

import pytest
import roma
import torch

from dsrbody.geometry import (
    axis_angle_to_matrix,
    centre_and_scale,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
    similarity_procrustes,
)


def test_rot6d_spin_layout_and_round_trip():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 6, generator=g, dtype=torch.float64)
    R = rot6d_to_matrix(x)
    assert torch.allclose(
        R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(10, 3, 3), atol=1e-12
    )
    assert torch.allclose(torch.linalg.det(R), torch.ones(10, dtype=torch.float64))
    # SPIN: a1 = x.view(-1,3,2)[:, :, 0] normalised is the first column
    a1 = x.view(-1, 3, 2)[:, :, 0]
    assert torch.allclose(R[:, :, 0], a1 / a1.norm(dim=1, keepdim=True))
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(R)), R, atol=1e-12)
    # identity in 6D is [1,0,0,1,0,0]
    assert torch.allclose(matrix_to_rot6d(torch.eye(3)), torch.tensor([1.0, 0, 0, 1, 0, 0]))


def test_axis_angle_round_trip():
    g = torch.Generator().manual_seed(1)
    aa = torch.randn(20, 3, generator=g, dtype=torch.float64)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(20, 1, generator=g, dtype=torch.float64) * 3.0
    assert torch.allclose(matrix_to_axis_angle(axis_angle_to_matrix(aa)), aa, atol=1e-9)
    # 90 deg about z maps x to y
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, torch.pi / 2]))
    assert torch.allclose(R @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_procrustes_recovers_random_similarity():
    g = torch.Generator().manual_seed(2)
    B, N = 6, 17
    X = torch.randn(B, N, 3, generator=g, dtype=torch.float64)
    R = roma.random_rotmat(B, dtype=torch.float64)
    s = 0.5 + torch.rand(B, generator=g, dtype=torch.float64)
    t = torch.randn(B, 3, generator=g, dtype=torch.float64)
    Y = s[:, None, None] * X @ R.transpose(1, 2) + t[:, None]
    Xa, s_hat, R_hat, t_hat = similarity_procrustes(X, Y)
    assert torch.allclose(Xa, Y, atol=1e-9)
    assert torch.allclose(s_hat, s) and torch.allclose(R_hat, R) and torch.allclose(t_hat, t)


def test_procrustes_never_reflects():
    X = torch.randn(1, 10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    Y = X * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # a mirror image
    _, _, R, _ = similarity_procrustes(X, Y)
    assert torch.allclose(torch.linalg.det(R), torch.ones(1, dtype=torch.float64))


def test_centre_and_scale_against_loops_and_its_invariances():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(2, 9, 3, generator=g, dtype=torch.float64)
    Y = 2.0 * torch.randn(2, 9, 3, generator=g, dtype=torch.float64) + 1.0
    Xa, Yc = centre_and_scale(X, Y)
    for b in range(2):  # one point at a time
        mx = [sum(float(X[b, i, c]) for i in range(9)) / 9 for c in range(3)]
        my = [sum(float(Y[b, i, c]) for i in range(9)) / 9 for c in range(3)]
        rx = math.sqrt(sum((float(X[b, i, c]) - mx[c]) ** 2 for i in range(9) for c in range(3)) / 9)
        ry = math.sqrt(sum((float(Y[b, i, c]) - my[c]) ** 2 for i in range(9) for c in range(3)) / 9)
        for i in range(9):
            for c in range(3):
                assert float(Xa[b, i, c]) == pytest.approx((float(X[b, i, c]) - mx[c]) * ry / rx, abs=1e-12)
                assert float(Yc[b, i, c]) == pytest.approx(float(Y[b, i, c]) - my[c], abs=1e-12)
    # size and placement of the source do not matter; its rotation does (no rotation is removed)
    torch.testing.assert_close(centre_and_scale(0.3 * X - 2.0, Y)[0], Xa)
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 0.5]], dtype=torch.float64))
    assert (centre_and_scale(X @ R.transpose(1, 2), Y)[0] - Xa).abs().max() > 0.1
    # a degenerate source (one point repeated) stays finite
    assert torch.isfinite(centre_and_scale(torch.ones(1, 4, 3), Y[:1, :4])[0]).all()
    with pytest.raises(ValueError, match="centre_and_scale expects two"):
        centre_and_scale(X, Y[:, :5])
