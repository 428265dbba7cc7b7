"""Image backbones: ResNet-18/34/50 with torchvision's state-dict names, and loading their weights."""

from __future__ import annotations

from pathlib import Path

from dsrbody.models.backbones.resnet import (
    RESNET_SPECS,
    BasicBlock,
    Bottleneck,
    ResNet,
    load_pretrained,
    resnet18,
    resnet34,
    resnet50,
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
