"""MediaPipe BlazePose's landmark network as a backbone, frozen or with its last stages tuned: pose
features learnt on real people.

No ImageNet or pose weights can be downloaded where dsrbody is developed, and a ResNet trained from
scratch on synthetic crops learns slowly (docs/training.md). The package already ships one network
trained on many real people: the landmark model of MediaPipe Pose ("BlazePose GHUM 3D", full variant,
Apache-2.0; ``dsrbody/assets/blazepose_landmark_full.npz``, run by
:class:`~dsrbody.demo.tflite_graph.TFLiteGraph`). As the backbone ``blazepose`` it is frozen (its
weights are buffers loaded from the asset, not trained and not stored in checkpoints); as
``blazepose_tuned`` its stages after the first 4 x 4 block train, as ``blazepose_tuned8`` also the
regression branch's 8 x 8 stage and the trunk's last expansion, as ``blazepose_tuned8b`` also the trunk's
last 8 x 8 unit (docs/design.md, "A frozen backbone:
BlazePose, and its tuned variants"). Each gives one feature vector per crop:

- the last feature map before its heads, ``(288, 2, 2)`` flattened (1,152 values);
- its 39 landmarks: crop coordinates ``x, y`` and relative depth ``z`` mapped to ``[-1, 1]`` (pixel /
  128 - 1; ``z`` / 128), visibility and presence through a sigmoid (195 values);
- its 39 metric 3D ("world") landmarks, metres, hip-centred (117 values);
- the person presence probability (1 value).

1,465 channels in all, returned as a ``(B, 1465, 1, 1)`` map so that :class:`~dsrbody.models.HMRHead`
pools it like any other. The network sees the regressor's crop de-normalised to RGB in ``[0, 1]``
and resized to its 256 x 256 input; recipes use ``model.img_res: 256`` so that no resampling happens.
Its frozen part is deterministic, so training can read that part's output from a cache
(:mod:`dsrbody.data.feature_cache`) instead of running it on every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from dsrbody.data.crop_augment import IMG_NORM_MEAN, IMG_NORM_STD
from dsrbody.demo.tflite_graph import TFLiteGraph, TFLiteSubgraph

__all__ = [
    "BlazePoseBackbone",
    "BLAZEPOSE_FEATURES",
    "BLAZEPOSE_MARKER",
    "BLAZEPOSE_TUNED_MARKER",
    "TUNED_VARIANTS",
    "TunedCut",
    "recognise_blazepose",
]

LANDMARK_FILE = "blazepose_landmark_full.npz"
#: channels of :class:`BlazePoseBackbone`'s output.
BLAZEPOSE_FEATURES = 288 * 4 + 39 * 5 + 39 * 3 + 1
#: the one persistent buffer of the backbone: how a checkpoint says it was trained on it.
BLAZEPOSE_MARKER = "blazepose_full_version"
#: the marker buffer of the fine-tuned variant ("blazepose_tuned").
BLAZEPOSE_TUNED_MARKER = "blazepose_tuned_version"


@dataclass(frozen=True)
class TunedCut:
    """Where a tuned variant's trainable stages start in the shipped graph.

    Attributes:
        tensor: the graph tensor its cache holds and its trainable stages read.
        shape: that tensor's ``(C, h, w)`` per crop.
        marker: the variant's marker buffer (how a checkpoint says it was trained on it).
        starts_from: the variants whose checkpoints it may start from (``model.init_checkpoint``); the
            trainable weights they share by name (``tail.w<op>``) load, the others start from the asset.
    """

    tensor: int
    shape: tuple[int, int, int]
    marker: str
    starts_from: tuple[str, ...]

    @property
    def channels(self) -> int:
        """Values per cache row, ``C * h * w``."""
        return self.shape[0] * self.shape[1] * self.shape[2]


#: the tuned variants by backbone name. ``blazepose_tuned``: from the output of the first 4 x 4 block
#: (the ``ADD`` after its stride-2 convolution; two 4 x 4 and seven 2 x 2 blocks and the heads, 1.22 M
#: weights). ``blazepose_tuned8``: from the output of the trunk's last 8 x 8 block, so the trunk's last
#: expansion and the regression branch's whole 8 x 8 stage train too (1.70 M weights; about 2.7x the
#: former's cost per crop on the CPU, docs/training.md). ``blazepose_tuned8b``: one inverted-residual
#: unit earlier, from the input of the trunk's last 8 x 8 unit (144 -> 864 -> 144 channels with a
#: skip), so that unit trains too (1.97 M weights).
TUNED_VARIANTS: dict[str, TunedCut] = {
    "blazepose_tuned": TunedCut(304, (288, 4, 4), BLAZEPOSE_TUNED_MARKER, ("blazepose",)),
    "blazepose_tuned8": TunedCut(
        269, (144, 8, 8), "blazepose_tuned8_version", ("blazepose", "blazepose_tuned")
    ),
    "blazepose_tuned8b": TunedCut(
        265,
        (144, 8, 8),
        "blazepose_tuned8b_version",
        ("blazepose", "blazepose_tuned", "blazepose_tuned8"),
    ),
}
# the first variant's cut, kept under its old names
TUNE_FROM = TUNED_VARIANTS["blazepose_tuned"].tensor
TUNE_SHAPE = TUNED_VARIANTS["blazepose_tuned"].shape
TUNE_CHANNELS = TUNED_VARIANTS["blazepose_tuned"].channels


def recognise_blazepose(keys: list[str]) -> str | None:
    """``"blazepose"`` or a tuned variant's name (:data:`TUNED_VARIANTS`) when a state dict's backbone
    keys (without the ``backbone.`` prefix) hold that variant's marker buffer, else None."""
    for name, cut in TUNED_VARIANTS.items():
        if cut.marker in keys:
            return name
    return "blazepose" if BLAZEPOSE_MARKER in keys else None


