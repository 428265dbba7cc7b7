"""Read the official SMPL model files (and the field's extra regressors) without chumpy.

The official ``.pkl`` files (``SMPL_{NEUTRAL,MALE,FEMALE}.pkl``, ``basicModel_{f,m}_lbs_10_207_0_v1.0.0.pkl``,
``basicModel_neutral_lbs_10_207_0_v1.0.0.pkl``, ``basicmodel_{m,f,neutral}_lbs_10_207_0_v1.1.0.pkl``) are
Python-2 pickles: keys and array bytes are Python-2 ``str`` (read with ``encoding="latin1"``),
``shapedirs`` (and in some releases other arrays) are chumpy ``Ch`` objects, and ``J_regressor`` is a
``scipy.sparse.csc_matrix`` pickled with scipy's 2015 layout. chumpy is unmaintained and does not
install on current Python/NumPy, so :class:`_SMPLUnpickler` maps every ``chumpy.*`` class to a small
stand-in that keeps the pickled instance state; a ``Ch``'s value is its ``x`` entry (what
``Ch.__getstate__`` pickles: the instance ``__dict__`` minus ``_parents`` and ``_cache``).
``scipy.sparse`` matrices are rebuilt from their pickled ``data``/``indices``/``indptr``/shape,
which works whatever the installed scipy version. The ``.npz`` variant holds the same keys as arrays.

See :mod:`dsrbody.testing.smpl_files` for the byte-level format facts (it writes such files).
"""

from __future__ import annotations

import _compat_pickle
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "SMPL_DOWNLOAD_URL",
    "SPIN_DATA_HINT",
    "SMPLData",
    "model_file_candidates",
    "find_smpl_file",
    "load_smpl_dict",
    "load_smpl",
    "load_regressor",
    "load_mean_params",
    "find_aux_file",
]

SMPL_DOWNLOAD_URL = "https://smpl.is.tue.mpg.de"
SPIN_DATA_HINT = (
    "it comes with SPIN's data (fetch_data.sh in https://github.com/nkolot/SPIN) and with DSR's data "
    "(https://dsr.is.tue.mpg.de)"
)

_GENDERS = {
    "neutral": "neutral",
    "n": "neutral",
    "male": "male",
    "m": "male",
    "female": "female",
    "f": "female",
}


# ----------------------------------------------------------------------------------------------
# Unpickling without chumpy
# ----------------------------------------------------------------------------------------------
class _ChumpyStandIn:
    """Holds the pickled state of a chumpy object (``chumpy_class`` is its ``module.name``)."""

    chumpy_class = "chumpy.ch.Ch"

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _SparseStandIn:
    """Holds the pickled state of a ``scipy.sparse`` matrix (``sparse_format``: csc, csr or coo)."""

    sparse_format = "csc"

    def __setstate__(self, state: Any) -> None:
        self.state = state


