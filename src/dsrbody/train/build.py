"""Build the plain modules of a recipe: body model, regressor, clothing prior, datasets."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from dsrbody.data.spin_npz import EXPECTED_LAYOUT
from dsrbody.losses import LossWeights
from dsrbody.train.config import ConfigError

_log = logging.getLogger(__name__)

__all__ = [
    "body_options",
    "build_body",
    "build_model",
    "build_prior",
    "build_dataset",
    "training_keys",
    "build_train_set",
    "build_eval_set",
    "attach_feature_caches",
    "build_feature_caches",
]


def body_options(cfg: DictConfig, for_eval: bool = False) -> dict:
    """The body model's identity as stored in checkpoints: ``{"name", "model_path", "gender", "topology"}``
    (``topology`` only for families with several meshes, Anny; ``eval_topology`` when ``for_eval``)."""
    from dsrbody.body.factory import body_spec

    b = cfg.body
    name = str(b.name).lower()
    opts = {"name": name, "model_path": b.model_path, "gender": str(b.gender)}
    spec = body_spec(name, missing_ok=True)  # an unknown name fails where the model is built
    if spec is not None and spec.topologies:
        opts["topology"] = str(b.eval_topology if for_eval else b.topology)
    return opts


def build_body(cfg: DictConfig, for_eval: bool = False) -> nn.Module:
    """The body model of ``cfg.body`` (training mesh, or the evaluation mesh when ``for_eval``)."""
    from dsrbody.body.factory import build_body_model

    opts = body_options(cfg, for_eval)
    kwargs = {"topology": opts["topology"]} if "topology" in opts else {}
    return build_body_model(opts["name"], model_path=opts["model_path"], gender=opts["gender"], **kwargs)


def build_model(cfg: DictConfig, body: nn.Module):
    """The :class:`~dsrbody.models.Regressor` of ``cfg.model`` on ``body`` (initial weights loaded).

    Raises:
        ValueError: ``model.init_checkpoint`` is a dsrbody checkpoint of another body model or backbone.
    """
    from dsrbody.models import build_regressor

    m = cfg.model
    from dsrbody.models.backbones import warm_start_sources

    warm = None
    sources = warm_start_sources(str(m.backbone))
    if m.init_checkpoint:
        from dsrbody.models.loader import check_checkpoint, read_checkpoint_meta

        meta = read_checkpoint_meta(m.init_checkpoint)
        source = None
        if meta is not None:
            source = str(meta.get("backbone"))
        elif sources:  # a bare state dict: its keys say which backbone it was trained on
            from dsrbody.models.loader import infer_backbone, read_checkpoint

            source = infer_backbone(read_checkpoint(m.init_checkpoint)[0])
        if source in sources:
            warm = source
            if meta is not None:
                check_checkpoint(meta, OmegaConf.merge(cfg, {"model": {"backbone": warm}}), m.init_checkpoint)
        else:
            check_checkpoint(meta, cfg, m.init_checkpoint)
    elif sources:
        _log.warning(
            "model.backbone %s is meant to start from a checkpoint trained on %s (model.init_checkpoint); "
            "without one, its head trains from random weights",
            m.backbone,
            " or ".join(sources),
        )
    reg = build_regressor(
        body,
        backbone=str(m.backbone),
        pretrained_backbone=m.pretrained_backbone,
        checkpoint=m.init_checkpoint if warm is None else None,
        n_iter=int(m.n_iter),
        dropout=float(m.dropout),
        img_res=int(m.img_res),
        spatial_channels=int(m.spatial_channels),
        keypoints=int(m.keypoints),
    )
    if warm is not None:
        _warm_start(reg, str(m.init_checkpoint), warm, str(m.backbone))
    if m.get("init_shape") is not None:
        reg.set_init_shape([float(v) for v in m.init_shape], "model.init_shape")
        _log.info("model.init_shape: the head starts at shape %s", list(m.init_shape))
    return reg


def _warm_start(reg: nn.Module, path: str, source: str, target: str) -> None:
    """Load a checkpoint trained on backbone ``source`` into ``reg`` (backbone ``target``, which starts
    as ``source``): every head weight must load; the backbone weights both share by name load too (a
    ``blazepose_tuned`` checkpoint's tuned stages into ``blazepose_tuned8``), the others keep their own
    initial weights.

    Raises:
        ValueError: a head weight is missing, unexpected or of another shape (one line naming the file).
    """
    from dsrbody.models.checkpoint import load_regressor_checkpoint

    try:
        report = load_regressor_checkpoint(reg, path, allow_missing=True, allow_unexpected=True)
    except ValueError as e:  # a shape mismatch: the head differs (spatial summary, keypoints, width)
        raise ValueError(
            f"{path}: its head does not fit this recipe's (started from backbone {source!r}): {e}"
        ) from None
    # source keys keep the file's wrappers (a Lightning checkpoint's ``model.``)
    keys = report.missing + [k.removeprefix("module.").removeprefix("model.") for k in report.unexpected]
    stray = [k for k in keys if not k.startswith("backbone.")]
    if stray:
        raise ValueError(
            f"{path}: not a regressor of the same head (from backbone {source!r}): "
            f"{len(stray)} head weights missing or unexpected (first: {stray[0]})"
        )
    shared = sum(1 for _, t in report.loaded if t.startswith("backbone."))
    own = sum(1 for k in report.missing if k.startswith("backbone."))
    _log.info(
        "model.init_checkpoint %s: head and %d backbone tensors from its %s checkpoint, %d %s backbone "
        "tensors from their own initial weights",
        path,
        shared,
        source,
        own,
        target,
    )


def build_prior(cfg: DictConfig, body: nn.Module):
    """The clothing prior for ``body``: ``cfg.loss.prior`` or the shipped Anny prior.

    Raises:
        FileNotFoundError: the prior file does not exist.
        ValueError: it was made for another mesh.
    """
    path = cfg.loss.prior
    if path:
        from dsrbody.semantics.prior import ClothingPrior

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: clothing prior file does not exist (loss.prior)")
        return ClothingPrior.load(p, expected_topology=body.faces)
    from dsrbody.garments import default_prior

    with warnings.catch_warnings():  # the nearest-face transfer to the low-poly mesh is expected
        warnings.simplefilter("ignore", UserWarning)
        return default_prior(body)


def training_keys(cfg: DictConfig) -> tuple[str, ...]:
    """Annotation keys a training file must have for the recipe's losses: ``part`` (the 24 GT 2D
    keypoints) when the 2D keypoint term weighs them (the default), ``openpose`` when it weighs only
    those; nothing when the term is off. (Without them a file would train with no 2D keypoint loss.)"""
    w = cfg.loss.weights
    defaults = LossWeights()

    def weight(name: str) -> float:
        return float(w.get(name, getattr(defaults, name)))

    if weight("keypoints_2d") == 0:
        return ()
    if weight("gt") != 0:
        return ("part",)
    return ("openpose",) if weight("openpose") != 0 else ()


def build_dataset(spec, cfg: DictConfig, augment: bool, required: tuple[str, ...] = ()):
    """One dataset from a :class:`~dsrbody.train.config.DatasetSpec`: a
    :class:`~dsrbody.data.SpinNpzDataset` for ``npz``, a
    :class:`~dsrbody.data.synth.stream.SynthStreamDataset` for ``synth``.

    Args:
        spec: the dataset spec; cfg: the recipe; augment: draw the training augmentation.
        required: annotation keys the file must have for its use (training: :func:`training_keys`);
            synthetic streams always have them.

    Raises:
        FileNotFoundError: the annotation file or image folder does not exist (names the path and the
            expected layout).
        ValueError: the file lacks a required key (names the file, the key and what it is needed for).
        ConfigError: the spec names neither or both sources, or impossible ``synth`` settings.
    """
    from dsrbody.train.config import check_dataset_spec

    check_dataset_spec(spec, f"dataset {spec.name!r}" if spec.name else "dataset")
    if spec.synth is not None:
        return _build_synth_stream(spec, cfg, augment)

    from dsrbody.data import SpinNpzDataset

    npz, img_dir = Path(str(spec.npz)), Path(str(spec.img_dir))
    if not npz.is_file():
        raise FileNotFoundError(f"{npz}: dataset annotation file does not exist; {EXPECTED_LAYOUT}")
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir}: dataset image folder does not exist; {EXPECTED_LAYOUT}")
    return SpinNpzDataset(
        npz,
        img_dir,
        name=spec.name,
        augment=augment,
        parsing=spec.parsing,
        parsing_root=spec.parsing_root,
        seed=int(cfg.seed),
        ignore_3d=bool(spec.ignore_3d),
        res=int(cfg.model.img_res),
        required=required,
        required_for="training: the recipe's 2D keypoint loss (loss.weights.keypoints_2d)"
        if required
        else "",
    )


def _build_synth_stream(spec, cfg: DictConfig, augment: bool):
    """The :class:`~dsrbody.data.synth.stream.SynthStreamDataset` of a spec's ``synth`` settings."""
    from dsrbody.data.synth.stream import SynthStreamDataset
    from dsrbody.train.config import synth_config

    return SynthStreamDataset(
        synth_config(spec),
        name=spec.name,
        augment=augment,
        parsing=spec.parsing is not False,
        seed=int(cfg.seed),
        ignore_3d=bool(spec.ignore_3d),
        res=int(cfg.model.img_res),
    )


