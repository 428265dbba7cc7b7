"""DSR losses: hand-computed values, gradients that move a rendered square to the mask, DSR-C's minimum,
and DSRLoss's single render call."""

from __future__ import annotations

import dataclasses
import math

import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from dsrbody.losses import DSRLoss, DSRTargets, dsr_c_loss, dsr_mc_loss, silhouette_loss

R2 = torch.tensor([[[1.0, 0.5], [0.0, 0.0]]])


def test_mc_iou_hand_computed():
    M = torch.tensor([[[1, 0], [1, 0]]], dtype=torch.bool)
    # intersection 1; union (1 + .5) + 2 - 1 = 2.5
    assert dsr_mc_loss(R2, M, "iou").item() == pytest.approx(1 - 1 / (2.5 + 1e-6))
    # per row: row 0: 1 / 1.5; row 1: 0 / 1 -> mean 1/3
    assert dsr_mc_loss(R2, M, "iou_rows").item() == pytest.approx(1 - (1 / 1.5 + 0) / 2, rel=1e-5)
    # (B, 1, H, W) maps are accepted
    assert dsr_mc_loss(R2[:, None], M, "iou").item() == pytest.approx(1 - 1 / 2.5, rel=1e-5)


def test_mc_iou_rows_empty_rows_count_zero():
    R = torch.zeros(1, 4, 3)
    R[0, 0] = 1.0
    M = torch.zeros(1, 4, 3, dtype=torch.bool)
    M[0, 0] = True
    assert dsr_mc_loss(R, M, "iou").item() == pytest.approx(0.0, abs=1e-6)
    assert dsr_mc_loss(R, M, "iou_rows").item() == pytest.approx(0.75, abs=1e-6)  # 3 empty rows of 4


def test_mc_distance_hand_computed():
    M = torch.tensor([[[1, 0], [0, 0]]], dtype=torch.bool)
    # distances to the mask pixel: [[0, 1], [1, sqrt 2]]; sum R*D = 0.5; (sum R)^1.5 = 1.5^1.5
    expected = 0.5 / (1.5**1.5 + 1e-6)
    D = torch.tensor([[[0.0, 1.0], [1.0, math.sqrt(2)]]])
    assert dsr_mc_loss(R2, M, "distance", distance=D).item() == pytest.approx(expected)
    assert dsr_mc_loss(R2, M, "distance").item() == pytest.approx(expected)  # computed with scipy
    with pytest.raises(ValueError, match="unknown DSR-MC form 'dice'"):
        dsr_mc_loss(R2, M, "dice")


def test_mc_finite_difference_gradients():
    g = torch.Generator().manual_seed(0)
    R = torch.rand(2, 5, 6, generator=g, dtype=torch.float64).requires_grad_()
    M = torch.rand(2, 5, 6, generator=g) > 0.6
    D = torch.from_numpy(scipy.ndimage.distance_transform_edt(~M.numpy()[0]))[None].expand(2, -1, -1)
    for form in ("iou", "iou_rows", "distance"):
        assert torch.autograd.gradcheck(lambda r, f=form: dsr_mc_loss(r, M, f, distance=D), (R,))


def _soft_square(centre: torch.Tensor, half: float = 3.0, size: int = 24, tau: float = 0.7) -> torch.Tensor:
    """A differentiable stand-in render: a soft square of side 2*half pixels at ``centre`` (x, y)."""
    c = torch.arange(size, dtype=centre.dtype) + 0.5
    x = torch.sigmoid((half - (c - centre[0]).abs()) / tau)
    y = torch.sigmoid((half - (c - centre[1]).abs()) / tau)
    return (y[:, None] * x[None, :])[None]


@pytest.mark.parametrize("form", ["iou", "iou_rows", "distance"])
def test_mc_gradient_moves_a_square_toward_the_mask(form):
    M = torch.zeros(1, 24, 24, dtype=torch.bool)
    M[0, 12:18, 14:20] = True  # a 6x6 mask centred at (17, 15)
    target = torch.tensor([17.0, 15.0])
    start = torch.tensor([12.0, 10.0])  # overlapping, so that IoU has a gradient too
    centre = start.clone().requires_grad_()
    opt = torch.optim.Adam([centre], lr=0.3)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = dsr_mc_loss(_soft_square(centre), M, form).sum()
        first = loss.item() if first is None else first
        loss.backward()
        if first == loss.item():
            g = centre.grad
            # the first step points toward the mask in both x and y
            assert g[0] < 0 and g[1] < 0
        opt.step()
    assert loss.item() < first
    assert (centre.detach() - target).norm() < 0.25 * (start - target).norm()


