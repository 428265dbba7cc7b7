import numpy as np
import pytest
import torch

from dsrbody.geometry import (
    FOCAL_LENGTH,
    IMG_RES,
    denormalize_keypoints,
    estimate_translation,
    focal_for_res,
    normalize_keypoints,
    perspective_projection,
    project_vertices,
    translation_to_weak_perspective,
    weak_perspective_to_translation,
)


def test_weak_perspective_round_trip():
    g = torch.Generator().manual_seed(0)
    cam = torch.rand(16, 3, generator=g, dtype=torch.float64)
    cam[:, 0] = 0.5 + cam[:, 0]  # scale in [0.5, 1.5]
    cam[:, 1:] -= 0.5
    t = weak_perspective_to_translation(cam)
    assert torch.allclose(t[:, 2], 2 * FOCAL_LENGTH / (IMG_RES * cam[:, 0]))
    assert torch.allclose(translation_to_weak_perspective(t), cam, atol=1e-9)


def test_weak_perspective_matches_orthographic_for_small_depth():
    """With f = 5000 the body is ~50 m away, so perspective ~ weak perspective s * (X + t_xy)."""
    g = torch.Generator().manual_seed(1)
    X = (torch.rand(4, 30, 3, generator=g, dtype=torch.float64) - 0.5) * 0.02
    cam = torch.tensor([[0.9, 0.1, -0.2]] * 4, dtype=torch.float64)
    t = weak_perspective_to_translation(cam)
    uv = normalize_keypoints(perspective_projection(X, t))
    weak = cam[:, None, :1] * (X[..., :2] + cam[:, None, 1:])
    assert torch.allclose(uv, weak, atol=1e-3)  # depth +-1 cm at ~50 m
    X[..., 2] = 0.0  # points on the plane z = 0 of the body: exact
    uv = normalize_keypoints(perspective_projection(X, t))
    assert torch.allclose(uv, cam[:, None, :1] * (X[..., :2] + cam[:, None, 1:]), atol=1e-9)


def test_perspective_projection_hand_computed():
    X = torch.tensor([[[0.1, -0.2, 2.0], [0.0, 0.0, 4.0]]], dtype=torch.float64)
    uv = perspective_projection(X, None, focal=100.0, principal_point=(10.0, 20.0))
    expected = torch.tensor([[[10 + 100 * 0.05, 20 - 100 * 0.1], [10.0, 20.0]]], dtype=torch.float64)
    assert torch.allclose(uv, expected)
    # per-sample (B, 2) focal and a rotation of 90 deg about z: (x, y) -> (-y, x)
    R = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    uv = perspective_projection(
        X,
        torch.zeros(1, 3, dtype=torch.float64),
        torch.tensor([[100.0, 50.0]]),
        torch.tensor([[0.0, 0.0]]),
        rotation=R,
    )
    assert torch.allclose(uv[0, 0], torch.tensor([100 * 0.2 / 2, 50 * 0.1 / 2], dtype=torch.float64))


