"""dsrbody.body: the ``BodyModel`` interface and its families (SMPL from official files, Anny by
default), keypoint sets, body-part labels and the registry of families (``factory``).

Modules load lazily: ``import dsrbody.body`` (and ``dsrbody.body.factory``, which command-line parsers
read) imports neither torch nor anny, and reads no model file.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BodyModel",
    "BodyOutput",
    "topology_id",
    "AnnyBody",
    "SMPL",
    "build_body_model",
    "BodySpec",
    "BODY_MODELS",
    "register_body_model",
    "BODY_PARTS",
    "vertex_body_parts",
    "face_body_parts",
    "limb_coordinate",
    "stature",
    "with_stature",
]

_LAZY = {
    "BodyModel": "dsrbody.body.base",
    "BodyOutput": "dsrbody.body.base",
    "topology_id": "dsrbody.body.base",
    "AnnyBody": "dsrbody.body.anny",
    "SMPL": "dsrbody.body.smpl",
    "build_body_model": "dsrbody.body.factory",
    "BodySpec": "dsrbody.body.factory",
    "BODY_MODELS": "dsrbody.body.factory",
    "register_body_model": "dsrbody.body.factory",
    "BODY_PARTS": "dsrbody.body.parts",
    "vertex_body_parts": "dsrbody.body.parts",
    "face_body_parts": "dsrbody.body.parts",
    "limb_coordinate": "dsrbody.body.parts",
    "stature": "dsrbody.body.stature",
    "with_stature": "dsrbody.body.stature",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dsrbody.body' has no attribute {name!r}")
