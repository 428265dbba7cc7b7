"""Load a regressor for inference from any checkpoint dsrbody understands.

Three kinds of files:

- a checkpoint written by ``dsrbody train`` (Lightning, ``checkpoint["dsrbody"]`` describes the body
  model, the backbone and the recipe; weights under ``model.backbone.*`` / ``model.head.*``): everything
  is rebuilt from the description; only SMPL needs its model files (``model_path``), taken from the
  description unless given;
- the released SPIN ``model_checkpoint.pt`` and DSR ``dsr_w3DPW_checkpoint.pt`` /
  ``dsr_wo3DPW_checkpoint.pt`` (docs/design.md, Paper recipe): SMPL + ResNet-50, so ``model_path`` (the
  SMPL folder) is
  required;
- a bare regressor state dict (``backbone.*`` + ``head.*``, e.g. ``torch.save(reg.state_dict())``):
  the body model comes from ``body`` (default Anny).

The backbone is read from the weights themselves (ResNet-18/34/50 differ in block type and count),
and the head's width from ``head.fc1.weight``, so a bare state dict needs no further options. Every
key is accounted for (:func:`dsrbody.models.checkpoint.load_regressor_checkpoint`): a checkpoint of
another body model or backbone is a one-line error, never a silent partial load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["LoadedModel", "load_model", "infer_backbone", "read_checkpoint"]


@dataclass
class LoadedModel:
    """A regressor ready for inference and where it came from.

    Attributes:
        regressor: the :class:`~dsrbody.models.Regressor` (eval mode).
        body_name: ``"anny"`` or ``"smpl"``.
        backbone: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        kind: ``"dsrbody"`` (self-describing training checkpoint), ``"spin"``, ``"dsr"`` or ``"state_dict"``.
        meta: ``checkpoint["dsrbody"]`` for dsrbody checkpoints, else ``{}``.
        summary: the load report (one line per group of keys).
    """

    regressor: torch.nn.Module
    body_name: str
    backbone: str
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def describe(self) -> str:
        """One line for logs."""
        return f"{self.kind} checkpoint: body model {self.body_name}, backbone {self.backbone}"


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """Read a weight file once.

    Returns:
        ``(state_dict, layout, meta)``: the tensors (:func:`~dsrbody.models.checkpoint.read_state_dict`
        semantics), the layout (``"bare"``, ``"model"`` (SPIN), ``"state_dict"`` (Lightning/DSR)) and
        ``checkpoint["dsrbody"]`` (``{}`` when absent).

    Raises:
        FileNotFoundError: no such file. ValueError: not a weight file.
    """
    from dsrbody.models.checkpoint import read_state_dict, torch_load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint file not found")
    obj = torch_load_file(p)
    meta = obj.get("dsrbody") if isinstance(obj, dict) else None
    sd, layout = read_state_dict(p) if not isinstance(obj, dict) else _state_dict_of(obj, p)
    return sd, layout, dict(meta) if isinstance(meta, dict) else {}


def _state_dict_of(obj: dict, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    from collections.abc import Mapping

    for key in ("state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, torch.nn.Module):
            inner = inner.state_dict()
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            return {str(k): v for k, v in inner.items() if isinstance(v, torch.Tensor)}, key
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError(f"{path}: no tensors found (top-level keys: {list(obj.keys())[:8]})")
    return sd, "bare"


def _backbone_keys(sd: dict[str, torch.Tensor]) -> list[str]:
    from dsrbody.models.checkpoint import BACKBONE_ROOTS, strip_wrappers

    out = []
    for k in sd:
        s = strip_wrappers(k)
        if s.startswith("backbone."):
            out.append(s[len("backbone.") :])
        elif s.split(".", 1)[0] in BACKBONE_ROOTS:
            out.append(s)
    return out


def infer_backbone(sd: dict[str, torch.Tensor]) -> str | None:
    """The ResNet depth of a state dict: bottleneck blocks (``conv3``) mean ResNet-50; otherwise
    ``layer3`` has 2 basic blocks in ResNet-18 and 6 in ResNet-34. None when no backbone key is found."""
    keys = _backbone_keys(sd)
    if not keys:
        return None
    if any(".conv3." in f".{k}" for k in keys if k.startswith("layer")):
        return "resnet50"
    blocks = {int(k.split(".")[1]) for k in keys if k.startswith("layer3.") and k.split(".")[1].isdigit()}
    return "resnet34" if len(blocks) > 2 else "resnet18"


def _head_hidden(sd: dict[str, torch.Tensor]) -> int:
    from dsrbody.models.checkpoint import strip_wrappers

    for k, v in sd.items():
        s = strip_wrappers(k)
        if s in ("head.fc1.weight", "fc1.weight"):
            return int(v.shape[0])
    return 1024


def _spatial_channels(sd: dict[str, torch.Tensor]) -> int:
    """Channels of the head's spatial summary (``head.spatial.0.weight``), 0 when it has none."""
    from dsrbody.models.checkpoint import strip_wrappers

    for k, v in sd.items():
        if strip_wrappers(k) in ("head.spatial.0.weight", "spatial.0.weight"):
            return int(v.shape[0])
    return 0


