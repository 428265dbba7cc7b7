"""Differentiable Semantic Rendering losses (DSR, ICCV 2021; docs/design.md, Losses).

Loss functions take rendered maps and targets and return one value per sample:

- :func:`dsr_mc_loss`: DSR-MC, the minimally-clothed term. ``R`` is the body rendered with the sum
  of the prior probabilities of the MC labels present in the image, ``M`` the union of those labels'
  pixels. Forms: ``"iou"`` (default; the paper's soft IoU over the whole image), ``"iou_rows"`` (what
  the official code computes: the same ratio per image row, averaged over rows, empty rows counting 0;
  for reproduction only), ``"distance"`` (``sum R*DT / ((sum R)^(3/2) + 1e-6)``, DT the distance in
  pixels to ``M``; the official code sums over 3 identical RGB copies of ``R`` and ``DT``, so its
  value is this one divided by sqrt(3)).
- :func:`dsr_c_loss`: DSR-C, the clothing term, on the 8 merged-class channels. Forms: ``"nll"``
  (default: class-weighted negative log of the rendered probability of each pixel's label, with
  p(background) = 1 - sum of the 7 body classes), ``"official"`` (the official code's
  ``cross_entropy`` over the raw rendered channels, i.e. a softmax over values in [0, 1]),
  ``"inside"`` (the paper's "body inside the clothing mask" reading: the fraction of the rendered
  silhouette falling outside the person's clothed + MC mask; valid wherever the map has person pixels,
  while the other forms, like DSR-MC, need a minimally-clothed label).
- :func:`silhouette_loss`: a naive ``1 - IoU`` between the rendered silhouette and the whole
  person mask (the ablation baseline that inflates bodies).

:class:`DSRLoss` renders once per batch, all channels in one call, only the samples that need it,
and returns per-sample values with their validity masks; reduce with
:func:`dsrbody.losses.reduce.drop_nonfinite` (over the samples with DSR targets; the official code
averages over the whole batch, samples without labels counting 0: ``denominator="batch"``).

Official settings (``configs/dsr_train.cfg`` of the DSR release): DSR-MC ``nIOU`` (= ``"iou_rows"``),
weights 0.1 and 0.1, sigma 1e-5, gamma 0.1, ``START_DSR: -1`` (on from the first epoch when fine-tuning
from ``dsr_wo3DPW_checkpoint.pt``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from dsrbody.geometry.cameras import FOCAL_LENGTH, IMG_RES
from dsrbody.render.soft import SoftRasterSettings

__all__ = [
    "MC_FORMS",
    "C_FORMS",
    "dsr_mc_loss",
    "dsr_c_loss",
    "silhouette_loss",
    "soft_iou_loss",
    "DSRTargets",
    "DSRLoss",
]

MC_FORMS = ("iou", "iou_rows", "distance")
C_FORMS = ("nll", "official", "inside")
_EPS = 1e-6


def _as_bhw(x: torch.Tensor, what: str) -> torch.Tensor:
    """``(B, H, W)`` or ``(B, 1, H, W)`` -> ``(B, H, W)``."""
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"{what} must be (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    return x


def soft_iou_loss(rendered: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - sum(R M) / (sum(R + M - R M) + 1e-6)`` over each whole image.

    Args:
        rendered: ``(B, H, W)`` or ``(B, 1, H, W)`` in [0, 1].
        mask: same size, binary (bool or float).

    Returns:
        ``(B,)``.
    """
    R = _as_bhw(rendered, "rendered")
    M = _as_bhw(mask, "mask").to(R.dtype)
    inter = (R * M).sum(dim=(1, 2))
    union = (R + M - R * M).sum(dim=(1, 2))
    return 1.0 - inter / (union + _EPS)


