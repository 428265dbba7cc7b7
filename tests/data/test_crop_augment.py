"""Crop and augmentation: image, keypoints, 3D joints, pose and parsing map move together."""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from dsrbody.body.keypoints import SMPL24, SPIN49, SPIN_GT24
from dsrbody.data.crop_augment import (
    CIHP_LABEL_FLIP_PERM,
    IMG_NORM_MEAN,
    IMG_NORM_STD,
    AugmentParams,
    crop_matrix,
    flip_perm_from_names,
    flip_pose,
    j2d_processing,
    j3d_processing,
    parsing_processing,
    pose_processing,
    rgb_processing,
    rotate_global_orient,
    sample_augment_params,
)

RES = 224
CASES = [
    AugmentParams(),
    AugmentParams(flip=True),
    AugmentParams(rot=30.0, flip=True),
    AugmentParams(rot=-45.0, scale=0.8),
    AugmentParams(rot=60.0, scale=1.25, flip=True),
    AugmentParams(rot=17.0, scale=1.1),
]


def spin_reference_matrix(center, scale, res, rot):
    """SPIN's ``get_transform`` (utils/imutils.py) rewritten from its definition, as a 3x3 matrix."""
    h = 200.0 * scale
    t = np.eye(3)
    t[0, 0] = res / h
    t[1, 1] = res / h
    t[0, 2] = res * (-center[0] / h + 0.5)
    t[1, 2] = res * (-center[1] / h + 0.5)
    if rot != 0:
        rad = np.deg2rad(-rot)
        sn, cs = np.sin(rad), np.cos(rad)
        rot_mat = np.array([[cs, -sn, 0], [sn, cs, 0], [0, 0, 1]])
        t_mat = np.eye(3)
        t_mat[:2, 2] = -res / 2
        t_inv = np.eye(3)
        t_inv[:2, 2] = res / 2
        t = t_inv @ rot_mat @ t_mat @ t
    return t


@pytest.mark.parametrize("rot", [0.0, 25.0, -60.0])
def test_crop_matrix_matches_spin_transform(rot):
    center, scale = (153.7, 88.2), 0.83
    a = crop_matrix(center, scale, RES, rot, flip=False)
    np.testing.assert_allclose(a, spin_reference_matrix(center, scale, RES, rot)[:2], atol=1e-9)
    # flip is the mirror of the crop: u -> 224 - u
    af = crop_matrix(center, scale, RES, rot, flip=True)
    np.testing.assert_allclose(af[0], [-a[0, 0], -a[0, 1], RES - a[0, 2]], atol=1e-9)
    np.testing.assert_allclose(af[1], a[1], atol=1e-12)


def _dot_image(h, w, x, y, half=1):
    img = np.zeros((h, w, 3), np.uint8)
    c, r = int(np.floor(x)), int(np.floor(y))
    img[r - half : r + half + 1, c - half : c + half + 1] = 255
    return img


