"""The procedural clothing prior and the default prior shipped with dsrbody.

- :func:`build_procedural_prior`: a :class:`~dsrbody.semantics.prior.ClothingPrior` for any body
  topology, the mean over ``n`` outfits drawn from :func:`~dsrbody.garments.outfit.sample_outfit` of the
  faces' one-hot labels (through ``ClothingPrior.from_face_labels``), optionally smoothed over mesh
  neighbours.
- :func:`default_prior`: the prior shipped in ``dsrbody/assets/`` for the default Anny mesh (27,420
  faces; built by ``dsrbody prior build --procedural 4000 --model anny --seed 0 --out
  src/dsrbody/assets/anny_prior.npz``, see docs/clothing_prior.md). For another Anny topology (e.g. the
  low-poly ``notoes_collapse10pc``) it is transferred by nearest face: each face of the other mesh takes
  the probabilities of the shipped face whose rest-pose centroid is closest to its own (both meshes are
  the same template surface, so this is a point sample of the same prior). Other body families have no
  shipped prior (the official SMPL one is non-commercial): build one with ``dsrbody prior build``.

Prior files written here are the ``ClothingPrior`` ``.npz`` format plus one extra array,
``face_centroids (F, 3) float32`` (rest-pose face centroids of the mean body, metres), which
``ClothingPrior.load`` ignores and the nearest-face transfer uses.
"""

from __future__ import annotations

import importlib.resources
import warnings
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from dsrbody.body.base import topology_id as compute_topology_id
from dsrbody.body.factory import body_spec
from dsrbody.garments.geometry import BodyGeometry
from dsrbody.garments.outfit import dress_body, sample_outfit
from dsrbody.semantics.prior import ClothingPrior, PriorTopologyError, smooth_face_probs

DEFAULT_PRIOR_NAME = "anny_prior.npz"
# The exact command that rebuilt the shipped file (also in docs/clothing_prior.md).
DEFAULT_PRIOR_COMMAND = (
    "dsrbody prior build --procedural 4000 --model anny --seed 0 --out src/dsrbody/assets/anny_prior.npz"
)


def procedural_face_labels(
    geometry: BodyGeometry, n: int, seed: int = 0, hard: bool = False
) -> list[np.ndarray]:
    """Face labels of ``n`` random outfits on one body.

    Args:
        geometry: body coordinates.
        n: number of outfits.
        seed: seed of ``numpy.random.default_rng``; the labels are a deterministic function of it.
        hard: use the heavier-clothing outfit distribution.

    Returns:
        ``n`` arrays ``(F,)`` uint8 of CIHP labels.
    """
    rng = np.random.default_rng(seed)
    return [dress_body(geometry, sample_outfit(rng, hard)).face_labels.astype(np.uint8) for _ in range(n)]


def build_procedural_prior(
    model: torch.nn.Module | BodyGeometry,
    n: int,
    seed: int = 0,
    *,
    hard: bool = False,
    smoothing_iterations: int = 0,
    progress: bool = False,
    chunk: int = 250,
) -> ClothingPrior:
    """The procedural clothing prior: per face, the fraction of ``n`` sampled outfits giving it each label.

    Args:
        model: a body model (its mean body in the rest pose is dressed) or a :class:`BodyGeometry`.
        n: number of outfits (>= 1). The estimate of a probability ``p`` has standard error
            ``sqrt(p (1 - p) / n)``: 0.008 at n = 4000.
        seed: random seed; the prior is a deterministic function of ``(model, n, seed, hard,
            smoothing_iterations)``.
        hard: heavier-clothing outfit distribution (see ``sample_outfit``).
        smoothing_iterations: neighbour-averaging iterations (``ClothingPrior`` smoothing) afterwards.
        progress: show a progress bar (tqdm, on stderr).
        chunk: outfits per ``ClothingPrior.from_face_labels`` call (bounds the memory).

    Returns:
        :class:`~dsrbody.semantics.prior.ClothingPrior` with the model's topology id.
    """
    if n < 1:
        raise ValueError(f"the number of procedural outfits must be >= 1, got {n}")
    if smoothing_iterations < 0:
        raise ValueError(f"smoothing iterations must be >= 0, got {smoothing_iterations}")
    g = model if isinstance(model, BodyGeometry) else BodyGeometry.from_model(model)
    rng = np.random.default_rng(seed)
    counts = np.zeros((g.num_faces, 20))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="procedural outfits", unit="outfit")
    done = 0
    while done < n:
        k = min(chunk, n - done)
        labels = []
        for _ in range(k):
            labels.append(dress_body(g, sample_outfit(rng, hard)).face_labels)
            if bar is not None:
                bar.update(1)
        part = ClothingPrior.from_face_labels(labels, g.faces, source="chunk")
        counts += part.probs.double().numpy() * k
        done += k
    if bar is not None:
        bar.close()
    probs = counts / n
    if smoothing_iterations:
        probs = smooth_face_probs(probs, g.faces, smoothing_iterations)
    source = (
        f"procedural: {n} outfits, seed {seed}, {'hard' if hard else 'normal'} distribution, "
        f"smoothing {smoothing_iterations}"
    )
    return ClothingPrior(probs, compute_topology_id(g.faces), source=source)