def dsr_mc_loss(
    rendered: torch.Tensor,
    mask: torch.Tensor,
    form: str = "iou",
    distance: torch.Tensor | None = None,
) -> torch.Tensor:
    """DSR-MC per sample.

    Args:
        rendered: ``R`` ``(B, H, W)`` or ``(B, 1, H, W)``, the body rendered with the summed prior of the
            MC labels present.
        mask: ``M`` ``(B, H, W)``, union of the present MC labels' pixels.
        form: ``"iou"``, ``"iou_rows"`` or ``"distance"``.
        distance: ``(B, H, W)`` distance in pixels from each pixel to ``M`` (0 on ``M``), needed by
            ``"distance"`` (computed here with scipy on the CPU when omitted).

    Returns:
        ``(B,)``.
    """
    R = _as_bhw(rendered, "rendered")
    if form == "iou":
        return soft_iou_loss(R, mask)
    M = _as_bhw(mask, "mask").to(R.dtype)
    if M.shape != R.shape:
        raise ValueError(f"mask {tuple(M.shape)} does not match the rendered map {tuple(R.shape)}")
    if form == "iou_rows":
        inter = (R * M).sum(dim=2)
        union = (R + M - R * M).sum(dim=2) + _EPS
        return 1.0 - (inter / union).mean(dim=1)
    if form == "distance":
        if distance is None:
            from dsrbody.semantics.parsing import distance_map_batch

            distance = distance_map_batch(M > 0.5)
        D = _as_bhw(distance, "distance").to(R.dtype)
        return (R * D).sum(dim=(1, 2)) / (R.sum(dim=(1, 2)).clamp_min(0) ** 1.5 + _EPS)
    raise ValueError(f"unknown DSR-MC form {form!r}; choose one of {MC_FORMS}")


