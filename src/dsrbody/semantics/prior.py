"""The semantic clothing prior: for each face of a body topology, a probability over the 20 CIHP labels.

API (docs/design.md, Clothing labels)
----------------------
``ClothingPrior(probs, topology_id, source=...)`` is a small ``nn.Module`` (so a loss module can hold it
and ``.to(device)`` moves it; ``probs`` is a non-persistent buffer, it never enters checkpoints):

- ``probs``: ``(F, 20)`` float32 tensor, rows sum to 1, columns in CIHP order;
- ``labels``: the 20 label names; ``topology_id``: :func:`dsrbody.body.base.topology_id` of the faces it
  belongs to (``None`` for a bare official ``.npy`` loaded without an expected topology); ``source``: a
  free-text provenance string; ``skipped``: ``[(file, reason), ...]`` scan files that could not be used.

Construction:

- :meth:`ClothingPrior.from_scans` ``(folder, faces, *, smoothing_iterations=0, label_set="cihp")``:
  a folder of clothed scans registered to the body topology, one file per scan with a label per vertex:
  ``.npz`` with key ``labels`` (shape ``(V,)``), or ``.ply`` with a per-vertex property named one of
  :data:`PLY_LABEL_NAMES` (``label``, ``labels``, ``semantic_label``, ``class``). Files that cannot be
  used are skipped with a warning and listed in ``skipped``; none usable raises ``ValueError``.
- :meth:`ClothingPrior.from_vertex_labels` ``(list of (V,) arrays, faces)``: the same from arrays.
- :meth:`ClothingPrior.from_face_labels` ``(list of (F,) arrays, faces=... or topology_id=...)``: from
  face labels directly (the procedural garment builder uses this).

  A face's label in one scan is the majority vote of its three vertex labels; when the three differ
  (a tie), the smallest label index wins, which does not depend on the order of the face's vertices.
  ``probs[f]`` = mean over scans of the face's one-hot label. Optional smoothing: ``k`` iterations of
  ``p[f] <- (p[f] + sum_{g edge-adjacent to f} p[g]) / (1 + deg f)`` (rows keep summing to 1).

Files: :meth:`save` writes ``.npz`` with ``probs (F, 20) float32``, ``labels``, ``topology_id``, ``source``;
:meth:`ClothingPrior.load` ``(path, expected_topology=None)`` reads it, or a bare ``(F, 20)`` ``.npy``
(the official SMPL ``semantic_prior.npy``, 13776x20, loaded as it is). A prior for another topology than
``expected_topology`` (a topology id string, a :class:`~dsrbody.body.base.BodyModel` or a faces array)
raises :class:`PriorTopologyError` naming both topologies and the file.

Renderer helpers (face features for :func:`dsrbody.render.soft.soft_render`):

- :meth:`mc_texture` ``(present_labels) -> (F, 1)``: sum of the prior probabilities of the DSR-MC labels
  present in an image (names, indices, or a ``(20,)`` bool vector);
- :meth:`mc_texture_batch` ``(present (B, 20) bool) -> (B, F, 1)`` (entries of non-MC labels are ignored,
  so a vector of "labels with > 60 px" can be passed as it is);
- :meth:`merged_channels` ``() -> (F, 8)``: the DSR-C merged-class channels (sum of member labels);
- :meth:`merged_channels_batch` ``(B) -> (B, F, 8)`` (an expanded view).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
import trimesh
from torch import nn

from dsrbody.body.base import topology_id as compute_topology_id
from dsrbody.semantics.labels import (
    ATR_TO_CIHP,
    CIHP,
    CIHP_NAMES,
    MC_MASK,
    MERGE_MATRIX,
    NUM_LABELS,
    LabelSet,
    as_torch,
    get_label_set,
    label_indices,
)

__all__ = [
    "ClothingPrior",
    "PriorTopologyError",
    "PLY_LABEL_NAMES",
    "face_labels_from_vertex_labels",
    "face_adjacency_matrix",
    "smooth_face_probs",
    "read_scan_labels",
]

#: Names of the per-vertex label property accepted in ``.ply`` scans (first match wins).
PLY_LABEL_NAMES: tuple[str, ...] = ("label", "labels", "semantic_label", "class")
#: Tolerance on the row sums of a loaded prior.
ROW_SUM_TOL: float = 1e-3


class PriorTopologyError(ValueError):
    """A clothing prior used with a mesh of another topology."""


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def _faces_np(faces: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"faces must be an (F, 3) integer array, got {arr.shape} {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def face_labels_from_vertex_labels(vertex_labels: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Majority vote of each face's three vertex labels; a three-way tie gives the smallest label.

    Args:
        vertex_labels: ``(V,)`` integer labels.
        faces: ``(F, 3)`` vertex indices.

    Returns:
        ``(F,)`` int64 face labels.
    """
    lab = np.asarray(vertex_labels).astype(np.int64)[_faces_np(faces)]
    a, b, c = lab[:, 0], lab[:, 1], lab[:, 2]
    return np.where((a == b) | (a == c), a, np.where(b == c, b, np.minimum(np.minimum(a, b), c)))


