"""Image backbones and their registry.

A backbone family is one file here (``resnet.py``: ResNet-18/34/50 with torchvision's state-dict
names) and one :class:`BackboneFamily` entry in :data:`FAMILIES`: how to build each of its names, the
channels of its last feature map, and how to recognise its weights in a state dict (so
:func:`~dsrbody.models.loader.load_model` builds the right network for any checkpoint). Adding HRNet
or a ViT is a new file and a new entry (docs/design.md, "Extending dsrbody").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from dsrbody.models.backbones.blazepose import (
    BLAZEPOSE_FEATURES,
    BLAZEPOSE_MARKER,
    TUNED_VARIANTS,
    BlazePoseBackbone,
    recognise_blazepose,
)
from dsrbody.models.backbones.resnet import (
    RESNET_KEY_ROOTS,
    RESNET_SPECS,
    BasicBlock,
    Bottleneck,
    ResNet,
    load_pretrained,
    recognise_resnet,
    resnet18,
    resnet34,
    resnet50,
)

__all__ = [
    "BACKBONES",
    "FAMILIES",
    "BackboneFamily",
    "BlazePoseBackbone",
    "backbone_keys",
    "infer_backbone",
    "register_family",
    "warm_start_sources",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "build_backbone",
    "load_pretrained",
    "resnet18",
    "resnet34",
    "resnet50",
]


@dataclass(frozen=True)
class BackboneFamily:
    """One kind of backbone network and what the loaders need to know about it.

    Attributes:
        names: the backbone names it builds (``model.backbone`` in recipes).
        build: ``name -> module``; the module's ``forward(images (B, 3, H, W))`` returns its last
            feature map ``(B, C, h, w)``, ``forward_pyramid`` the list of stage maps (finest first;
            for the keypoint branch), and it has ``feature_dim`` (``C``) and ``state_dict_roots``.
        feature_dim: ``name -> C``.
        key_roots: first name components of its parameters as a checkpoint stores them without a
            ``backbone.`` prefix (SPIN's flat layout).
        recognise: ``keys -> name or None``: which of its names a state dict's backbone keys (without
            the prefix) belong to.
        starts_from: ``name -> names`` whose checkpoints a regressor on ``name`` may start from
            (``model.init_checkpoint``): the head loads, the backbone keeps its own initial weights
            (the tuned BlazePose from a checkpoint trained on the frozen one: the same network at start).
    """

    names: tuple[str, ...]
    build: Callable[[str], nn.Module]
    feature_dim: Callable[[str], int]
    key_roots: tuple[str, ...]
    recognise: Callable[[list[str]], str | None]
    starts_from: Callable[[str], tuple[str, ...]] = lambda name: ()


def _build_resnet(name: str) -> ResNet:
    block, layers = RESNET_SPECS[name]
    return ResNet(block, layers)


#: every backbone family, tried in order by :func:`infer_backbone`.
FAMILIES: list[BackboneFamily] = [
    BackboneFamily(
        names=tuple(RESNET_SPECS),
        build=_build_resnet,
        feature_dim=lambda name: 512 * RESNET_SPECS[name][0].expansion,
        key_roots=RESNET_KEY_ROOTS,
        recognise=recognise_resnet,
    ),
    BackboneFamily(
        names=("blazepose", *TUNED_VARIANTS),
        build=lambda name: BlazePoseBackbone(tune=name if name in TUNED_VARIANTS else None),
        feature_dim=lambda name: BLAZEPOSE_FEATURES,
        key_roots=(BLAZEPOSE_MARKER, *(c.marker for c in TUNED_VARIANTS.values())),
        recognise=recognise_blazepose,
        starts_from=lambda name: TUNED_VARIANTS[name].starts_from if name in TUNED_VARIANTS else (),
    ),
]

#: backbone name -> feature channels of its last feature map (every registered family).
BACKBONES: dict[str, int] = {}


def register_family(family: BackboneFamily) -> None:
    """Add a backbone family (its names become valid ``model.backbone`` values).

    Raises:
        ValueError: one of its names is already registered.
    """
    taken = [n for n in family.names if n in BACKBONES]
    if taken:
        raise ValueError(f"backbone name(s) {taken} already registered")
    if family not in FAMILIES:
        FAMILIES.append(family)
    BACKBONES.update({n: int(family.feature_dim(n)) for n in family.names})


BACKBONES.update({n: int(f.feature_dim(n)) for f in FAMILIES for n in f.names})


def _family(name: str) -> BackboneFamily:
    for f in FAMILIES:
        if name in f.names:
            return f
    raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")


def warm_start_sources(name: str) -> tuple[str, ...]:
    """Backbones whose checkpoints a regressor on backbone ``name`` may start from with its own backbone
    weights (:attr:`BackboneFamily.starts_from`); empty for most."""
    return tuple(_family(name).starts_from(name))


def backbone_keys(keys: list[str]) -> list[str]:
    """The backbone's parameter names among a state dict's keys (wrappers such as ``module.`` and
    ``model.`` already stripped): ``backbone.X`` gives ``X``; a flat key whose first component is a
    registered family's root (SPIN's ``conv1.weight``) is kept as is."""
    roots = {r for f in FAMILIES for r in f.key_roots}
    out = []
    for k in keys:
        if k.startswith("backbone."):
            out.append(k[len("backbone.") :])
        elif k.split(".", 1)[0] in roots:
            out.append(k)
    return out


def infer_backbone(keys: list[str]) -> str | None:
    """The backbone name a state dict's keys belong to (each family's ``recognise`` in turn), or None
    when no registered family recognises them.

    Args:
        keys: the state dict's keys, wrappers stripped (:func:`backbone_keys` selects the backbone's).
    """
    bk = backbone_keys(keys)
    if not bk:
        return None
    for f in FAMILIES:
        name = f.recognise(bk)
        if name is not None:
            return name
    return None


def build_backbone(name: str, pretrained: str | Path | None = None) -> tuple[nn.Module, int]:
    """Build a backbone by name.

    Args:
        name: a registered name (``"resnet18"``, ``"resnet34"``, ``"resnet50"``, :data:`BACKBONES`).
        pretrained: optional weight file loaded strictly (:func:`load_pretrained` for ResNets).

    Returns:
        ``(module, feature_dim)`` with ``feature_dim`` 512, 512 or 2048 for the ResNets.

    Raises:
        ValueError: unknown name.
    """
    family = _family(name)
    model = family.build(name)
    if pretrained is not None and getattr(model, "ships_weights", False):
        raise ValueError(f"backbone {name!r} ships its own weights; pretrained_backbone must be null")
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model, int(model.feature_dim)