# The only other globals SMPL pickles reference (Python-2 names are mapped by ``fix_imports``): NumPy
# arrays, dtypes and scalars as NumPy pickles them, and the plain containers. Nothing else, and no dotted
# (protocol-4 attribute-path) name, so no chain of attributes can reach a function such as ``exec``.
_ALLOWED_GLOBALS = {
    "builtins": {"set", "frozenset", "object", "list", "dict", "tuple", "complex", "slice", "bytearray"},
    "copyreg": {"_reconstructor"},
    "_codecs": {"encode"},
    "collections": {"OrderedDict"},
    "numpy": {"ndarray", "dtype"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.numeric": {"_frombuffer"},
}
#: the modules ``scipy.sparse`` matrices are pickled from (old and new scipy).
_SPARSE_MODULES = {
    "scipy.sparse", "scipy.sparse.csc", "scipy.sparse.csr", "scipy.sparse.coo", "scipy.sparse._csc",
    "scipy.sparse._csr", "scipy.sparse._coo", "scipy.sparse.compressed", "scipy.sparse._compressed",
}  # fmt: skip
_SPARSE_CLASSES = ("csc_matrix", "csr_matrix", "coo_matrix")


def _is_dotted_identifier(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


class _NdarrayToken:
    """What a pickle gets for ``numpy.ndarray``: usable only as the class argument of NumPy's
    ``_reconstruct`` (:func:`_reconstruct_array`), never the class itself. Called with a buffer,
    ``ndarray(shape, object, buffer)`` would turn the buffer's bytes into object pointers (a forged
    object, or a crash), and REDUCE, NEWOBJ and NEWOBJ_EX would all call what ``find_class`` returns."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<numpy.ndarray, for _reconstruct only>"


_NDARRAY = _NdarrayToken()


def _numpy_core(module: str) -> Any:
    """``numpy._core.<sub>`` (NumPy 2) or ``numpy.core.<sub>`` (NumPy 1) for either spelling of ``module``."""
    import importlib

    sub = module.rsplit(".", 1)[1]
    for name in (f"numpy._core.{sub}", f"numpy.core.{sub}"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise pickle.UnpicklingError(f"unexpected global {module} in an SMPL model file")


def _reconstruct_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """NumPy's ``_reconstruct`` (an empty array whose ``__setstate__`` then fills it from the pickled
    bytes, or from a list for object dtypes), for ``numpy.ndarray`` only."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"unexpected _reconstruct of {subtype!r} in an SMPL model file")
    return _numpy_core("numpy.core.multiarray")._reconstruct(np.ndarray, shape, dtype)


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as NumPy's Python-3 pickles use it (array bytes as a latin-1 ``str``); no other
    codec may be named."""
    if not isinstance(text, str) or str(encoding).lower() not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected _codecs.encode(..., {encoding!r}) in an SMPL model file")
    return text.encode("latin1")


def _allowed_global(module: str, name: str) -> Any:
    """The object a pickle gets for an allow-listed ``(module, name)`` (already mapped from Python 2)."""
    import importlib

    if (module, name) == ("numpy", "ndarray"):
        return _NDARRAY
    if name == "_reconstruct":
        return _reconstruct_array
    if (module, name) == ("_codecs", "encode"):
        return _latin1_encode
    if module.startswith(("numpy.core.", "numpy._core.")):
        return getattr(_numpy_core(module), name)
    return getattr(importlib.import_module(module), name)


class _SMPLUnpickler(pickle.Unpickler):
    """Restricted unpickler for SMPL files: chumpy and scipy.sparse classes become inert stand-ins (see
    the module doc); besides them only the NumPy array/dtype/scalar constructors and plain containers of
    ``_ALLOWED_GLOBALS`` may be named, each by its exact module and plain name, so a tampered file cannot
    reach or call any other function. What a name gives is resolved here (never by the default
    ``find_class``, which would import the unmapped module of a Python-2 name), and ``numpy.ndarray``,
    NumPy's ``_reconstruct`` and ``_codecs.encode`` are narrowed to the calls NumPy's pickles make."""

    def find_class(self, module: str, name: str) -> Any:
        if not name.isidentifier() or not _is_dotted_identifier(module):  # no attribute walks
            raise pickle.UnpicklingError(f"unexpected global {module}.{name} in an SMPL model file")
        if module == "chumpy" or module.startswith("chumpy."):
            return type(name, (_ChumpyStandIn,), {"chumpy_class": f"{module}.{name}"})
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            return type(name, (_SparseStandIn,), {"sparse_format": name[:3]})
        mapped_module, mapped_name = module, name  # Python-2 names as fix_imports maps them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            mapped_module, mapped_name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            mapped_module = _compat_pickle.IMPORT_MAPPING[module]
        if mapped_name in _ALLOWED_GLOBALS.get(mapped_module, ()):
            return _allowed_global(mapped_module, mapped_name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in an SMPL model file")


def _sparse_from_state(state: dict) -> sp.spmatrix:
    """A scipy sparse matrix from a pickled ``csc/csr/coo_matrix.__dict__`` (old or new scipy)."""
    shape = state.get("_shape", state.get("shape"))
    fmt = state.get("format")
    if "indptr" in state:
        cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
        return cls(
            (np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"])),
            shape=tuple(shape),
        )
    if "row" in state or "coords" in state:
        row, col = (state["row"], state["col"]) if "row" in state else state["coords"]
        return sp.coo_matrix(
            (np.asarray(state["data"]), (np.asarray(row), np.asarray(col))), shape=tuple(shape)
        )
    raise ValueError(f"unrecognised pickled sparse matrix (keys {sorted(state)})")


def _resolve(obj: Any, key: str) -> Any:
    """Replace stand-ins by arrays / sparse matrices (recursively in dicts)."""
    if isinstance(obj, _ChumpyStandIn):
        state = obj.state if isinstance(getattr(obj, "state", None), dict) else {}
        if "x" not in state:
            raise ValueError(
                f"key {key!r} is a chumpy {obj.chumpy_class} expression, not a plain chumpy array; "
                "re-export the file with plain arrays"
            )
        return np.asarray(_resolve(state["x"], key))
    if isinstance(obj, _SparseStandIn):
        return _sparse_from_state(obj.state)
    if isinstance(obj, dict):
        return {k: _resolve(v, f"{key}.{k}" if key else k) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------------------------
# Finding and reading model files
# ----------------------------------------------------------------------------------------------
def _gender(gender: str) -> str:
    try:
        return _GENDERS[gender.lower()]
    except KeyError:
        raise ValueError(f"gender must be 'neutral', 'male' or 'female', got {gender!r}") from None


def model_file_candidates(gender: str) -> list[str]:
    """File names an SMPL model of ``gender`` goes by, in the order they are looked for."""
    g = _gender(gender)
    short = {"neutral": "neutral", "male": "m", "female": "f"}[g]
    return [
        f"SMPL_{g.upper()}.pkl",
        f"SMPL_{g.upper()}.npz",
        f"basicModel_{short}_lbs_10_207_0_v1.0.0.pkl",
        f"basicmodel_{short}_lbs_10_207_0_v1.1.0.pkl",
        f"basicModel_{short}_lbs_10_207_0_v1.1.0.pkl",
        f"basicmodel_{short}_lbs_10_207_0_v1.0.0.pkl",
    ]


def find_smpl_file(model_path: str | Path, gender: str = "neutral") -> Path:
    """The SMPL model file for ``model_path``: the path itself when it is a file, else the file for
    ``gender`` in the folder (or in its ``smpl/`` subfolder, the smplx/SPIN layout).

    Raises:
        FileNotFoundError: one line with the path, the expected names and the download page.
    """
    path = Path(model_path).expanduser()
    names = model_file_candidates(gender)
    if path.is_file():
        return path
    if path.is_dir():
        for folder in (path, path / "smpl"):
            for name in names:
                if (folder / name).is_file():
                    return folder / name
        raise FileNotFoundError(
            f"no SMPL model file for gender {_gender(gender)!r} in {path} (expected one of "
            f"{', '.join(names)}); download SMPL from {SMPL_DOWNLOAD_URL}"
        )
    raise FileNotFoundError(
        f"SMPL model path {path} does not exist (give a model file or a folder holding one of "
        f"{', '.join(names)}); download SMPL from {SMPL_DOWNLOAD_URL}"
    )


def _read_npz(path: Path) -> dict[str, Any]:
    """All arrays of an ``.npz``; object arrays (e.g. a dict or a sparse matrix saved by a conversion
    script) are unpickled with the restricted :class:`_SMPLUnpickler`, never with plain pickle."""
    out: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            try:
                out[key] = z[key]
            except ValueError as e:
                if "allow_pickle" not in str(e):
                    raise
                out[key] = _read_object_member(path, key)
    return out


def _read_object_member(path: Path, key: str) -> Any:
    """The object array ``key`` of an ``.npz`` (a ``.npy`` whose payload is a pickle)."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version} for object array {key!r}")
        return _SMPLUnpickler(fh, encoding="latin1").load()