def build_train_set(cfg: DictConfig):
    """The training :class:`~dsrbody.data.MixedDataset` of ``cfg.data.train``."""
    from dsrbody.data import MixedDataset

    specs = list(cfg.data.train)
    if not specs:
        raise ValueError("the config lists no training dataset (data.train is empty)")
    need = training_keys(cfg)
    sets = [build_dataset(s, cfg, augment=bool(cfg.data.augment), required=need) for s in specs]
    if bool(cfg.model.get("feature_cache", False)):
        if bool(cfg.data.augment):
            raise ConfigError(
                "model.feature_cache: the cached features are of the plain crops; set data.augment: false"
            )
        attach_feature_caches(sets, cfg, mirrored=bool(cfg.model.get("feature_cache_mirrored", False)))
    elif bool(cfg.model.get("feature_cache_mirrored", False)):
        raise ConfigError("model.feature_cache_mirrored needs model.feature_cache: true")
    return MixedDataset(
        sets, [float(s.ratio) for s in specs], length=cfg.data.epoch_length, seed=int(cfg.seed)
    )


def build_eval_set(cfg: DictConfig, split: str = "val", features: bool | None = None):
    """Every sample of ``cfg.data.<split>`` once (:class:`~dsrbody.data.EvalConcatDataset`), or None
    when the split lists nothing. ``split`` ``"test"`` falls back to ``val`` when ``data.test`` is unset.

    ``features``: attach the frozen backbone's cached features (:func:`attach_feature_caches`, building
    them); None follows ``model.feature_cache``. ``dsrbody eval`` passes False: it runs the backbone on
    the images and writes nothing into the data folder."""
    from dsrbody.data import EvalConcatDataset

    if split not in ("val", "test", "train"):
        raise ValueError(f"unknown split {split!r}; choose val, test or train")
    specs = cfg.data.get(split)
    if split == "test" and specs is None:
        specs = cfg.data.val
    specs = list(specs or [])
    if not specs:
        return None
    sets = [build_dataset(s, cfg, augment=False) for s in specs]
    if features is None:
        features = bool(cfg.model.get("feature_cache", False))
    if features:
        attach_feature_caches(sets, cfg)
    return EvalConcatDataset(sets)


