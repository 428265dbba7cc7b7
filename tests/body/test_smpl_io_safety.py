"""The restricted SMPL unpickler lets through exactly what official files hold (chumpy arrays, scipy sparse
matrices, NumPy arrays/dtypes/scalars, plain containers): known bypass shapes are refused in one line and
no code runs (a marker file would appear)."""

from __future__ import annotations

import io
import os
import pickle
import subprocess

import numpy as np
import pytest

from dsrbody.body.smpl_io import load_smpl_dict
from dsrbody.testing import smpl_files


def _proto4(module: str, name: str, *call_args: str) -> bytes:
    """A protocol-4 pickle: STACK_GLOBAL ``module``/``name``, then one REDUCE per (string) argument; with
    a dotted ``name`` the unpickler walks attributes (``a.b.c``) from the module."""
    out = io.BytesIO()
    out.write(b"\x80\x04")
    for text in (module, name, *call_args):
        data = text.encode()
        out.write(b"\x8c" + bytes([len(data)]) + data)
        if text == name:
            out.write(b"\x93")
        elif text in call_args:
            out.write(b"\x85R")
    out.write(b".")
    return out.getvalue()


def _proto2(module: str, name: str, arg: str) -> bytes:
    """A protocol-2 pickle of ``{'v_template': module.name(arg)}`` (GLOBAL + REDUCE inside a dict)."""
    a = arg.encode()
    return (
        b"\x80\x02}U\nv_templatec" + f"{module}\n{name}\n".encode() + b"U" + bytes([len(a)]) + a + b"\x85Rs."
    )


