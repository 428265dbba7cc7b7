"""Build a body model by name: ``build_body_model("anny")`` or ``build_body_model("smpl", model_path=...)``.

Anny needs nothing (it ships with the ``anny`` package); SMPL needs the official model files, which
users download themselves (licence) from https://smpl.is.tue.mpg.de.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsrbody.body.base import BodyModel

__all__ = ["BODY_MODEL_NAMES", "GENDERS", "SMPL_DOWNLOAD_URL", "build_body_model"]

#: Names :func:`build_body_model` accepts.
BODY_MODEL_NAMES: tuple[str, ...] = ("anny", "smpl")
GENDERS: tuple[str, ...] = ("neutral", "male", "female")
SMPL_DOWNLOAD_URL = "https://smpl.is.tue.mpg.de"


def build_body_model(
    name: str, model_path: str | Path | None = None, gender: str = "neutral", **kwargs: Any
) -> BodyModel:
    """A body model by family name.

    Args:
        name: ``"anny"`` (default body, no files needed) or ``"smpl"``.
        model_path: SMPL only: a model file (``SMPL_NEUTRAL.pkl``, ``.npz``, ...) or a folder holding
            ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` (and optionally ``J_regressor_extra.npy``,
            ``J_regressor_h36m.npy``, ``smpl_mean_params.npz``). Must be ``None`` for Anny.
        gender: ``"neutral"``, ``"male"`` or ``"female"``: picks the SMPL file. Anny has one model
            for every gender (gender is its first shape phenotype), so the value only gets checked.
        **kwargs: passed to the model class: :class:`dsrbody.body.anny.AnnyBody` (``rig``,
            ``topology``, ``skinning_method``) or :class:`dsrbody.body.smpl.SMPL` (``num_betas``,
            ``regressor_dir``, ``dtype``).

    Raises:
        ValueError: unknown name or gender, SMPL without ``model_path``, a path given for Anny.
        FileNotFoundError: the SMPL files are not where ``model_path`` says (the message names the
            expected files and the download page).
    """
    key = str(name).lower()
    if key not in BODY_MODEL_NAMES:
        raise ValueError(f"unknown body model {name!r}; choose one of: {', '.join(BODY_MODEL_NAMES)}")
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {', '.join(GENDERS)}, got {gender!r}")
    if key == "anny":
        if model_path is not None:
            raise ValueError(
                "anny needs no model files (it ships with the anny package); --model-path is for smpl"
            )
        from dsrbody.body.anny import AnnyBody

        return AnnyBody(**kwargs)
    if model_path is None:
        raise ValueError(
            "smpl needs the official model files: pass --model-path (model_path=) pointing to "
            "SMPL_NEUTRAL.pkl / SMPL_MALE.pkl / SMPL_FEMALE.pkl or their folder; download them "
            f"(free registration, licence) from {SMPL_DOWNLOAD_URL}"
        )
    path = Path(model_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: expected an SMPL model file (SMPL_{gender.upper()}.pkl or .npz) "
            f"or a folder holding SMPL_NEUTRAL.pkl, SMPL_MALE.pkl, SMPL_FEMALE.pkl; download them from "
            f"{SMPL_DOWNLOAD_URL}"
        )
    from dsrbody.body.smpl import SMPL

    return SMPL(path, gender=gender, **kwargs)
