"""The 2D keypoint branch: soft-argmax against a brute-force expectation, gradients, and its place in
the head, the loss and the checkpoint loaders."""

from __future__ import annotations

import pytest
import torch
from models_testkit import TinyBody

from dsrbody.models.keypoint_branch import KeypointBranch, soft_argmax_2d


def _brute_soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Expectation of the cell centres under each map's softmax, one cell at a time (float64)."""
    B, K, h, w = logits.shape
    out = torch.zeros(B, K, 2, dtype=torch.float64)
    for b in range(B):
        for k in range(K):
            p = torch.softmax(logits[b, k].double().reshape(-1), 0).reshape(h, w)
            for i in range(h):
                for j in range(w):
                    out[b, k, 0] += p[i, j] * ((j + 0.5) / w * 2 - 1)
                    out[b, k, 1] += p[i, j] * ((i + 0.5) / h * 2 - 1)
    return out


def test_soft_argmax_matches_brute_force():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5) * 3
    coords, prob = soft_argmax_2d(logits)
    assert torch.allclose(coords.double(), _brute_soft_argmax(logits), atol=1e-6)
    assert torch.allclose(prob.sum(dim=(2, 3)), torch.ones(2, 3))


def test_soft_argmax_of_a_peak_is_its_cell_centre_in_keypoint_coordinates():
    """A sharp peak at cell (i, j) of a 12x12 map of a 96 px crop is at pixel (8 j + 4, 8 i + 4)."""
    from dsrbody.geometry.cameras import normalize_keypoints

    logits = torch.full((1, 1, 12, 12), -50.0)
    logits[0, 0, 3, 7] = 50.0
    coords, _ = soft_argmax_2d(logits)
    expected = normalize_keypoints(torch.tensor([[[8 * 7 + 4.0, 8 * 3 + 4.0]]]), 96)
    assert torch.allclose(coords, expected, atol=1e-5)


def test_soft_argmax_gradient_matches_finite_differences():
    torch.manual_seed(1)
    logits = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x: soft_argmax_2d(x)[0].double(), (logits,))


def test_branch_fuses_the_pyramid_at_the_finest_level():
    torch.manual_seed(0)
    branch = KeypointBranch((8, 16, 32), num_keypoints=5, width=12)
    pyramid = [torch.randn(2, 8, 12, 12), torch.randn(2, 16, 6, 6), torch.randn(2, 32, 3, 3)]
    coords, logits = branch(pyramid)
    assert coords.shape == (2, 5, 2) and logits.shape == (2, 5, 12, 12)
    assert coords.abs().max() < 1
    # every level reaches the keypoints
    pyramid = [p.requires_grad_() for p in pyramid]
    branch(pyramid)[0].sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in pyramid)
    with pytest.raises(ValueError, match="3 pyramid levels"):
        branch(pyramid[:2])


def test_regressor_with_keypoint_branch_outputs_and_loss():
    from dsrbody.losses import LossWeights, combine_losses, spin_loss_terms
    from dsrbody.models import build_regressor

    torch.manual_seed(0)
    body = TinyBody()
    reg = build_regressor(body, backbone="resnet18", img_res=96, keypoints=4)
    out = reg(torch.randn(2, 3, 96, 96))
    assert out["keypoints_2d_direct"].shape == (2, 4, 2)
    K = out["keypoints_2d"].shape[1]
    gt = {"keypoints": torch.cat([torch.rand(2, K, 2) * 2 - 1, torch.ones(2, K, 1)], dim=-1)}
    w = LossWeights(keypoints_2d_direct=5.0)
    terms = spin_loss_terms(out, gt, w)
    # the branch is compared with the last 4 ground-truth keypoints
    direct = out["keypoints_2d_direct"]
    expected = ((direct - gt["keypoints"][:, -4:, :2]) ** 2).mean(dim=(1, 2))
    assert torch.allclose(terms["keypoints_2d_direct"][0], expected)
    total, _, _ = combine_losses(terms, w)
    total.backward()
    assert reg.head.keypoints.heatmaps.weight.grad.abs().sum() > 0
    assert reg.backbone.layer2[0].conv1.weight.grad.abs().sum() > 0


def test_head_with_keypoints_needs_the_pyramid():
    from dsrbody.models.hmr import HMRHead

    head = HMRHead(32, 4, 2, keypoints=3, pyramid_channels=(8, 16, 32))
    with pytest.raises(ValueError, match="pyramid"):
        head(torch.randn(1, 32, 3, 3))
    with pytest.raises(ValueError, match="pyramid_channels"):
        HMRHead(32, 4, 2, keypoints=3)


def test_keypoint_branch_regressor_round_trips_through_load_model(tmp_path, monkeypatch):
    import dsrbody.body.factory as factory
    from dsrbody.models import build_regressor
    from dsrbody.models.loader import load_model

    torch.manual_seed(0)
    reg = build_regressor(TinyBody(), backbone="resnet18", img_res=96, keypoints=4, spatial_channels=8)
    reg.eval()
    path = tmp_path / "kp.pt"
    torch.save(reg.state_dict(), path)
    monkeypatch.setattr(factory, "build_body_model", lambda *a, **k: TinyBody())
    loaded = load_model(path, body="anny").regressor.eval()
    assert loaded.head.num_keypoints == 4 and loaded.img_res == 96
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        a, b = reg(x), loaded(x)
    assert torch.allclose(a["keypoints_2d_direct"], b["keypoints_2d_direct"], atol=1e-6)
    assert torch.allclose(a["pose6d"], b["pose6d"], atol=1e-6)


def test_bare_state_dict_with_a_broken_spatial_head_is_a_one_line_error(tmp_path, monkeypatch):
    import dsrbody.body.factory as factory
    from dsrbody.models import build_regressor
    from dsrbody.models.loader import load_model

    reg = build_regressor(TinyBody(), backbone="resnet18", img_res=96, spatial_channels=8)
    sd = reg.state_dict()
    sd["head.fc1.weight"] = sd["head.fc1.weight"][:, :-5]  # no longer a square grid of cells
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    monkeypatch.setattr(factory, "build_body_model", lambda *a, **k: TinyBody())
    with pytest.raises(ValueError, match=r"broken\.pt: the head's fc1 does not fit a square feature grid"):
        load_model(path, body="anny")