def _cache_backbone(cfg: DictConfig):
    """``cfg.model.backbone`` built, when it has a frozen part to cache (``cache_rows``).

    Raises:
        ConfigError: it trains as a whole.
    """
    from dsrbody.models.backbones import build_backbone

    name = str(cfg.model.backbone)
    backbone, _ = build_backbone(name)
    if not hasattr(backbone, "cache_rows"):
        raise ConfigError(
            f"model.feature_cache: backbone {name!r} trains as a whole; "
            "it has no frozen part to cache (cache_rows)"
        )
    return backbone


def _cache_path(ds, cfg: DictConfig, mirrored: bool = False) -> Path:
    """Where ``ds``'s cache under ``cfg.model.backbone`` lives (that of its mirrored crops with
    ``mirrored``).

    Raises:
        ConfigError: ``ds`` is not an annotation file (a synthetic stream has no fixed samples).
    """
    from dsrbody.data import SpinNpzDataset
    from dsrbody.data.feature_cache import feature_cache_path

    if not isinstance(ds, SpinNpzDataset):
        raise ConfigError(
            f"model.feature_cache: dataset {getattr(ds, 'name', ds)!r} is not an annotation file "
            "(streamed synthetic data has no fixed samples to cache)"
        )
    return feature_cache_path(
        ds.npz_path, ds.img_dir, str(cfg.model.backbone), int(cfg.model.img_res), mirrored=mirrored
    )