def _centroid(channel: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(channel.shape)
    m = channel.sum()
    assert m > 0, "the dot left the crop"
    return np.array([((cols + 0.5) * channel).sum() / m, ((rows + 0.5) * channel).sum() / m])


@pytest.mark.parametrize("params", CASES)
@pytest.mark.parametrize("pos", [(70.5, 50.5), (101.5, 77.5)])
def test_dot_lands_on_transformed_keypoint(params, pos):
    h, w = 120, 160
    center, scale = np.array([80.0, 60.0]), 0.5
    img = _dot_image(h, w, *pos)
    crop = rgb_processing(img, center, scale, params, RES, normalize=False)
    dot = _centroid(crop[0])

    kp = np.zeros((49, 3))
    lw, rw = SPIN49.index("Left Wrist"), SPIN49.index("Right Wrist")
    kp[lw] = [pos[0], pos[1], 1.0]
    out = j2d_processing(kp, center, scale, params, RES, SPIN49)
    # After a flip the subject's left wrist looks like a right wrist.
    k = rw if params.flip else lw
    assert out[k, 2] == 1.0
    px = (out[k, :2].astype(np.float64) + 1.0) * RES / 2
    assert np.linalg.norm(px - dot) < 0.5, (px, dot)


def test_keypoints_flip_twice_is_identity():
    rng = np.random.default_rng(1)
    kp = np.concatenate([rng.uniform(0, RES, (49, 2)), rng.uniform(0, 1, (49, 1))], axis=1)
    ident = (np.array([RES / 2, RES / 2]), RES / 200.0)  # the box that maps a 224 image onto itself
    plain = j2d_processing(kp, *ident, AugmentParams(), RES)
    np.testing.assert_allclose(plain[:, :2], 2 * kp[:, :2] / RES - 1, atol=1e-6)
    once = j2d_processing(kp, *ident, AugmentParams(flip=True), RES)
    back = once.astype(np.float64).copy()
    back[:, :2] = (back[:, :2] + 1) * RES / 2
    twice = j2d_processing(back, *ident, AugmentParams(flip=True), RES)
    np.testing.assert_allclose(twice, plain, atol=1e-5)


def test_joints3d_and_pose_flip_twice_identity():
    rng = np.random.default_rng(2)
    s = np.concatenate([rng.normal(size=(24, 3)), rng.uniform(size=(24, 1))], axis=1)
    f = AugmentParams(flip=True)
    np.testing.assert_allclose(j3d_processing(j3d_processing(s, f), f), s, atol=1e-6)
    pose = rng.normal(0, 0.5, 72)
    np.testing.assert_allclose(flip_pose(flip_pose(pose)), pose, atol=1e-12)


def test_flip_pose_is_mirror_conjugation():
    rng = np.random.default_rng(3)
    pose = rng.normal(0, 0.7, (24, 3))
    flipped = flip_pose(pose.reshape(-1)).reshape(24, 3)
    m = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    r = roma.rotvec_to_rotmat(torch.from_numpy(pose))
    rf = roma.rotvec_to_rotmat(torch.from_numpy(flipped))
    perm = SMPL24.flip_perm
    assert perm[1] == 2 and perm[16] == 17 and perm[0] == 0
    torch.testing.assert_close(rf, m @ r[perm] @ m)


def test_global_orient_follows_3d_joints():
    """Rotating / mirroring the posed body equals posing the rest body with the augmented orientation."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(24, 3))
    xm = x[SPIN_GT24.flip_perm] * np.array([-1.0, 1.0, 1.0])  # the mirrored rest body, re-labelled
    pose = np.zeros(72)
    pose[:3] = rng.normal(0, 1.0, 3)

    def rotmat(aa):
        return roma.rotvec_to_rotmat(torch.from_numpy(np.asarray(aa, np.float64))).numpy()

    posed = x @ rotmat(pose[:3]).T
    for params in [AugmentParams(rot=35.0), AugmentParams(rot=-20.0, flip=True), AugmentParams(flip=True)]:
        new_orient = pose_processing(pose, params)[:3].astype(np.float64)
        expected = j3d_processing(posed, params, SPIN_GT24)
        rest = xm if params.flip else x
        np.testing.assert_allclose(rest @ rotmat(new_orient).T, expected, atol=1e-5)


def test_rotate_global_orient_zero_is_identity():
    aa = np.array([0.3, -1.2, 0.4])
    np.testing.assert_allclose(rotate_global_orient(aa, 0.0), aa)
    r = roma.rotvec_to_rotmat(torch.from_numpy(rotate_global_orient(aa, 90.0)))
    r0 = roma.rotvec_to_rotmat(torch.from_numpy(aa))
    rz = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(r, rz @ r0)


def test_flip_perm_from_anny_bone_names():
    names = ["root", "pelvis.L", "pelvis.R", "spine05", "upperarm01.L", "upperarm01.R", "hand_l", "hand_r"]
    assert flip_perm_from_names(names) == [0, 2, 1, 3, 5, 4, 7, 6]
    assert flip_perm_from_names(SMPL24.names) == SMPL24.flip_perm
    with pytest.raises(ValueError, match="joint names"):
        flip_pose(np.zeros(9), names)


def _label_blocks(h, w, labels, rng):
    out = np.zeros((h, w), np.uint8)
    for lab in labels:
        r, c = rng.integers(0, h - 30), rng.integers(0, w - 30)
        out[r : r + rng.integers(10, 30), c : c + rng.integers(10, 30)] = lab
    return out


@pytest.mark.parametrize("params", CASES[1:])
def test_parsing_nearest_keeps_labels_and_swaps_on_flip(params):
    rng = np.random.default_rng(5)
    src = _label_blocks(120, 160, [2, 5, 14, 16, 18, 14, 5], rng)
    out = parsing_processing(src, (80.0, 60.0), 0.55, params, RES, "nearest")
    assert out.shape == (RES, RES) and out.dtype == np.uint8
    present = set(np.unique(src).tolist())
    expected = {int(CIHP_LABEL_FLIP_PERM[v]) for v in present} if params.flip else present
    assert set(np.unique(out).tolist()) <= expected
    if params.flip:
        assert 15 in set(np.unique(out).tolist())  # leftArm became rightArm
        # Un-swapped, the labels are exactly the nearest samples of the image-aligned warp
        mask = parsing_processing((src == 14).astype(np.uint8), (80.0, 60.0), 0.55, params, RES, "nearest")
        np.testing.assert_array_equal(out == 15, mask == 1)


def test_parsing_aligned_with_image():
    rng = np.random.default_rng(6)
    src = _label_blocks(120, 160, [14, 5, 16], rng)
    img = np.repeat(((src == 14) * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    for params in CASES:
        crop = rgb_processing(img, (80.0, 60.0), 0.55, params, RES, normalize=False)[0] > 0.5
        lab = parsing_processing(src, (80.0, 60.0), 0.55, params, RES)
        arm = lab == (15 if params.flip else 14)
        iou = (crop & arm).sum() / (crop | arm).sum()
        assert iou > 0.9, (params, iou)


def test_parsing_flip_twice_identity():
    rng = np.random.default_rng(7)
    src = _label_blocks(RES, RES, list(range(1, 20)), rng)
    ident = ((RES / 2, RES / 2), RES / 200.0)
    np.testing.assert_array_equal(parsing_processing(src, *ident, AugmentParams(), RES), src)
    f = AugmentParams(flip=True)
    once = parsing_processing(src, *ident, f, RES)
    np.testing.assert_array_equal(once, CIHP_LABEL_FLIP_PERM[src[:, ::-1]])
    np.testing.assert_array_equal(parsing_processing(once, *ident, f, RES), src)


def test_parsing_bilinear_official_does_not_swap_and_blurs_boundaries_to_background():
    src = np.zeros((120, 160), np.uint8)
    src[30:90, 40:70] = 14
    src[30:90, 70:100] = 5  # touches the arm: blended boundary colours belong to no label
    params = AugmentParams(rot=20.0, flip=True)
    out = parsing_processing(src, (80.0, 60.0), 0.45, params, RES, "bilinear_official")
    labels = set(np.unique(out).tolist())
    assert 14 in labels and 15 not in labels
    assert labels <= {0, 5, 14}
    near = parsing_processing(src, (80.0, 60.0), 0.45, params, RES, "nearest")
    # pixels inside the person that the official path turned into background
    assert ((out == 0) & (near != 0)).sum() > 0
    with pytest.raises(ValueError, match="interpolation"):
        parsing_processing(src, (80.0, 60.0), 0.45, params, RES, "cubic")


def test_label_flip_perm_is_the_cihp_swap():
    swapped = {i: int(v) for i, v in enumerate(CIHP_LABEL_FLIP_PERM) if v != i}
    assert swapped == {14: 15, 15: 14, 16: 17, 17: 16, 18: 19, 19: 18}


def test_rgb_processing_noise_and_normalisation():
    img = np.full((100, 100, 3), 100, np.uint8)
    params = AugmentParams(pixel_noise=(1.2, 1.0, 3.0))
    out = rgb_processing(img, (50.0, 50.0), 0.3, params, RES)  # box inside the image
    assert out.shape == (3, RES, RES) and out.dtype == np.float32
    raw = np.array([100 * 1.2 / 255, 100 / 255, 1.0])  # channel 2 clipped at 255
    expected = (raw - np.array(IMG_NORM_MEAN)) / np.array(IMG_NORM_STD)
    np.testing.assert_allclose(out[:, 112, 112], expected, atol=1e-5)
    # Outside the image the crop is black (SPIN pads with zeros)
    out2 = rgb_processing(img, (0.0, 0.0), 0.5, AugmentParams(), RES, normalize=False)
    assert out2[:, 5, 5].max() == 0.0 and out2[:, 200, 200].min() > 0.3


def test_sample_augment_params_distribution():
    rng = np.random.default_rng(8)
    draws = [sample_augment_params(rng) for _ in range(4000)]
    rot = np.array([d.rot for d in draws])
    sc = np.array([d.scale for d in draws])
    pn = np.array([d.pixel_noise for d in draws])
    flips = np.array([d.flip for d in draws])
    assert abs((rot == 0).mean() - 0.6) < 0.03
    assert np.abs(rot).max() <= 60.0 and np.abs(rot).max() > 50.0
    assert abs(np.std(rot[rot != 0]) - 30.0) < 3.0
    assert sc.min() >= 0.75 and sc.max() <= 1.25 and abs(sc.mean() - 1.0) < 0.02
    assert pn.min() >= 0.6 and pn.max() <= 1.4
    assert abs(flips.mean() - 0.5) < 0.03


@pytest.mark.parametrize("interp", ["nearest", "bilinear_official"])
def test_colour_map_input_equals_label_input(interp):
    from dsrbody.semantics.parsing import encode_colors

    rng = np.random.default_rng(11)
    src = _label_blocks(120, 160, [2, 5, 14, 16, 18, 13], rng)
    rgb = encode_colors(src)
    for params in CASES:
        ref = parsing_processing(src, (80.0, 60.0), 0.5, params, RES, interp)
        np.testing.assert_array_equal(parsing_processing(rgb, (80.0, 60.0), 0.5, params, RES, interp), ref)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        out = parsing_processing(bgr, (80.0, 60.0), 0.5, params, RES, interp, bgr=True)
        np.testing.assert_array_equal(out, ref)


def test_anny_pose_flip_mirrors_the_body(anny_body):
    """On Anny (joint order differs from SMPL's), flipping by its joint names mirrors joints and mesh."""
    names = anny_body.joint_names
    assert len(names) == 24 and flip_perm_from_names(names) != SMPL24.flip_perm
    rng = np.random.default_rng(12)
    pose = rng.normal(0, 0.3, 72)
    pose[:3] = [0.3, 0.6, -0.2]

    def run(p):
        r = roma.rotvec_to_rotmat(torch.tensor(p, dtype=torch.float32).view(1, 24, 3))
        out = anny_body(r[:, 0], r[:, 1:], torch.zeros(1, anny_body.shape_dim))
        root = out.skeleton_joints[0, :1]
        return out.skeleton_joints[0] - root, out.vertices[0] - root

    j, v = run(pose)
    jf, vf = run(flip_pose(pose, names))
    mirror = torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(jf, (j * mirror)[flip_perm_from_names(names)], atol=2e-3, rtol=0)
    nearest = torch.cdist(vf[::5], v * mirror).min(dim=1).values
    assert nearest.max() < 2e-3  # the mesh is mirror-symmetric to a fraction of a millimetre
    # the SMPL permutation on Anny's rig would not mirror it (its joints 13/14 are spine01/neck01)
    jw, _ = run(flip_pose(pose, SMPL24))
    assert (jw - (j * mirror)[flip_perm_from_names(names)]).abs().max() > 1e-2


def test_augmentation_stream_is_not_the_generators():
    """The draw for (seed, epoch 0, index) was the synthetic generator's for (seed, split "train", index)
    when both were ``[seed, 0, index]``: a recipe whose seed equalled the data's generation seed then had
    the first epoch's colour noise follow the drawn body weight."""
    from dsrbody.data.crop_augment import augment_rng
    from dsrbody.data.synth.generator import SPLIT_CODES

    for i in range(8):
        generator = np.random.default_rng(np.random.SeedSequence([0, SPLIT_CODES["train"], i]))
        assert not np.allclose(generator.uniform(size=4), augment_rng(0, 0, i).uniform(size=4))
    # a pure function of its arguments, and the streams differ
    assert augment_rng(3, 1, 7).uniform() == augment_rng(3, 1, 7).uniform()
    assert augment_rng(3, 1, 7).uniform() != augment_rng(3, 1, 7, stream=1).uniform()