def _hostile(marker) -> dict[str, bytes]:
    code = f"open({str(marker)!r}, 'w')"
    touch = f"touch {marker}"
    return {
        # the reported bypass: any name under numpy.dtypes was accepted, and a dotted protocol-4 name walks
        # from the module to its builtins and on to exec (106 bytes in the report)
        "numpy_dtypes_walk": _proto4("numpy.dtypes", "_add_dtype_helper.__builtins__.get", "exec", code),
        "numpy_dtypes_plain_name": _proto2("numpy.dtypes", "Float64DType", "f8"),
        "allowed_module_dotted_walk": _proto4("numpy", "ndarray.__class__.__base__", "x"),
        "builtins_dotted_walk": _proto4("builtins", "object.__subclasses__", "x"),
        "chumpy_dotted_name": _proto4("chumpy", "ch.Ch.__init__.__globals__", "x"),
        "sparse_module_other_name": _proto2("scipy.sparse._base", "issparse", "x"),
        "sparse_lookalike_module": _proto2("scipy.sparsetools", "csc_matrix", "x"),
        "py2_builtin_eval": _proto2("__builtin__", "eval", code),
        "builtins_exec": _proto2("builtins", "exec", code),
        "builtins_getattr": _proto2("builtins", "getattr", "x"),
        "posix_system": _proto2("posix", "system", touch),
        "os_system": _proto2("os", "system", touch),
        "subprocess_popen": pickle.dumps({"v_template": _Reduce(subprocess.Popen, (touch,))}, protocol=2),
        "codecs_escape": _proto2("codecs", "decode", "x"),
    }


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("shape", sorted(_hostile("m")))
def test_bypass_shapes_are_refused_and_run_nothing(tmp_path, shape):
    marker = tmp_path / "MARKER"
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(_hostile(marker)[shape])
    with pytest.raises(ValueError) as e:
        load_smpl_dict(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "unexpected global" in msg, msg
    assert not marker.exists()


def test_hostile_npz_object_member_and_body_command(tmp_path, capsys):
    from dsrbody.cli import main

    marker = tmp_path / "MARKER"
    folder = tmp_path / "smpl"
    folder.mkdir()
    (folder / "SMPL_NEUTRAL.pkl").write_bytes(_hostile(marker)["numpy_dtypes_walk"])
    assert (
        main(["body", "--model", "smpl", "--model-path", str(folder), "--out", str(tmp_path / "b.obj")]) == 1
    )
    assert "unexpected global numpy.dtypes" in capsys.readouterr().err
    # the same payload as an .npz object member goes through the same unpickler
    npz = tmp_path / "SMPL_MALE.npz"
    np.savez(npz, v_template=np.zeros(3))
    import zipfile

    payload = _hostile(marker)["posix_system"]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    with zipfile.ZipFile(npz, "a") as zf:
        zf.writestr("J_regressor.npy", header.getvalue() + payload)
    with pytest.raises(ValueError, match="unexpected global posix.system"):
        load_smpl_dict(npz)
    assert not marker.exists() and not (tmp_path / "b.obj").exists()


def test_official_layout_still_loads(tmp_path):
    """What the allow-list keeps: the Python-2 layout (chumpy Ch, scipy csc, NumPy arrays via _reconstruct
    and _codecs), Python-3 NumPy pickles (dtype, scalar), plain containers."""
    model = smpl_files.make_smpl_model(seed=0, gender="neutral")
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(smpl_files.dumps_official_pkl(model))
    d = load_smpl_dict(path)
    np.testing.assert_array_equal(d["shapedirs"], model["shapedirs"])
    assert d["J_regressor"].shape == model["J_regressor"].shape
    for proto in (2, 4):
        p3 = tmp_path / f"py3_{proto}.pkl"
        obj = {"a": np.arange(3.0), "dt": np.dtype("f8"), "s": np.float32(2.5), "t": (1, [2], {3})}
        p3.write_bytes(pickle.dumps(obj, protocol=proto))
        d = load_smpl_dict(p3)
        assert d["s"] == np.float32(2.5) and d["dt"] == np.dtype("f8") and d["t"] == (1, [2], {3})
    assert not os.path.exists(tmp_path / "MARKER")


def _forged_object_arrays() -> dict[str, bytes]:
    """Pickles that would build an object array from raw bytes (the bytes become object pointers: a
    forged object, or a crash), through the allow-listed ``numpy.ndarray`` called by REDUCE or NEWOBJ.
    The bytes are zero here (a NULL pointer reads as ``None``), so a regression fails instead of crashing."""
    import copyreg

    null = b"\x00" * 8
    return {
        "ndarray_reduce_buffer": pickle.dumps(
            {"v_template": _Reduce(np.ndarray, ((1,), "O", null))}, protocol=2
        ),
        # NEWOBJ: numpy.ndarray.__new__(numpy.ndarray, (1,), "O", null), protocol 4
        "ndarray_newobj_buffer": b"\x80\x04}\x8c\nv_template\x8c\x05numpy\x8c\x07ndarray\x93K\x01\x85"
        + b"\x8c\x01OC\x08"
        + null
        + b"\x87\x81s.",
        "ndarray_reduce_buffer_proto4": pickle.dumps(
            {"v_template": _Reduce(np.ndarray, ((1,), "O", null))}, protocol=4
        ),
        "reconstructor_ndarray": pickle.dumps(
            {"v_template": _Reduce(copyreg._reconstructor, (np.ndarray, np.ndarray, (1,)))}, protocol=2
        ),
        "reconstruct_other_class": _proto2_reconstruct_object(),
        "codecs_other_codec": pickle.dumps(
            {"v_template": _Reduce(_codecs_encode(), ("x", "rot13"))}, protocol=2
        ),
    }


def _codecs_encode():
    import _codecs

    return _codecs.encode


def _proto2_reconstruct_object() -> bytes:
    """``numpy.core.multiarray._reconstruct(builtins.object, (1,), b'b')`` in a dict, protocol 2."""
    return (
        b"\x80\x02}U\nv_templatecnumpy.core.multiarray\n_reconstruct\ncbuiltins\nobject\n"
        b"K\x01\x85U\x01b\x87Rs."
    )


@pytest.mark.parametrize("shape", sorted(_forged_object_arrays()))
def test_array_constructors_cannot_forge_objects(tmp_path, shape):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(_forged_object_arrays()[shape])
    with pytest.raises(ValueError) as e:
        load_smpl_dict(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