def _weighted_pixel_mean(
    per_pixel: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """``sum_p w[y_p] l_p / sum_p w[y_p]`` per sample (``cross_entropy(weight=...)``'s mean); 0 when
    no pixel has weight."""
    w = torch.gather(class_weights.to(per_pixel.dtype), 1, labels.flatten(1)).view_as(labels)
    num = (w * per_pixel).sum(dim=(1, 2))
    den = w.sum(dim=(1, 2))
    return torch.where(den > 0, num / den.clamp_min(_EPS), torch.zeros_like(num))


def dsr_c_loss(
    rendered: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    form: str = "nll",
    silhouette: torch.Tensor | None = None,
) -> torch.Tensor:
    """DSR-C per sample.

    Args:
        rendered: ``(B, 8, H, W)`` the body rendered with the 8 merged-class prior channels (channel 0,
            background, is only used by ``"official"``); may be None for ``"inside"``.
        labels: ``(B, H, W)`` integer merged classes of the image (0 = background).
        class_weights: ``(B, 8)`` per-class weights (see
            :func:`dsrbody.semantics.parsing.class_weights_batch`); needed by ``"nll"``/``"official"``.
        form: ``"nll"``, ``"official"`` or ``"inside"``.
        silhouette: ``(B, H, W)`` or ``(B, 1, H, W)`` rendered silhouette, needed by ``"inside"``.

    Returns:
        ``(B,)``; 0 for a sample whose pixels all have weight 0.
    """
    if labels.dim() != 3 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be an integer (B, H, W) map, got {tuple(labels.shape)} {labels.dtype}")
    labels = labels.long()
    if form == "inside":
        if silhouette is None:
            raise ValueError("DSR-C form 'inside' needs the rendered silhouette")
        S = _as_bhw(silhouette, "silhouette")
        outside = (labels == 0).to(S.dtype)
        return (S * outside).sum(dim=(1, 2)) / (S.sum(dim=(1, 2)) + _EPS)
    if form not in C_FORMS:
        raise ValueError(f"unknown DSR-C form {form!r}; choose one of {C_FORMS}")
    if rendered is None or rendered.dim() != 4 or rendered.shape[1] < 2:
        raise ValueError(
            "rendered class maps must be (B, C, H, W), got "
            f"{None if rendered is None else tuple(rendered.shape)}"
        )
    if rendered.shape[0] != labels.shape[0] or rendered.shape[2:] != labels.shape[1:]:
        raise ValueError(f"rendered {tuple(rendered.shape)} does not match labels {tuple(labels.shape)}")
    if class_weights is None:
        raise ValueError(f"DSR-C form {form!r} needs class weights (B, {rendered.shape[1]})")
    if form == "nll":
        body = rendered[:, 1:]
        p = torch.cat([1.0 - body.sum(dim=1, keepdim=True), body], dim=1)
        p_y = torch.gather(p, 1, labels[:, None]).squeeze(1)
        per_pixel = -torch.log(p_y.clamp(min=_EPS, max=1.0))
    else:  # official: softmax over the raw rendered values
        per_pixel = -torch.gather(torch.log_softmax(rendered, dim=1), 1, labels[:, None]).squeeze(1)
    return _weighted_pixel_mean(per_pixel, labels, class_weights)


def silhouette_loss(silhouette: torch.Tensor, person_mask: torch.Tensor) -> torch.Tensor:
    """Naive silhouette term: ``1 - IoU`` of the rendered silhouette and the whole (clothed) person
    mask. ``(B, [1,] H, W)`` each -> ``(B,)``."""
    return soft_iou_loss(silhouette, person_mask)


@dataclass
class DSRTargets:
    """Per-image targets of the DSR losses (see :mod:`dsrbody.semantics.parsing`).

    Attributes:
        mc_present: ``(B, 20)`` bool, MC labels covering more than 60 pixels.
        mc_mask: ``(B, H, W)`` bool union of their pixels.
        merged: ``(B, H, W)`` int merged classes (0 background).
        class_weights: ``(B, 8)`` float DSR-C weights.
        distance: ``(B, H, W)`` float distance map to ``mc_mask`` (only for the ``"distance"`` form).
        has_parsing: ``(B,)`` bool, False where the parsing map was missing (no DSR loss).
    """

    mc_present: torch.Tensor
    mc_mask: torch.Tensor
    merged: torch.Tensor
    class_weights: torch.Tensor
    distance: torch.Tensor | None = None
    has_parsing: torch.Tensor | None = None

    @classmethod
    def from_parsing(
        cls, labels: torch.Tensor, has_parsing: torch.Tensor | None = None, with_distance: bool = False
    ) -> DSRTargets:
        """Build every target from cleaned CIHP maps ``(B, H, W)`` (torch, any device)."""
        from dsrbody.semantics.parsing import (
            class_weights_batch,
            distance_map_batch,
            mc_mask_batch,
            merge_labels_batch,
        )

        mask, present = mc_mask_batch(labels)
        merged = merge_labels_batch(labels)
        return cls(
            mc_present=present,
            mc_mask=mask,
            merged=merged,
            class_weights=class_weights_batch(merged),
            distance=distance_map_batch(mask) if with_distance else None,
            has_parsing=has_parsing,
        )

    def valid(self) -> torch.Tensor:
        """``(B,)`` bool: samples that get DSR losses (a parsing map with at least one MC label)."""
        v = self.mc_present.bool().any(dim=1)
        if self.has_parsing is not None:
            v = v & self.has_parsing.to(v.device).bool()
        return v


RenderFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def _default_render() -> RenderFn:
    from dsrbody.render.soft import soft_render

    return soft_render


class DSRLoss(nn.Module):
    """DSR-MC, DSR-C and the naive silhouette loss from one render call per batch.

    Channel layout of the render: ``[MC texture, 8 merged-class channels]`` (9 channels; 1 when only
    DSR-MC or the silhouette term is on). Only samples that get at least one of the enabled losses are
    rendered.

    Args:
        faces: ``(F, 3)`` long triangles of the body mesh.
        prior: a :class:`dsrbody.semantics.prior.ClothingPrior` for this mesh (``mc_texture_batch`` and
            ``merged_channels``).
        mc_form: DSR-MC form (:data:`MC_FORMS`).
        c_form: DSR-C form (:data:`C_FORMS`).
        sigma, gamma: soft-rasteriser sharpness and depth temperature (official training: 1e-5, 1e-1),
            or
        settings: all the soft rasteriser's settings (:class:`~dsrbody.render.soft.SoftRasterSettings`;
            then leave ``sigma`` and ``gamma`` at their defaults). Kept as ``.settings``.
        focal, img_res: camera of docs/design.md, Cameras.
        render_fn: ``soft_render``-compatible callable (default :func:`dsrbody.render.soft.soft_render`,
            called with the settings and ``nonfinite="mask"`` so that a sample with NaN vertices yields
            NaN losses that :func:`~dsrbody.losses.reduce.drop_nonfinite` drops, instead of an
            exception). A custom ``render_fn`` is called with ``sigma=`` and ``gamma=`` only.

    Raises:
        ValueError (``PriorTopologyError``): the prior was made for another mesh.
    """

    def __init__(
        self,
        faces: torch.Tensor,
        prior,
        mc_form: str = "iou",
        c_form: str = "nll",
        sigma: float = 1e-5,
        gamma: float = 1e-1,
        focal: float = FOCAL_LENGTH,
        img_res: int = IMG_RES,
        render_fn: RenderFn | None = None,
        settings: SoftRasterSettings | None = None,
    ):
        super().__init__()
        if mc_form not in MC_FORMS:
            raise ValueError(f"unknown DSR-MC form {mc_form!r}; choose one of {MC_FORMS}")
        if c_form not in C_FORMS:
            raise ValueError(f"unknown DSR-C form {c_form!r}; choose one of {C_FORMS}")
        self.register_buffer("faces", torch.as_tensor(faces).long(), persistent=False)
        if hasattr(prior, "check_topology"):
            prior.check_topology(self.faces, what="DSR clothing prior")
        merged = torch.as_tensor(prior.merged_channels(), dtype=torch.float32)
        if merged.dim() != 2 or merged.shape[0] != self.faces.shape[0]:
            raise ValueError(
                f"the clothing prior has {tuple(merged.shape)} merged channels but the mesh has "
                f"{self.faces.shape[0]} faces: it was made for another topology"
            )
        self.register_buffer("merged_prior", merged, persistent=False)
        self.prior = prior
        self.mc_form, self.c_form = mc_form, c_form
        if settings is None:
            settings = SoftRasterSettings(sigma=sigma, gamma=gamma)
        elif (sigma, gamma) != (SoftRasterSettings.sigma, SoftRasterSettings.gamma):
            raise ValueError("DSRLoss: give settings= or sigma/gamma, not both")
        self.settings = settings
        self.focal, self.img_res = float(focal), int(img_res)
        self._render_fn = render_fn

    @property
    def sigma(self) -> float:
        """``settings.sigma`` (setting it replaces the settings)."""
        return self.settings.sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self.settings = replace(self.settings, sigma=value)

    @property
    def gamma(self) -> float:
        """``settings.gamma`` (setting it replaces the settings)."""
        return self.settings.gamma

    @gamma.setter
    def gamma(self, value: float) -> None:
        self.settings = replace(self.settings, gamma=value)

    def render(
        self, vertices_cam: torch.Tensor, mc_present: torch.Tensor, with_classes: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """One render call for every channel.

        Args:
            vertices_cam: ``(B, V, 3)`` camera-frame vertices (metres).
            mc_present: ``(B, 20)`` bool.
            with_classes: also render the 8 merged-class channels.

        Returns:
            ``mc (B, H, W)``, ``classes (B, 8, H, W)`` or None, ``silhouette (B, H, W)``.
        """
        if self._render_fn is None:
            render = _default_render()
            # the real renderer turns samples with non-finite vertices into NaN maps (dropped later)
            raster = {"settings": replace(self.settings, nonfinite="mask")}
        else:
            render = self._render_fn
            raster = {"sigma": self.settings.sigma, "gamma": self.settings.gamma}
        B = vertices_cam.shape[0]
        mc_tex = torch.as_tensor(self.prior.mc_texture_batch(mc_present.bool()))
        mc_tex = mc_tex.to(device=vertices_cam.device, dtype=vertices_cam.dtype).reshape(B, -1, 1)
        feats = [mc_tex]
        if with_classes:
            feats.append(self.merged_prior.to(vertices_cam.dtype)[None].expand(B, -1, -1))
        face_features = torch.cat(feats, dim=2)
        c = self.img_res / 2.0
        out, sil = render(
            vertices_cam,
            self.faces,
            face_features=face_features,
            focal=self.focal,
            principal_point=(c, c),
            image_size=(self.img_res, self.img_res),
            **raster,
        )
        return out[:, 0], (out[:, 1:] if with_classes else None), sil[:, 0]

    def forward(
        self,
        vertices_cam: torch.Tensor,
        targets: DSRTargets,
        mc: bool = True,
        clothing: bool = True,
        silhouette: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Per-sample DSR losses.

        Args:
            vertices_cam: ``(B, V, 3)`` predicted vertices in the camera frame (``Regressor`` output).
            targets: :class:`DSRTargets`.
            mc, clothing, silhouette: which terms to compute.

        Returns:
            dict with, for each enabled term ``t`` in ``"dsr_mc"``, ``"dsr_c"``, ``"silhouette"``: ``t``
            ``(B,)`` values (0 where not valid) and ``t + "_valid"`` ``(B,)`` bool; and the rendered maps of
            the rendered samples for logging: ``"render_index"`` ``(N,)`` long, ``"rendered_mc"``
            ``(N, H, W)``, ``"rendered_classes"`` ``(N, 8, H, W)`` (p(background) in channel 0 for the
            ``nll`` form), ``"rendered_silhouette"`` ``(N, H, W)``.
        """
        B = vertices_cam.shape[0]
        dev = vertices_cam.device
        valid_dsr = targets.valid().to(dev)
        person = targets.merged.to(dev) > 0
        has_parsing = (
            targets.has_parsing.to(dev).bool()
            if targets.has_parsing is not None
            else torch.ones(B, dtype=torch.bool, device=dev)
        )
        valid_sil = has_parsing & person.flatten(1).any(dim=1)
        # DSR-C's "inside" form needs only the person's pixels, not a minimally-clothed label
        valid_c0 = valid_sil if self.c_form == "inside" else valid_dsr
        need = torch.zeros(B, dtype=torch.bool, device=dev)
        if mc:
            need |= valid_dsr
        if clothing:
            need |= valid_c0
        if silhouette:
            need |= valid_sil
        idx = torch.nonzero(need).squeeze(1)
        out: dict[str, torch.Tensor] = {"render_index": idx}
        zeros = vertices_cam.new_zeros(B)
        if idx.numel() == 0:
            for name, flag, v in (
                ("dsr_mc", mc, valid_dsr),
                ("dsr_c", clothing, valid_c0),
                ("silhouette", silhouette, valid_sil),
            ):
                if flag:
                    out[name], out[name + "_valid"] = zeros, torch.zeros_like(v)
            return out
        r_mc, r_cls, r_sil = self.render(
            vertices_cam[idx],
            targets.mc_present.to(dev)[idx],
            with_classes=clothing and self.c_form != "inside",
        )
        out["rendered_mc"], out["rendered_silhouette"] = r_mc, r_sil

        def scatter(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
            # rendered samples that do not get this term (e.g. rendered for the silhouette only) get 0
            return torch.where(valid, zeros.index_put((idx,), values), zeros)

        if mc:
            dist = targets.distance.to(dev)[idx] if targets.distance is not None else None
            mask = targets.mc_mask.to(dev)[idx]
            out["dsr_mc_valid"] = valid_dsr
            out["dsr_mc"] = scatter(dsr_mc_loss(r_mc, mask, self.mc_form, distance=dist), valid_dsr)
        if clothing:
            labels = targets.merged.to(dev)[idx].long()
            weights = targets.class_weights.to(dev)[idx]
            has_weight = torch.gather(weights, 1, labels.flatten(1)).sum(dim=1) > 0
            valid_c = valid_c0
            if self.c_form != "inside":  # a sample with no weighted pixel has no DSR-C
                valid_c = valid_c & torch.zeros_like(valid_dsr).index_put((idx,), has_weight)
            out["dsr_c_valid"] = valid_c
            out["dsr_c"] = scatter(dsr_c_loss(r_cls, labels, weights, self.c_form, silhouette=r_sil), valid_c)
            if r_cls is not None:
                shown = r_cls.detach().clone()
                if self.c_form == "nll":
                    shown[:, 0] = 1.0 - shown[:, 1:].sum(dim=1)
                out["rendered_classes"] = shown
        if silhouette:
            out["silhouette"] = scatter(silhouette_loss(r_sil, person[idx]), valid_sil)
            out["silhouette_valid"] = valid_sil
        return out
