"""Generate files in the exact layout of the official SMPL model files, with random but body-like content.

Tests (and anyone without a licence) need SMPL files: this module writes them. The content is made
up, the *format* is the official one, so the loader, the ``smplx`` cross-check and everything
downstream (garments on the SMPL topology, rendering, evaluation fixtures) run on them.

Format facts reproduced here (SMPL v1.0.0 / v1.1.0 ``basicModel_*_lbs_10_207_0_v1.0.0.pkl``, renamed
``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` by SPIN/smplx users):

- A Python-2 pickle, protocol 2, of a ``dict`` whose keys are Python-2 ``str`` (opcode ``BINSTRING``,
  so Python 3 must read it with ``encoding="latin1"``). Keys, in this order: ``J_regressor_prior``,
  ``f``, ``J_regressor``, ``kintree_table``, ``J``, ``weights_prior``, ``weights``, ``vert_sym_idxs``,
  ``posedirs``, ``pose_training_info``, ``bs_style``, ``v_template``, ``shapedirs``, ``bs_type``.
- NumPy arrays are pickled as Python 2 NumPy pickles them: ``numpy.core.multiarray._reconstruct``
  then ``BUILD`` with ``(1, shape, dtype, is_fortran, raw bytes as a Python-2 str)``.
- ``shapedirs`` is a chumpy ``Ch`` object: ``GLOBAL 'chumpy.ch Ch'``, ``EMPTY_TUPLE``, ``NEWOBJ`` then
  ``BUILD`` with the instance ``__dict__`` minus ``_parents`` and ``_cache`` (what ``Ch.__getstate__``
  returns): ``{'x': ndarray (6890, 3, S) float64, '_dirty_vars': set(['x']), '_itr': None,
  '_make_dense': False, '_make_sparse': False, '_depends_on_deps': {}}``. Other keys may also be ``Ch``
  in some releases (the loader accepts ``Ch`` anywhere).
- ``J_regressor`` and ``J_regressor_prior`` are ``scipy.sparse.csc.csc_matrix`` (24 x 6890, float64),
  pickled as ``NEWOBJ`` + ``BUILD`` with the old scipy ``__dict__``: ``_shape``, ``maxprint``,
  ``format``, ``data``, ``indices`` (int32), ``indptr`` (int32).
- ``f`` (13776, 3) uint32; ``kintree_table`` (2, 24) int64 whose first row holds the parents with
  ``4294967295`` (uint32 -1) for the root and whose second row is ``0..23``; ``J`` (24, 3) float64 =
  ``J_regressor @ v_template``; ``weights`` / ``weights_prior`` (6890, 24) float64, rows summing to
  1; ``vert_sym_idxs`` (6890,) int64, index of the mirror vertex; ``posedirs`` (6890, 3, 207) float64
  with column ``9 (j - 1) + 3 r + c`` for element ``(r, c)`` of ``R_j - I``; ``v_template`` (6890, 3)
  float64 in metres (y up, facing +z, +x the subject's left, T-pose); ``bs_style`` ``'lbs'``;
  ``bs_type`` ``'lrotmin'``; ``pose_training_info`` a small ``dict`` (its real content is
  undocumented and unused by every loader; here it records that the file is generated).
- The ``.npz`` variant holds the same keys as plain arrays (``J_regressor*`` dense, ``shapedirs``
  a plain array, ``pose_training_info`` a 0-d object array).
- Beside the models: ``J_regressor_extra.npy`` (9 x 6890, SPIN's extra joints: right hip, left hip,
  neck (LSP), head top (LSP), pelvis (MPII), thorax (MPII), spine, jaw, head (H36M)),
  ``J_regressor_h36m.npy`` (17 x 6890, H36M joints in :data:`dsrbody.body.keypoints.H36M17` order),
  and ``smpl_mean_params.npz`` (``pose`` (144,) = 24 x 6D in SPIN's layout, ``shape`` (10,), ``cam``
  (3,)), all float64.

The mesh: a smooth humanoid (T-pose, ~1.77 m) made as the zero level of a signed distance field
(round cones around the bones, smoothly united), polygonised by marching cubes into a closed genus-0
surface, then refined by splitting its longest edges until it has exactly 6890 vertices (a closed
genus-0 mesh then has exactly 2 * 6890 - 4 = 13776 triangles). The vertices SPIN uses as keypoints
(:data:`dsrbody.body.keypoints.SMPLH_EXTRA_VERTEX_IDS`: nose, eyes, ears, toes, heels) are placed at
those anatomical spots. The kinematic tree is SMPL's, joints sit near SMPL's template joint locations,
skinning weights concentrate on the nearest bone (thigh vertices on the hip joint, calf on the knee,
...), shape and pose blend shapes are small smooth random fields. The mesh (and so the faces) does not
depend on the seed or the gender, like real SMPL, where all genders share the topology.
"""