class BlazePoseBackbone(nn.Module):
    """BlazePose landmark network as a backbone: ``forward(images (B, 3, H, W)) -> (B, 1465, 1, 1)``.

    Frozen by default. With ``tune`` a tuned variant's name (:data:`TUNED_VARIANTS`; ``True`` means
    ``"blazepose_tuned"``) the network's last stages, from that variant's cut (for ``blazepose_tuned``
    the output of its first 4 x 4 block, ``(288, 4, 4)``) through the 2 x 2 blocks and the landmark,
    world-landmark and presence heads, are trainable parameters initialised from the asset
    (:class:`~dsrbody.demo.tflite_graph.TFLiteSubgraph`, 1.2 M); the stages before stay frozen buffers.

    Either way a feature cache can hold the frozen part's output per crop (:meth:`cache_rows`) and
    :meth:`from_cache` finishes the features from it, so training never runs the frozen stages twice.

    Args:
        graph: the converted landmark graph (default: the shipped asset).
        tune: the tuned variant's name, ``True`` (``"blazepose_tuned"``), or ``False``/``None`` (frozen).

    Attributes:
        feature_dim: 1465 (:data:`BLAZEPOSE_FEATURES`). frozen: True when nothing here trains.
        ships_weights: True (its weights come with dsrbody; ``model.pretrained_backbone`` is refused).
        cache_dim: channels of a cache row: 1465 frozen, the cut's ``C * h * w`` tuned (4608 for
            ``blazepose_tuned``, 9216 for ``blazepose_tuned8`` and ``blazepose_tuned8b``).
        input_res: 256, the network's input side.
    """

    frozen = True
    ships_weights = True

    def __init__(self, graph: TFLiteGraph | None = None, tune: bool | str | None = False) -> None:
        super().__init__()
        if tune is True:
            tune = "blazepose_tuned"
        if tune and tune not in TUNED_VARIANTS:
            raise ValueError(
                f"unknown tuned BlazePose variant {tune!r}; choose one of {sorted(TUNED_VARIANTS)}"
            )
        self.cut = TUNED_VARIANTS[tune] if tune else None
        own_graph = graph is None
        if graph is None:
            with resources.as_file(resources.files("dsrbody") / "assets" / LANDMARK_FILE) as p:
                graph = TFLiteGraph.load(p)
        self.graph = graph.eval()
        self.input_res = graph.input_size[0]
        lm, presence, _seg, _heat, world = graph.spec["outputs"]
        self._lm, self._presence, self._world = lm, presence, world
        # the landmark head is CONV_2D (2x2 kernel) -> RESHAPE: its input is the last feature map
        self._feat = graph.producer(graph.producer(lm)["inputs"][0])["inputs"][0]
        self._outputs = [self._feat, self._lm, self._presence, self._world]
        self.feature_dim = BLAZEPOSE_FEATURES
        self.frozen = not tune
        if tune:
            self.tail = TFLiteSubgraph(graph, [self.cut.tensor], self._outputs)
            if own_graph:  # the graph's copies of the tuned weights are never read: drop them
                for i in self.tail.order:
                    for name in (f"w{i}", f"b{i}"):
                        if hasattr(graph, name):
                            delattr(graph, name)
            self.cache_dim = self.cut.channels
            self.state_dict_roots = (self.cut.marker, "tail")
            self.register_buffer(self.cut.marker, torch.tensor([1], dtype=torch.int32))
        else:
            self.tail = None
            self.cache_dim = BLAZEPOSE_FEATURES
            self.state_dict_roots = (BLAZEPOSE_MARKER,)
            self.register_buffer(BLAZEPOSE_MARKER, torch.tensor([1], dtype=torch.int32))
        self.register_buffer("mean", torch.tensor(IMG_NORM_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMG_NORM_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> BlazePoseBackbone:
        """The frozen variant stays in evaluation mode; the tuned one follows ``mode`` except for its
        frozen graph (no layer here behaves differently in training: no batch norm, no dropout).
        Returns self."""
        super().train(mode and not self.frozen)
        self.graph.eval()
        return self

    def _graph_input(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised crops ``(B, 3, H, W)`` -> the graph's input ``(B, 256, 256, 3)``, RGB in [0, 1]."""
        x = images.float() * self.std + self.mean
        if tuple(x.shape[2:]) != (self.input_res, self.input_res):
            x = F.interpolate(x, size=(self.input_res, self.input_res), mode="bilinear", align_corners=False)
        return x.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()

    def _features(self, out: dict[int, torch.Tensor]) -> torch.Tensor:
        """The graph's output tensors (by id) -> ``(B, 1465, 1, 1)`` features."""
        feat = out[self._feat]
        B = feat.shape[0]
        half = self.input_res / 2
        lm = out[self._lm].reshape(B, -1, 5)
        lm = torch.cat([lm[..., :3] / half - lm.new_tensor([1.0, 1.0, 0.0]), torch.sigmoid(lm[..., 3:])], -1)
        world, presence = out[self._world].reshape(B, -1), out[self._presence].reshape(B, -1)
        feats = [feat.flatten(1), lm.flatten(1), world, presence]
        return torch.cat(feats, 1)[:, :, None, None]

    @torch.no_grad()
    def cache_rows(self, images: torch.Tensor) -> torch.Tensor:
        """What a feature cache holds per crop: the frozen stages' output, ``(B, cache_dim)``.

        Args:
            images: ``(B, 3, H, W)`` crops normalised with ImageNet's mean and std (the datasets'
                ``img``); resized to 256 x 256 when another size.
        """
        x = self._graph_input(images)
        if self.tail is None:
            return self._features(self.graph.run(x, self._outputs)).flatten(1)
        return self.graph.run(x, [self.cut.tensor])[self.cut.tensor].flatten(1)

    def from_cache(self, rows: torch.Tensor) -> torch.Tensor:
        """Features from cache rows: ``(B, cache_dim)`` -> ``(B, 1465, 1, 1)`` (the trainable stages
        run here when tuned)."""
        if rows.dim() != 2 or rows.shape[1] != self.cache_dim:
            raise ValueError(f"BlazePose cache rows must be (B, {self.cache_dim}), got {tuple(rows.shape)}")
        if self.tail is None:
            return rows.float()[:, :, None, None]
        src = rows.float().reshape(rows.shape[0], *self.cut.shape)
        return self._features(dict(zip(self._outputs, self.tail(src), strict=True)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of normalised crops.

        Args:
            images: ``(B, 3, H, W)`` crops normalised with ImageNet's mean and std (the datasets'
                ``img``); resized to 256 x 256 when another size.

        Returns:
            ``(B, 1465, 1, 1)`` float32 (the module docstring lists the channels).
        """
        return self.from_cache(self.cache_rows(images))
