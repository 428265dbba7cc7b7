"""Image backbones: ResNet-18/34/50 with torchvision's state-dict names, and loading their weights."""

from __future__ import annotations

from pathlib import Path

from dsrbody.models.backbones.resnet import (
    RESNET_SPECS,
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
)
from dsrbody.models.checkpoint import (
    BACKBONE_ROOTS,
    BODY_MODEL_PREFIXES,
    HEAD_KEYS,
    LoadReport,
    place_state_dict,
    read_state_dict,
    strip_wrappers,
)

__all__ = [
    "BACKBONES",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "build_backbone",
    "load_pretrained",
    "resnet18",
    "resnet34",
    "resnet50",
]

#: backbone name -> feature channels of its last feature map.
BACKBONES: dict[str, int] = {name: 512 * block.expansion for name, (block, _) in RESNET_SPECS.items()}


def build_backbone(name: str, pretrained: str | Path | None = None) -> tuple[ResNet, int]:
    """Build a backbone by name.

    Args:
        name: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        pretrained: optional weight file loaded with :func:`load_pretrained` (strict).

    Returns:
        ``(module, feature_dim)`` with ``feature_dim`` 512, 512 or 2048.

    Raises:
        ValueError: unknown name.
    """
    if name not in RESNET_SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(RESNET_SPECS)}")
    block, layers = RESNET_SPECS[name]
    model = ResNet(block, layers)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model, model.feature_dim


def _backbone_mapper(target_keys: set[str]):
    def mapper(key: str) -> tuple[str | None, str | None]:
        raw = key[len("module.") :] if key.startswith("module.") else key
        if raw.startswith(BODY_MODEL_PREFIXES):
            return None, "body-model buffers (not part of a backbone)"
        k = strip_wrappers(raw)
        if k.startswith("backbone."):
            k = k[len("backbone.") :]
        root = k.split(".", 1)[0]
        if root in ("head",) or root in HEAD_KEYS:
            return None, "regressor-head weights (not part of a backbone)"
        if root == "fc" and k not in target_keys:
            return None, "ImageNet classifier (the backbone was built without fc)"
        if root in BACKBONE_ROOTS:
            return k, None
        return None, None

    return mapper


def load_pretrained(
    model: ResNet,
    path: str | Path,
    *,
    allow_missing: bool = False,
    allow_unexpected: bool = False,
) -> LoadReport:
    """Load backbone weights from a file into a :class:`ResNet`.

    Accepts a bare state dict (torchvision ``resnet50-*.pth``), SPIN's ``{'model': ...}`` and
    Lightning's/DSR's ``{'state_dict': ...}``; strips ``module.``, ``model.``, ``backbone.``
    prefixes. Keys of an HMR head, body-model buffers and torchvision's ``fc`` (when the model has
    none) are ignored and listed in the report.

    Args:
        model: the backbone.
        path: the weight file.
        allow_missing: accept backbone keys absent from the file.
        allow_unexpected: accept file keys that are neither backbone nor known head/body keys.

    Returns:
        :class:`LoadReport`.

    Raises:
        FileNotFoundError: missing file.
        ValueError: unreadable file, shape mismatch (another ResNet depth), missing or unexpected
            keys unless allowed; the model is left unchanged then.
    """
    sd, layout = read_state_dict(path)
    return place_state_dict(
        model,
        sd,
        _backbone_mapper(set(model.state_dict())),
        f"{path} ({layout} layout)",
        allow_missing=allow_missing,
        allow_unexpected=allow_unexpected,
    )