def _branch_keypoints(sd: dict[str, torch.Tensor]) -> int:
    """Keypoints of the head's keypoint branch (``head.keypoints.heatmaps.weight``), 0 when it has none."""
    from dsrbody.models.checkpoint import strip_wrappers

    for k, v in sd.items():
        if strip_wrappers(k) in ("head.keypoints.heatmaps.weight", "keypoints.heatmaps.weight"):
            return int(v.shape[0])
    return 0


def _bare_spatial_res(
    sd: dict[str, torch.Tensor], spatial: int, body_model: torch.nn.Module, path: str | Path
) -> int:
    """Crop size of a bare state dict whose head has a spatial summary: the feature grid ``g x g`` is
    what ``fc1`` takes beyond the pooled features and the parameters; a ResNet's grid is
    ``img_res / 32``, so the crop is ``32 g`` (a self-describing checkpoint states it instead)."""
    from dsrbody.models.checkpoint import strip_wrappers

    fc1 = next((v for k, v in sd.items() if strip_wrappers(k) in ("head.fc1.weight", "fc1.weight")), None)
    names = ("head.spatial.0.weight", "spatial.0.weight")
    conv = next((v for k, v in sd.items() if strip_wrappers(k) in names), None)
    if fc1 is None or conv is None or fc1.dim() != 2 or conv.dim() != 4:
        raise ValueError(f"{path}: the head's spatial summary has no usable head.fc1/head.spatial weights")
    extra = int(body_model.num_joints) * 6 + int(body_model.shape_dim) + 3 + 2 * _branch_keypoints(sd)
    cells = (int(fc1.shape[1]) - int(conv.shape[1]) - extra) // spatial
    g = int(round(cells**0.5))
    if g * g != cells or g < 1:
        raise ValueError(f"{path}: the head's fc1 does not fit a square feature grid (a bare state dict)")
    return 32 * g


def _is_smpl_file(sd: dict[str, torch.Tensor], layout: str) -> bool:
    """SPIN/DSR release files: SPIN's ``{'model': ...}`` or DSR's Lightning dict with SMPL buffers."""
    if layout == "model":
        return True
    return any(k.startswith(("model.smpl.", "smpl.", "smpl_native.")) for k in sd)