def _onehot_maps(labels: torch.Tensor, C: int = 8) -> torch.Tensor:
    return F.one_hot(labels, C).permute(0, 3, 1, 2).float()


def test_c_nll_hand_computed():
    # 1 x 3 image, labels [0, 1, 2] with 3 classes; rendered body classes 1, 2 at each pixel
    rendered = torch.tensor([[[[9.0, 9.0, 9.0]], [[0.2, 0.6, 0.1]], [[0.3, 0.2, 0.4]]]])  # channel 0 ignored
    labels = torch.tensor([[[0, 1, 2]]])
    w = torch.tensor([[1.0, 0.5, 2.0]])
    # p(bg) at pixel 0 = 1 - 0.2 - 0.3 = 0.5; p(1) at pixel 1 = 0.6; p(2) at pixel 2 = 0.4
    expected = (1.0 * -math.log(0.5) + 0.5 * -math.log(0.6) + 2.0 * -math.log(0.4)) / 3.5
    assert dsr_c_loss(rendered, labels, w, "nll").item() == pytest.approx(expected, rel=1e-6)


def test_c_official_is_weighted_cross_entropy_over_raw_probabilities():
    g = torch.Generator().manual_seed(1)
    rendered = torch.rand(3, 8, 6, 5, generator=g)
    labels = torch.randint(0, 8, (3, 6, 5), generator=g)
    w = torch.rand(3, 8, generator=g)
    out = dsr_c_loss(rendered, labels, w, "official")
    for b in range(3):
        ref = F.cross_entropy(rendered[b : b + 1], labels[b : b + 1], weight=w[b])
        assert out[b].item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("form", ["nll", "official"])
def test_c_is_minimal_when_rendered_classes_agree(form):
    g = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 8, (1, 10, 10), generator=g)
    w = torch.rand(1, 8, generator=g) + 0.1
    agree = _onehot_maps(labels)
    best = dsr_c_loss(agree, labels, w, form).item()
    if form == "nll":
        assert best == pytest.approx(0.0, abs=1e-6)
    for _ in range(20):  # any other rendering with probabilities in [0, 1] that sum to <= 1 costs more
        other = torch.rand(1, 8, 10, 10, generator=g)
        other = other / other.sum(1, keepdim=True)
        assert dsr_c_loss(other, labels, w, form).item() > best
    shuffled = _onehot_maps(labels.roll(1, dims=2))
    assert dsr_c_loss(shuffled, labels, w, form).item() > best + 0.1


def test_c_zero_weights_give_zero():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    assert dsr_c_loss(torch.rand(1, 8, 4, 4), labels, torch.zeros(1, 8), "nll").item() == 0.0


def test_c_inside_and_naive_silhouette_hand_computed():
    labels = torch.tensor([[[0, 3], [1, 0]]])
    sil = torch.tensor([[[0.5, 1.0], [1.0, 1.0]]])
    # rendered mass 3.5; outside the person (labels 0): 0.5 + 1 = 1.5
    assert dsr_c_loss(None, labels, None, "inside", silhouette=sil).item() == pytest.approx(
        1.5 / 3.5, rel=1e-6
    )
    # naive: IoU with the person mask: inter 2, union 3.5 + 2 - 2 = 3.5
    assert silhouette_loss(sil, labels > 0).item() == pytest.approx(1 - 2 / 3.5, rel=1e-6)


# --------------------------------------------------------------------------------------------
# DSRLoss with a stand-in renderer and prior
# --------------------------------------------------------------------------------------------


class _Prior:
    """Prior stand-in: F faces, CIHP probabilities all on one label per face."""

    def __init__(self, face_labels: torch.Tensor):
        self.probs = F.one_hot(face_labels, 20).float()

    def mc_texture_batch(self, present):
        mc = torch.zeros(20, dtype=torch.bool)
        mc[[13, 14, 15, 18, 19]] = True
        return torch.einsum("fl,bl->bf", self.probs, (present & mc).float())[..., None]

    def merged_channels(self):
        from dsrbody.semantics.labels import MERGE_MATRIX

        return self.probs @ torch.tensor(MERGE_MATRIX)