def face_centroids(geometry: BodyGeometry) -> np.ndarray:
    """``(F, 3)`` float32 rest-pose face centroids, metres."""
    return geometry.rest_vertices[geometry.faces].mean(1).astype(np.float32)


def save_prior(prior: ClothingPrior, path: str | PathLike, centroids: np.ndarray | None = None) -> None:
    """Write ``prior`` in the ``ClothingPrior`` ``.npz`` format (compressed), plus ``face_centroids``.

    Args:
        prior: the prior.
        path: output file.
        centroids: ``(F, 3)`` rest-pose face centroids of its topology, or None.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "probs": prior.probs.detach().cpu().numpy().astype(np.float32),
        "labels": np.array(prior.labels),
        "topology_id": np.array(prior.topology_id or ""),
        "source": np.array(prior.source),
    }
    if centroids is not None:
        if centroids.shape != (prior.num_faces, 3):
            raise ValueError(
                f"face centroids {centroids.shape} do not fit a prior of {prior.num_faces} faces"
            )
        arrays["face_centroids"] = np.asarray(centroids, dtype=np.float32)
    with open(path, "wb") as fh:  # a file object keeps numpy from appending ".npz"
        np.savez_compressed(fh, **arrays)


def default_prior_path() -> Path:
    """Path of the shipped default prior file (inside the installed package)."""
    return Path(str(importlib.resources.files("dsrbody") / "assets" / DEFAULT_PRIOR_NAME))


def transfer_prior(
    probs: np.ndarray, source_centroids: np.ndarray, target_centroids: np.ndarray
) -> np.ndarray:
    """Nearest-face transfer: ``(F_target, 20)`` rows of ``probs (F_source, 20)`` at the source face whose
    centroid ``(F_source, 3)`` is closest to each target centroid ``(F_target, 3)`` (metres)."""
    from scipy.spatial import cKDTree

    _, idx = cKDTree(source_centroids).query(target_centroids)
    return probs[idx]


def default_prior(model: torch.nn.Module) -> ClothingPrior:
    """The shipped procedural prior for a body model.

    Args:
        model: a body model. The default Anny mesh gets the shipped file as it is; another mesh of a
            family whose registry entry says ``shipped_prior`` (Anny's other topologies) gets it
            transferred by nearest face (a warning says so).

    Raises:
        PriorTopologyError: the model is not of such a family (no shipped prior fits it).
        FileNotFoundError: the package was installed without its assets.
    """
    path = default_prior_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped clothing prior is missing: {path}; rebuild it: {DEFAULT_PRIOR_COMMAND}"
        )
    tid = compute_topology_id(model.faces)
    with np.load(path, allow_pickle=False) as z:
        shipped_tid = str(z["topology_id"])
        src_centroids = z["face_centroids"] if "face_centroids" in z.files else None
    if tid == shipped_tid:
        return ClothingPrior.load(path, expected_topology=tid)
    name = str(model.name)
    spec = body_spec(name, missing_ok=True)
    if spec is None or not spec.shipped_prior or src_centroids is None:
        raise PriorTopologyError(
            f"{path}: the shipped clothing prior is for the default Anny mesh (topology {shipped_tid}); "
            f"the {name} model has topology {tid}: build one with "
            f"'dsrbody prior build --procedural 4000 --model {name} --out prior.npz'"
        )
    shipped = ClothingPrior.load(path)
    target = face_centroids(BodyGeometry.from_model(model))
    probs = transfer_prior(shipped.probs.numpy(), src_centroids, target)
    warnings.warn(
        f"default clothing prior: transferred from the default Anny mesh ({shipped.num_faces} faces) to "
        f"topology {tid} ({len(probs)} faces) by nearest face",
        stacklevel=2,
    )
    return ClothingPrior(probs, tid, source=f"{shipped.source}; nearest-face transfer to {tid}")
