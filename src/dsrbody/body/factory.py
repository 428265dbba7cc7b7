"""The body-model registry: ``build_body_model("anny")`` or ``build_body_model("smpl", model_path=...)``.

Each body model family is one :class:`BodySpec` in :data:`BODY_MODELS`: how to build it and what must
be known about it before one is built (the options it takes, whether it needs files, its genders and
meshes, what data files hold for it). The CLIs' body options (:func:`dsrbody.cli.options.add_body_options`),
recipes (``body.name``), checkpoints and data files (``body_model``) name families by these keys;
what code needs to know about a built model is asked of the model (:class:`~dsrbody.body.base.BodyModel`'s
capabilities), never by comparing names.

Anny needs nothing (it ships with the ``anny`` package); SMPL needs the official model files, which
users download themselves (licence) from https://smpl.is.tue.mpg.de.

This module imports neither torch nor a body model until one is built, so command-line parsers can
read the registry cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dsrbody.body.base import BodyModel

__all__ = [
    "BodySpec",
    "BODY_MODELS",
    "BODY_MODEL_NAMES",  # noqa: F822 - module __getattr__: the names registered now
    "DEFAULT_BODY_MODEL",
    "GENDERS",
    "SMPL_DOWNLOAD_URL",
    "body_spec",
    "build_body_model",
    "register_body_model",
    "spin_body_model",
]

GENDERS: tuple[str, ...] = ("neutral", "male", "female")
SMPL_DOWNLOAD_URL = "https://smpl.is.tue.mpg.de"
#: The body model of recipes, commands and bare state dicts when none is named; the shipped model
#: (``dsrbody/assets/models``) and the shipped clothing prior were made with it.
DEFAULT_BODY_MODEL = "anny"


@dataclass(frozen=True)
class BodySpec:
    """A body model family as the registry knows it, before any model is built.

    Attributes:
        name: the registry key (lower case): ``--body``/``--model`` value, recipe ``body.name``,
            checkpoint ``body.name``, data files' ``body_model``; equals the built model's ``name``.
        label: the family's name in messages (``"Anny"``, ``"SMPL"``).
        build: ``build(model_path, gender, **options) -> BodyModel``; checks its options (a path where
            none is needed, missing files: ``ValueError``/``FileNotFoundError`` naming what to do).
        pose_joints: ``() -> names`` of the joints, in the order of the pose vectors its data files
            store (a :class:`~dsrbody.body.keypoints.KeypointSet` or a tuple), known without building
            the model (data loading mirrors poses with it).
        needs_files: the model is read from user-provided files (``model_path`` is required).
        files_help: what ``model_path`` holds, for help texts and errors.
        gendered: separate neutral/male/female models, picked by ``gender`` (ground truth of gendered
            data is built per gender); otherwise ``gender`` is only checked.
        topologies: the meshes its ``topology`` option takes, the default first; ``()``: one mesh and
            no ``topology`` option.
        spin_params: the pose/shape parameters of SPIN/DSR files (``pose (N, 72)``, ``shape (N, 10)``,
            ``has_smpl``) and of SPIN's and DSR's released checkpoints are this model's. Other models'
            parameters are in files that name them (``body_model``, ``has_params``).
        shipped_prior: the clothing prior shipped in the package (made on this family's default mesh)
            fits it, transferred by nearest face to its other meshes.
        shipped_pose_prior: file name, under ``dsrbody/assets``, of the shipped Gaussian-mixture pose
            prior of this family's joints (:class:`dsrbody.fit.priors.PoseGMM`, used by fitting), or None.
        shape_field: a second per-sample key under which the synthetic data files also store its shape
            (Anny: ``"phenotype"``), or None.
    """

    name: str
    label: str
    build: Callable[..., BodyModel]
    pose_joints: Callable[[], Sequence[str]]
    needs_files: bool = False
    files_help: str = ""
    gendered: bool = False
    topologies: tuple[str, ...] = ()
    spin_params: bool = False
    shipped_prior: bool = False
    shipped_pose_prior: str | None = None
    shape_field: str | None = None

    @property
    def default_topology(self) -> str | None:
        """The mesh built without a ``topology`` option (None for a family with one mesh)."""
        return self.topologies[0] if self.topologies else None

    def mesh_options(self, topology: str | None) -> dict[str, str]:
        """``{"topology": topology}`` for a family with several meshes and a given ``topology``, else
        ``{}`` (a family with one mesh takes no ``topology``)."""
        return {"topology": str(topology)} if self.topologies and topology else {}


#: The registered families by name, in registration order (the default first).
BODY_MODELS: dict[str, BodySpec] = {}


def register_body_model(spec: BodySpec, replace: bool = False) -> BodySpec:
    """Add a family to :data:`BODY_MODELS` (``replace``: over one of the same name).

    Raises:
        ValueError: the name is not lower case, or is taken and ``replace`` is false.
    """
    if not spec.name or spec.name != spec.name.lower():
        raise ValueError(f"body model names are lower case, got {spec.name!r}")
    if spec.name in BODY_MODELS and not replace:
        raise ValueError(f"body model {spec.name!r} is already registered")
    BODY_MODELS[spec.name] = spec
    return spec


def __getattr__(name: str) -> Any:
    if name == "BODY_MODEL_NAMES":  # names build_body_model accepts, always those registered now
        return tuple(BODY_MODELS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def body_spec(name: str, missing_ok: bool = False) -> BodySpec | None:
    """The :class:`BodySpec` of a family name (any case).

    Raises:
        ValueError: an unknown name, unless ``missing_ok`` (then None).
    """
    spec = BODY_MODELS.get(str(name).lower())
    if spec is None and not missing_ok:
        raise ValueError(f"unknown body model {name!r}; choose one of: {', '.join(BODY_MODELS)}")
    return spec


def spin_body_model() -> str:
    """The name of the family whose parameters SPIN/DSR files and released checkpoints hold (SMPL)."""
    return next(s.name for s in BODY_MODELS.values() if s.spin_params)


def build_body_model(
    name: str, model_path: str | Path | None = None, gender: str = "neutral", **kwargs: Any
) -> BodyModel:
    """A body model by family name.

    Args:
        name: a registered family (:data:`BODY_MODELS`): ``"anny"`` (default body, no files needed) or
            ``"smpl"``.
        model_path: families that need files only (SMPL: a model file ``SMPL_NEUTRAL.pkl``, ``.npz``,
            ... or a folder holding ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` and optionally
            ``J_regressor_extra.npy``, ``J_regressor_h36m.npy``, ``smpl_mean_params.npz``). Must be
            ``None`` for Anny.
        gender: ``"neutral"``, ``"male"`` or ``"female"``: picks the file of a gendered family (SMPL).
            Anny has one model for every gender (gender is its first shape phenotype), so the value
            only gets checked.
        **kwargs: passed to the model class: :class:`dsrbody.body.anny.AnnyBody` (``rig``,
            ``topology``, ``skinning_method``) or :class:`dsrbody.body.smpl.SMPL` (``num_betas``,
            ``regressor_dir``, ``dtype``).

    Raises:
        ValueError: unknown name or gender, SMPL without ``model_path``, a path given for Anny.
        FileNotFoundError: the SMPL files are not where ``model_path`` says (the message names the
            expected files and the download page).
    """
    spec = body_spec(name)
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {', '.join(GENDERS)}, got {gender!r}")
    return spec.build(model_path=model_path, gender=gender, **kwargs)


# ------------------------------------------------------------------------------------------------
# The families shipped with dsrbody
# ------------------------------------------------------------------------------------------------


def _build_anny(model_path: str | Path | None, gender: str, **kwargs: Any) -> BodyModel:
    if model_path is not None:
        raise ValueError(
            "anny needs no model files (it ships with the anny package); --model-path is for "
            + ", ".join(s.name for s in BODY_MODELS.values() if s.needs_files)
        )
    from dsrbody.body.anny import AnnyBody

    return AnnyBody(**kwargs)


def _anny_pose_joints() -> tuple[str, ...]:
    from dsrbody.body.anny import ANNY24_BONES

    return tuple(ANNY24_BONES)


def _build_smpl(model_path: str | Path | None, gender: str, **kwargs: Any) -> BodyModel:
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


def _smpl_pose_joints() -> Sequence[str]:
    from dsrbody.body.keypoints import SMPL24

    return SMPL24


register_body_model(
    BodySpec(
        name="anny",
        label="Anny",
        build=_build_anny,
        pose_joints=_anny_pose_joints,
        topologies=("anny", "notoes_collapse10pc"),  # dsrbody.body.anny.TOPOLOGIES
        shipped_prior=True,
        shipped_pose_prior="anny_pose_gmm.npz",  # docs/fitting.md, "Pose prior"
        shape_field="phenotype",
    )
)
register_body_model(
    BodySpec(
        name="smpl",
        label="SMPL",
        build=_build_smpl,
        pose_joints=_smpl_pose_joints,
        needs_files=True,
        files_help=f"SMPL_{{NEUTRAL,MALE,FEMALE}}.pkl/.npz or their folder (from {SMPL_DOWNLOAD_URL})",
        gendered=True,
        spin_params=True,
    )
)
