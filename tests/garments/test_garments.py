"""Procedural garments on Anny and on the generated SMPL-format body: coverage, labels, displacement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsrbody.garments import (
    GARMENT_TYPES,
    BodyGeometry,
    Coat,
    Dress,
    Gloves,
    Hat,
    LongHair,
    LongSleeve,
    Outfit,
    Shoes,
    ShortHair,
    Shorts,
    Skirt,
    Socks,
    TankTop,
    Trousers,
    TShirt,
    dress_body,
    sample_outfit,
    vertex_normals,
)
from dsrbody.garments.outfit import face_labels_from_vertices
from dsrbody.semantics.labels import CIHP

L = CIHP.index
SKIN = [L("face"), L("leftArm"), L("rightArm"), L("leftLeg"), L("rightLeg")]


def frac(labels: np.ndarray, sel: np.ndarray, *names: str) -> float:
    """Fraction of the selected vertices whose label is one of ``names``."""
    return float(np.isin(labels[sel], [L(n) for n in names]).mean())


def test_tshirt_covers_torso_and_upper_arms_not_forearms(geometry: BodyGeometry):
    body = dress_body(geometry, Outfit([TShirt(sleeve=0.9, hem=0.0, neckline=0.03), Trousers()]))
    lab = body.vertex_labels
    assert frac(lab, geometry.part_mask("torso"), "upperclothes") > 0.8
    assert frac(lab, geometry.part_mask("left_upper_arm", "right_upper_arm"), "upperclothes") > 0.8
    for part in ("left_forearm", "right_forearm", "left_hand", "right_hand"):
        assert frac(lab, geometry.part_mask(part), "upperclothes") == 0.0, part
    # bare forearms are arm skin of the subject's own side
    assert frac(lab, geometry.part_mask("left_forearm"), "leftArm") == 1.0
    assert frac(lab, geometry.part_mask("right_forearm"), "rightArm") == 1.0
    assert frac(lab, geometry.part_mask("head"), "upperclothes") == 0.0


def test_long_sleeve_reaches_the_wrist_tank_top_has_no_sleeves(geometry: BodyGeometry):
    long = dress_body(geometry, Outfit([LongSleeve(sleeve=2.0)])).vertex_labels
    fore = geometry.part_mask("left_forearm", "right_forearm")
    assert frac(long, fore, "upperclothes") > 0.9
    assert frac(long, geometry.part_mask("left_hand", "right_hand"), "upperclothes") == 0.0
    tank = dress_body(geometry, Outfit([TankTop()])).vertex_labels
    assert frac(tank, geometry.part_mask("left_upper_arm", "right_upper_arm"), "upperclothes") == 0.0
    assert frac(tank, geometry.part_mask("torso"), "upperclothes") > 0.6


def test_trousers_cover_thighs_and_calves_shorts_do_not_cover_calves(geometry: BodyGeometry):
    legs = geometry.part_mask("left_thigh", "right_thigh", "left_calf", "right_calf")
    trousers = dress_body(geometry, Outfit([Trousers(length=2.0)])).vertex_labels
    assert frac(trousers, legs, "pants") > 0.95
    assert frac(trousers, geometry.part_mask("left_foot", "right_foot"), "pants") == 0.0
    below_hip_joints = geometry.part_mask("hips") & (geometry.y < geometry.landmarks["y_hip"])
    assert below_hip_joints.any()
    assert frac(trousers, below_hip_joints, "pants") == 1.0
    shorts = dress_body(geometry, Outfit([Shorts(length=0.6)])).vertex_labels
    calves = geometry.part_mask("left_calf", "right_calf")
    assert frac(shorts, calves, "pants") == 0.0
    assert frac(shorts, geometry.part_mask("left_calf"), "leftLeg") == 1.0
    assert frac(shorts, geometry.part_mask("right_calf"), "rightLeg") == 1.0
    thighs = geometry.part_mask("left_thigh", "right_thigh")
    assert 0.2 < frac(shorts, thighs, "pants") < 0.95


def test_shoes_socks_gloves_on_the_right_parts(geometry: BodyGeometry):
    lab = dress_body(
        geometry, Outfit([Socks(height=0.1), Shoes(collar=-0.03), Gloves(cuff=0.0)])
    ).vertex_labels
    assert frac(lab, geometry.part_mask("left_foot"), "leftShoe") == 1.0
    assert frac(lab, geometry.part_mask("right_foot"), "rightShoe") == 1.0
    assert frac(lab, geometry.part_mask("left_calf", "right_calf"), "socks") > 0.0
    assert frac(lab, geometry.part_mask("left_hand", "right_hand"), "glove") == 1.0
    assert (
        frac(lab, geometry.part_mask("left_upper_arm", "torso", "head"), "glove", "socks", "leftShoe") == 0.0
    )
    # bare feet are leg skin
    bare = dress_body(geometry, Outfit([TShirt()])).vertex_labels
    assert frac(bare, geometry.part_mask("left_foot"), "leftLeg") == 1.0


def test_hair_and_hat_on_the_scalp_not_the_face(geometry: BodyGeometry):
    head = np.nonzero(geometry.part_mask("head"))[0]
    top = head[np.argmax(geometry.y[head])]  # crown
    front = head[np.argmax(geometry.rest_vertices[head, 2])]  # tip of the nose
    for garment, name in ((ShortHair(), "hair"), (LongHair(), "hair"), (Hat(), "hat")):
        lab = dress_body(geometry, Outfit([garment])).vertex_labels
        assert lab[top] == L(name)
        assert lab[front] == L("face")
    long = dress_body(geometry, Outfit([LongSleeve(), LongHair(length=0.2)])).vertex_labels
    back = geometry.part_mask("torso") & (geometry.trunk_front < -0.8) & (geometry.trunk > 0.8)
    assert frac(long, back, "hair") > 0.5


def test_outer_layer_wins(geometry: BodyGeometry):
    # a coat goes over the t-shirt whatever the list order; an untucked top over the trousers' waistband
    lab = dress_body(geometry, Outfit([Coat(length=0.3), TShirt()])).vertex_labels
    assert frac(lab, geometry.part_mask("torso"), "coat") > 0.8
    waist = geometry.part_mask("torso", "hips") & (geometry.trunk > 0.05) & (geometry.trunk < 0.3)
    over = dress_body(geometry, Outfit([TShirt(hem=0.0), Trousers(waist=0.4)])).vertex_labels
    under = dress_body(geometry, Outfit([TShirt(hem=0.0, tucked=True), Trousers(waist=0.4)])).vertex_labels
    assert frac(over, waist, "upperclothes") > 0.9
    assert frac(under, waist, "pants") > 0.9


def test_displacement_nonnegative_zero_on_skin(geometry: BodyGeometry):
    rng = np.random.default_rng(3)
    for hard in (False, True):
        for _ in range(10):
            body = dress_body(geometry, sample_outfit(rng, hard))
            d = body.displacement
            assert d.shape == (geometry.num_vertices,) and np.isfinite(d).all()
            assert (d >= 0).all()
            skin = np.isin(body.vertex_labels, SKIN)
            assert (d[skin] == 0).all()
            assert (d[~skin] > 0).all()
            assert body.face_labels.shape == (geometry.num_faces,)
            assert set(np.unique(body.face_labels)) <= set(range(20))


def test_skirt_stands_off_toward_the_hem(geometry: BodyGeometry):
    skirt = Skirt(waist=0.4, length=1.5, flare=0.3, thickness=0.003)
    body = dress_body(geometry, Outfit([skirt]))
    d, lab = body.displacement, body.vertex_labels
    covered = lab == L("skirt")
    waist = covered & (geometry.trunk > 0.2)
    hem = covered & (geometry.leg > 1.35)
    assert waist.any() and hem.any()
    np.testing.assert_allclose(d[waist], 0.003, rtol=1e-6)
    assert d[hem].mean() > d[waist].mean() + 0.05
    # the envelope hangs: the outer side of the leg gets at least the flare times the drop
    drop = geometry.landmarks["y_hip"] - geometry.y[hem]
    assert (d[hem] >= 0.0).all() and d[hem].max() >= 0.3 * drop.max()
    # the clothed surface bridges the legs: the gap between the inner knees closes
    pts = body.displace(torch.from_numpy(geometry.rest_vertices)).numpy()
    knee_band = np.abs(geometry.y - geometry.landmarks["y_knee"]) < 0.02
    left = knee_band & geometry.part_mask("left_thigh", "left_calf")
    right = knee_band & geometry.part_mask("right_thigh", "right_calf")
    gap_before = geometry.rest_vertices[left, 0].min() - geometry.rest_vertices[right, 0].max()
    gap_after = pts[left, 0].min() - pts[right, 0].max()
    assert gap_after < min(gap_before, 0.01)


def test_tight_garments_have_their_thickness(geometry: BodyGeometry):
    socks = Socks(height=0.08, thickness=0.002)
    body = dress_body(geometry, Outfit([Trousers(looseness=0.0, thickness=0.006), socks]))
    pants = body.vertex_labels == L("pants")
    over_socks = geometry.y <= geometry.landmarks["y_ankle"] + 0.08  # trousers over socks: 2 + 6 mm
    assert (pants & over_socks).any()
    np.testing.assert_allclose(body.displacement[pants], np.where(over_socks, 0.008, 0.006)[pants], rtol=1e-6)
    # layered: shoes over socks add their thickness on top
    body = dress_body(
        geometry, Outfit([Shoes(collar=0.1, thickness=0.01), Socks(height=0.1, thickness=0.002)])
    )
    shoe = np.isin(body.vertex_labels, [L("leftShoe"), L("rightShoe")]) & (
        geometry.y > geometry.landmarks["y_ankle"]
    )
    assert shoe.any()
    np.testing.assert_allclose(body.displacement[shoe], 0.012, rtol=1e-6)


def test_face_labels_majority_vote():
    faces = np.array([[0, 1, 2], [0, 1, 3], [1, 2, 3], [3, 4, 5]])
    vl = np.array([5, 5, 9, 9, 13, 2])
    disp = np.array([0.1, 0.1, 0.2, 0.3, 0.0, 0.05])
    # face 3 has three different labels: the vertex with the largest displacement (vertex 3) wins
    np.testing.assert_array_equal(face_labels_from_vertices(faces, vl, disp), [5, 5, 9, 9])


def test_parameter_ranges_are_checked():
    with pytest.raises(ValueError, match="TShirt.sleeve"):
        TShirt(sleeve=1.5)
    with pytest.raises(ValueError, match="Skirt.length"):
        Skirt(length=3.0)
    rng = np.random.default_rng(0)
    for cls in GARMENT_TYPES.values():
        for hard in (False, True):
            g = cls.sample(rng, hard)  # samples stay inside the documented ranges
            for name, (lo, hi) in cls.RANGES.items():
                assert lo <= getattr(g, name) <= hi


def test_outfit_distribution():
    rng = np.random.default_rng(0)
    normal = [sample_outfit(rng) for _ in range(300)]
    hard = [sample_outfit(rng, hard=True) for _ in range(300)]
    tops = {"tshirt", "long_sleeve", "tank_top"}
    bottoms = {"trousers", "shorts", "skirt"}
    for o in normal + hard:
        k = set(o.kinds())
        assert "dress" in k or (len(k & tops) == 1 and len(k & bottoms) == 1)

    def count(outfits, kinds):
        return sum(any(g.kind in kinds for g in o.garments) for o in outfits)

    assert count(hard, {"coat"}) > 2 * count(normal, {"coat"})
    assert count(hard, {"dress", "skirt"}) > count(normal, {"dress", "skirt"})
    # deterministic given the seed
    a = sample_outfit(np.random.default_rng(7))
    b = sample_outfit(np.random.default_rng(7))
    assert a == b


def test_dress_body_from_model_matches_geometry(anny_body, anny_geometry):
    outfit = sample_outfit(np.random.default_rng(1))
    a = dress_body(anny_body, outfit)
    b = dress_body(anny_geometry, outfit)
    np.testing.assert_array_equal(a.face_labels, b.face_labels)
    with pytest.raises(ValueError, match="rest_vertices"):
        dress_body(anny_geometry, outfit, rest_vertices=torch.zeros(3))


def test_dress_and_coat_hang_below_the_hips(geometry: BodyGeometry):
    dress, coat = Dress(length=1.2, flare=0.3, neckline=0.08), Coat(length=1.2, flare=0.2, neckline=0.08)
    for garment, name in ((dress, "dress"), (coat, "coat")):
        body = dress_body(geometry, Outfit([garment]))
        lab = body.vertex_labels
        assert frac(lab, geometry.part_mask("torso"), name) > 0.8
        assert frac(lab, geometry.part_mask("torso"), "face") > 0.0  # the neckline stays open
        assert frac(lab, geometry.part_mask("neck", "head"), name) == 0.0
        knees = geometry.part_mask("left_thigh", "right_thigh") & (geometry.leg > 0.9)
        assert frac(lab, knees, name) == 1.0
        low = geometry.part_mask("left_calf", "right_calf") & (geometry.leg > 1.5)
        assert frac(lab, low, name) == 0.0
        hem = (lab == L(name)) & (geometry.leg > 1.1)
        chest = (lab == L(name)) & (geometry.trunk > 0.5) & geometry.part_mask("torso")
        assert body.displacement[hem].mean() > body.displacement[chest].mean()


def test_vertex_normals_point_outward():
    # a closed box: every vertex normal points away from the centre
    import trimesh

    box = trimesh.creation.box()
    n = vertex_normals(torch.tensor(box.vertices), torch.tensor(box.faces))
    v = torch.tensor(box.vertices)
    assert ((n * v).sum(-1) > 0).all()
    np.testing.assert_allclose(n.norm(dim=-1), 1.0, atol=1e-9)
    # one counter-clockwise triangle in the xy plane, batched: normals +z
    tri = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]]).repeat(2, 1, 1)
    n = vertex_normals(tri, torch.tensor([[0, 1, 2]]))
    np.testing.assert_allclose(n.numpy(), np.tile([0.0, 0, 1], (2, 3, 1)), atol=1e-7)


def test_dress_a_particular_body(anny_body, anny_geometry):
    mp = anny_body.mean_params()
    shape = mp["shape"].clone()
    shape[-2] = 1.0  # Anny phenotype "height" (gender, age, muscle, weight, height, proportions)
    eye = torch.eye(3)
    with torch.no_grad():
        rest = anny_body(eye[None], eye.expand(1, anny_body.num_joints - 1, 3, 3), shape[None]).rest_vertices[
            0
        ]
    outfit = Outfit([TShirt(), Trousers(), Shoes()])
    tall = dress_body(anny_body, outfit, rest_vertices=rest)
    mean = dress_body(anny_geometry, outfit)
    assert not np.allclose(rest.numpy(), anny_geometry.rest_vertices, atol=1e-3)
    # the garments follow the body coordinates, so the same outfit labels (nearly) the same vertices
    assert (tall.vertex_labels == mean.vertex_labels).mean() > 0.97
    # a taller body is dressed on its own geometry (its garment coordinates are not the mean body's)
    tall_geom = BodyGeometry.from_model(anny_body, rest)
    assert tall_geom.landmarks["y_top"] > anny_geometry.landmarks["y_top"] + 0.02


@pytest.mark.parametrize("which", ["anny", "smpl"])
def test_landmarks_match_the_rest_skeleton(which, request):
    """Joint heights measured from the mesh agree with the model's own rest-pose joints."""
    from dsrbody.body.anny import ANNY_SMPL_EQUIVALENTS
    from dsrbody.body.parts import rest_skeleton

    model = request.getfixturevalue("anny_body" if which == "anny" else "smpl_body")
    geometry = request.getfixturevalue(f"{which}_geometry")
    _, joints = rest_skeleton(model)
    names = list(model.joint_names)
    to_smpl = {v: k for k, v in ANNY_SMPL_EQUIVALENTS.items()} if which == "anny" else {}

    def joint(smpl_name: str) -> np.ndarray:
        return joints[names.index(to_smpl.get(smpl_name, smpl_name))].double().numpy()

    lm = geometry.landmarks
    for key, smpl_name in (
        ("y_hip", "hip"),
        ("y_knee", "knee"),
        ("y_ankle", "ankle"),
        ("y_shoulder", "shoulder"),
    ):
        y = 0.5 * (joint(f"left_{smpl_name}")[1] + joint(f"right_{smpl_name}")[1])
        assert abs(lm[key] - y) < 0.03, (key, lm[key], y)
    half_width = 0.5 * (joint("left_shoulder")[0] - joint("right_shoulder")[0])
    assert abs(lm["shoulder_x"] - half_width) < 0.03