from __future__ import annotations

import functools
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls
from scipy.spatial import cKDTree

__all__ = [
    "NUM_VERTICES",
    "NUM_FACES",
    "SMPL_PARENTS",
    "OFFICIAL_KEYS",
    "write_smpl_files",
    "make_smpl_model",
    "dumps_official_pkl",
    "make_extra_regressors",
    "make_mean_params",
]

NUM_VERTICES = 6890
NUM_FACES = 13776
#: SMPL's kinematic tree.
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
#: The keys of the official ``.pkl``, in the order they are written.
OFFICIAL_KEYS = (
    "J_regressor_prior", "f", "J_regressor", "kintree_table", "J", "weights_prior", "weights",
    "vert_sym_idxs", "posedirs", "pose_training_info", "bs_style", "v_template", "shapedirs", "bs_type",
)  # fmt: skip

# Rough SMPL (neutral) template joint locations, metres: y up, facing +z, +x the subject's left.
_JOINT_TARGETS = np.array([
    [0.000, -0.223, 0.028], [0.070, -0.314, 0.024], [-0.070, -0.314, 0.024], [0.000, -0.114, 0.001],
    [0.104, -0.692, 0.017], [-0.104, -0.692, 0.017], [0.000, 0.020, 0.003], [0.090, -1.089, -0.027],
    [-0.090, -1.089, -0.027], [0.000, 0.074, 0.028], [0.114, -1.146, 0.095], [-0.114, -1.146, 0.095],
    [0.000, 0.289, -0.014], [0.076, 0.192, -0.003], [-0.076, 0.192, -0.003], [0.000, 0.354, 0.050],
    [0.190, 0.235, -0.017], [-0.190, 0.235, -0.017], [0.452, 0.222, -0.041], [-0.452, 0.222, -0.041],
    [0.722, 0.231, -0.044], [-0.722, 0.231, -0.044], [0.812, 0.224, -0.054], [-0.812, 0.224, -0.054],
])  # fmt: skip

