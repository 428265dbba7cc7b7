"""One loader from any checkpoint to a regressor, and what a dsrbody checkpoint says about itself.

Every command and the API build their regressor here (:func:`load_model`): ``dsrbody demo``, ``fit``,
``eval`` (with the recipe it is given or the one stored in the checkpoint), the benchmarks and
``dsrbody.load_model``; training checks ``model.init_checkpoint`` and ``--resume`` files with
:func:`check_checkpoint`. Three kinds of files:

- a checkpoint written by ``dsrbody train`` (Lightning, ``checkpoint["dsrbody"]`` describes the body
  model, the backbone and the recipe (:func:`checkpoint_meta`); weights under ``model.backbone.*`` /
  ``model.head.*``): everything is rebuilt from the description; only SMPL needs its model files
  (``model_path``), taken from the description unless given;
- the released SPIN ``model_checkpoint.pt`` and DSR ``dsr_w3DPW_checkpoint.pt`` /
  ``dsr_wo3DPW_checkpoint.pt`` (docs/design.md, Paper recipe): SMPL + ResNet-50, so ``model_path`` (the
  SMPL folder) is required;
- a bare regressor state dict (``backbone.*`` + ``head.*``, e.g. ``torch.save(reg.state_dict())``):
  the body model comes from ``body`` (default Anny).

The backbone is recognised from the weights themselves by the backbone registry
(:func:`dsrbody.models.backbones.infer_backbone`: each family's ``recognise`` hook), the head's width,
spatial summary and keypoint branch from the head's weights, so a bare state dict needs no further
options. Every key is accounted for (:func:`dsrbody.models.checkpoint.load_regressor_checkpoint`): a
checkpoint of another body model or backbone is a one-line error, never a silent partial load.
Reading never runs code from the file (:func:`~dsrbody.models.checkpoint.torch_load_file`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "LoadedModel",
    "load_model",
    "infer_backbone",
    "read_checkpoint",
    "read_checkpoint_meta",
    "check_checkpoint",
    "checkpoint_meta",
    "plain_container",
]


@dataclass
class LoadedModel:
    """A regressor ready for inference and where it came from.

    Attributes:
        regressor: the :class:`~dsrbody.models.Regressor` (eval mode).
        body_name: a registered body model (:data:`dsrbody.body.factory.BODY_MODELS`).
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


def _body_spec_of(name: str, path: str | Path):
    """The registry entry of a body model named by a checkpoint, a recipe or the caller; a one-line
    ``ValueError`` naming the file for an unknown one."""
    from dsrbody.body.factory import BODY_MODELS, body_spec

    spec = body_spec(name, missing_ok=True)
    if spec is None:
        raise ValueError(f"{path}: unknown body model {name!r}; known: {', '.join(BODY_MODELS)}")
    return spec