class _SplatRender:
    """Differentiable stand-in for soft_render: each face is a Gaussian blob at its projected centroid."""

    def __init__(self):
        self.calls = []

    def __call__(self, vertices, faces, *, face_features, focal, principal_point, image_size, sigma, gamma):
        self.calls.append((vertices.shape[0], face_features.shape))
        H, W = image_size
        cen = vertices[:, faces].mean(2)  # (B, F, 3)
        u = focal * cen[..., 0] / cen[..., 2] + principal_point[0]
        v = focal * cen[..., 1] / cen[..., 2] + principal_point[1]
        ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
        d2 = (xs[None, None] - u[..., None, None]) ** 2 + (ys[None, None] - v[..., None, None]) ** 2
        cov = torch.exp(-d2 / 2.0)  # (B, F, H, W)
        sil = 1 - torch.prod(1 - 0.999 * cov, dim=1, keepdim=True)
        wsum = cov.sum(1, keepdim=True) + 1e-3
        feats = torch.einsum("bfhw,bfc->bchw", cov / wsum, face_features)
        return feats, sil


def _scene(B=3, S=16):
    # 4 faces: face (13) at the top, left arm (14), pants (9), upper clothes (5)
    face_labels = torch.tensor([13, 14, 9, 5])
    verts = torch.tensor(
        [[0.0, -0.02, 50.0], [0.005, -0.02, 50.0], [0.0, -0.015, 50.0],
         [-0.02, 0.0, 50.0], [-0.015, 0.0, 50.0], [-0.02, 0.005, 50.0],
         [0.0, 0.02, 50.0], [0.005, 0.02, 50.0], [0.0, 0.025, 50.0],
         [0.02, 0.0, 50.0], [0.025, 0.0, 50.0], [0.02, 0.005, 50.0]]
    )  # fmt: skip
    faces = torch.arange(12).view(4, 3)
    labels = torch.zeros(B, S, S, dtype=torch.long)
    labels[:, 2:6, 6:10] = 13  # face pixels (16 px: below the 60-px rule on their own)
    labels[0, 8:16, 0:8] = 14  # sample 0: a left arm of 64 px -> MC present
    labels[1, 8:16, 8:16] = 9  # sample 1: pants only -> no MC label present
    labels[2, 0:8, 0:16] = 13  # sample 2: a large face region -> MC present
    return face_labels, verts.expand(B, -1, -1).clone(), faces, labels


def test_dsrloss_one_render_call_for_all_channels_and_validity():
    face_labels, verts, faces, labels = _scene()
    render = _SplatRender()
    loss = DSRLoss(faces, _Prior(face_labels), render_fn=render, focal=5000.0 * 16 / 224, img_res=16)
    targets = DSRTargets.from_parsing(labels)
    assert targets.valid().tolist() == [True, False, True]
    out = loss(verts.requires_grad_(), targets, silhouette=True)
    assert len(render.calls) == 1
    n, shape = render.calls[0]
    assert n == 3 and shape == (3, 4, 9)  # sample 1 rendered for the silhouette term only
    assert out["dsr_mc_valid"].tolist() == [True, False, True]
    assert out["dsr_c_valid"].tolist() == [True, False, True]
    assert out["silhouette_valid"].tolist() == [True, True, True]
    assert out["dsr_mc"][1] == 0 and out["dsr_c"][1] == 0
    # the values are the loss functions applied to the rendered maps
    assert torch.allclose(
        out["dsr_mc"][[0, 2]], dsr_mc_loss(out["rendered_mc"][[0, 2]], targets.mc_mask[[0, 2]])
    )
    (out["dsr_mc"].sum() + out["dsr_c"].sum()).backward()
    assert verts.grad.abs().sum() > 0

    render2 = _SplatRender()
    loss2 = DSRLoss(faces, _Prior(face_labels), render_fn=render2, focal=5000.0 * 16 / 224, img_res=16)
    out2 = loss2(verts.detach(), targets, clothing=False)
    assert render2.calls[0] == (2, (2, 4, 1))  # DSR-MC only: 1 channel, only the 2 valid samples
    assert "dsr_c" not in out2