# Targets of SPIN's J_regressor_extra rows (see module docstring) and of the H36M-17 joints.
_EXTRA_TARGETS = np.array([
    [-0.085, -0.350, 0.020], [0.085, -0.350, 0.020], [0.000, 0.300, -0.010], [0.000, 0.575, 0.010],
    [0.000, -0.250, 0.015], [0.000, 0.220, -0.010], [0.000, 0.020, 0.000], [0.000, 0.380, 0.060],
    [0.000, 0.470, 0.020],
])  # fmt: skip
_H36M_TARGETS = np.array([
    [0.000, -0.250, 0.020], [0.090, -0.330, 0.020], [0.104, -0.700, 0.017], [0.090, -1.100, -0.030],
    [-0.090, -0.330, 0.020], [-0.104, -0.700, 0.017], [-0.090, -1.100, -0.030], [0.000, 0.000, 0.000],
    [0.000, 0.220, -0.010], [0.000, 0.400, 0.060], [0.000, 0.520, 0.020], [0.190, 0.235, -0.020],
    [0.452, 0.222, -0.041], [0.722, 0.231, -0.044], [-0.190, 0.235, -0.020], [-0.452, 0.222, -0.041],
    [-0.722, 0.231, -0.044],
])  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The humanoid surface
# ----------------------------------------------------------------------------------------------
def _round_cone(p: np.ndarray, a, b, ra: float, rb: float, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Approximate signed distance ``(N,)`` from points ``p (N, 3)`` to a cone from ``a`` (radius ``ra``)
    to ``b`` (radius ``rb``), in coordinates scaled by ``scale`` (to make elliptic sections)."""
    s = np.asarray(scale, dtype=np.float64)
    q, a, b = p * s, np.asarray(a, np.float64) * s, np.asarray(b, np.float64) * s
    ab = b - a
    t = np.clip(((q - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    d = np.linalg.norm(q - (a + t[:, None] * ab), axis=-1)
    return d - (ra + (rb - ra) * t)


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union of two distance fields), blend width ``k`` metres."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def _body_sdf(p: np.ndarray) -> np.ndarray:
    """Signed distance ``(N,)`` (negative inside, metres) of the humanoid at points ``p (N, 3)``."""
    parts = []
    for s in (1.0, -1.0):  # left (+x) then right (-x) side

        def m(v, s=s):
            return (s * v[0], v[1], v[2])

        parts += [
            _round_cone(p, m((0.075, -0.30, 0.02)), m((0.102, -0.69, 0.017)), 0.088, 0.056),  # thigh
            _round_cone(p, m((0.102, -0.69, 0.017)), m((0.090, -1.08, -0.025)), 0.056, 0.038),  # calf
            _round_cone(p, m((0.09, -1.13, -0.05)), m((0.112, -1.165, 0.14)), 0.037, 0.030, (1, 1.4, 1)),
            _round_cone(p, m((0.17, 0.225, -0.02)), m((0.452, 0.222, -0.041)), 0.058, 0.043),  # upper arm
            _round_cone(p, m((0.452, 0.222, -0.041)), m((0.722, 0.231, -0.044)), 0.043, 0.030),  # forearm
            _round_cone(p, m((0.73, 0.231, -0.044)), m((0.86, 0.224, -0.054)), 0.040, 0.035, (1, 2, 1)),
            _round_cone(p, m((0.04, 0.20, -0.01)), m((0.17, 0.225, -0.02)), 0.075, 0.058, (1, 1, 1.3)),
        ]
    parts += [
        _round_cone(p, (0, -0.25, 0.02), (0, -0.25, 0.02), 0.16, 0.16, (1, 1.4, 1.6)),  # hips
        _round_cone(p, (0, -0.20, 0.02), (0, 0.02, 0.01), 0.15, 0.14, (1, 1, 1.5)),  # belly
        _round_cone(p, (0, 0.02, 0.01), (0, 0.17, -0.01), 0.145, 0.13, (1, 1, 1.4)),  # chest
        _round_cone(p, (0, 0.20, -0.01), (0, 0.37, 0.0), 0.055, 0.05),  # neck
        _round_cone(p, (0, 0.43, 0.025), (0, 0.48, 0.02), 0.085, 0.085, (1, 0.8, 0.9)),  # head
        _round_cone(p, (0, 0.44, 0.11), (0, 0.42, 0.125), 0.012, 0.01),  # nose
    ]
    d = parts[0]
    for q in parts[1:]:
        d = _smooth_min(d, q, 0.02)
    return d


def _marching_cubes(h: float) -> tuple[np.ndarray, np.ndarray]:
    """Polygonise the humanoid on a grid of step ``h`` metres: ``(vertices (V, 3), faces (F, 3))``."""
    from skimage.measure import marching_cubes

    xs = np.arange(-0.95, 0.95 + 1e-9, h)
    xs = xs - xs.mean()  # a grid symmetric in x gives a (nearly) mirror-symmetric mesh
    ys = np.arange(-1.25, 0.62, h)
    zs = np.arange(-0.22, 0.26, h)
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1)
    d = _body_sdf(grid.reshape(-1, 3)).reshape(grid.shape[:3])
    v, f, _, _ = marching_cubes(d, 0.0, spacing=(h, h, h))
    v = v + np.array([xs[0], ys[0], zs[0]])
    # outward orientation: positive signed volume
    vol = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0
    if vol < 0:
        f = f[:, ::-1]
    return v, np.ascontiguousarray(f.astype(np.int64))


def _project_to_surface(p: np.ndarray, steps: int = 3) -> np.ndarray:
    """Move points ``(N, 3)`` onto the zero level of the body SDF (Newton steps along the gradient)."""
    eps = 1e-4
    for _ in range(steps):
        d = _body_sdf(p)
        g = np.stack(
            [(_body_sdf(p + eps * e) - _body_sdf(p - eps * e)) / (2 * eps) for e in np.eye(3)], axis=-1
        )
        g /= np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-9)
        p = p - d[:, None] * g
    return p


def _split_to_count(v: np.ndarray, f: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the longest edges of a closed mesh until it has ``target`` vertices.

    Each split of an edge ``(a, b)`` shared by faces ``(a, b, c)`` and ``(b, a, d)`` adds one vertex
    (the midpoint, projected back onto the surface) and two faces, so the surface stays closed,
    manifold and of the same genus.
    """
    faces = [list(map(int, t)) for t in f]
    edge_face: dict[tuple[int, int], int] = {}
    for i, (a, b, c) in enumerate(faces):
        edge_face[(a, b)] = i
        edge_face[(b, c)] = i
        edge_face[(c, a)] = i
    pts = list(map(tuple, v))
    need = target - len(pts)
    while need > 0:
        und = {(min(a, b), max(a, b)) for (a, b) in edge_face}
        cand = sorted(und, key=lambda e: -np.sum((np.asarray(pts[e[0]]) - np.asarray(pts[e[1]])) ** 2))
        touched: set[int] = set()
        new_mid = []
        for a, b in cand:
            if need == 0:
                break
            fa, fb = edge_face[(a, b)], edge_face[(b, a)]
            if fa in touched or fb in touched:
                continue
            touched.update((fa, fb))
            m = len(pts)
            pts.append(tuple((np.asarray(pts[a]) + np.asarray(pts[b])) / 2))
            new_mid.append(m)
            for fi, (x, y) in ((fa, (a, b)), (fb, (b, a))):
                tri = faces[fi]
                k = tri.index(x)
                z = tri[(k + 2) % 3]  # the vertex opposite the edge x -> y
                for e in ((x, y), (y, z), (z, x)):
                    del edge_face[e]
                faces[fi] = [x, m, z]
                faces.append([m, y, z])
                nf = len(faces) - 1
                for e in ((x, m), (m, z), (z, x)):
                    edge_face[e] = fi
                for e in ((m, y), (y, z), (z, m)):
                    edge_face[e] = nf
            need -= 1
        out = np.asarray(pts)
        out[new_mid] = _project_to_surface(out[new_mid])
        pts = list(map(tuple, out))
    return np.asarray(pts), np.asarray(faces, dtype=np.int64)


def _relax(v: np.ndarray, f: np.ndarray, iterations: int = 6, step: float = 0.5) -> np.ndarray:
    """Even out the vertex spacing (marching cubes leaves slivers): move each vertex toward the mean
    of its neighbours, then back onto the surface. Connectivity is unchanged."""
    n = len(v)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    adj = sp.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    adj = ((adj + adj.T) > 0).astype(np.float64)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    for _ in range(iterations):
        v = v + step * ((adj @ v) / deg[:, None] - v)
        v = _project_to_surface(v, steps=2)
    return v


def _keypoint_vertex_spots(v: np.ndarray) -> dict[int, int]:
    """For each vertex id SPIN uses as a keypoint, the generated vertex at that anatomical spot."""
    from dsrbody.body.keypoints import SMPLH_EXTRA_VERTEX_IDS as ids

    head = np.flatnonzero(v[:, 1] > 0.37)

    def front(x0: float, y0: float) -> int:  # most forward head vertex near (x0, y0)
        cand = head[v[head, 2] > 0.02]
        d = (v[cand, 0] - x0) ** 2 + (v[cand, 1] - y0) ** 2 - 0.05 * v[cand, 2]
        return int(cand[np.argmin(d)])

    def nearest(p) -> int:
        return int(np.argmin(np.sum((v - np.asarray(p)) ** 2, axis=1)))

    def foot(sign: float, x0: float, front_end: bool) -> int:
        cand = np.flatnonzero((v[:, 1] < -1.1) & (sign * v[:, 0] > 0))
        z = v[cand, 2] if front_end else -v[cand, 2]
        return int(cand[np.argmin((v[cand, 0] - sign * x0) ** 2 * 30 - z + 2 * (v[cand, 1] + 1.2) ** 2)])

    spots = {
        ids["nose"]: front(0.0, 0.43),
        ids["leye"]: front(0.033, 0.465),
        ids["reye"]: front(-0.033, 0.465),
        ids["lear"]: nearest((0.085, 0.44, 0.02)),
        ids["rear"]: nearest((-0.085, 0.44, 0.02)),
        ids["LBigToe"]: foot(1.0, 0.095, True),
        ids["LSmallToe"]: foot(1.0, 0.135, True),
        ids["LHeel"]: foot(1.0, 0.09, False),
        ids["RBigToe"]: foot(-1.0, 0.095, True),
        ids["RSmallToe"]: foot(-1.0, 0.135, True),
        ids["RHeel"]: foot(-1.0, 0.09, False),
    }
    if len(set(spots.values())) != len(spots):
        raise RuntimeError("keypoint vertex spots collide")  # cannot happen for this surface
    return spots


@functools.lru_cache(maxsize=2)
def _base_mesh() -> tuple[np.ndarray, np.ndarray]:
    """The T-pose humanoid with exactly 6890 vertices and 13776 faces (cached; ~2 s)."""
    h = 0.0183
    while True:
        v, f = _marching_cubes(h)
        if len(v) <= NUM_VERTICES:
            break
        h *= 1.02
    v, f = _split_to_count(v, f, NUM_VERTICES)
    v = _relax(v, f)
    # put SPIN's keypoint vertex ids at their anatomical spots (a permutation of the vertices)
    order = np.arange(len(v))
    pos = np.arange(len(v))  # pos[u]: where vertex u currently sits in `order`
    for vid, u in _keypoint_vertex_spots(v).items():
        j = pos[u]
        w = order[vid]
        order[vid], order[j] = u, w
        pos[u], pos[w] = vid, j
    v = v[order]
    f = pos[f]
    assert v.shape == (NUM_VERTICES, 3) and f.shape == (NUM_FACES, 3)
    v.setflags(write=False)
    f.setflags(write=False)
    return v, f


# ----------------------------------------------------------------------------------------------
# Rigging: skinning weights and joint regressors
# ----------------------------------------------------------------------------------------------
def _bone_segments(J: np.ndarray) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """For each joint, the segments of the body part it moves (the bone to its child; leaf joints
    get a short segment continuing outward)."""
    up, fwd = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    seg: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(24)]
    # the pelvis moves the hips and buttocks: bones to the spine and to both hip joints
    seg[0] = [(J[0], J[3]), (J[0], J[1]), (J[0], J[2]), (J[0] - [0, 0.08, 0], J[0])]
    for j, c in ((1, 4), (2, 5)):  # thighs start a little below the hip joint (the crotch)
        seg[j] = [(J[j] + 0.2 * (J[c] - J[j]), J[c])]
    for j, c in ((4, 7), (5, 8), (3, 6), (6, 9), (9, 12), (12, 15)):
        seg[j] = [(J[j], J[c])]
    seg[7] = [(J[7], J[10]), (J[7], J[7] - 0.05 * fwd - 0.06 * up)]
    seg[8] = [(J[8], J[11]), (J[8], J[8] - 0.05 * fwd - 0.06 * up)]
    seg[10] = [(J[10], J[10] + 0.07 * fwd)]
    seg[11] = [(J[11], J[11] + 0.07 * fwd)]
    seg[15] = [(J[15], J[15] + 0.2 * up)]
    for j, c in ((13, 16), (14, 17), (16, 18), (17, 19), (18, 20), (19, 21), (20, 22), (21, 23)):
        seg[j] = [(J[j], J[c])]
    side = np.array([1.0, 0.0, 0.0])
    seg[22] = [(J[22], J[22] + 0.08 * side)]
    seg[23] = [(J[23], J[23] - 0.08 * side)]
    return seg


