"""The model that ships inside the package, and exporting a training checkpoint to inference weights.

``dsrbody demo``, ``dsrbody eval`` and ``dsrbody fit`` use :func:`shipped_model_path` when no ``--ckpt``
is given (docs/model_card.md says how it was trained and how well it does). :func:`export_inference`
turns a ``dsrbody train`` checkpoint (weights, optimiser, loop state) into the file format the shipped
model uses: ``{"dsrbody": <the checkpoint's self-description>, "state_dict": {"model.backbone.*",
"model.head.*"}}``, floating tensors optionally in fp16, nothing else. It is what
:func:`dsrbody.models.loader.load_model`, ``dsrbody eval`` and ``model.init_checkpoint`` read, with the
safe ``weights_only`` loader (plain containers and tensors only).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch

__all__ = ["SHIPPED_MODEL", "shipped_model_path", "export_inference", "ShippedModelMissing"]

#: File name of the shipped model under ``dsrbody/assets/models/``.
SHIPPED_MODEL = "dsrbody_synth_cpu.pt"


class ShippedModelMissing(FileNotFoundError):
    """The package was installed without its model file."""


def shipped_model_path() -> Path:
    """Path of the shipped inference weights (``dsrbody/assets/models/dsrbody_synth_cpu.pt``).

    Raises:
        ShippedModelMissing: the file is not in the installed package (one line saying what to do).
    """
    p = Path(str(resources.files("dsrbody"))) / "assets" / "models" / SHIPPED_MODEL
    if not p.is_file():
        raise ShippedModelMissing(
            f"{p}: the shipped model is not installed; pass --ckpt with a checkpoint of `dsrbody train` "
            "(or reinstall dsrbody from a release that includes its assets)"
        )
    return p


def export_inference(
    ckpt: str | Path, out: str | Path, half: bool = True, extra: dict[str, Any] | None = None
) -> Path:
    """Write the inference weights of a ``dsrbody train`` checkpoint.

    Args:
        ckpt: a checkpoint written by ``dsrbody train`` (``checkpoint["dsrbody"]`` describes it).
        out: the file to write (``.pt``).
        half: store floating-point tensors as fp16 (half the size; loaded back as float32).
        extra: more plain values stored under ``checkpoint["dsrbody"]["export"]`` (e.g. metrics).

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: no checkpoint. ValueError: not a dsrbody checkpoint, or no regressor weights.
    """
    from dsrbody.models.checkpoint import torch_load_file

    src = Path(ckpt)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: checkpoint file does not exist")
    obj = torch_load_file(src)
    if not isinstance(obj, dict) or not isinstance(obj.get("dsrbody"), dict):
        raise ValueError(f"{src}: not a dsrbody training checkpoint (no 'dsrbody' description)")
    sd = obj.get("state_dict")
    if not isinstance(sd, dict):
        raise ValueError(f"{src}: no 'state_dict' in the checkpoint")
    weights: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor) or not k.startswith(("model.backbone.", "model.head.")):
            continue
        v = v.detach().cpu().contiguous()
        weights[k] = v.half() if (half and v.is_floating_point()) else v.clone()
    if not any(k.startswith("model.head.") for k in weights):
        raise ValueError(f"{src}: the checkpoint holds no regressor head weights (model.head.*)")
    meta = dict(obj["dsrbody"])
    meta["export"] = {
        "from": src.name,
        "precision": "fp16" if half else "fp32",
        "global_step": int(obj.get("global_step", -1)),
        "epoch": int(obj.get("epoch", -1)),
        **(extra or {}),
    }
    dst = Path(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    torch.save({"dsrbody": meta, "state_dict": weights}, tmp)
    tmp.replace(dst)
    return dst
