"""ResNet-18/34/50 with torchvision-compatible state-dict keys (no torchvision dependency).

The module tree (``conv1``, ``bn1``, ``layer1..4`` of ``BasicBlock``/``Bottleneck`` with
``downsample.0`` (1x1 conv) and ``downsample.1`` (batch norm), optional ``fc``) reproduces
torchvision's ``resnet{18,34,50}`` exactly (ResNet v1.5: the stride of a bottleneck sits on its 3x3
convolution), so torchvision ImageNet weights, SPIN's backbone weights and DSR's backbone weights
load by name. :meth:`ResNet.forward` returns the last feature map ``(B, C, H/32, W/32)`` (``C`` = 512
or 2048); the HMR head pools it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dsrbody.models.checkpoint import (
    BODY_MODEL_PREFIXES,
    HEAD_KEYS,
    LoadReport,
    place_state_dict,
    read_state_dict,
    strip_wrappers,
)

__all__ = [
    "RESNET_KEY_ROOTS",
    "recognise_resnet",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "RESNET_SPECS",
    "load_pretrained",
    "resnet18",
    "resnet34",
    "resnet50",
]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias."""
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, inplanes, H, W) -> (B, planes, H/stride, W/stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 bottleneck with a residual connection (ResNet-50, v1.5)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, inplanes, H, W) -> (B, 4 planes, H/stride, W/stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: first name components of a torchvision/SPIN ResNet's parameters (a SPIN checkpoint stores them
#: without a ``backbone.`` prefix; :func:`~dsrbody.models.checkpoint.load_regressor_checkpoint` reads
#: them from :attr:`ResNet.state_dict_roots`).
RESNET_KEY_ROOTS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")

#: name -> (block class, blocks per stage)
RESNET_SPECS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """A torchvision-layout ResNet returning its last feature map.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks in each of the 4 stages.
        num_classes: size of the optional classifier ``fc`` (only built when ``with_fc``).
        with_fc: build torchvision's ``fc`` layer (so a full torchvision state dict loads strictly);
            :meth:`forward` never uses it, :meth:`classify` does.

    Attributes:
        feature_dim: channels of the returned feature map (512 for 18/34, 2048 for 50).
        state_dict_roots: first name components of its parameters (how a checkpoint without a
            ``backbone.`` prefix is recognised as backbone weights).
    """

    state_dict_roots = RESNET_KEY_ROOTS

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int] | list[int],
        num_classes: int = 1000,
        with_fc: bool = False,
    ):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet needs 4 stage sizes, got {list(layers)}")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.feature_dim = 512 * block.expansion
        #: channels of :meth:`forward_pyramid`'s maps (stages 2, 3, 4).
        self.pyramid_channels = tuple(c * block.expansion for c in (128, 256, 512))
        self.fc = nn.Linear(self.feature_dim, num_classes) if with_fc else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He init over fan-out, as torchvision and SPIN (normal(0, sqrt(2 / (k*k*out)))).
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        """One stage: ``blocks`` blocks, the first one strided and projected when shapes change."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of an image batch.

        Args:
            x: ``(B, 3, H, W)`` ImageNet-normalised images (224x224 in the SPIN/DSR setting).

        Returns:
            ``(B, feature_dim, ceil(H/32), ceil(W/32))`` (``(B, C, 7, 7)`` for 224 crops).
        """
        return self.forward_pyramid(x)[-1]

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps of stages 2, 3 and 4 (strides 8, 16, 32), finest first.

        Args:
            x: ``(B, 3, H, W)`` ImageNet-normalised images.

        Returns:
            ``[(B, C2, H/8, W/8), (B, C3, H/16, W/16), (B, feature_dim, H/32, W/32)]`` (rounded up);
            the last is :meth:`forward`'s output.
        """
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's full forward (global average pool + ``fc``): ``(B, 3, H, W) -> (B, num_classes)``."""
        if self.fc is None:
            raise ValueError("this ResNet was built without its classifier (with_fc=False)")
        return self.fc(self.forward(x).mean(dim=(2, 3)))


def _build(name: str, with_fc: bool, num_classes: int) -> ResNet:
    block, layers = RESNET_SPECS[name]
    return ResNet(block, layers, num_classes=num_classes, with_fc=with_fc)


def resnet18(with_fc: bool = False, num_classes: int = 1000) -> ResNet:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]); features 512."""
    return _build("resnet18", with_fc, num_classes)


def resnet34(with_fc: bool = False, num_classes: int = 1000) -> ResNet:
    """ResNet-34 (BasicBlock, [3, 4, 6, 3]); features 512."""
    return _build("resnet34", with_fc, num_classes)


def resnet50(with_fc: bool = False, num_classes: int = 1000) -> ResNet:
    """ResNet-50 (Bottleneck, [3, 4, 6, 3]); features 2048."""
    return _build("resnet50", with_fc, num_classes)


def _backbone_mapper(target_keys: set[str], roots: tuple[str, ...]):
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
        if root in roots:
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
        _backbone_mapper(
            set(model.state_dict()), tuple(getattr(model, "state_dict_roots", RESNET_KEY_ROOTS))
        ),
        f"{path} ({layout} layout)",
        allow_missing=allow_missing,
        allow_unexpected=allow_unexpected,
    )


def recognise_resnet(keys: list[str]) -> str | None:
    """Which ResNet a state dict holds, from its backbone keys (without the ``backbone.`` prefix).

    Bottleneck blocks (``conv3``) mean ResNet-50; otherwise ``layer3`` has 2 basic blocks in ResNet-18
    and 6 in ResNet-34. None when the keys are not a ResNet's.

    Args:
        keys: parameter names relative to the backbone (``conv1.weight``, ``layer3.1.bn2.bias``...).
    """
    layers = [k for k in keys if k.startswith("layer")]
    if not layers:
        return None
    if any(".conv3." in f".{k}" for k in layers):
        return "resnet50"
    blocks = {int(k.split(".")[1]) for k in layers if k.startswith("layer3.") and k.split(".")[1].isdigit()}
    return "resnet34" if len(blocks) > 2 else "resnet18"