def load_model(
    path: str | Path,
    *,
    body: str | None = None,
    model_path: str | Path | None = None,
    gender: str | None = None,
    topology: str | None = None,
    mesh: str = "eval",
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Build the regressor a checkpoint was trained as, and load its weights (strictly).

    Args:
        path: the checkpoint.
        body: body model family for files that do not say (bare state dicts; default ``"anny"``).
            Given for a self-describing checkpoint, it must agree with it.
        model_path: SMPL model file/folder (required for SMPL unless the checkpoint names an existing one).
        gender: SMPL gender (default: the checkpoint's, else neutral).
        topology: Anny mesh to use (default: see ``mesh``).
        mesh: for dsrbody checkpoints of Anny: ``"eval"`` (the recipe's evaluation mesh, the full one for
            pictures and metrics) or ``"train"`` (the training mesh, e.g. the low-poly one, cheaper to
            render in fitting).
        device: where to put the model.

    Raises:
        FileNotFoundError: no checkpoint; SMPL files missing.
        ValueError: unreadable file; body model or backbone that does not match the weights.
    """
    from dsrbody.body.factory import build_body_model
    from dsrbody.geometry.cameras import IMG_RES
    from dsrbody.models import build_regressor
    from dsrbody.models.checkpoint import load_regressor_checkpoint

    sd, layout, meta = read_checkpoint(path)
    backbone = infer_backbone(sd)
    if backbone is None:
        raise ValueError(f"{path}: no backbone weights found (expected backbone.*/layer*. keys of a ResNet)")
    n_iter, kind, body_opts, img_res = 3, "state_dict", {}, IMG_RES
    if meta:
        kind = "dsrbody"
        body_opts = dict(meta.get("body", {}))
        have = str(body_opts.get("name", "anny")).lower()
        if body is not None and str(body).lower() != have:
            raise ValueError(f"{path}: the checkpoint was trained with body model '{have}', not '{body}'")
        body_name = have
        cfg = meta.get("config") or {}
        n_iter = int((cfg.get("model") or {}).get("n_iter", 3))
        img_res = int((cfg.get("model") or {}).get("img_res", IMG_RES))
        declared = str(meta.get("backbone", backbone))
        if declared != backbone:
            raise ValueError(
                f"{path}: the checkpoint says backbone '{declared}' but holds {backbone} weights"
            )
        if body_name == "anny" and topology is None:
            eval_topo = (cfg.get("body") or {}).get("eval_topology")
            topology = str(eval_topo) if mesh == "eval" and eval_topo else body_opts.get("topology")
    elif _is_smpl_file(sd, layout):
        kind = "spin" if layout == "model" else "dsr"
        body_name = "smpl"
        if body is not None and str(body).lower() != "smpl":
            raise ValueError(f"{path}: a released SPIN/DSR checkpoint is an SMPL regressor, not '{body}'")
    else:
        body_name = str(body or "anny").lower()
    kwargs: dict[str, Any] = {}
    if body_name == "smpl":
        mp = model_path if model_path is not None else body_opts.get("model_path")
        if mp is None:
            raise ValueError(
                f"{path}: this checkpoint regresses SMPL bodies; pass --model-path with the SMPL files "
                "(SMPL_NEUTRAL.pkl, J_regressor_extra.npy, J_regressor_h36m.npy, smpl_mean_params.npz)"
            )
        g = gender or body_opts.get("gender") or "neutral"
        bm = build_body_model("smpl", model_path=mp, gender=str(g))
    elif body_name == "anny":
        if topology:
            kwargs["topology"] = str(topology)
        bm = build_body_model("anny", **kwargs)
    else:
        raise ValueError(f"{path}: unknown body model {body_name!r}")
    spatial = _spatial_channels(sd)
    if spatial and not meta:
        img_res = _bare_spatial_res(sd, spatial, bm, path)
    reg = build_regressor(
        bm,
        backbone=backbone,
        n_iter=n_iter,
        head_hidden=_head_hidden(sd),
        img_res=img_res,
        spatial_channels=spatial,
        keypoints=_branch_keypoints(sd),
    )
    report = load_regressor_checkpoint(reg, path)
    reg.eval().to(device)
    return LoadedModel(reg, body_name, backbone, kind, meta, report.summary())