def face_adjacency_matrix(faces: np.ndarray | torch.Tensor) -> scipy.sparse.csr_matrix:
    """``(F, F)`` symmetric 0/1 sparse matrix: 1 where two faces share an edge."""
    f = _faces_np(faces)
    pairs = trimesh.graph.face_adjacency(faces=f)
    F = len(f)
    if len(pairs) == 0:
        return scipy.sparse.csr_matrix((F, F), dtype=np.float64)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    A = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(F, F))
    A.data[:] = 1.0  # duplicates (non-manifold edges listed twice) count once
    return A


def smooth_face_probs(probs: np.ndarray, faces: np.ndarray | torch.Tensor, iterations: int) -> np.ndarray:
    """Average each face's probabilities with its edge-adjacent faces, ``iterations`` times.

    One iteration: ``p[f] <- (p[f] + sum_{g ~ f} p[g]) / (1 + deg f)``; row sums are preserved.

    Args:
        probs: ``(F, C)`` per-face values.
        faces: ``(F, 3)`` the mesh.
        iterations: k >= 0.

    Returns:
        ``(F, C)`` float64.
    """
    if iterations < 0:
        raise ValueError(f"smoothing iterations must be >= 0, got {iterations}")
    p = np.asarray(probs, dtype=np.float64)
    if iterations == 0:
        return p.copy()
    A = face_adjacency_matrix(faces)
    M = A + scipy.sparse.identity(A.shape[0], format="csr")
    deg = np.asarray(M.sum(axis=1)).ravel()
    M = scipy.sparse.diags(1.0 / deg) @ M
    for _ in range(iterations):
        p = M @ p
    return p


