"""Regressors: ResNet backbones (torchvision names), the HMR head, checkpoint loading (DESIGN 7b)."""

from dsrbody.models.backbones import BACKBONES, ResNet, build_backbone, load_pretrained
from dsrbody.models.checkpoint import LoadReport, load_regressor_checkpoint, read_state_dict
from dsrbody.models.hmr import CAMERA_FLIP, SPIN_MEAN_CAM, HMRHead, Regressor, build_regressor

__all__ = [
    "BACKBONES",
    "CAMERA_FLIP",
    "SPIN_MEAN_CAM",
    "HMRHead",
    "LoadReport",
    "Regressor",
    "ResNet",
    "build_backbone",
    "build_regressor",
    "load_pretrained",
    "load_regressor_checkpoint",
    "read_state_dict",
]