def infer_backbone(sd: Mapping[str, Any] | Iterable[str]) -> str | None:
    """The backbone a state dict (or its keys) holds, recognised by the backbone registry
    (:func:`dsrbody.models.backbones.infer_backbone`; wrapper prefixes such as ``module.``/``model.``
    are stripped first); None when no registered backbone's weights are found."""
    from dsrbody.models.backbones import infer_backbone as _infer
    from dsrbody.models.checkpoint import strip_wrappers

    return _infer([strip_wrappers(str(k)) for k in sd])


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
    config: Any = None,
) -> LoadedModel:
    """Build the regressor a checkpoint was trained as, and load its weights (strictly).

    Args:
        path: the checkpoint.
        body: body model family for files that do not say (bare state dicts; default
            :data:`~dsrbody.body.factory.DEFAULT_BODY_MODEL`).
            Given for a self-describing checkpoint, it must agree with it.
        model_path: SMPL model file/folder (required for SMPL unless the checkpoint names an existing one).
        gender: SMPL gender (default: the checkpoint's, else neutral).
        topology: Anny mesh to use (default: see ``mesh``).
        mesh: for Anny recipes: ``"eval"`` (the recipe's evaluation mesh, the full one for pictures
            and metrics) or ``"train"`` (the training mesh, e.g. the low-poly one, cheaper to render in
            fitting).
        device: where to put the model.
        config: a recipe (``DictConfig`` or anything with ``.body`` and ``.model`` of a recipe's keys)
            to build the regressor from instead of the checkpoint's own description: body model,
            backbone and head settings come from it, checked against the checkpoint
            (:func:`check_checkpoint`) and loaded strictly. ``body``/``gender``/``topology`` must not
            be given with it.

    Raises:
        FileNotFoundError: no checkpoint; SMPL files missing.
        ValueError: unreadable file; body model or backbone that does not match the weights.
    """
    from dsrbody.body.factory import DEFAULT_BODY_MODEL, body_spec, build_body_model, spin_body_model
    from dsrbody.geometry.cameras import IMG_RES
    from dsrbody.models.checkpoint import load_regressor_checkpoint
    from dsrbody.models.hmr import build_regressor

    sd, layout, meta = read_checkpoint(path)
    backbone = infer_backbone(sd)
    if backbone is None:
        raise ValueError(f"{path}: no backbone weights found (no registered backbone recognises its keys)")
    n_iter, dropout, kind, body_opts, img_res = 3, 0.5, "state_dict", {}, IMG_RES
    if config is not None:
        if body is not None or gender is not None or topology is not None:
            raise ValueError("load_model: pass body/gender/topology in the recipe, not beside `config`")
        check_checkpoint(meta or None, config, path)
        kind = (
            "dsrbody"
            if meta
            else ("spin" if layout == "model" else "dsr" if _is_smpl_file(sd, layout) else kind)
        )
        b, m = config.body, config.model
        body_name = str(b.name).lower()
        body_opts = {"model_path": b.model_path, "gender": str(b.gender)}
        if _body_spec_of(body_name, path).topologies:
            topology = str(b.eval_topology if mesh == "eval" else b.topology)
        n_iter, dropout, img_res = int(m.n_iter), float(m.dropout), int(m.img_res)
        if str(m.backbone) != backbone:
            raise ValueError(f"{path}: holds {backbone} weights, the recipe asks for backbone '{m.backbone}'")
    elif meta:
        kind = "dsrbody"
        body_opts = dict(meta.get("body", {}))
        have = str(body_opts.get("name", DEFAULT_BODY_MODEL)).lower()
        if body is not None and str(body).lower() != have:
            raise ValueError(f"{path}: the checkpoint was trained with body model '{have}', not '{body}'")
        body_name = have
        cfg = meta.get("config") or {}
        n_iter = int((cfg.get("model") or {}).get("n_iter", 3))
        dropout = float((cfg.get("model") or {}).get("dropout", dropout))
        img_res = int((cfg.get("model") or {}).get("img_res", IMG_RES))
        declared = str(meta.get("backbone", backbone))
        if declared != backbone:
            raise ValueError(
                f"{path}: the checkpoint says backbone '{declared}' but holds {backbone} weights"
            )
        if _body_spec_of(body_name, path).topologies and topology is None:
            eval_topo = (cfg.get("body") or {}).get("eval_topology")
            topology = str(eval_topo) if mesh == "eval" and eval_topo else body_opts.get("topology")
    elif _is_smpl_file(sd, layout):
        kind = "spin" if layout == "model" else "dsr"
        body_name = spin_body_model()
        if body is not None and str(body).lower() != body_name:
            raise ValueError(
                f"{path}: a released SPIN/DSR checkpoint is an {body_spec(body_name).label} regressor, "
                f"not '{body}'"
            )
    else:
        body_name = str(body or DEFAULT_BODY_MODEL).lower()
    spec = _body_spec_of(body_name, path)
    mp = None
    if spec.needs_files:
        mp = model_path if model_path is not None else body_opts.get("model_path")
        if mp is None:
            raise ValueError(
                f"{path}: this checkpoint regresses {spec.label} bodies; pass --model-path with "
                f"{spec.files_help}"
            )
    g = (gender or body_opts.get("gender") or "neutral") if spec.gendered else "neutral"
    bm = build_body_model(body_name, model_path=mp, gender=str(g), **spec.mesh_options(topology))
    spatial = _spatial_channels(sd)
    if config is not None:
        for key, have in (("spatial_channels", spatial), ("keypoints", _branch_keypoints(sd))):
            want = (
                int(config.model.get(key, 0) or 0)
                if hasattr(config.model, "get")
                else int(getattr(config.model, key, 0) or 0)
            )
            if want != have:
                raise ValueError(f"{path}: the weights have model.{key}={have}, the recipe says {want}")
    if spatial and not meta and config is None:
        img_res = _bare_spatial_res(sd, spatial, bm, path)
    reg = build_regressor(
        bm,
        backbone=backbone,
        n_iter=n_iter,
        dropout=dropout,
        head_hidden=_head_hidden(sd),
        img_res=img_res,
        spatial_channels=spatial,
        keypoints=_branch_keypoints(sd),
    )
    report = load_regressor_checkpoint(reg, path)
    reg.eval().to(device)
    return LoadedModel(reg, body_name, backbone, kind, meta, report.summary())


