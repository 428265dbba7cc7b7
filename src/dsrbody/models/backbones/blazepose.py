"""MediaPipe BlazePose's landmark network as a frozen backbone: pose features learnt on real people.

No ImageNet or pose weights can be downloaded where dsrbody is developed, and a ResNet trained from
scratch on synthetic crops learns slowly (docs/training.md). The package already ships one network
trained on many real people: the landmark model of MediaPipe Pose ("BlazePose GHUM 3D", full variant,
Apache-2.0; ``dsrbody/assets/blazepose_landmark_full.npz``, run by
:class:`~dsrbody.demo.tflite_graph.TFLiteGraph`). As a backbone it is frozen (its weights are buffers
loaded from the asset, not trained and not stored in checkpoints) and gives one feature vector per
crop (docs/design.md, "A frozen backbone: BlazePose"):

- the last feature map before its heads, ``(288, 2, 2)`` flattened (1,152 values);
- its 39 landmarks: crop coordinates ``x, y`` and relative depth ``z`` mapped to ``[-1, 1]`` (pixel /
  128 - 1; ``z`` / 128), visibility and presence through a sigmoid (195 values);
- its 39 metric 3D ("world") landmarks, metres, hip-centred (117 values);
- the person presence probability (1 value).

1,465 channels in all, returned as a ``(B, 1465, 1, 1)`` map so that :class:`~dsrbody.models.HMRHead`
pools it like any other. The network sees the regressor's crop de-normalised to RGB in ``[0, 1]``
and resized to its 256 x 256 input; recipes use ``model.img_res: 256`` so that no resampling happens.
Because it is frozen and deterministic, training can read its features from a cache
(:mod:`dsrbody.data.feature_cache`) instead of running it on every step.
"""

from __future__ import annotations

from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from dsrbody.data.crop_augment import IMG_NORM_MEAN, IMG_NORM_STD
from dsrbody.demo.tflite_graph import TFLiteGraph

__all__ = ["BlazePoseBackbone", "BLAZEPOSE_FEATURES", "BLAZEPOSE_MARKER", "recognise_blazepose"]

LANDMARK_FILE = "blazepose_landmark_full.npz"
#: channels of :class:`BlazePoseBackbone`'s output.
BLAZEPOSE_FEATURES = 288 * 4 + 39 * 5 + 39 * 3 + 1
#: the one persistent buffer of the backbone: how a checkpoint says it was trained on it.
BLAZEPOSE_MARKER = "blazepose_full_version"


def recognise_blazepose(keys: list[str]) -> str | None:
    """``"blazepose"`` when a state dict's backbone keys (without the ``backbone.`` prefix) hold the
    marker buffer, else None."""
    return "blazepose" if BLAZEPOSE_MARKER in keys else None


class BlazePoseBackbone(nn.Module):
    """Frozen BlazePose landmark network: ``forward(images (B, 3, H, W)) -> (B, 1465, 1, 1)``.

    Args:
        graph: the converted landmark graph (default: the shipped asset).

    Attributes:
        feature_dim: 1465 (:data:`BLAZEPOSE_FEATURES`). frozen: True (nothing here trains).
        input_res: 256, the network's input side.
    """

    state_dict_roots = (BLAZEPOSE_MARKER,)
    frozen = True

    def __init__(self, graph: TFLiteGraph | None = None) -> None:
        super().__init__()
        if graph is None:
            with resources.as_file(resources.files("dsrbody") / "assets" / LANDMARK_FILE) as p:
                graph = TFLiteGraph.load(p)
        self.graph = graph.eval()
        self.input_res = graph.input_size[0]
        lm, presence, _seg, _heat, world = graph.spec["outputs"]
        self._lm, self._presence, self._world = lm, presence, world
        # the landmark head is CONV_2D (2x2 kernel) -> RESHAPE: its input is the last feature map
        self._feat = graph.producer(graph.producer(lm)["inputs"][0])["inputs"][0]
        self.feature_dim = BLAZEPOSE_FEATURES
        self.register_buffer(BLAZEPOSE_MARKER, torch.tensor([1], dtype=torch.int32))
        self.register_buffer("mean", torch.tensor(IMG_NORM_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMG_NORM_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> BlazePoseBackbone:
        """Stays in evaluation mode (it is frozen); returns self."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of normalised crops.

        Args:
            images: ``(B, 3, H, W)`` crops normalised with ImageNet's mean and std (the datasets'
                ``img``); resized to 256 x 256 when another size.

        Returns:
            ``(B, 1465, 1, 1)`` float32 (the module docstring lists the channels).
        """
        x = images.float() * self.std + self.mean
        if tuple(x.shape[2:]) != (self.input_res, self.input_res):
            x = F.interpolate(x, size=(self.input_res, self.input_res), mode="bilinear", align_corners=False)
        x = x.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()
        env = self.graph.run(x, [self._feat, self._lm, self._presence, self._world])
        B = x.shape[0]
        half = self.input_res / 2
        lm = env[self._lm].reshape(B, -1, 5)
        lm = torch.cat([lm[..., :3] / half - lm.new_tensor([1.0, 1.0, 0.0]), torch.sigmoid(lm[..., 3:])], -1)
        feats = [
            env[self._feat].flatten(1),
            lm.flatten(1),
            env[self._world].reshape(B, -1),
            env[self._presence].reshape(B, -1),
        ]
        return torch.cat(feats, 1)[:, :, None, None]