def test_project_vertices_is_perspective_projection_in_the_camera_frame():
    """The renderers' projection: the same numbers as perspective_projection without a transform, for
    every accepted camera layout (scalar, (2,) = (fx, fy), (B,), (B, 2))."""
    g = torch.Generator().manual_seed(2)
    X = torch.rand(3, 7, 3, generator=g, dtype=torch.float64) + torch.tensor([-0.5, -0.5, 2.0])
    cams = [
        (100.0, (10.0, 20.0)),
        (torch.tensor([100.0, 80.0]), torch.tensor([10.0, 20.0])),
        (torch.tensor([100.0, 80.0, 60.0]), torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])),
        (torch.rand(3, 2, generator=g) * 100, (0.0, 0.0)),
    ]
    for focal, pp in cams:
        assert torch.equal(project_vertices(X, focal, pp), perspective_projection(X, None, focal, pp))
    # B = 2: a (2,) focal is (fx, fy), not one focal per sample
    uv = project_vertices(X[:2], torch.tensor([100.0, 50.0]), (0.0, 0.0))
    assert torch.equal(uv[1], X[1, :, :2] / X[1, :, 2:] * torch.tensor([100.0, 50.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"focal must be a scalar, \(2,\), \(B,\) or \(B, 2\) with B=3"):
        project_vertices(X, torch.ones(3, 3), (0.0, 0.0))
    with pytest.raises(ValueError, match="principal_point"):
        project_vertices(X, 1.0, torch.ones(4))


def test_normalize_round_trip_and_centre():
    px = torch.tensor([[112.0, 112.0, 0.7], [0.0, 224.0, 1.0]])
    n = normalize_keypoints(px)
    assert torch.allclose(n[0, :2], torch.zeros(2)) and n[0, 2] == 0.7
    assert torch.allclose(n[1, :2], torch.tensor([-1.0, 1.0]))
    assert torch.allclose(denormalize_keypoints(n), px)


def test_estimate_translation_recovers_known_translation():
    g = torch.Generator().manual_seed(2)
    B, N = 5, 24
    joints = (torch.rand(B, N, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([0.8, 1.7, 0.4])
    t_true = torch.stack(
        [
            torch.rand(B, generator=g) * 0.4 - 0.2,
            torch.rand(B, generator=g) * 0.4 - 0.2,
            40 + 20 * torch.rand(B, generator=g),
        ],
        dim=-1,
    ).double()
    uv = perspective_projection(joints, t_true)
    conf = torch.ones(B, N, 1, dtype=torch.float64)
    conf[:, :5] = 0.0  # unconfident joints must not matter: corrupt them
    uv[:, :5] += 50.0
    t = estimate_translation(joints, torch.cat([uv, conf], dim=-1))
    assert torch.allclose(t, t_true, atol=1e-4)


def test_estimate_translation_matches_spin_numpy_formula():
    """Independent re-derivation with SPIN's explicit matrices (np.diagflat weights) on a noisy case."""
    rng = np.random.default_rng(3)
    S = rng.uniform(-0.5, 0.5, (24, 3))
    uv = rng.uniform(0, 224, (24, 2))
    conf = rng.uniform(0, 1, 24)
    f, c = np.array([5000.0, 5000.0]), np.array([112.0, 112.0])
    Z = np.reshape(np.tile(S[:, 2], (2, 1)).T, -1)
    XY = np.reshape(S[:, 0:2], -1)
    O, F = np.tile(c, 24), np.tile(f, 24)
    w = np.reshape(np.tile(np.sqrt(conf), (2, 1)).T, -1)
    Q = np.array([F * np.tile([1, 0], 24), F * np.tile([0, 1], 24), O - np.reshape(uv, -1)]).T
    cc = (np.reshape(uv, -1) - O) * Z - F * XY
    W = np.diagflat(w)
    Q, cc = W @ Q, W @ cc
    expected = np.linalg.solve(Q.T @ Q, Q.T @ cc)
    kp = torch.from_numpy(np.concatenate([uv, conf[:, None]], 1))[None]
    got = estimate_translation(torch.from_numpy(S)[None], kp)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_bad_shapes_are_clear():
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        weak_perspective_to_translation(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="keypoints2d"):
        estimate_translation(torch.zeros(1, 5, 3), torch.zeros(1, 4, 3))


def test_focal_for_res_keeps_spins_field_of_view():
    assert focal_for_res(224) == FOCAL_LENGTH == 5000.0
    assert focal_for_res(IMG_RES) == FOCAL_LENGTH
    assert focal_for_res(96) == pytest.approx(5000.0 * 96 / 224)
    assert focal_for_res(448) == pytest.approx(10000.0)
    # the same weak-perspective camera gives the same depth and the same normalised projection
    g = torch.Generator().manual_seed(4)
    X = (torch.rand(3, 10, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([0.8, 1.7, 0.4])
    cam = torch.tensor([[0.9, 0.1, -0.05], [1.2, -0.2, 0.0], [0.6, 0.0, 0.3]], dtype=torch.float64)
    uv = {}
    for res in (96, 224, 128):
        f = focal_for_res(res)
        t = weak_perspective_to_translation(cam, focal=f, img_res=res)
        assert torch.allclose(t, weak_perspective_to_translation(cam))
        px = perspective_projection(X, t, focal=f, principal_point=(res / 2, res / 2))
        uv[res] = normalize_keypoints(px, res)
    assert torch.allclose(uv[96], uv[224], atol=1e-12) and torch.allclose(uv[128], uv[224], atol=1e-12)