def _build_cache(
    ds,
    backbone,
    path: Path,
    cfg: DictConfig,
    progress: bool,
    position: int | None = None,
    mirrored: bool = False,
) -> None:
    """Build ``ds``'s missing cache at ``path`` in this process (one pass of the frozen part per sample;
    over the mirrored crops with ``mirrored``)."""
    from dsrbody.data.feature_cache import MirroredCrops, build_feature_cache, file_fingerprint

    _log.info("building the %s feature cache of %s: %s", cfg.model.backbone, ds.name, path)
    build_feature_cache(
        MirroredCrops(ds) if mirrored else ds,
        backbone,
        path,
        num_workers=int(cfg.data.num_workers),
        progress=progress,
        fingerprint=file_fingerprint(ds.npz_path),
        position=position,
    )


def attach_feature_caches(sets: list, cfg: DictConfig, progress: bool = True, mirrored: bool = False) -> None:
    """Give every dataset the cached output of ``cfg.model.backbone``'s frozen part (a backbone with
    ``cache_rows``: frozen BlazePose, or the frozen stages of the tuned one), building the missing caches
    first (:mod:`dsrbody.data.feature_cache`; one pass of the frozen part per sample, in this process:
    :func:`build_feature_caches` builds them with several). With ``mirrored`` each dataset also gets the
    cache of its mirrored crops, and its items are mirrored half the time
    (``model.feature_cache_mirrored``).

    Raises:
        ConfigError: the backbone has no frozen part, or a dataset is not an annotation file.
    """
    from dsrbody.data.feature_cache import attach_feature_cache, file_fingerprint

    backbone = None
    for ds in sets:
        path = _cache_path(ds, cfg)
        if backbone is None:
            backbone = _cache_backbone(cfg)
            dim = int(backbone.cache_dim)
        if not path.is_file():
            _build_cache(ds, backbone, path, cfg, progress)
        mpath = _cache_path(ds, cfg, mirrored=True) if mirrored else None
        if mpath is not None and not mpath.is_file():
            _build_cache(ds, backbone, mpath, cfg, progress, mirrored=True)
        attach_feature_cache(ds, path, dim, fingerprint=file_fingerprint(ds.npz_path), mirrored_path=mpath)


def _recipe_cache_sets(cfg: DictConfig, splits: tuple[str, ...]) -> list[tuple[str, int, object, Path, bool]]:
    """``(split, index, dataset, cache path, mirrored)`` of every annotation file the recipe lists under
    ``data.<split>``, one per cache file (folders that are links to one another share it); with
    ``model.feature_cache_mirrored`` each training file has a second row, its mirrored crops' cache."""
    mirror = bool(cfg.model.get("feature_cache_mirrored", False))
    if mirror and not bool(cfg.model.get("feature_cache", False)):
        raise ConfigError("model.feature_cache_mirrored needs model.feature_cache: true")
    rows, seen = [], set()
    for split in splits:
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        for i, spec in enumerate(list(cfg.data.get(split) or [])):
            need = training_keys(cfg) if split == "train" else ()
            ds = build_dataset(spec, cfg, augment=False, required=need)
            for mirrored in (False, True) if mirror and split == "train" else (False,):
                path = _cache_path(ds, cfg, mirrored=mirrored)
                key = path.resolve()
                if key not in seen:
                    seen.add(key)
                    rows.append((split, i, ds, path, mirrored))
    return rows