def test_dsrloss_inside_form_needs_only_the_person_mask():
    """DSR-C's "inside" form is valid wherever the map has person pixels (sample 1 has no minimally
    clothed label: no DSR-MC, no "nll" DSR-C, but "inside" DSR-C)."""
    face_labels, verts, faces, labels = _scene()
    targets = DSRTargets.from_parsing(labels)
    render = _SplatRender()
    loss = DSRLoss(faces, _Prior(face_labels), render_fn=render, c_form="inside", img_res=16)
    out = loss(verts, targets, mc=False)
    assert out["dsr_c_valid"].tolist() == [True, True, True] and render.calls[0][0] == 3
    expected = dsr_c_loss(None, targets.merged, None, "inside", silhouette=out["rendered_silhouette"])
    assert torch.allclose(out["dsr_c"], expected)
    both = DSRLoss(faces, _Prior(face_labels), render_fn=_SplatRender(), c_form="inside", img_res=16)(
        verts, targets
    )
    assert both["dsr_mc_valid"].tolist() == [True, False, True] and both["dsr_c_valid"].all()
    nll = DSRLoss(faces, _Prior(face_labels), render_fn=_SplatRender(), img_res=16)(verts, targets, mc=False)
    assert nll["dsr_c_valid"].tolist() == [True, False, True]


def test_dsrloss_no_valid_sample_renders_nothing():
    face_labels, verts, faces, labels = _scene()
    render = _SplatRender()
    loss = DSRLoss(faces, _Prior(face_labels), render_fn=render, img_res=16)
    targets = DSRTargets.from_parsing(labels, has_parsing=torch.tensor([False, False, False]))
    out = loss(verts, targets)
    assert not render.calls and out["dsr_mc"].tolist() == [0.0, 0.0, 0.0] and not out["dsr_mc_valid"].any()


def test_dsrloss_checks_forms_and_prior_size():
    face_labels, _, faces, _ = _scene()
    with pytest.raises(ValueError, match="unknown DSR-MC form"):
        DSRLoss(faces, _Prior(face_labels), mc_form="dice")
    with pytest.raises(ValueError, match="unknown DSR-C form"):
        DSRLoss(faces, _Prior(face_labels), c_form="bce")
    with pytest.raises(ValueError, match="another topology"):
        DSRLoss(faces, _Prior(torch.tensor([13, 14, 9])))


def test_dsrloss_renders_with_one_settings_object(monkeypatch):
    """sigma/gamma or a SoftRasterSettings; the real renderer gets the settings with nonfinite="mask",
    a custom render_fn its documented sigma= and gamma=."""
    import dsrbody.render.soft
    from dsrbody.render.soft import SoftRasterSettings

    face_labels, verts, faces, labels = _scene()
    targets = DSRTargets.from_parsing(labels)
    prior = _Prior(face_labels)
    assert DSRLoss(faces, prior).settings == SoftRasterSettings()
    loss = DSRLoss(faces, prior, sigma=1e-3, gamma=0.2)
    assert loss.settings == SoftRasterSettings(sigma=1e-3, gamma=0.2)
    assert (loss.sigma, loss.gamma) == (1e-3, 0.2)
    loss.sigma = 2e-3
    assert loss.settings.sigma == 2e-3

    seen = []

    def fake_soft_render(vertices, faces, *, face_features, image_size, **kw):
        seen.append(kw)
        B, C = vertices.shape[0], face_features.shape[-1]
        return vertices.new_zeros(B, C, *image_size), vertices.new_zeros(B, 1, *image_size)

    monkeypatch.setattr(dsrbody.render.soft, "soft_render", fake_soft_render)
    settings = SoftRasterSettings(sigma=1e-4, near=10.0, max_pairs_per_chunk=1000)
    DSRLoss(faces, prior, settings=settings, img_res=16)(verts, targets)
    assert seen[-1]["settings"] == dataclasses.replace(settings, nonfinite="mask")
    assert not {"sigma", "gamma", "nonfinite"} & set(seen[-1])

    custom = DSRLoss(faces, prior, settings=settings, img_res=16, render_fn=fake_soft_render)
    custom(verts, targets)
    assert seen[-1]["sigma"] == 1e-4 and seen[-1]["gamma"] == 0.1 and "settings" not in seen[-1]

    with pytest.raises(ValueError, match="give settings= or sigma/gamma, not both"):
        DSRLoss(faces, prior, sigma=1e-3, settings=settings)
    with pytest.raises(ValueError, match="^SoftRasterSettings: gamma must be > 0"):
        DSRLoss(faces, prior, gamma=0.0)
