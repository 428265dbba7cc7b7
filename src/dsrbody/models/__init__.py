"""Regressors: ResNet backbones (torchvision names), the HMR head, checkpoint loading (docs/design.md,
Paper recipe)."""

from dsrbody.models.backbones import BACKBONES, ResNet, build_backbone, load_pretrained
from dsrbody.models.checkpoint import LoadReport, load_regressor_checkpoint, read_state_dict
from dsrbody.models.hmr import CAMERA_FLIP, SPIN_MEAN_CAM, HMRHead, Regressor, at_mean, build_regressor
from dsrbody.models.loader import LoadedModel, load_model
from dsrbody.models.shipped import SHIPPED_MODEL, export_inference, shipped_model_path

__all__ = [
    "BACKBONES",
    "CAMERA_FLIP",
    "SHIPPED_MODEL",
    "SPIN_MEAN_CAM",
    "HMRHead",
    "LoadReport",
    "LoadedModel",
    "Regressor",
    "ResNet",
    "at_mean",
    "build_backbone",
    "export_inference",
    "build_regressor",
    "load_model",
    "load_pretrained",
    "load_regressor_checkpoint",
    "read_state_dict",
    "shipped_model_path",
]
