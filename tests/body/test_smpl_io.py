"""SMPL file generation and loading: the official layout, chumpy-free loading, file finding, errors."""

from __future__ import annotations

import importlib.util
import pickle
import pickletools
import shutil
import sys
import types
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from dsrbody.body.keypoints import SMPLH_EXTRA_VERTEX_IDS
from dsrbody.body.smpl_io import (
    find_smpl_file,
    load_mean_params,
    load_regressor,
    load_smpl,
    load_smpl_dict,
    model_file_candidates,
)
from dsrbody.testing import smpl_files
from dsrbody.testing.smpl_files import NUM_FACES, NUM_VERTICES, OFFICIAL_KEYS, SMPL_PARENTS, write_smpl_files

GENDERS = ("neutral", "male", "female")


# ------------------------------------------------------------------------------------------------
# the generated files follow the official layout
# ------------------------------------------------------------------------------------------------
def test_pkl_is_a_python2_protocol2_pickle_with_a_chumpy_shapedirs(smpl_dir):
    data = (smpl_dir / "SMPL_NEUTRAL.pkl").read_bytes()
    ops = list(pickletools.genops(data))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    globals_ = {arg for op, arg, _ in ops if op.name == "GLOBAL"}
    assert "chumpy.ch Ch" in globals_
    assert "scipy.sparse.csc csc_matrix" in globals_
    assert "numpy.core.multiarray _reconstruct" in globals_
    # keys are Python-2 str (BINSTRING family), never Python-3 unicode opcodes
    names = {op.name for op, _, _ in ops}
    assert "SHORT_BINSTRING" in names and not names & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES"}
    # the Ch object is built the way chumpy pickles it: class, (), NEWOBJ, then BUILD with its state
    i = next(k for k, (op, arg, _) in enumerate(ops) if op.name == "GLOBAL" and arg == "chumpy.ch Ch")
    assert [ops[i + k][0].name for k in (2, 3)] == ["EMPTY_TUPLE", "NEWOBJ"]
    # plain pickle needs chumpy, which is exactly why the loader exists
    with pytest.raises(ModuleNotFoundError, match="chumpy"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy.sparse.csc is a deprecated alias
        pickle.loads(data, encoding="latin1")


def test_official_keys_dtypes_and_shapes(smpl_dir):
    d = load_smpl_dict(smpl_dir / "SMPL_NEUTRAL.pkl")
    assert list(d) == list(OFFICIAL_KEYS)
    assert d["f"].dtype == np.uint32 and d["f"].shape == (NUM_FACES, 3)
    assert d["v_template"].dtype == np.float64 and d["v_template"].shape == (NUM_VERTICES, 3)
    assert d["shapedirs"].shape == (NUM_VERTICES, 3, 10) and d["shapedirs"].dtype == np.float64
    assert d["posedirs"].shape == (NUM_VERTICES, 3, 207)
    assert d["weights"].shape == d["weights_prior"].shape == (NUM_VERTICES, 24)
    assert d["J"].shape == (24, 3)
    for key in ("J_regressor", "J_regressor_prior"):
        assert isinstance(d[key], sp.csc_matrix) and d[key].shape == (24, NUM_VERTICES)
    kt = d["kintree_table"]
    assert kt.shape == (2, 24) and kt.dtype == np.int64 and kt[0, 0] == 4294967295
    assert kt[0, 1:].tolist() == SMPL_PARENTS[1:] and kt[1].tolist() == list(range(24))
    assert d["vert_sym_idxs"].shape == (NUM_VERTICES,)
    assert d["bs_style"] == "lbs" and d["bs_type"] == "lrotmin"
    assert isinstance(d["pose_training_info"], dict)
    np.testing.assert_allclose(d["J"], d["J_regressor"] @ d["v_template"], atol=1e-12)


def test_pkl_also_loads_the_way_users_load_it_with_chumpy(smpl_dir, monkeypatch):
    """With a chumpy whose Ch keeps its pickled state (as the real one does), plain pickle and real
    scipy read the generated file: the bytes are what chumpy and 2015-scipy objects unpickle from."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:
        def __setstate__(self, state):
            self.__dict__.update(state)

    Ch.__module__ = "chumpy.ch"
    ch_mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = ch_mod
    monkeypatch.setitem(sys.modules, "chumpy", pkg)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy.sparse.csc is a deprecated alias
        raw = pickle.loads((smpl_dir / "SMPL_NEUTRAL.pkl").read_bytes(), encoding="latin1")
    ours = load_smpl_dict(smpl_dir / "SMPL_NEUTRAL.pkl")
    assert raw["shapedirs"]._dirty_vars == {"x"}
    np.testing.assert_array_equal(raw["shapedirs"].x, ours["shapedirs"])
    np.testing.assert_array_equal(raw["J_regressor"].toarray(), ours["J_regressor"].toarray())


@pytest.mark.parametrize("gender", GENDERS)
def test_pkl_and_npz_hold_the_same_model(smpl_dir, gender):
    a = load_smpl_dict(smpl_dir / f"SMPL_{gender.upper()}.pkl")
    b = load_smpl_dict(smpl_dir / f"SMPL_{gender.upper()}.npz")
    assert set(a) == set(b)
    for k in a:
        va, vb = a[k], b[k]
        if sp.issparse(va):
            va = va.toarray()
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=k)
        else:
            assert va == (vb.item() if isinstance(vb, np.ndarray) else vb), k


def test_loading_needs_no_chumpy(smpl_dir, monkeypatch):
    assert importlib.util.find_spec("chumpy") is None  # chumpy is not a dependency
    monkeypatch.setitem(sys.modules, "chumpy", None)  # and stays unimportable even if installed
    data = load_smpl(smpl_dir, "female")
    assert data.shapedirs.shape == (NUM_VERTICES, 3, 10)
    assert data.path.name == "SMPL_FEMALE.pkl"


def test_mesh_is_a_closed_body_like_surface(smpl_dir):
    import trimesh

    d = load_smpl(smpl_dir / "SMPL_NEUTRAL.npz")
    v, f = d.v_template, d.faces
    assert f.min() == 0 and f.max() == NUM_VERTICES - 1
    assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2]))
    m = trimesh.Trimesh(v, f, process=False)
    assert m.is_watertight and m.is_winding_consistent and m.euler_number == 2  # closed, genus 0
    assert m.volume > 0.04  # outward normals, a body-sized volume (m^3)
    assert m.edges_unique_length.max() < 0.05  # faces connect nearby vertices
    assert m.area_faces.min() > 1e-7
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.6 < height < 1.9
    arm_span = v[:, 0].max() - v[:, 0].min()
    assert 1.5 < arm_span < 2.0  # T-pose
    # joints (24) at body-like places: pelvis below spine below neck below head; feet low; left = +x
    J = d.J_regressor @ v
    assert J[0, 1] < J[3, 1] < J[6, 1] < J[9, 1] < J[12, 1] < J[15, 1]
    assert J[7, 1] < -0.9 and J[8, 1] < -0.9
    for left, right in ((1, 2), (16, 17), (20, 21)):
        assert J[left, 0] > 0.05 > -0.05 > J[right, 0]
    np.testing.assert_allclose(J, smpl_files._JOINT_TARGETS, atol=0.01)


def test_weights_concentrate_on_the_nearest_bone(smpl_dir):
    d = load_smpl(smpl_dir / "SMPL_NEUTRAL.npz")
    v, w = d.v_template, d.weights
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    assert (w >= 0).all() and ((w > 0).sum(1) <= 4).all()
    part = w.argmax(1)
    J = d.J_regressor @ v
    thigh = (v[:, 1] < J[1, 1] - 0.08) & (v[:, 1] > J[4, 1] + 0.08) & (v[:, 0] > 0)
    calf = (v[:, 1] < J[4, 1] - 0.08) & (v[:, 1] > J[7, 1] + 0.08) & (v[:, 0] > 0)
    forearm = (v[:, 0] > J[18, 0] + 0.05) & (v[:, 0] < J[20, 0] - 0.05)
    top_of_head = v[:, 1] > J[15, 1] + 0.15
    assert (part[thigh] == 1).mean() > 0.95
    assert (part[calf] == 4).mean() > 0.95
    assert (part[forearm] == 18).mean() > 0.95
    assert (part[top_of_head] == 15).all()
    hips = (np.abs(v[:, 0]) < 0.06) & (v[:, 1] < J[0, 1]) & (v[:, 1] > J[1, 1] - 0.02)
    assert (part[hips] == 0).mean() > 0.9  # the pelvis moves the hips, between the hip joints
    assert len(np.unique(part)) == 24  # every joint moves some vertices


def test_keypoint_vertices_sit_at_their_anatomical_spots(smpl_dir):
    v = load_smpl(smpl_dir).v_template
    ids = SMPLH_EXTRA_VERTEX_IDS
    head = v[v[:, 1] > 0.37]
    assert v[ids["nose"], 2] > np.quantile(head[:, 2], 0.99)  # the front-most part of the head
    assert v[ids["leye"], 0] > 0 > v[ids["reye"], 0] and v[ids["lear"], 0] > 0.07 > -0.07 > v[ids["rear"], 0]
    for side, sign in (("L", 1), ("R", -1)):
        toe, small, heel = v[ids[f"{side}BigToe"]], v[ids[f"{side}SmallToe"]], v[ids[f"{side}Heel"]]
        assert toe[1] < -1.1 and heel[1] < -1.1 and toe[2] > heel[2] + 0.15
        assert sign * small[0] > sign * toe[0]  # the small toe is on the outer side


def test_extra_regressors_and_mean_params(smpl_dir):
    v = load_smpl(smpl_dir).v_template
    extra = load_regressor("J_regressor_extra.npy", [smpl_dir], 9, NUM_VERTICES)
    h36m = load_regressor("J_regressor_h36m.npy", [smpl_dir], 17, NUM_VERTICES)
    for reg in (extra, h36m):
        np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-9)
        assert (reg >= 0).all() and ((reg > 0).sum(1) < 400).all()  # sparse-ish
    h = h36m @ v
    assert h[1, 0] > 0 > h[4, 0]  # H36M "Left Hip" on the subject's left (+x)
    assert h[10, 1] > h[8, 1] > h[0, 1] > h[2, 1] > h[3, 1]  # head > thorax > pelvis > knee > ankle
    mp = load_mean_params(smpl_dir / "smpl_mean_params.npz")
    assert mp["pose"].shape == (144,) and mp["shape"].shape == (10,) and mp["cam"].shape == (3,)
    cols = mp["pose"].reshape(24, 3, 2)  # SPIN layout: the first two columns of each rotation
    np.testing.assert_allclose(
        np.einsum("jrc,jrd->jcd", cols, cols), np.broadcast_to(np.eye(2), (24, 2, 2)), atol=1e-12
    )


def test_generation_is_deterministic_and_genders_share_the_topology():
    a = smpl_files.make_smpl_model(seed=3, gender="male")
    b = smpl_files.make_smpl_model(seed=3, gender="male")
    c = smpl_files.make_smpl_model(seed=4, gender="female")
    for k in ("v_template", "shapedirs", "posedirs", "weights", "f"):
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(a["f"], c["f"])
    assert np.abs(a["v_template"] - c["v_template"]).max() > 0.01
    assert smpl_files.dumps_official_pkl(a) == smpl_files.dumps_official_pkl(b)


# ------------------------------------------------------------------------------------------------
# finding files
# ------------------------------------------------------------------------------------------------
def test_find_by_folder_gender_official_names_and_smpl_subfolder(smpl_dir, tmp_path):
    assert find_smpl_file(smpl_dir, "male").name == "SMPL_MALE.pkl"
    assert find_smpl_file(smpl_dir / "SMPL_MALE.npz").name == "SMPL_MALE.npz"
    shutil.copy(smpl_dir / "SMPL_FEMALE.npz", tmp_path / "SMPL_FEMALE.npz")
    assert find_smpl_file(tmp_path, "f").name == "SMPL_FEMALE.npz"  # .npz when no .pkl
    sub = tmp_path / "v1" / "smpl"
    sub.mkdir(parents=True)
    (sub / "basicModel_f_lbs_10_207_0_v1.0.0.pkl").symlink_to(smpl_dir / "SMPL_FEMALE.pkl")
    (sub / "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl").symlink_to(smpl_dir / "SMPL_NEUTRAL.pkl")
    assert find_smpl_file(tmp_path / "v1", "female").name == "basicModel_f_lbs_10_207_0_v1.0.0.pkl"
    data = load_smpl(tmp_path / "v1", "neutral")
    assert data.path.name == "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"
    assert "basicModel_m_lbs_10_207_0_v1.0.0.pkl" in model_file_candidates("male")


# ------------------------------------------------------------------------------------------------
# errors: one line, naming the file and what is wrong
# ------------------------------------------------------------------------------------------------
def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_file_names_path_expected_names_and_download_page(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_smpl(tmp_path, "male")
    msg = _one_line(e)
    assert str(tmp_path) in msg and "SMPL_MALE.pkl" in msg and "smpl.is.tue.mpg.de" in msg
    with pytest.raises(FileNotFoundError) as e:
        load_smpl(tmp_path / "nowhere" / "SMPL_NEUTRAL.pkl")
    msg = _one_line(e)
    assert "nowhere" in msg and "smpl.is.tue.mpg.de" in msg
    with pytest.raises(ValueError, match="gender"):
        load_smpl(tmp_path, "robot")


def test_truncated_and_corrupt_files(smpl_dir, tmp_path):
    data = (smpl_dir / "SMPL_NEUTRAL.pkl").read_bytes()
    trunc = tmp_path / "SMPL_NEUTRAL.pkl"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as e:
        load_smpl(tmp_path)
    msg = _one_line(e)
    assert str(trunc) in msg and "truncated" in msg
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"\x80\x02this is not a pickle at all")
    with pytest.raises(ValueError) as e:
        load_smpl(junk)
    assert str(junk) in _one_line(e)
    npz = (smpl_dir / "SMPL_NEUTRAL.npz").read_bytes()
    tnpz = tmp_path / "SMPL_MALE.npz"
    tnpz.write_bytes(npz[: len(npz) // 3])
    with pytest.raises(ValueError) as e:
        load_smpl(tnpz)
    msg = _one_line(e)
    assert str(tnpz) in msg and "npz" in msg
    notdict = tmp_path / "list.pkl"
    notdict.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(ValueError, match="not an SMPL model file"):
        load_smpl(notdict)


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("posedirs", np.zeros((NUM_VERTICES, 3, 200))),
        ("shapedirs", np.zeros((NUM_VERTICES, 10))),
        ("weights", np.zeros((NUM_VERTICES, 23))),
        ("J_regressor", np.zeros((24, 100))),
        ("f", np.zeros((10, 4), dtype=np.uint32)),
    ],
)
def test_wrong_array_shape_names_the_key(smpl_dir, tmp_path, key, bad):
    with np.load(smpl_dir / "SMPL_NEUTRAL.npz", allow_pickle=True) as z:
        content = {k: z[k] for k in z.files}
    content[key] = bad
    path = tmp_path / "SMPL_NEUTRAL.npz"
    np.savez(path, **content)
    with pytest.raises(ValueError) as e:
        load_smpl(path)
    msg = _one_line(e)
    assert f"'{key}'" in msg and str(path) in msg


def test_missing_key_is_named(smpl_dir, tmp_path):
    with np.load(smpl_dir / "SMPL_NEUTRAL.npz", allow_pickle=True) as z:
        content = {k: z[k] for k in z.files if k != "weights"}
    np.savez(tmp_path / "m.npz", **content)
    with pytest.raises(ValueError, match="missing key 'weights'"):
        load_smpl(tmp_path / "m.npz")


def test_missing_regressor_and_mean_params_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_regressor("J_regressor_extra.npy", [tmp_path], 9, NUM_VERTICES)
    msg = _one_line(e)
    assert "J_regressor_extra.npy" in msg and str(tmp_path) in msg and "SPIN" in msg
    with pytest.raises(FileNotFoundError) as e:
        load_mean_params(tmp_path / "smpl_mean_params.npz")
    msg = _one_line(e)
    assert "smpl_mean_params.npz" in msg and "SPIN" in msg
    np.save(tmp_path / "J_regressor_h36m.npy", np.zeros((17, 10)))
    with pytest.raises(ValueError, match=r"\(17, 6890\)"):
        load_regressor("J_regressor_h36m.npy", [tmp_path], 17, NUM_VERTICES)


def test_write_smpl_files_options(tmp_path):
    out = write_smpl_files(
        tmp_path / "x", genders=("male",), formats=("npz",), num_betas=12, regressors=False, mean_params=False
    )
    assert sorted(p.name for p in out.iterdir()) == ["SMPL_MALE.npz"]
    assert load_smpl(out, "male").num_betas == 12
    with pytest.raises(ValueError, match="format"):
        write_smpl_files(tmp_path / "y", formats=("obj",))


def test_unpickler_refuses_unexpected_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("should not run",))

    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(ValueError) as e:
        load_smpl_dict(path)
    msg = _one_line(e)
    assert "unexpected global" in msg and "print" in msg and str(path) in msg
    # plain Python-3 pickles of the same arrays (protocol 2, bytes via _codecs) still load
    ok = tmp_path / "ok.pkl"
    ok.write_bytes(pickle.dumps({"a": np.arange(3.0), "s": {1, 2}}, protocol=2))
    d = load_smpl_dict(ok)
    np.testing.assert_array_equal(d["a"], np.arange(3.0))
    assert d["s"] == {1, 2}


def test_npz_object_arrays_go_through_the_restricted_unpickler(tmp_path):
    J = sp.csc_matrix(np.eye(3))
    np.savez(tmp_path / "a.npz", J_regressor=np.array(J, dtype=object), v=np.zeros(2))
    d = load_smpl_dict(tmp_path / "a.npz")
    assert sp.issparse(d["J_regressor"]) and (d["J_regressor"].toarray() == np.eye(3)).all()

    class Evil:
        def __reduce__(self):
            return (print, ("should not run",))

    np.savez(tmp_path / "b.npz", v_template=np.array(Evil(), dtype=object))
    with pytest.raises(ValueError, match="unexpected global"):
        load_smpl_dict(tmp_path / "b.npz")


def test_any_key_may_be_a_chumpy_array_but_not_a_chumpy_expression(tmp_path):
    model = smpl_files.make_smpl_model(seed=0, gender="neutral")
    keys = ("shapedirs", "posedirs", "v_template", "weights", "J")
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(smpl_files.dumps_official_pkl(model, chumpy_keys=keys))
    assert path.read_bytes().count(b"cchumpy.ch\nCh\n") == 1  # later uses refer to the memo, as in Python 2
    d = load_smpl_dict(path)
    for k in keys:
        np.testing.assert_array_equal(d[k], model[k])
    # a chumpy expression (no plain value `x`) cannot be evaluated without chumpy: say which key
    expr = tmp_path / "expr.pkl"
    expr.write_bytes(b"\x80\x02}U\tshapedirscchumpy.ch_ops\nadd\n)\x81}U\x01aK\x01sbs.")
    with pytest.raises(ValueError) as e:
        load_smpl_dict(expr)
    msg = _one_line(e)
    assert "'shapedirs'" in msg and "chumpy.ch_ops.add" in msg and str(expr) in msg
