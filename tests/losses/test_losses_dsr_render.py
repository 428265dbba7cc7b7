"""DSRLoss with the real soft rasteriser (dsrbody.render.soft) on a tiny scene."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dsrbody.losses import DSRLoss, DSRTargets, drop_nonfinite
from dsrbody.semantics.prior import ClothingPrior

RES = 32
FOCAL = 5000.0 * RES / 224  # same field of view as the 224 crop
Z = 50.0
PX = Z / FOCAL  # metres per pixel at depth Z


def _prior(num_faces: int) -> ClothingPrior:
    """Every face is ``face`` (CIHP 13): MC texture 1 when 'face' is present; merged class 'head'."""
    return ClothingPrior(F.one_hot(torch.full((num_faces,), 13), 20).float(), topology_id=None, source="test")


def _square(centre_px: torch.Tensor, half_px: float = 4.0) -> torch.Tensor:
    """``(B, 4, 3)`` camera-frame corners of a square whose image centre is ``centre_px`` (B, 2)."""
    c = (centre_px - RES / 2) * PX
    offs = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * half_px * PX
    xy = c[:, None, :] + offs[None]
    return torch.cat([xy, torch.full_like(xy[..., :1], Z)], dim=-1)


FACES = torch.tensor([[0, 1, 2], [0, 2, 3]])


def _targets(B: int) -> DSRTargets:
    labels = torch.zeros(B, RES, RES, dtype=torch.long)
    labels[:, 16:25, 18:27] = 13  # a 9x9 'face' region (81 px > 60) centred at (22.5, 20.5)
    return DSRTargets.from_parsing(labels)


@pytest.mark.parametrize("form", ["iou", "distance"])
def test_dsr_mc_moves_the_rendered_square_onto_the_mask(form):
    loss_fn = DSRLoss(FACES, _prior(2), mc_form=form, sigma=1e-4, focal=FOCAL, img_res=RES)
    targets = _targets(1)
    target = torch.tensor([22.5, 20.5])
    start = torch.tensor([17.0, 15.0])
    centre = start.clone()[None].requires_grad_()
    opt = torch.optim.Adam([centre], lr=0.4)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        out = loss_fn(_square(centre), targets, clothing=False)
        losses.append(out["dsr_mc"].sum().item())
        out["dsr_mc"].sum().backward()
        opt.step()
    assert out["dsr_mc_valid"].all()
    assert losses[-1] < 0.5 * losses[0]
    assert (centre.detach()[0] - target).norm() < 0.35 * (start - target).norm()


def test_dsr_c_is_lower_on_the_matching_labels_and_nan_samples_are_dropped():
    loss_fn = DSRLoss(FACES, _prior(2), sigma=1e-4, focal=FOCAL, img_res=RES)
    targets = _targets(3)
    centres = torch.tensor([[22.5, 20.5], [8.0, 8.0], [22.5, 20.5]])
    verts = _square(centres).requires_grad_()
    with torch.no_grad():
        verts[2, 0, 0] = float("nan")  # a broken prediction
    out = loss_fn(verts, targets)
    assert torch.isnan(out["dsr_c"][2]) and torch.isnan(out["dsr_mc"][2])
    assert out["dsr_c"][0] < out["dsr_c"][1]  # the head rendered on the head labels costs less
    assert out["dsr_mc"][0] < out["dsr_mc"][1]
    assert out["rendered_classes"].shape == (3, 8, RES, RES)
    mean, n_bad = drop_nonfinite(out["dsr_c"], out["dsr_c_valid"])
    mean_mc, n_bad_mc = drop_nonfinite(out["dsr_mc"], out["dsr_mc_valid"])
    assert n_bad == 1 and n_bad_mc == 1
    (mean + mean_mc).backward()
    assert torch.isfinite(verts.grad[:2]).all() and verts.grad[:2].abs().sum() > 0
    assert torch.isfinite(verts.grad).all()  # the NaN sample poisons nothing