def _cache_job(
    cfg: dict, split: str, index: int, position: int, threads: int, progress: bool, mirrored: bool
) -> str:
    """One worker process of :func:`build_feature_caches`: the cache of ``data.<split>[index]`` (of its
    mirrored crops with ``mirrored``)."""
    import torch

    torch.set_num_threads(threads)
    cfg = OmegaConf.create(cfg)
    spec = list(cfg.data.get(split))[index]
    ds = build_dataset(spec, cfg, augment=False, required=training_keys(cfg) if split == "train" else ())
    path = _cache_path(ds, cfg, mirrored=mirrored)
    _build_cache(ds, _cache_backbone(cfg), path, cfg, progress, position, mirrored=mirrored)
    return str(path)


def build_feature_caches(
    cfg: DictConfig,
    jobs: int = 1,
    splits: tuple[str, ...] = ("train", "val"),
    progress: bool = True,
) -> list[tuple[Path, int, bool]]:
    """Build the missing feature caches of a recipe's datasets (those ``dsrbody train`` builds itself
    at its start, one after the other), ``jobs`` files at a time in as many processes.

    The frozen part of the backbone runs on one core per process (about 20 crops/s for BlazePose on
    this project's CPU), so on ``N`` cores ``jobs=N`` is about ``N`` times faster, as long as there are
    as many files: each file is built by one process, the largest first. A killed build resumes where
    each file's last complete batch ended (:func:`~dsrbody.data.feature_cache.build_feature_cache`).

    Args:
        cfg: the recipe (``model.backbone`` with a frozen part; ``data.<split>`` annotation files).
        jobs: processes (1: in this one).
        splits: which of ``data.train``, ``data.val``, ``data.test`` to cache.
        progress: progress bars, one line per file.

    Returns:
        ``(cache path, samples, built now)`` per cache file, in the recipe's order.

    Raises:
        ConfigError: the backbone has no frozen part, or a dataset is not an annotation file.
        FileNotFoundError / ValueError: as :func:`build_dataset`, or a worker's error (its message).
    """
    import concurrent.futures as cf
    import multiprocessing as mp

    import torch

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    rows = _recipe_cache_sets(cfg, splits)
    # refuses a backbone without a frozen part before any work
    backbone = _cache_backbone(cfg) if rows else None
    todo = sorted((r for r in rows if not r[3].is_file()), key=lambda r: -len(r[2]))
    if jobs == 1 or len(todo) <= 1:
        for _, _, ds, path, mirrored in todo:
            _build_cache(ds, backbone, path, cfg, progress, mirrored=mirrored)
    else:
        workers = min(jobs, len(todo))
        threads = max(1, torch.get_num_threads() // workers)
        container = OmegaConf.to_container(cfg, resolve=True)
        from dsrbody.data.workers import exit_with_parent

        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=exit_with_parent) as pool:
            futures = [
                pool.submit(_cache_job, container, split, i, pos, threads, progress, mirrored)
                for pos, (split, i, _, _, mirrored) in enumerate(todo)
            ]
            try:
                for f in cf.as_completed(futures):
                    f.result()  # a worker's error, raised here with its message
            except BaseException as e:
                # stop the other workers now rather than after their files (nothing is lost: an
                # unfinished cache resumes from its last complete batch)
                procs = getattr(pool, "_processes", None) or {}
                for proc in list(procs.values()):
                    proc.terminate()
                pool.shutdown(wait=False, cancel_futures=True)
                if isinstance(e, cf.process.BrokenProcessPool):
                    raise RuntimeError(
                        f"a feature-cache process died ({e}); run again to resume: finished caches "
                        "are kept and an unfinished one continues from its last complete batch"
                    ) from None
                raise
    built = {r[3] for r in todo}
    return [(path, len(ds), path in built) for _, _, ds, path, _ in rows]
