"""Training and evaluation configuration: OmegaConf structured schemas, YAML recipes, dotted overrides.

A recipe is a YAML file whose keys follow :class:`TrainConfig` (see ``configs/*.yaml``, shipped in the
package as ``dsrbody/recipes/``, and ``docs/training.md``); ``base: other.yaml`` starts it from another
recipe (:func:`read_recipe`), and a bare name (``--config synth_dsr``) finds a packaged one.
:func:`load_config` merges it over the schema's defaults, then applies
``key=value`` overrides (``optim.lr=1e-4``, ``data.train.0.ratio=0.5``, ``trainer.max_epochs=3``).
Unknown keys are errors naming the full key (``loss.weights.dsr_mcc``), wrong types too.
``${...}`` interpolations resolve (e.g. ``npz: ${data.root}/synth_train.npz``); relative paths are
taken from the working directory.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dsrbody.body.factory import BODY_MODELS, DEFAULT_BODY_MODEL
from dsrbody.data.synth.generator import SynthConfig
from dsrbody.losses.total import LossWeights

__all__ = [
    "BodyConfig",
    "ModelConfig",
    "DatasetSpec",
    "check_dataset_spec",
    "synth_config",
    "DataConfig",
    "WeightsConfig",
    "LossConfig",
    "OptimConfig",
    "TrainerConfig",
    "LoggingConfig",
    "TrainConfig",
    "ConfigError",
    "load_config",
    "read_recipe",
    "find_recipe",
    "packaged_recipes",
    "recipes_dir",
    "config_from_dict",
    "apply_overrides",
    "to_container",
]


class ConfigError(ValueError):
    """A configuration that cannot be used (unknown key, wrong type, missing value); one line."""


#: The default family's default mesh (Anny's full mesh, ``"anny"``).
_DEFAULT_MESH = str(BODY_MODELS[DEFAULT_BODY_MODEL].default_topology)


@dataclass
class BodyConfig:
    """The body model (:func:`dsrbody.body.factory.build_body_model`).

    Attributes:
        name: a registered body model (:data:`dsrbody.body.factory.BODY_MODELS`): ``"anny"`` (default,
            no files) or ``"smpl"``.
        model_path: files of a family that needs them (SMPL: folder or file); ``None`` for Anny.
        gender: the model file of a gendered family (SMPL: ``neutral``/``male``/``female``).
        topology: mesh used for training (rendering), for a family with several (Anny: ``"anny"`` or
            the low-poly ``"notoes_collapse10pc"``); ignored by the others. Evaluation runs on
            ``eval_topology``.
        eval_topology: mesh of the evaluation (the synthetic data's ground truth is on Anny's full
            mesh, ``"anny"``).
    """

    name: str = DEFAULT_BODY_MODEL
    model_path: str | None = None
    gender: str = "neutral"
    topology: str = _DEFAULT_MESH
    eval_topology: str = _DEFAULT_MESH


@dataclass
class ModelConfig:
    """The regressor (:func:`dsrbody.models.build_regressor`).

    Attributes:
        backbone: ``resnet18``/``resnet34``/``resnet50``, ``blazepose`` (frozen), ``blazepose_tuned``
            (its stages after the first 4 x 4 block trained), ``blazepose_tuned8`` (also its last 8 x 8
            stage) or ``blazepose_tuned8b`` (also the trunk's last 8 x 8 unit;
            :data:`dsrbody.models.backbones.BACKBONES`).
        pretrained_backbone: backbone weights file (torchvision/SPIN/DSR), or ``None`` (from scratch).
        init_checkpoint: full regressor weights to start from (SPIN ``model_checkpoint.pt``, DSR or
            dsrbody checkpoints), or ``None``. ``blazepose_tuned`` also starts from a checkpoint trained
            on ``blazepose`` (its head loads; the tuned stages start from the asset),
            ``blazepose_tuned8`` from one on either, ``blazepose_tuned8b`` from one on any of the
            three (the tuned stages they share load too).
        n_iter: IEF iterations. dropout: head dropout.
        img_res: crop side in pixels (224, the paper's). The focal length follows it
            (``5000 * img_res / 224``), so a camera ``(s, tx, ty)`` means the same 3D placement at every
            crop size; the datasets crop, the keypoints normalise and the DSR losses render at this size.
        channels_last: run the backbone in channels-last memory format (faster convolutions on CPU).
        spatial_channels: 0 (SPIN's head: the feature map is average-pooled) or the channels of the
            head's per-cell summary of the feature map (:class:`dsrbody.models.HMRHead`), which keeps
            where things are in the crop; it speeds up learning from random weights
            (docs/training.md).
        keypoints: 0, or the number of 2D keypoints (24: SPIN-49's ground-truth joints) of the head's
            keypoint branch, heatmaps on the backbone's feature pyramid whose soft-argmax coordinates
            feed the head; supervise it with ``loss.weights.keypoints_2d_direct`` (docs/training.md).
        feature_cache: compute the output of the backbone's frozen part once per sample
            (:mod:`dsrbody.data.feature_cache`; ``blazepose``: all of it, the tuned variants: the
            stages before the tuned ones) at the start of training and train the rest on it; needs
            ``data.augment: false`` and npz datasets.
        feature_cache_mirrored: also cache each training crop's mirror image, and train on the
            mirrored crop with mirrored labels with probability 0.5 (the flip augmentation that
            cached features allow; docs/training.md, "Mirrored caches"). Needs ``feature_cache``.
        init_shape: the shape the head starts from, in the body model's units (Anny: phenotypes), or
            ``None`` for the body model's mean. SPIN starts at its training data's mean; Anny's mean
            is a 1.6 m teenager, far from adult training data (docs/training.md, "Terms without
            stature"). It replaces the start point of ``init_checkpoint`` too.
    """

    backbone: str = "resnet50"
    pretrained_backbone: str | None = None
    init_checkpoint: str | None = None
    n_iter: int = 3
    dropout: float = 0.5
    img_res: int = 224
    channels_last: bool = False
    spatial_channels: int = 0
    keypoints: int = 0
    feature_cache: bool = False
    feature_cache_mirrored: bool = False
    init_shape: list[float] | None = None


@dataclass
class DatasetSpec:
    """One dataset: a SPIN/DSR annotation file (:class:`dsrbody.data.SpinNpzDataset`) or a synthetic
    split generated on the fly (:class:`dsrbody.data.synth.stream.SynthStreamDataset`).

    Give exactly one of ``npz`` (with ``img_dir``) and ``synth``::

        train:
          - npz: ${data.root}/synth_train.npz     # files written by `dsrbody synth`
            img_dir: ${data.root}
            ratio: 0.5
          - synth: {num: 100000, seed: 1, hard: true}   # the same kind of samples, made while training
            ratio: 0.5

    Attributes:
        npz: the annotation ``.npz``. img_dir: the image root (``imgname`` is relative to it).
        synth: a streamed synthetic split instead of a file: the settings of
            :class:`dsrbody.data.synth.SynthConfig`, which are those of ``dsrbody synth`` (``num``
            distinct samples, required; ``seed``, ``split``, ``res`` (side of the generated image; the
            crop follows ``model.img_res``), ``hard``, ``model``, ``model_path``, ``truncation_prob``,
            ``photo_prob``, ``anny_topology``; ``version``: leave it). Item ``i`` is sample ``i`` of
            ``dsrbody synth`` with the same settings, and equals the item read back from its files up
            to their JPEG compression. Each DataLoader worker (``data.num_workers``) generates its
            items, at the cost of ``dsrbody synth`` per sample. ``npz``, ``img_dir`` and
            ``parsing_root`` are then unset; ``name`` defaults to ``synth_<split>``, ``parsing`` to on.
        name: dataset name (default: the registry's, else the file stem).
        ratio: per-sample probability in the training mix (normalised over the list).
        parsing: load parsing maps (``None``: on except for the registry's evaluation files).
        parsing_root: root of ``grph_sequences`` (default ``img_dir``).
        ignore_3d: use no SMPL/3D joints from this file (SPIN's ``ignore_3d``).
    """

    npz: str | None = None
    img_dir: str | None = None
    synth: SynthConfig | None = None
    name: str | None = None
    ratio: float = 1.0
    parsing: bool | None = None
    parsing_root: str | None = None
    ignore_3d: bool = False


def check_dataset_spec(spec: Any, where: str = "dataset") -> None:
    """Check that a :class:`DatasetSpec` names exactly one source: ``npz`` with ``img_dir``, or ``synth``.

    Args:
        spec: the spec (config node or dataclass).
        where: names it in the message (``"recipe.yaml: data.train.0"``).

    Raises:
        ConfigError: neither or both, ``npz`` without ``img_dir``, or file keys beside ``synth``.
    """
    has_npz, has_synth = spec.npz is not None, spec.synth is not None
    if has_npz == has_synth:
        which = "both" if has_npz else "neither"
        raise ConfigError(
            f"{where}: give exactly one of 'npz' (with 'img_dir') and 'synth' (a streamed synthetic split), "
            f"got {which}"
        )
    if has_npz and spec.img_dir is None:
        raise ConfigError(f"{where}: 'npz' needs 'img_dir' (the folder its imgname paths are relative to)")
    if has_synth:
        extra = [k for k in ("img_dir", "parsing_root") if getattr(spec, k) is not None]
        if extra:
            raise ConfigError(
                f"{where}: {', '.join(map(repr, extra))} unused with 'synth' (it reads no files)"
            )
        synth = synth_config(spec, where)
        try:
            synth.validate()
        except ValueError as e:  # named as the options of dsrbody synth
            raise ConfigError(f"{where}: synth: {e}") from None


def synth_config(spec: Any, where: str = "dataset") -> SynthConfig:
    """The :class:`~dsrbody.data.synth.SynthConfig` of a :class:`DatasetSpec`'s ``synth`` settings
    (``where`` names the spec in messages).

    Raises:
        ConfigError: a setting without a value (``num``) or a broken interpolation.
    """
    synth = spec.synth
    if dataclasses.is_dataclass(synth) and not isinstance(synth, DictConfig):
        return dataclasses.replace(synth)
    try:
        return SynthConfig(**OmegaConf.to_container(synth, resolve=True, throw_on_missing=True))
    except OmegaConfBaseException as e:
        raise _wrap(e, f"{where}: synth") from None


@dataclass
class DataConfig:
    """Datasets and loading.

    Attributes:
        root: data root, for ``${data.root}`` interpolations in the dataset paths.
        train: training files, mixed by ``ratio`` (:class:`dsrbody.data.MixedDataset`).
        val: validation files (every sample once; ``[]``: no validation, the best checkpoint is the last).
        test: evaluation files for ``dsrbody eval --split test`` (default: ``val``).
        epoch_length: items per epoch (default: the largest training file, as SPIN/DSR).
        batch_size, val_batch_size: images per batch (per process under DDP).
        num_workers: DataLoader worker processes (0: load in the training process).
        augment: training augmentation (flip, rotation, scale, pixel noise).
        clean_parsing: set parsing pixels far from the keypoints to background (docs/design.md, Clothing
            labels).
    """

    root: str = "data"
    train: list[DatasetSpec] = field(default_factory=list)
    val: list[DatasetSpec] = field(default_factory=list)
    test: list[DatasetSpec] | None = None
    epoch_length: int | None = None
    batch_size: int = 64
    val_batch_size: int = 64
    num_workers: int = 0
    augment: bool = True
    clean_parsing: bool = True


#: Loss weights: the schema is :class:`dsrbody.losses.total.LossWeights` itself (official DSR values by
#: default), so a weight added there is a config key here with no second list to keep in step.
WeightsConfig = LossWeights


@dataclass
class LossConfig:
    """Losses.

    Attributes:
        weights: :class:`WeightsConfig`.
        start_dsr: DSR terms (and the silhouette term) are on when ``epoch > start_dsr`` (official 2;
            ``-1``: from the first epoch).
        mc_form: DSR-MC form (``iou``, ``iou_rows``, ``distance``). c_form: DSR-C form (``nll``,
            ``official``, ``inside``).
        sigma, gamma: soft-rasteriser settings (official training: 1e-5, 1e-1).
        prior: clothing prior file (``.npz`` or the official ``semantic_prior.npy``); ``None``: the
            shipped Anny prior (:func:`dsrbody.garments.default_prior`; transferred to the low-poly mesh).
        dsr_batch_mean: average DSR terms over the whole batch as the official code (samples without
            labels count 0) instead of over the samples that have them.
    """

    weights: WeightsConfig = field(default_factory=WeightsConfig)
    start_dsr: int = 2
    mc_form: str = "iou"
    c_form: str = "nll"
    sigma: float = 1e-5
    gamma: float = 1e-1
    prior: str | None = None
    dsr_batch_mean: bool = False


@dataclass
class OptimConfig:
    """Adam (the official optimiser).

    Attributes:
        lr: learning rate (peak when scheduled). weight_decay: L2 (0 officially).
        schedule: ``constant`` (official) or ``cosine`` (linear warm-up over ``warmup_steps``, then cosine
            decay to ``min_lr_ratio * lr`` at ``trainer.max_steps``; needs ``max_steps`` > 0).
        warmup_steps: steps of linear warm-up (cosine schedule).
        min_lr_ratio: final learning rate as a fraction of ``lr`` (cosine schedule).
        backbone_lr_ratio: the backbone's trainable parameters learn at ``backbone_lr_ratio * lr`` (a
            pretrained backbone adapting slower than a new head; 1: one rate for everything).
    """

    lr: float = 3e-5
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    backbone_lr_ratio: float = 1.0


@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` settings (see its documentation).

    Attributes:
        max_epochs, max_steps: stop at whichever comes first (``max_steps`` -1: no step limit).
        accelerator: ``auto``, ``cpu``, ``gpu``. devices: ``auto`` or a count. strategy: ``auto``, ``ddp``
            (one process per device; on CPU with the gloo backend), ``ddp_spawn``.
        num_nodes: machines. precision: ``32-true``, ``16-mixed``, ``bf16-mixed``.
        limit_train_batches, limit_val_batches: fraction (float) or count (int as float >= 1) per epoch.
        val_every_n_epochs: validation frequency. val_every_n_steps: validate every n training steps
            instead (0: at epoch ends), for learning curves of long epochs.
        gradient_clip_val: ``None`` or a norm.
        checkpoint_every_n_steps: also save ``last.ckpt`` every n training steps (0: epoch ends only).
        progress_bar: show Lightning's progress bar.
        deterministic: ask torch for deterministic algorithms.
    """

    max_epochs: int = 50
    max_steps: int = -1
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    val_every_n_epochs: int = 1
    val_every_n_steps: int = 0
    gradient_clip_val: float | None = None
    checkpoint_every_n_steps: int = 0
    progress_bar: bool = True
    deterministic: bool = False


@dataclass
class LoggingConfig:
    """Logs (TensorBoard + CSV under the output folder).

    Attributes:
        every_n_steps: scalar logging frequency.
        images_every_n_steps: picture panels frequency (0: never); images_count: samples per panel.
        mean_body_reference: at the first validation, also log the mean body's metrics
            (``val_mean_body/*``): the line a learning curve is read against.
    """

    every_n_steps: int = 10
    images_every_n_steps: int = 200
    images_count: int = 2
    mean_body_reference: bool = True


@dataclass
class TrainConfig:
    """A whole training/evaluation recipe.

    Attributes:
        name: run name (default output folder ``outputs/train/<name>``).
        seed: seeds torch/numpy/python and the data draws.
        out_dir: output folder (``None``: ``outputs/train/<name>``); ``--out`` overrides it.
    """

    name: str = "run"
    seed: int = 0
    out_dir: str | None = None
    body: BodyConfig = field(default_factory=BodyConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# ----------------------------------------------------------------------------------------------
# key checking with full paths
# ----------------------------------------------------------------------------------------------


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside ``X``, ``X | None``, ``list[X]``, ``list[X] | None`` (else None)."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        dc = _dataclass_of(arg)
        if dc is not None:
            return dc
    return None


def _check_keys(node: Any, schema: type, path: str, source: str) -> None:
    """Raise :class:`ConfigError` naming the first key of ``node`` that ``schema`` does not have."""
    if not isinstance(node, dict):
        return
    hints = typing.get_type_hints(schema)
    for key, value in node.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{source}: unknown config key '{full}' (known keys here: {known})")
        sub = _dataclass_of(hints[key])
        if sub is None:
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_keys(item, sub, f"{full}.{i}", source)
        else:
            _check_keys(value, sub, full, source)


def _wrap(exc: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    where = f" (key '{key}')" if key else ""
    return ConfigError(f"{source}: {first}{where}")


def config_from_dict(data: dict | None, source: str = "config") -> DictConfig:
    """Merge a plain dict (a parsed YAML recipe) over the :class:`TrainConfig` defaults.

    Raises:
        ConfigError: unknown key (named with its full path) or a value of the wrong type.
    """
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of keys, got {type(data).__name__}")
    _check_keys(data, TrainConfig, "", source)
    base = OmegaConf.structured(TrainConfig)
    try:
        return OmegaConf.merge(base, OmegaConf.create(data))
    except OmegaConfBaseException as e:
        raise _wrap(e, source) from None


def apply_overrides(cfg: DictConfig, overrides: list[str] | tuple[str, ...]) -> DictConfig:
    """Apply ``key=value`` overrides (values parsed as YAML: ``3``, ``1e-4``, ``null``, ``[a, b]``).

    Raises:
        ConfigError: malformed override, unknown key, wrong type.
    """
    import yaml

    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key=value")
        key, raw = ov.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.split(".")
        node: Any = cfg
        for i, p in enumerate(parts):
            here = ".".join(parts[: i + 1])
            if isinstance(node, DictConfig):
                if p not in node:
                    raise ConfigError(f"override '{ov}': unknown config key '{here}'")
            elif OmegaConf.is_list(node):
                if not p.isdigit() or int(p) >= len(node):
                    raise ConfigError(
                        f"override '{ov}': '{here}' is not an index of the list (len {len(node)})"
                    )
                p = int(p)
            else:
                raise ConfigError(f"override '{ov}': '{'.'.join(parts[:i])}' is not a group of keys")
            if i < len(parts) - 1:
                node = node[p]
        try:
            if isinstance(value, (dict, list)):
                sub = node[p]
                if isinstance(value, dict) and isinstance(sub, DictConfig):
                    sc = OmegaConf.get_type(sub)
                    if dataclasses.is_dataclass(sc):
                        _check_keys(value, sc, key, f"override '{ov}'")
                elif isinstance(value, dict) and sub is None and isinstance(node, DictConfig):
                    # an unset optional group (data.train.0.synth={num: 1000}): fill its schema
                    sc = node._get_node(p)._metadata.ref_type
                    if dataclasses.is_dataclass(sc):
                        _check_keys(value, sc, key, f"override '{ov}'")
                        value = OmegaConf.merge(OmegaConf.structured(sc), value)
                node[p] = value
            else:
                node[p] = _as_declared(node, p, value)
        except OmegaConfBaseException as e:
            raise _wrap(e, f"override '{ov}'") from None
    return cfg


def _as_declared(node: Any, key: Any, value: Any) -> Any:
    """``value`` converted to the declared type of ``node[key]`` where that is lossless (int -> float,
    number -> str, "3e-4" -> float), as a YAML file merge would do."""
    from omegaconf.nodes import FloatNode, StringNode

    try:
        target = node._get_node(key)
    except Exception:  # noqa: BLE001 - no declared type: keep the value
        return value
    if isinstance(target, FloatNode) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(target, FloatNode) and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(target, StringNode) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def recipes_dir() -> Path:
    """The folder of the recipes shipped in the package (``dsrbody/recipes``; ``configs/`` in a checkout
    points there)."""
    from importlib import resources

    return Path(str(resources.files("dsrbody"))) / "recipes"


def packaged_recipes() -> dict[str, Path]:
    """``{name: path}`` of the packaged recipes (``dsr_paper``, ``synth_cpu``, ...), sorted by name."""
    d = recipes_dir()
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def find_recipe(path: str | os.PathLike) -> Path:
    """The recipe file ``path`` names: an existing file, else, for a bare name without a folder
    (``synth_dsr`` or ``synth_dsr.yaml``), the packaged recipe of that name.

    Raises:
        FileNotFoundError: neither (the message lists the packaged recipes).
    """
    p = Path(path)
    if p.is_file():
        return p
    if p.parent == Path(".") and not str(path).startswith("."):
        packaged = packaged_recipes().get(p.stem if p.suffix in (".yaml", ".yml") else p.name)
        if packaged is not None:
            return packaged
    names = ", ".join(packaged_recipes()) or "none"
    raise FileNotFoundError(
        f"{p}: config file does not exist (recipes live in configs/*.yaml; packaged recipes: {names})"
    )


def _read_yaml(p: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe must be a mapping of keys, got {type(data).__name__}")
    return data


def read_recipe(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict:
    """A recipe's keys as a plain dict (interpolations unresolved), its ``base:`` chain merged in.

    ``base: other.yaml`` names another recipe, relative to the recipe's folder or, as a bare name, a
    packaged one; the base is read first and the recipe's keys are merged over it (OmegaConf merge:
    mappings merge key by key, lists and scalars replace). Keys are checked file by file, so an
    unknown key is reported with the file that has it.

    Raises:
        FileNotFoundError: no such recipe or base. ConfigError: bad YAML, unknown key, a cycle of bases.
    """
    p = find_recipe(path) if not _chain else Path(path)
    chain = (*_chain, p.resolve())
    data = _read_yaml(p)
    base = data.pop("base", None)
    _check_keys(data, TrainConfig, "", str(p))
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{p}: 'base' must name a recipe file (e.g. base: dsr_paper.yaml), got {base!r}")
    bp = p.parent / base
    if not bp.is_file():
        try:
            bp = find_recipe(base) if Path(base).parent == Path(".") else bp
        except FileNotFoundError:
            pass
    if not bp.is_file():
        names = ", ".join(packaged_recipes()) or "none"
        raise FileNotFoundError(
            f"{p}: base recipe '{base}' not found (in {p.parent} or among the packaged recipes: {names})"
        )
    if bp.resolve() in chain:
        cycle = " -> ".join(c.name for c in (*chain, bp.resolve()))
        raise ConfigError(f"{p}: recipe bases form a cycle: {cycle}")
    parent = read_recipe(bp, chain)
    try:
        merged = OmegaConf.merge(OmegaConf.create(parent), OmegaConf.create(data))
    except OmegaConfBaseException as e:
        raise _wrap(e, str(p)) from None
    return OmegaConf.to_container(merged, resolve=False)  # type: ignore[return-value]


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Read a YAML recipe (or the defaults when ``path`` is None) and apply overrides.

    ``path`` is a file, or the bare name of a packaged recipe (``synth_dsr``, see :func:`find_recipe`);
    a recipe may start from another with ``base:`` (:func:`read_recipe`).

    Returns:
        The structured config (``DictConfig`` typed by :class:`TrainConfig`), interpolations resolvable.

    Raises:
        FileNotFoundError: the file (or a base) does not exist.
        ConfigError: unreadable YAML, unknown key (full name, with its file), wrong type, a cycle of bases.
    """
    data: dict = {}
    source = "overrides"
    if path is not None:
        p = find_recipe(path)
        data = read_recipe(p)
        source = str(p)
    cfg = config_from_dict(data, source)
    cfg = apply_overrides(cfg, list(overrides))
    try:  # resolve now so that a broken interpolation is reported here
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise _wrap(e, source) from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{source}: config key(s) without a value: {', '.join(missing)}")
    for split in ("train", "val", "test"):
        for i, spec in enumerate(cfg.data[split] or []):
            check_dataset_spec(spec, f"{source}: data.{split}.{i}")
    return cfg


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain Python (for checkpoints, logs and ``config.yaml``)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
