"""The procedural clothing prior and the shipped default Anny prior."""

from __future__ import annotations

import numpy as np
import pytest

from dsrbody.garments import BodyGeometry, build_procedural_prior, default_prior, default_prior_path
from dsrbody.garments.prior import face_centroids, procedural_face_labels, save_prior, transfer_prior
from dsrbody.semantics.labels import CIHP
from dsrbody.semantics.prior import ClothingPrior, PriorTopologyError

L = CIHP.index


def test_procedural_prior_is_the_mean_one_hot(smpl_geometry: BodyGeometry):
    prior = build_procedural_prior(smpl_geometry, 7, seed=11, chunk=3)
    labels = procedural_face_labels(smpl_geometry, 7, seed=11)
    expected = np.mean([np.eye(20)[lab] for lab in labels], axis=0)
    np.testing.assert_allclose(prior.probs.numpy(), expected, atol=1e-7)
    np.testing.assert_allclose(prior.probs.sum(1).numpy(), 1.0, atol=1e-6)
    assert prior.topology_id is not None and prior.num_faces == smpl_geometry.num_faces


def test_procedural_prior_deterministic_per_seed(anny_geometry: BodyGeometry):
    a = build_procedural_prior(anny_geometry, 20, seed=5)
    b = build_procedural_prior(anny_geometry, 20, seed=5)
    c = build_procedural_prior(anny_geometry, 20, seed=6)
    np.testing.assert_array_equal(a.probs.numpy(), b.probs.numpy())
    assert not np.array_equal(a.probs.numpy(), c.probs.numpy())
    s = build_procedural_prior(anny_geometry, 20, seed=5, smoothing_iterations=2)
    np.testing.assert_allclose(s.probs.sum(1).numpy(), 1.0, atol=1e-5)
    assert not np.array_equal(a.probs.numpy(), s.probs.numpy())
    with pytest.raises(ValueError, match=">= 1"):
        build_procedural_prior(anny_geometry, 0)


def test_save_round_trip(tmp_path, smpl_geometry: BodyGeometry, smpl_body):
    prior = build_procedural_prior(smpl_geometry, 5, seed=0)
    path = tmp_path / "p.npz"
    save_prior(prior, path, face_centroids(smpl_geometry))
    loaded = ClothingPrior.load(path, expected_topology=smpl_body)
    np.testing.assert_array_equal(loaded.probs.numpy(), prior.probs.numpy())
    assert loaded.source == prior.source


def test_transfer_prior_nearest_face():
    probs = np.eye(20)[[1, 2, 3]]
    src = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    dst = np.array([[0.9, 0.1, 0], [0.1, 0.8, 0], [0.1, 0.1, 0], [2, 0, 0]])
    np.testing.assert_array_equal(transfer_prior(probs, src, dst).argmax(1), [2, 3, 1, 2])


def region_argmax(probs: np.ndarray, faces: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Counts of argmax labels over faces whose three vertices are all in ``sel``."""
    f = sel[faces].all(1)
    return np.bincount(probs[f].argmax(1), minlength=20)


def dominant(counts: np.ndarray, names: tuple[str, ...], share: float) -> bool:
    return counts[[L(n) for n in names]].sum() >= share * counts.sum()


def test_shipped_anny_prior(anny_body, anny_geometry: BodyGeometry):
    assert default_prior_path().is_file()
    prior = default_prior(anny_body)
    assert prior.topology_id == anny_body.topology_id
    p = prior.probs.numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    g, faces = anny_geometry, anny_geometry.faces
    face = g.part_mask("head") & (g.head_front > 0.7) & (g.head_u < 0.6)
    assert dominant(region_argmax(p, faces, face), ("face",), 0.95)
    assert dominant(region_argmax(p, faces, g.part_mask("left_hand")), ("leftArm",), 0.95)
    assert dominant(region_argmax(p, faces, g.part_mask("right_hand")), ("rightArm",), 0.95)
    assert dominant(region_argmax(p, faces, g.part_mask("left_foot")), ("leftShoe",), 0.95)
    assert dominant(region_argmax(p, faces, g.part_mask("right_foot")), ("rightShoe",), 0.95)
    chest = g.part_mask("torso") & (g.trunk > 0.3) & (g.trunk < 0.8)
    assert dominant(region_argmax(p, faces, chest), ("upperclothes",), 0.95)
    legs = g.part_mask("left_thigh", "right_thigh", "left_calf", "right_calf") & (g.leg < 1.8)
    assert dominant(region_argmax(p, faces, legs), ("pants", "skirt"), 0.9)
    crown = g.part_mask("head") & (g.head_u > 0.9)
    assert dominant(region_argmax(p, faces, crown), ("hair",), 0.9)


def test_default_prior_other_topologies(smpl_body):
    with pytest.raises(PriorTopologyError, match="prior build"):
        default_prior(smpl_body)


def test_default_prior_transfers_to_low_poly_anny():
    from dsrbody.body.anny import AnnyBody

    low = AnnyBody(topology="notoes_collapse10pc")
    with pytest.warns(UserWarning, match="nearest face"):
        prior = default_prior(low)
    assert prior.topology_id == low.topology_id and prior.num_faces == low.faces.shape[0]
    np.testing.assert_allclose(prior.probs.sum(1).numpy(), 1.0, atol=1e-5)
    g = BodyGeometry.from_model(low)
    chest = g.part_mask("torso") & (g.trunk > 0.3) & (g.trunk < 0.8)
    assert dominant(region_argmax(prior.probs.numpy(), g.faces, chest), ("upperclothes",), 0.9)
