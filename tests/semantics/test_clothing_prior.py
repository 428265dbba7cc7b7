"""ClothingPrior: from hand-made scans (npz + ply), smoothing, files, topology checks, renderer helpers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import trimesh
from trimesh.exchange.ply import export_ply

from dsrbody.body.base import topology_id
from dsrbody.semantics.labels import CIHP_NAMES, MERGED_GROUPS, MERGED_NAMES
from dsrbody.semantics.prior import (
    ClothingPrior,
    PriorTopologyError,
    face_labels_from_vertex_labels,
    read_scan_labels,
)

# 6 vertices, 4 faces; edge-adjacent pairs: (0,1) share 0-2, (1,2) share 0-3, (0,3) share 1-2
FACES = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [1, 2, 5]])
VERTS = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0], [-0.5, 1, 0], [-1, 0, 0], [1, 1, 0]], dtype=float)
SCAN1 = np.array([5, 5, 5, 9, 9, 13])  # faces: 5, 5, 9, 5
SCAN2 = np.array([13, 14, 15, 13, 0, 19])  # faces: tie->13, 13, 13, tie (14,15,19)->14
SCAN3 = np.array([2, 2, 5, 5, 5, 2])  # faces: 2, 5, 5, 2


def _expected_probs() -> np.ndarray:
    p = np.zeros((4, 20))
    for f, labs in enumerate([(5, 13, 2), (5, 13, 5), (9, 13, 5), (5, 14, 2)]):
        for lab in labs:
            p[f, lab] += 1 / 3
    return p


def _write_ascii_ply(path, labels, prop="label"):
    lines = ["ply", "format ascii 1.0", f"element vertex {len(VERTS)}"]
    lines += [f"property float {a}" for a in "xyz"] + [f"property uchar {prop}"]
    lines += [f"element face {len(FACES)}", "property list uchar int vertex_indices", "end_header"]
    lines += [f"{x} {y} {z} {int(lab)}" for (x, y, z), lab in zip(VERTS, labels)]
    lines += [f"3 {a} {b} {c}" for a, b, c in FACES]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def scan_folder(tmp_path):
    d = tmp_path / "scans"
    d.mkdir()
    np.savez(d / "scan1.npz", labels=SCAN1)
    np.savez(d / "scan2.npz", labels=SCAN2.astype(np.uint8))
    _write_ascii_ply(d / "scan3.ply", SCAN3)
    return d


def test_face_label_vote_and_ties():
    assert face_labels_from_vertex_labels(SCAN1, FACES).tolist() == [5, 5, 9, 5]
    assert face_labels_from_vertex_labels(SCAN2, FACES).tolist() == [13, 13, 13, 14]
    # a tie does not depend on the order of the face's vertices
    rolled = np.roll(FACES, 1, axis=1)
    assert face_labels_from_vertex_labels(SCAN2, rolled).tolist() == [13, 13, 13, 14]


def test_prior_from_hand_made_scans(scan_folder):
    prior = ClothingPrior.from_scans(scan_folder, FACES)
    np.testing.assert_allclose(prior.probs.numpy(), _expected_probs(), atol=1e-6)
    assert prior.probs.dtype == torch.float32 and prior.probs.shape == (4, 20)
    np.testing.assert_allclose(prior.probs.sum(1).numpy(), np.ones(4), atol=1e-6)
    assert prior.topology_id == topology_id(FACES)
    assert prior.labels == CIHP_NAMES
    assert prior.skipped == [] and "3 scans" in prior.source


def test_binary_ply_with_labels_property(tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    m = trimesh.Trimesh(vertices=VERTS, faces=FACES, process=False)
    m.vertex_attributes["labels"] = SCAN3.astype(np.int32)
    (d / "b.ply").write_bytes(export_ply(m, encoding="binary", include_attributes=True))
    np.testing.assert_array_equal(read_scan_labels(d / "b.ply"), SCAN3)
    prior = ClothingPrior.from_scans(d, FACES)
    np.testing.assert_allclose(prior.probs.numpy(), np.eye(20)[[2, 5, 5, 2]], atol=1e-7)


def test_smoothing_one_iteration(scan_folder):
    p = _expected_probs()
    expected = np.stack(
        [(p[0] + p[1] + p[3]) / 3, (p[0] + p[1] + p[2]) / 3, (p[1] + p[2]) / 2, (p[0] + p[3]) / 2]
    )
    prior = ClothingPrior.from_scans(scan_folder, FACES, smoothing_iterations=1)
    np.testing.assert_allclose(prior.probs.numpy(), expected, atol=1e-6)
    prior2 = ClothingPrior.from_scans(scan_folder, FACES, smoothing_iterations=2)
    np.testing.assert_allclose(prior2.probs.sum(1).numpy(), np.ones(4), atol=1e-6)


def test_from_face_labels():
    labs = [np.array([5, 5, 9, 5]), np.array([13, 13, 13, 14]), np.array([2, 5, 5, 2])]
    prior = ClothingPrior.from_face_labels(labs, FACES)
    np.testing.assert_allclose(prior.probs.numpy(), _expected_probs(), atol=1e-6)
    p2 = ClothingPrior.from_face_labels(labs, topology_id="4f-custom", source="procedural")
    assert p2.topology_id == "4f-custom" and p2.source == "procedural"
    with pytest.raises(ValueError, match="faces or topology_id"):
        ClothingPrior.from_face_labels(labs)
    with pytest.raises(ValueError, match="labelling 1 has shape"):
        ClothingPrior.from_face_labels([labs[0], labs[1][:3]], FACES)
    with pytest.raises(ValueError, match="outside"):
        ClothingPrior.from_face_labels([np.array([0, 1, 2, 20])], FACES)


def test_unreadable_scans_are_skipped_and_listed(scan_folder):
    (scan_folder / "broken.npz").write_bytes(b"garbage")
    np.savez(scan_folder / "nokey.npz", foo=SCAN1)
    np.savez(scan_folder / "fewverts.npz", labels=SCAN1[:4])
    np.savez(scan_folder / "manyverts.npz", labels=np.r_[SCAN1, 0])
    np.savez(scan_folder / "range.npz", labels=SCAN1 + 20)
    (scan_folder / "nolabel.ply").write_text(
        (scan_folder / "scan3.ply").read_text().replace(" label", " temp")
    )
    (scan_folder / "notes.txt").write_text("not a scan")
    with pytest.warns(UserWarning, match=r"skipped 6 of 9 scan files"):
        prior = ClothingPrior.from_scans(scan_folder, FACES)
    names = sorted(n.split("/")[-1] for n, _ in prior.skipped)
    assert names == ["broken.npz", "fewverts.npz", "manyverts.npz", "nokey.npz", "nolabel.ply", "range.npz"]
    reasons = dict((n.split("/")[-1], r) for n, r in prior.skipped)
    assert "no 'labels'" in reasons["nokey.npz"]
    assert "has 4 vertex labels but the mesh has 6" in reasons["fewverts.npz"]
    assert "accepted: label" in reasons["nolabel.ply"] and "outside" in reasons["range.npz"]
    np.testing.assert_allclose(prior.probs.numpy(), _expected_probs(), atol=1e-6)


def test_no_usable_scan_is_an_error(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    with pytest.raises(FileNotFoundError, match="no scan files"):
        ClothingPrior.from_scans(d, FACES)
    (d / "x.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"no usable scan .*x\.npz"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ClothingPrior.from_scans(d, FACES)
    with pytest.raises(FileNotFoundError, match="scan folder not found"):
        ClothingPrior.from_scans(tmp_path / "missing", FACES)


def test_save_load_round_trip_and_topology_mismatch(tmp_path, scan_folder):
    prior = ClothingPrior.from_scans(scan_folder, FACES)
    path = tmp_path / "prior.npz"
    prior.save(path)
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["labels", "probs", "source", "topology_id"]
        assert z["probs"].dtype == np.float32 and z["probs"].shape == (4, 20)
    back = ClothingPrior.load(path, expected_topology=FACES)
    torch.testing.assert_close(back.probs, prior.probs)
    assert back.topology_id == prior.topology_id and back.source == prior.source
    other = FACES[[1, 0, 2, 3]]
    with pytest.raises(PriorTopologyError, match=rf"prior\.npz: .*{prior.topology_id}.*{topology_id(other)}"):
        ClothingPrior.load(path, expected_topology=other)
    with pytest.raises(PriorTopologyError, match=topology_id(other)):
        back.check_topology(other)
    back.check_topology(prior.topology_id)
    # a name without the .npz suffix stays as given
    prior.save(tmp_path / "prior.bin")
    assert ClothingPrior.load(tmp_path / "prior.bin").num_faces == 4


def test_official_bare_npy_layout_loads(tmp_path):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 6890, size=(13776, 3))
    probs = rng.random((13776, 20)).astype(np.float32)
    probs /= probs.sum(1, keepdims=True)
    path = tmp_path / "semantic_prior.npy"
    np.save(path, probs)
    prior = ClothingPrior.load(path)
    assert prior.topology_id is None and prior.num_faces == 13776
    np.testing.assert_array_equal(prior.probs.numpy(), probs)
    prior = ClothingPrior.load(path, expected_topology=faces)
    assert prior.topology_id == topology_id(faces)
    with pytest.raises(PriorTopologyError, match=r"semantic_prior\.npy: prior has 13776 faces .* 27420"):
        ClothingPrior.load(path, expected_topology="27420f-0123456789abcdef")
    np.save(tmp_path / "wrong.npy", probs[:, :18])
    with pytest.raises(ValueError, match=r"wrong\.npy: a bare prior must be an \(F, 20\) array"):
        ClothingPrior.load(tmp_path / "wrong.npy")
    np.save(tmp_path / "unnorm.npy", probs * 2)
    with pytest.warns(UserWarning, match="13776 of 13776 rows do not sum to 1"):
        ClothingPrior.load(tmp_path / "unnorm.npy")


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        ClothingPrior.load(tmp_path / "nothere.npz")
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    with pytest.raises(ValueError, match=r"other\.npz: not a clothing prior file"):
        ClothingPrior.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="rows must sum to 1"):
        ClothingPrior(np.full((3, 20), 0.1), "3f-x")


def _random_prior(F=7, seed=0) -> ClothingPrior:
    rng = np.random.default_rng(seed)
    p = rng.random((F, 20))
    return ClothingPrior(p / p.sum(1, keepdims=True), f"{F}f-test")


def test_mc_texture_hand_computed(scan_folder):
    prior = ClothingPrior.from_scans(scan_folder, FACES)
    tex = prior.mc_texture(["face", "leftArm"])
    assert tex.shape == (4, 1)
    # f0 {5,13,2}, f1 {5,13,5}, f2 {9,13,5}: face 1/3; f3 {5,14,2}: leftArm 1/3
    np.testing.assert_allclose(tex[:, 0].numpy(), [1 / 3, 1 / 3, 1 / 3, 1 / 3], atol=1e-6)
    np.testing.assert_allclose(prior.mc_texture([14]).numpy()[:, 0], [0, 0, 0, 1 / 3], atol=1e-6)
    assert not prior.mc_texture([]).any()
    vec = np.zeros(20, bool)
    vec[[13, 14]] = True
    torch.testing.assert_close(prior.mc_texture(vec), tex)
    with pytest.raises(ValueError, match="not DSR-MC labels"):
        prior.mc_texture(["face", "upperclothes"])


def test_mc_texture_batch_matches_loop():
    prior = _random_prior()
    rng = np.random.default_rng(1)
    present = torch.from_numpy(rng.random((5, 20)) < 0.5)
    out = prior.mc_texture_batch(present)
    assert out.shape == (5, 7, 1)
    for b in range(5):
        mc = [i for i in (13, 14, 15, 18, 19) if present[b, i]]  # non-MC entries ignored
        ref = prior.probs[:, mc].sum(1, keepdim=True)
        torch.testing.assert_close(out[b], ref)


def test_merged_channels():
    prior = _random_prior()
    m = prior.merged_channels()
    assert m.shape == (7, 8)
    for c, name in enumerate(MERGED_NAMES):
        cols = [CIHP_NAMES.index(n) for n in MERGED_GROUPS[name]]
        torch.testing.assert_close(m[:, c], prior.probs[:, cols].sum(1))
    torch.testing.assert_close(m.sum(1), torch.ones(7))
    assert prior.merged_channels_batch(3).shape == (3, 7, 8)


def test_prior_is_a_module_without_checkpoint_state():
    prior = _random_prior()
    assert "probs" not in prior.state_dict()
    assert prior.to(torch.float64).probs.dtype == torch.float64
    assert prior.merged_channels().dtype == torch.float64
