"""dsrbody.body: the ``BodyModel`` interface and its families (SMPL from official files, Anny by
default), keypoint sets, body-part labels and a factory.

Heavy modules load lazily: ``import dsrbody.body`` does not import anny or read any model file.
"""

from __future__ import annotations

import importlib
from typing import Any

from dsrbody.body.base import BodyModel, BodyOutput, topology_id

__all__ = [
    "BodyModel",
    "BodyOutput",
    "topology_id",
    "AnnyBody",
    "SMPL",
    "build_body_model",
    "BODY_PARTS",
    "vertex_body_parts",
    "face_body_parts",
    "limb_coordinate",
]

_LAZY = {
    "AnnyBody": "dsrbody.body.anny",
    "SMPL": "dsrbody.body.smpl",
    "build_body_model": "dsrbody.body.factory",
    "BODY_PARTS": "dsrbody.body.parts",
    "vertex_body_parts": "dsrbody.body.parts",
    "face_body_parts": "dsrbody.body.parts",
    "limb_coordinate": "dsrbody.body.parts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dsrbody.body' has no attribute {name!r}")