def load_smpl_dict(path: str | Path) -> dict[str, Any]:
    """Read an SMPL ``.pkl`` (chumpy not needed) or ``.npz`` into a ``dict`` of arrays.

    chumpy ``Ch`` values become ``np.ndarray``; ``J_regressor`` stays ``scipy.sparse`` when pickled so.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: one line naming the file and what is wrong (truncated, corrupt, not a model).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"SMPL model file {path} does not exist; download SMPL from {SMPL_DOWNLOAD_URL}"
        )
    if path.suffix.lower() == ".npz" or zipfile.is_zipfile(path):
        try:
            data = _read_npz(path)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: corrupt or truncated .npz ({type(e).__name__}: {e})") from None
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path}: corrupt .npz ({type(e).__name__}: {e})") from None
        for k, val in data.items():
            if isinstance(val, np.ndarray) and val.dtype == object and val.shape == ():
                data[k] = val.item()  # sparse matrices / dicts stored as 0-d object arrays
        return _resolve(data, "")
    try:
        with open(path, "rb") as fh:
            data = _SMPLUnpickler(fh, encoding="latin1").load()
    except EOFError:
        raise ValueError(f"{path}: truncated pickle (the file ends early; download it again)") from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
        raise ValueError(f"{path}: corrupt SMPL pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: not an SMPL model file (the pickle holds a {type(data).__name__}, not a dict)"
        )
    try:
        return _resolve(data, "")
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


@dataclass
class SMPLData:
    """The arrays of one SMPL-family model file (float64 where real-valued).

    Attributes:
        v_template: ``(V, 3)`` rest-pose template vertices, metres.
        faces: ``(F, 3)`` int64 triangle indices.
        shapedirs: ``(V, 3, S)`` shape blend shapes, metres per unit coefficient.
        posedirs: ``(V, 3, P)`` pose blend shapes, ``P = 9 (J - 1)``.
        J_regressor: ``(J, V)`` dense joint regressor.
        weights: ``(V, J)`` skinning weights.
        parents: ``(J,)`` int64, ``-1`` for the root.
        path: the file read.
    """

    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    path: Path

    @property
    def num_betas(self) -> int:
        """Number of shape components in the file."""
        return int(self.shapedirs.shape[-1])


def _array(data: dict, key: str, path: Path) -> np.ndarray:
    if key not in data:
        raise ValueError(
            f"{path}: not an SMPL model file (missing key {key!r}; has {sorted(map(str, data))})"
        )
    val = data[key]
    if sp.issparse(val):
        val = val.toarray()
    try:
        return np.asarray(val)
    except Exception as e:  # noqa: BLE001 - any failure to make an array is a bad file
        raise ValueError(f"{path}: key {key!r} is not an array ({type(e).__name__}: {e})") from None


def load_smpl(model_path: str | Path, gender: str = "neutral", num_joints: int | None = 24) -> SMPLData:
    """Find (see :func:`find_smpl_file`), read and check an SMPL model.

    Args:
        model_path: a model file (``.pkl`` / ``.npz``) or a folder holding one.
        gender: ``"neutral"``, ``"male"`` or ``"female"`` (used only when ``model_path`` is a folder).
        num_joints: expected number of joints (24 for SMPL), or ``None`` to accept any.

    Raises:
        FileNotFoundError / ValueError: one line naming the file and the problem (missing file,
        truncated or corrupt file, a key with the wrong shape).
    """
    path = find_smpl_file(model_path, gender)
    data = load_smpl_dict(path)
    v_template = _array(data, "v_template", path).astype(np.float64)
    faces = _array(data, "f", path)
    shapedirs = _array(data, "shapedirs", path).astype(np.float64)
    posedirs = _array(data, "posedirs", path).astype(np.float64)
    J_regressor = _array(data, "J_regressor", path).astype(np.float64)
    weights = _array(data, "weights", path).astype(np.float64)
    kintree = _array(data, "kintree_table", path)

    def bad(key: str, got: tuple, want: str) -> ValueError:
        return ValueError(f"{path}: key {key!r} has shape {got}, expected {want}")

    if v_template.ndim != 2 or v_template.shape[1] != 3:
        raise bad("v_template", v_template.shape, "(V, 3)")
    V = v_template.shape[0]
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise bad("kintree_table", kintree.shape, "(2, J)")
    J = kintree.shape[1]
    if num_joints is not None and J != num_joints:
        raise bad("kintree_table", kintree.shape, f"(2, {num_joints})")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise bad("f", faces.shape, "(F, 3)")
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (V, 3):
        raise bad("shapedirs", shapedirs.shape, f"({V}, 3, S)")
    if posedirs.shape != (V, 3, 9 * (J - 1)):
        raise bad("posedirs", posedirs.shape, f"({V}, 3, {9 * (J - 1)})")
    if J_regressor.shape != (J, V):
        raise bad("J_regressor", J_regressor.shape, f"({J}, {V})")
    if weights.shape != (V, J):
        raise bad("weights", weights.shape, f"({V}, {J})")
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= V):
        raise ValueError(f"{path}: key 'f' has vertex indices outside [0, {V})")
    parents = kintree[0].astype(np.int64)
    parents[0] = -1
    parents[(parents >= J) | (parents < 0)] = -1
    if (parents[1:] < 0).any() or (parents[1:] >= np.arange(1, J)).any():
        raise ValueError(
            f"{path}: key 'kintree_table' is not a tree with parents before children: {parents.tolist()}"
        )
    return SMPLData(v_template, faces, shapedirs, posedirs, J_regressor, weights, parents, path)


# ----------------------------------------------------------------------------------------------
# Extra regressors and mean parameters
# ----------------------------------------------------------------------------------------------
def find_aux_file(name: str, search_dirs: list[Path]) -> Path | None:
    """The first ``dir / name`` that exists among ``search_dirs``, else ``None``."""
    for d in search_dirs:
        if (Path(d) / name).is_file():
            return Path(d) / name
    return None


def _missing(name: str, search_dirs: list[Path], what: str) -> FileNotFoundError:
    where = ", ".join(str(d) for d in search_dirs)
    return FileNotFoundError(
        f"{name} not found (looked in {where}); it is needed for {what}; {SPIN_DATA_HINT}"
    )


def load_regressor(
    name: str, search_dirs: list[Path], rows: int, num_vertices: int, what: str = "these keypoints"
) -> np.ndarray:
    """Load a vertex regressor ``.npy`` (``(rows, num_vertices)`` float64), e.g.
    ``J_regressor_extra.npy`` (9 x 6890) or ``J_regressor_h36m.npy`` (17 x 6890).

    Raises:
        FileNotFoundError: naming the file, where it was looked for and where users get it.
        ValueError: a corrupt file or the wrong shape.
    """
    path = find_aux_file(name, search_dirs)
    if path is None:
        raise _missing(name, search_dirs, what)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: corrupt or truncated .npy ({type(e).__name__}: {e})") from None
    if arr.shape != (rows, num_vertices):
        raise ValueError(f"{path}: regressor has shape {arr.shape}, expected ({rows}, {num_vertices})")
    return arr.astype(np.float64)


def load_mean_params(path: str | Path, num_joints: int = 24) -> dict[str, np.ndarray]:
    """Read ``smpl_mean_params.npz``: ``pose (6 J,)`` (J x 6D, SPIN layout), ``shape (S,)``, ``cam (3,)``.

    Raises:
        FileNotFoundError / ValueError: one line naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {SPIN_DATA_HINT}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: corrupt or truncated .npz ({type(e).__name__}: {e})") from None
    for key, want in (("pose", (6 * num_joints,)), ("shape", None), ("cam", (3,))):
        if key not in data:
            raise ValueError(f"{path}: missing key {key!r} (has {sorted(data)})")
        arr = data[key].reshape(-1)
        if want is not None and arr.shape != want:
            raise ValueError(f"{path}: key {key!r} has shape {data[key].shape}, expected {want}")
        data[key] = arr
    return data