def _skinning_weights(v: np.ndarray, J: np.ndarray, tau: float, keep: int) -> np.ndarray:
    """``(V, 24)`` weights concentrated on the nearest bone: softmax of ``-distance / tau`` over the
    joints' bone segments, keeping the ``keep`` largest per vertex, rows summing to 1."""
    seg = _bone_segments(J)
    dist = np.full((len(v), 24), np.inf)
    for j, segs in enumerate(seg):
        for a, b in segs:
            ab = b - a
            t = np.clip(((v - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
            dist[:, j] = np.minimum(dist[:, j], np.linalg.norm(v - (a + t[:, None] * ab), axis=1))
    logits = -(dist - dist.min(axis=1, keepdims=True)) / tau
    w = np.exp(logits)
    drop = np.argsort(-w, axis=1)[:, keep:]
    np.put_along_axis(w, drop, 0.0, axis=1)
    w[w < 1e-3] = 0.0
    return w / w.sum(axis=1, keepdims=True)


def _regressor(v: np.ndarray, targets: np.ndarray, spread: float, max_support: int = 120) -> np.ndarray:
    """``(K, V)`` joint regressor: row ``k`` has non-negative weights summing to 1 over vertices near
    ``targets[k]`` with ``weights @ v`` close to the target (non-negative least squares with a
    sum-to-one row and a pull toward uniform weights, so the support stays spread)."""
    tree = cKDTree(v)
    out = np.zeros((len(targets), len(v)))
    for k, t in enumerate(targets):
        d0, _ = tree.query(t)
        idx = tree.query_ball_point(t, 2.0 * d0 + 0.03)
        idx = np.asarray(sorted(idx, key=lambda i: np.sum((v[i] - t) ** 2)))
        if len(idx) > max_support:  # keep near and far ones (all around the target)
            idx = idx[np.linspace(0, len(idx) - 1, max_support).round().astype(int)]
        n = len(idx)
        A = np.vstack([v[idx].T, 10.0 * np.ones((1, n)), spread * np.eye(n)])
        b = np.concatenate([t, [10.0], spread * np.full(n, 1.0 / n)])
        w, _ = nnls(A, b)
        w[w < 1e-4] = 0.0
        out[k, idx] = w / w.sum()
    return out


# ----------------------------------------------------------------------------------------------
# A model in the official layout
# ----------------------------------------------------------------------------------------------
def _smooth_fields(v: np.ndarray, rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """``n`` smooth random displacement fields on the vertices ``v (V, 3)``: ``(V, 3, n)``, each about
    ``scale`` metres at most (random low-frequency Fourier features of the position)."""
    freqs = rng.normal(0.0, 3.0, size=(12, 3))
    phases = rng.uniform(0, 2 * np.pi, size=12)
    feats = np.cos(v @ freqs.T + phases)  # (V, 12)
    coef = rng.normal(0.0, 1.0, size=(12, 3, n))
    fields = np.einsum("vf,fcn->vcn", feats, coef)
    return fields * (scale / np.abs(fields).max(axis=(0, 1), keepdims=True))


def _gender_template(v: np.ndarray, gender: str, rng: np.random.Generator) -> np.ndarray:
    """The base humanoid adjusted per gender (height, shoulder and hip width) plus a small smooth
    random offset (seeded): ``(V, 3)`` metres."""
    v = v.copy()
    pelvis = _JOINT_TARGETS[0]
    y = v[:, 1]
    chest = np.exp(-(((y - 0.15) / 0.15) ** 2))
    hips = np.exp(-(((y + 0.28) / 0.12) ** 2))
    height, shoulder, hip = {
        "neutral": (1.0, 0.0, 0.0),
        "male": (1.03, 0.05, -0.02),
        "female": (0.96, -0.05, 0.05),
    }[gender]
    v[:, 0] *= 1.0 + shoulder * chest + hip * hips
    v = pelvis + (v - pelvis) * height
    return v + _smooth_fields(v, rng, 1, 0.004)[:, :, 0]


def make_smpl_model(seed: int = 0, gender: str = "neutral", num_betas: int = 10) -> dict[str, Any]:
    """The content of one SMPL model file in the official layout (see the module docstring).

    Returns:
        ``dict`` with the official keys; ``shapedirs`` as a plain ``(6890, 3, num_betas)`` float64
        array (:func:`dumps_official_pkl` wraps it in a chumpy ``Ch``), ``J_regressor`` and
        ``J_regressor_prior`` as ``scipy.sparse.csc_matrix``.
    """
    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"gender must be neutral, male or female, got {gender!r}")
    base_v, faces = _base_mesh()
    rng = np.random.default_rng([seed, ("neutral", "male", "female").index(gender)])
    v_template = _gender_template(base_v, gender, rng)
    # the rig is built on the neutral shape and shared, like SMPL's topology
    weights, J_regressor, J_regressor_prior, weights_prior = _rig()
    J = J_regressor @ v_template
    # shape blend shapes: beta 0 ~ stature, beta 1 ~ girth, the rest smooth random fields
    shapedirs = np.zeros((NUM_VERTICES, 3, num_betas))
    rel = v_template - J[0]
    if num_betas > 0:
        shapedirs[:, :, 0] = 0.03 * rel
    if num_betas > 1:
        bone_axis = weights @ J  # skinning-weighted joint position, roughly on the bone axis
        shapedirs[:, :, 1] = 0.15 * (v_template - bone_axis) * np.array([1.0, 0.2, 1.0])
    if num_betas > 2:
        decay = 1.0 / (1.0 + np.arange(2, num_betas) / 5.0)
        shapedirs[:, :, 2:] = _smooth_fields(v_template, rng, num_betas - 2, 0.012) * decay
    # pose blend shapes: joint j's 9 columns move the vertices skinned to j and its parent
    posedirs = np.zeros((NUM_VERTICES, 3, 207))
    fields = _smooth_fields(v_template, rng, 207, 0.01)
    for j in range(1, 24):
        near = weights[:, j] + weights[:, SMPL_PARENTS[j]]
        posedirs[:, :, 9 * (j - 1) : 9 * j] = fields[:, :, 9 * (j - 1) : 9 * j] * near[:, None, None]
    kintree = np.array([SMPL_PARENTS, list(range(24))], dtype=np.int64)
    kintree[0, 0] = 4294967295
    mirrored = v_template * np.array([-1.0, 1.0, 1.0])
    _, sym = cKDTree(v_template).query(mirrored)
    return {
        "J_regressor_prior": sp.csc_matrix(J_regressor_prior),
        "f": faces.astype(np.uint32),
        "J_regressor": sp.csc_matrix(J_regressor),
        "kintree_table": kintree,
        "J": J,
        "weights_prior": weights_prior,
        "weights": weights,
        "vert_sym_idxs": sym.astype(np.int64),
        "posedirs": posedirs,
        "pose_training_info": {"source": "dsrbody.testing.smpl_files (generated)", "seed": int(seed)},
        "bs_style": "lbs",
        "v_template": v_template,
        "shapedirs": shapedirs,
        "bs_type": "lrotmin",
    }


@functools.lru_cache(maxsize=1)
def _rig() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Skinning weights and joint regressors on the base mesh: ``(weights (V, 24), J_regressor
    (24, V), J_regressor_prior (24, V), weights_prior (V, 24))`` (cached)."""
    v, _ = _base_mesh()
    J_regressor = _regressor(v, _JOINT_TARGETS, spread=0.02)
    J = J_regressor @ v
    weights = _skinning_weights(v, J, tau=0.012, keep=4)
    weights_prior = _skinning_weights(v, J, tau=0.02, keep=6)
    J_regressor_prior = _regressor(v, _JOINT_TARGETS, spread=0.05)
    for a in (weights, J_regressor, J_regressor_prior, weights_prior):
        a.setflags(write=False)
    return weights, J_regressor, J_regressor_prior, weights_prior


def make_extra_regressors() -> tuple[np.ndarray, np.ndarray]:
    """``(J_regressor_extra (9, 6890), J_regressor_h36m (17, 6890))`` float64, rows summing to 1 over
    vertices near each joint (targets in the module docstring)."""
    v, _ = _base_mesh()
    return _regressor(v, _EXTRA_TARGETS, spread=0.02), _regressor(v, _H36M_TARGETS, spread=0.02)


def make_mean_params(seed: int = 0) -> dict[str, np.ndarray]:
    """Content of ``smpl_mean_params.npz``: ``pose (144,)`` (24 x 6D, SPIN layout: the first two
    columns of each rotation matrix, row-major), ``shape (10,)``, ``cam (3,)``, float64. The global
    orientation is a half turn about x (SPIN's mean: the body upright in the y-down camera frame);
    the body pose is small random rotations; shape and camera are small random values."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng([seed, 7])
    rotvec = rng.normal(0.0, 0.1, size=(24, 3))
    rotvec[0] = [np.pi, 0.0, 0.0]
    R = Rotation.from_rotvec(rotvec).as_matrix()
    return {
        "pose": R[:, :, :2].reshape(-1).astype(np.float64),
        "shape": rng.normal(0.0, 0.3, size=10),
        "cam": np.array([0.9, 0.0, 0.0]) + rng.normal(0.0, 0.01, size=3),
    }


# ----------------------------------------------------------------------------------------------
# Writing a Python-2 style pickle without chumpy
# ----------------------------------------------------------------------------------------------
class _Global:
    """A reference to ``module.name`` written as a ``GLOBAL`` opcode (the object itself need not be
    importable here, e.g. ``chumpy.ch.Ch``)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name
        self.__name__ = name

    def __call__(self, *args: Any) -> None:  # pickle requires reduce callables to be callable
        raise TypeError("placeholder for a pickled global")


class _ChumpyCh:
    """Stand-in for a chumpy ``Ch`` holding an array ``x``; pickles exactly as chumpy pickles ``Ch``."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x


class _OldCscMatrix:
    """Stand-in pickling as ``scipy.sparse.csc.csc_matrix`` did in 2015 (old ``__dict__`` layout)."""

    def __init__(self, m: sp.csc_matrix) -> None:
        self.m = m


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us choose opcodes per type
    """Protocol-2 pickler writing ``str`` and ``bytes`` as Python-2 ``str`` (``SHORT_BINSTRING`` /
    ``BINSTRING``), NumPy arrays with ``numpy.core.multiarray._reconstruct``, and the chumpy / old
    scipy stand-ins as those classes."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=2)
        self._globals: dict[tuple[str, str], _Global] = {}

    def _global(self, module: str, name: str) -> _Global:
        """One object per global, so that later uses are memo references (``BINGET``) as in Python 2."""
        return self._globals.setdefault((module, name), _Global(module, name))

    def save_py2str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2str
    dispatch[bytes] = save_py2str

    def save_global_ref(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
        self.memoize(obj)

    dispatch[_Global] = save_global_ref

    def _save_newobj(self, obj: Any, cls: _Global, state: dict) -> None:
        self.save(cls)
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self.save(state)
        self.write(pickle.BUILD)

    def save_ch(self, obj: _ChumpyCh) -> None:
        state = {
            "_dirty_vars": {"x"},
            "_itr": None,
            "_make_dense": False,
            "_make_sparse": False,
            "_depends_on_deps": {},
            "x": obj.x,
        }
        self._save_newobj(obj, self._global("chumpy.ch", "Ch"), state)

    dispatch[_ChumpyCh] = save_ch

    def save_csc(self, obj: _OldCscMatrix) -> None:
        m = obj.m
        state = {
            "_shape": tuple(int(s) for s in m.shape),
            "maxprint": 50,
            "format": "csc",
            "data": m.data.astype(np.float64),
            "indices": m.indices.astype(np.int32),
            "indptr": m.indptr.astype(np.int32),
        }
        self._save_newobj(obj, self._global("scipy.sparse.csc", "csc_matrix"), state)

    dispatch[_OldCscMatrix] = save_csc

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray:
            func, args, state = obj.__reduce__()
            return self._global("numpy.core.multiarray", "_reconstruct"), args, state
        return NotImplemented


def dumps_official_pkl(model: dict[str, Any], chumpy_keys: tuple[str, ...] = ("shapedirs",)) -> bytes:
    """Pickle bytes of ``model`` in the official SMPL ``.pkl`` layout (Python-2 protocol 2, keys as
    Python-2 ``str``, ``chumpy_keys`` as chumpy ``Ch`` objects, scipy sparse matrices in the old scipy
    layout), written without chumpy or Python 2."""
    out: dict[str, Any] = {}
    for k, val in model.items():
        if k in chumpy_keys:
            val = _ChumpyCh(np.asarray(val, dtype=np.float64))
        elif sp.issparse(val):
            val = _OldCscMatrix(sp.csc_matrix(val))
        out[k] = val
    buf = io.BytesIO()
    _Py2Pickler(buf).dump(out)
    return buf.getvalue()


def _npz_content(model: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    for k, val in model.items():
        if sp.issparse(val):
            val = val.toarray()
        elif isinstance(val, dict):
            holder = np.empty((), dtype=object)
            holder[()] = val
            val = holder
        out[k] = np.asarray(val)
    return out


def write_smpl_files(
    out_dir: str | Path,
    *,
    seed: int = 0,
    genders: tuple[str, ...] = ("neutral", "male", "female"),
    num_betas: int = 10,
    formats: tuple[str, ...] = ("pkl", "npz"),
    regressors: bool = True,
    mean_params: bool = True,
) -> Path:
    """Write generated SMPL files in the official layout into ``out_dir`` (created if needed).

    Writes ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` and/or ``.npz`` (one per gender in ``genders``), and when
    asked ``J_regressor_extra.npy`` (9 x 6890), ``J_regressor_h36m.npy`` (17 x 6890) and
    ``smpl_mean_params.npz``. Deterministic for a given ``seed``. Takes a few seconds (the mesh is
    cached per process).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        if fmt not in ("pkl", "npz"):
            raise ValueError(f"unknown format {fmt!r}: use 'pkl' and/or 'npz'")
    for gender in genders:
        model = make_smpl_model(seed=seed, gender=gender, num_betas=num_betas)
        stem = out / f"SMPL_{gender.upper()}"
        if "pkl" in formats:
            stem.with_suffix(".pkl").write_bytes(dumps_official_pkl(model))
        if "npz" in formats:
            np.savez(stem.with_suffix(".npz"), **_npz_content(model))
    if regressors:
        extra, h36m = make_extra_regressors()
        np.save(out / "J_regressor_extra.npy", extra)
        np.save(out / "J_regressor_h36m.npy", h36m)
    if mean_params:
        np.savez(out / "smpl_mean_params.npz", **make_mean_params(seed))
    return out