def read_scan_labels(path: str | PathLike) -> np.ndarray:
    """Per-vertex labels of one scan file: ``.npz`` (key ``labels``) or ``.ply`` (a vertex property named
    one of :data:`PLY_LABEL_NAMES`).

    Returns:
        ``(V,)`` int64.

    Raises:
        ValueError: with a one-line reason (unreadable file, missing key/property, wrong shape, ...).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "labels" not in z.files:
                    raise ValueError(f"no 'labels' array (has {sorted(z.files)})")
                lab = np.asarray(z["labels"])
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(f"cannot read .npz ({type(e).__name__}: {e})") from None
    elif suffix == ".ply":
        try:
            loaded = trimesh.load(path, file_type="ply", process=False)
        except Exception as e:
            raise ValueError(f"cannot read .ply ({type(e).__name__}: {e})") from None
        # trimesh keeps every vertex property of the file in metadata["_ply_raw"] (a dict of arrays
        # for ASCII files, a structured array for binary ones); newer versions may also fill
        # vertex_attributes, used when the raw element is absent
        raw = loaded.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
        if raw is None:
            raw = dict(getattr(loaded, "vertex_attributes", {}) or {})
        names = raw.dtype.names if isinstance(raw, np.ndarray) else tuple(raw.keys())
        name = next((n for n in PLY_LABEL_NAMES if names is not None and n in names), None)
        if name is None:
            raise ValueError(
                f"no per-vertex label property (accepted: {', '.join(PLY_LABEL_NAMES)}; "
                f"has {list(names or [])})"
            )
        lab = np.asarray(raw[name]).reshape(-1)
    else:
        raise ValueError(f"unsupported scan file type {suffix!r} (expected .npz or .ply)")
    if lab.ndim != 1:
        raise ValueError(f"labels must have shape (V,), got {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)) or not np.all(lab == np.round(lab)):
            raise ValueError(f"labels must be integers, got non-integer {lab.dtype} values")
    return lab.astype(np.int64)


def _normalise_expected(expected: object) -> str | None:
    if expected is None:
        return None
    if isinstance(expected, str):
        return expected
    if isinstance(expected, np.ndarray | torch.Tensor):
        return compute_topology_id(expected)
    tid = getattr(expected, "topology_id", None)
    if isinstance(tid, str):
        return tid
    raise TypeError(
        "expected_topology must be a topology id string, a BodyModel or a faces array, "
        f"got {type(expected).__name__}"
    )


def _face_count_of(tid: str) -> int | None:
    head = tid.split("f-", 1)[0]
    return int(head) if "f-" in tid and head.isdigit() else None


# ----------------------------------------------------------------------------------------------
# The prior
# ----------------------------------------------------------------------------------------------


class ClothingPrior(nn.Module):
    """Per-face probability over the 20 CIHP labels for one body topology (see the module docstring).

    Args:
        probs: ``(F, 20)`` probabilities (rows sum to 1 within 1e-3; stored as float32).
        topology_id: id of the faces it belongs to, or ``None`` when unknown (bare official file).
        source: provenance text.
        skipped: scan files that were skipped while building it, ``[(file, reason), ...]``.
        check_rows: validate the row sums (off only for loading a bare file "as it is").
    """

    probs: torch.Tensor

    def __init__(
        self,
        probs: np.ndarray | torch.Tensor,
        topology_id: str | None,
        source: str = "",
        skipped: Sequence[tuple[str, str]] = (),
        *,
        check_rows: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(probs, torch.Tensor):
            p = probs.detach().to(torch.float32)
        else:
            p = torch.from_numpy(np.array(probs, dtype=np.float32))  # a copy: inputs stay untouched
        if p.dim() != 2 or p.shape[1] != NUM_LABELS:
            raise ValueError(f"clothing prior probs must be (F, {NUM_LABELS}), got {tuple(p.shape)}")
        if not torch.isfinite(p).all() or (p < 0).any():
            raise ValueError("clothing prior probs must be finite and non-negative")
        if check_rows:
            err = (p.double().sum(1) - 1).abs().max().item() if len(p) else 0.0
            if err > ROW_SUM_TOL:
                raise ValueError(f"clothing prior rows must sum to 1 (max deviation {err:.3g})")
        self.register_buffer("probs", p.contiguous(), persistent=False)
        self.labels: tuple[str, ...] = CIHP_NAMES
        self.topology_id = topology_id
        self.source = source
        self.skipped: list[tuple[str, str]] = list(skipped)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_face_labels(
        cls,
        face_labels: Sequence[np.ndarray] | np.ndarray,
        faces: np.ndarray | torch.Tensor | None = None,
        *,
        topology_id: str | None = None,
        smoothing_iterations: int = 0,
        source: str = "face labels",
    ) -> ClothingPrior:
        """Prior from N per-face labellings: ``probs[f, l]`` = fraction of labellings giving face f label l.

        Args:
            face_labels: N arrays of shape ``(F,)`` (or one ``(N, F)`` array), CIHP labels.
            faces: ``(F, 3)`` the mesh (gives the topology id; needed for smoothing).
            topology_id: used when ``faces`` is not given.
            smoothing_iterations: neighbour-averaging iterations (needs ``faces``).
            source: provenance text.
        """
        arrs = [np.asarray(a) for a in face_labels]
        if not arrs:
            raise ValueError("from_face_labels: no labellings given")
        F = arrs[0].shape[0] if arrs[0].ndim == 1 else -1
        for i, a in enumerate(arrs):
            if a.ndim != 1 or a.shape[0] != F:
                raise ValueError(f"from_face_labels: labelling {i} has shape {a.shape}, expected ({F},)")
            if not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"from_face_labels: labelling {i} is not integer ({a.dtype})")
            if a.size and (a.min() < 0 or a.max() >= NUM_LABELS):
                raise ValueError(f"from_face_labels: labelling {i} has labels outside [0, {NUM_LABELS - 1}]")
        if faces is not None:
            f = _faces_np(faces)
            if len(f) != F:
                raise ValueError(f"from_face_labels: labellings have {F} faces but the mesh has {len(f)}")
            topology_id = compute_topology_id(f)
        elif smoothing_iterations:
            raise ValueError("from_face_labels: smoothing needs the faces")
        if topology_id is None:
            raise ValueError("from_face_labels: give faces or topology_id")
        stacked = np.stack(arrs).astype(np.int64)  # (N, F)
        flat = (np.arange(F)[None, :] * NUM_LABELS + stacked).ravel()
        counts = np.bincount(flat, minlength=F * NUM_LABELS).reshape(F, NUM_LABELS)
        probs = counts / float(len(arrs))
        if smoothing_iterations:
            probs = smooth_face_probs(probs, faces, smoothing_iterations)
        return cls(probs, topology_id, source=source)

    @classmethod
    def from_vertex_labels(
        cls,
        vertex_labels: Sequence[np.ndarray],
        faces: np.ndarray | torch.Tensor,
        *,
        smoothing_iterations: int = 0,
        source: str = "vertex labels",
    ) -> ClothingPrior:
        """Prior from N per-vertex labellings ``(V,)`` of the mesh ``faces (F, 3)`` (face label = majority
        vote of its vertices, ties -> smallest label)."""
        f = _faces_np(faces)
        face_labels = [face_labels_from_vertex_labels(v, f) for v in vertex_labels]
        return cls.from_face_labels(face_labels, f, smoothing_iterations=smoothing_iterations, source=source)

    @classmethod
    def from_scans(
        cls,
        folder: str | PathLike,
        faces: np.ndarray | torch.Tensor,
        *,
        smoothing_iterations: int = 0,
        label_set: str | LabelSet = CIHP,
        num_vertices: int | None = None,
        source: str | None = None,
    ) -> ClothingPrior:
        """Prior from a folder of labelled scans registered to the topology of ``faces``.

        Every ``*.npz`` and ``*.ply`` file directly in ``folder`` is one scan (see the module docstring).
        A file is skipped (warning, and listed in ``skipped``) when it cannot be read, has no labels,
        has another vertex count than the mesh, or has labels outside the label set. Other files in the
        folder are ignored.

        Args:
            folder: the scan folder.
            faces: ``(F, 3)`` faces of the body topology.
            smoothing_iterations: neighbour-averaging iterations after averaging over scans.
            label_set: label set of the scan labels (``"cihp"``, or ``"atr"``: converted to CIHP).
            num_vertices: vertex count V of the topology (default ``faces.max() + 1``); every scan must
                have exactly V labels.
            source: provenance text (default: ``"scans:<folder> (N scans)"``).

        Raises:
            FileNotFoundError: no such folder, or no scan file in it. ValueError: no usable scan.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"scan folder not found: {folder}")
        ls = get_label_set(label_set)
        f = _faces_np(faces)
        V = int(num_vertices) if num_vertices is not None else (int(f.max()) + 1 if len(f) else 0)
        if len(f) and int(f.max()) >= V:
            raise ValueError(f"faces reference vertex {int(f.max())} but num_vertices is {V}")
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".npz", ".ply"))
        if not files:
            raise FileNotFoundError(f"no scan files (*.npz, *.ply) in {folder}")
        face_labels: list[np.ndarray] = []
        skipped: list[tuple[str, str]] = []
        for p in files:
            try:
                lab = read_scan_labels(p)
                if lab.shape[0] != V:
                    raise ValueError(f"has {lab.shape[0]} vertex labels but the mesh has {V} vertices")
                if lab.size and (lab.min() < 0 or lab.max() >= len(ls)):
                    raise ValueError(
                        f"labels outside the {ls.name} set [0, {len(ls) - 1}] "
                        f"(min {lab.min()}, max {lab.max()})"
                    )
            except ValueError as e:
                skipped.append((str(p), str(e)))
                continue
            if ls is not CIHP:
                lab = ATR_TO_CIHP[lab]
            face_labels.append(face_labels_from_vertex_labels(lab, f))
        if skipped:
            listing = "; ".join(f"{Path(n).name}: {r}" for n, r in skipped)
            warnings.warn(
                f"{folder}: skipped {len(skipped)} of {len(files)} scan files ({listing})", stacklevel=2
            )
        if not face_labels:
            listing = "; ".join(f"{Path(n).name}: {r}" for n, r in skipped)
            raise ValueError(f"no usable scan in {folder} ({len(files)} files, all skipped: {listing})")
        prior = cls.from_face_labels(
            face_labels,
            f,
            smoothing_iterations=smoothing_iterations,
            source=source or f"scans:{folder} ({len(face_labels)} scans)",
        )
        prior.skipped = skipped
        return prior

    # -- files -------------------------------------------------------------------------------

    def save(self, path: str | PathLike) -> None:
        """Write the ``.npz`` format: ``probs (F, 20) float32``, ``labels``, ``topology_id``, ``source``
        (a prior with an unknown topology stores ``topology_id=""``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # a file object keeps numpy from appending ".npz" to other names
            np.savez(
                fh,
                probs=self.probs.detach().cpu().numpy().astype(np.float32),
                labels=np.array(self.labels),
                topology_id=np.array(self.topology_id or ""),
                source=np.array(self.source),
            )

    @classmethod
    def load(cls, path: str | PathLike, expected_topology: object = None) -> ClothingPrior:
        """Read a prior: the ``.npz`` of :meth:`save`, or a bare ``(F, 20)`` ``.npy`` (official SMPL file).

        Args:
            path: the file.
            expected_topology: a topology id, a :class:`~dsrbody.body.base.BodyModel` or faces ``(F, 3)``;
                when given, a prior for another topology raises :class:`PriorTopologyError`. A bare
                ``.npy`` carries no topology id: only its face count is checked, and it takes the
                expected id.

        Raises:
            FileNotFoundError, ValueError (malformed file), PriorTopologyError.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"clothing prior not found: {path}")
        expected = _normalise_expected(expected_topology)
        try:
            obj = np.load(path, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"{path}: cannot read clothing prior ({type(e).__name__}: {e})") from None
        if isinstance(obj, np.ndarray):  # bare official layout
            probs = obj
            if probs.ndim != 2 or probs.shape[1] != NUM_LABELS:
                raise ValueError(
                    f"{path}: a bare prior must be an (F, {NUM_LABELS}) array, got {probs.shape}"
                )
            tid, source = None, f"file:{path.name} (bare array)"
            check_rows = False
        else:
            with obj as z:
                missing = [k for k in ("probs", "labels", "topology_id") if k not in z.files]
                if missing:
                    raise ValueError(
                        f"{path}: not a clothing prior file (missing {missing}; has {sorted(z.files)})"
                    )
                probs = z["probs"]
                labels = tuple(str(x) for x in z["labels"].tolist())
                tid = str(z["topology_id"]) or None
                source = str(z["source"]) if "source" in z.files else f"file:{path.name}"
            if labels != CIHP_NAMES:
                raise ValueError(f"{path}: prior labels {list(labels)} are not the 20 CIHP labels in order")
            check_rows = True
        if expected is not None:
            if tid is None:
                want_f = _face_count_of(expected)
                if want_f is not None and want_f != probs.shape[0]:
                    raise PriorTopologyError(
                        f"{path}: prior has {probs.shape[0]} faces but the expected topology {expected} "
                        f"has {want_f}"
                    )
                tid = expected
            elif tid != expected:
                raise PriorTopologyError(
                    f"{path}: clothing prior is for topology {tid} but the body has topology {expected}"
                )
        try:
            prior = cls(probs, tid, source=source, check_rows=check_rows)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        if not check_rows and len(prior.probs):
            err = (prior.probs.double().sum(1) - 1).abs()
            n_off = int((err > ROW_SUM_TOL).sum())
            if n_off:
                warnings.warn(
                    f"{path}: {n_off} of {len(err)} rows do not sum to 1 (max deviation {err.max():.3g}); "
                    "loaded as it is",
                    stacklevel=2,
                )
        return prior

    def check_topology(self, expected: object, what: str = "clothing prior") -> None:
        """Raise :class:`PriorTopologyError` unless the prior fits ``expected`` (id, BodyModel or faces).
        A prior with an unknown topology id is checked by face count only."""
        tid = _normalise_expected(expected)
        if tid is None:
            return
        if self.topology_id is None:
            want_f = _face_count_of(tid)
            if want_f is not None and want_f != self.num_faces:
                raise PriorTopologyError(
                    f"{what} ({self.source}) has {self.num_faces} faces but topology {tid} has {want_f}"
                )
        elif self.topology_id != tid:
            raise PriorTopologyError(
                f"{what} ({self.source}) is for topology {self.topology_id} but the body has topology {tid}"
            )

    # -- renderer helpers --------------------------------------------------------------------

    @property
    def num_faces(self) -> int:
        """F."""
        return int(self.probs.shape[0])

    def _present_vector(
        self, present_labels: Iterable[int | str] | np.ndarray | torch.Tensor
    ) -> torch.Tensor:
        if isinstance(present_labels, np.ndarray | torch.Tensor) and (
            present_labels.dtype in (np.bool_, torch.bool)
        ):
            vec = torch.as_tensor(
                np.asarray(present_labels) if isinstance(present_labels, np.ndarray) else present_labels
            )
            if vec.shape != (NUM_LABELS,):
                raise ValueError(
                    f"mc_texture: a bool label vector must have shape ({NUM_LABELS},), got {tuple(vec.shape)}"
                )
            idx = torch.nonzero(vec.cpu()).ravel().tolist()
        else:
            vals = (
                present_labels.tolist()
                if isinstance(present_labels, np.ndarray | torch.Tensor)
                else present_labels
            )
            idx = label_indices(vals)
        not_mc = [CIHP_NAMES[i] for i in idx if not MC_MASK[i]]
        if not_mc:
            raise ValueError(
                f"mc_texture: {not_mc} are not DSR-MC labels (face, leftArm, rightArm, leftShoe, rightShoe)"
            )
        vec = torch.zeros(NUM_LABELS, dtype=self.probs.dtype, device=self.probs.device)
        vec[idx] = 1.0
        return vec

    def mc_texture(self, present_labels: Iterable[int | str] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Per-face DSR-MC texture: the sum of the prior probabilities of the MC labels present.

        Args:
            present_labels: MC labels present in the image, as names, indices, or a ``(20,)`` bool vector
                (a non-MC label raises ``ValueError``).

        Returns:
            ``(F, 1)`` float32 in [0, 1], on the prior's device.
        """
        return (self.probs @ self._present_vector(present_labels))[:, None]

    def mc_texture_batch(self, present: torch.Tensor) -> torch.Tensor:
        """Batched :meth:`mc_texture`.

        Args:
            present: ``(B, 20)`` bool (e.g. :func:`dsrbody.semantics.parsing.mc_mask_batch`'s second
                output); entries of non-MC labels are ignored.

        Returns:
            ``(B, F, 1)`` float32 on the prior's device.
        """
        if present.dim() != 2 or present.shape[1] != NUM_LABELS:
            raise ValueError(
                f"mc_texture_batch: present must be (B, {NUM_LABELS}), got {tuple(present.shape)}"
            )
        mc = as_torch(MC_MASK, self.probs.device)
        sel = (present.to(self.probs.device).bool() & mc[None]).to(self.probs.dtype)  # (B, 20)
        return torch.einsum("fl,bl->bf", self.probs, sel)[..., None]

    def merged_channels(self) -> torch.Tensor:
        """``(F, 8)`` DSR-C merged-class probabilities (sum of each class's member labels; rows sum to 1)."""
        return self.probs @ as_torch(MERGE_MATRIX, self.probs.device).to(self.probs.dtype)

    def merged_channels_batch(self, batch_size: int) -> torch.Tensor:
        """``(B, F, 8)`` expanded view of :meth:`merged_channels` (no copy)."""
        return self.merged_channels()[None].expand(batch_size, -1, -1)

    def extra_repr(self) -> str:
        return f"faces={self.num_faces}, topology_id={self.topology_id!r}, source={self.source!r}"