# ----------------------------------------------------------------------------------------------
# what a dsrbody checkpoint says about itself
# ----------------------------------------------------------------------------------------------


def checkpoint_meta(
    body: torch.nn.Module, body_opts: dict[str, Any], backbone: str, config: dict
) -> dict[str, Any]:
    """What a dsrbody checkpoint says about itself (stored under ``checkpoint["dsrbody"]``).

    Args:
        body: the trained body model (its mesh id, joint count and shape size are recorded).
        body_opts: its identity as a recipe gives it (``{"name", "model_path", "gender"[, "topology"]}``).
        backbone: the backbone name.
        config: the resolved recipe as plain containers.

    Returns:
        ``{"version", "body", "backbone", "config"}``, plain containers only (:func:`plain_container`),
        what :func:`read_checkpoint_meta` reads back with the safe loader.
    """
    from dsrbody import __version__

    return plain_container(
        {
            "version": __version__,
            "body": dict(body_opts)
            | {
                "topology_id": str(body.topology_id),
                "num_joints": int(body.num_joints),
                "shape_dim": int(body.shape_dim),
            },
            "backbone": str(backbone),
            "config": config,
        },
        "checkpoint metadata",
    )


def plain_container(value: Any, where: str = "value") -> Any:
    """``value`` as plain containers only (dict with str keys, list, str, int, float, bool, None; tuples
    become lists, paths strings), what the safe ``weights_only`` loader reads back without an allow-list.

    Raises:
        TypeError: another type (names where it is).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain_container(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_container(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where}: {type(value).__name__} is not a plain container type (checkpoints hold only those)"
    )


def read_checkpoint_meta(path: str | Path) -> dict[str, Any] | None:
    """``checkpoint["dsrbody"]`` of a dsrbody checkpoint, or None for other weight files.

    Read with :func:`~dsrbody.models.checkpoint.torch_load_file` (``weights_only``: no code from the
    file runs).

    Raises:
        FileNotFoundError: the file does not exist. ValueError: it is not a torch file, or it needs
        objects the safe loader refuses (one line naming the file and the type).
    """
    from dsrbody.models.checkpoint import torch_load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: checkpoint file does not exist")
    ckpt = torch_load_file(p)  # the safe loader: a file that would run code is refused
    meta = ckpt.get("dsrbody") if isinstance(ckpt, dict) else None
    return meta if isinstance(meta, dict) else None


def check_checkpoint(meta: dict[str, Any] | None, cfg: Any, path: str | Path) -> None:
    """Refuse a checkpoint made for another body model or backbone than the recipe's.

    Anny checkpoints load into any Anny mesh (the regressor predicts rig rotations and phenotypes; the
    mesh only changes rendering and vertex metrics).

    Args:
        meta: :func:`read_checkpoint_meta` of the file (None: not a dsrbody checkpoint, nothing to check).
        cfg: the recipe (``cfg.body.name``, ``cfg.body.gender``, ``cfg.model.backbone``).
        path: the file, for the message.

    Raises:
        ValueError: one line naming the checkpoint, what it was trained with and what the recipe asks.
    """
    from dsrbody.body.factory import body_spec

    if meta is None:
        return
    want_body = str(cfg.body.name).lower()
    want_bb = str(cfg.model.backbone)
    have_body = str(meta.get("body", {}).get("name", "?"))
    have_bb = str(meta.get("backbone", "?"))
    if have_body != want_body or have_bb != want_bb:
        raise ValueError(
            f"{path}: checkpoint was trained with body model '{have_body}' and backbone '{have_bb}', but the "
            f"config uses body model '{want_body}' and backbone '{want_bb}'; use the recipe it was trained "
            "with (its config.yaml) or override body.name/model.backbone"
        )
    if body_spec(want_body).gendered:
        g = meta["body"].get("gender")
        if g is not None and str(g) != str(cfg.body.gender):
            raise ValueError(
                f"{path}: checkpoint was trained on the SMPL '{g}' model, the config uses '{cfg.body.gender}'"
            )
