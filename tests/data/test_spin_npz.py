"""The SPIN/DSR .npz reader on tiny files written in the exact field layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from spin_files import write_image, write_parsing
from torch.utils.data import DataLoader

from dsrbody.body.keypoints import SPIN49
from dsrbody.data.crop_augment import (
    IMG_NORM_MEAN,
    IMG_NORM_STD,
    AugmentParams,
    flip_pose,
    pose_processing,
)
from dsrbody.data.spin_npz import (
    DATASET_FILES,
    SkipLog,
    SpinNpzDataset,
    collate_samples,
    find_annotation_file,
    load_annotations,
    read_image,
    read_parsing_map,
)
from dsrbody.semantics.labels import CIHP_PALETTE

RES = 224


def test_item_layout_and_plain_crop(make_dataset):
    npz, img_dir, arr = make_dataset(n=2)
    ds = SpinNpzDataset(npz, img_dir)
    assert len(ds) == 2 and ds.name == "train"
    it = ds[1]
    assert it["img"].shape == (3, RES, RES) and it["img"].dtype == torch.float32
    assert it["keypoints"].shape == (49, 3) and it["pose"].shape == (72,) and it["betas"].shape == (10,)
    assert it["pose_3d"].shape == (24, 4) and it["parsing"].shape == (RES, RES)
    assert it["parsing"].dtype == torch.uint8
    assert bool(it["valid"]) and bool(it["has_smpl"]) and bool(it["has_pose_3d"]) and bool(it["has_parsing"])
    assert it["imgname"] == arr["imgname"][1] and it["dataset_name"] == "train" and it["sample_index"] == 1
    assert it["gender"] == 1 and it["orig_shape"].tolist() == [120, 160]
    assert it["scale"] == pytest.approx(arr["scale"][1])
    # without augmentation: keypoints = 2 * ((x - c) * 224 / (200 s) + 112) / 224 - 1, hand-computed
    x = arr["part"][1, 3]
    c, s = arr["center"][1], arr["scale"][1]
    expected = (x[:2] - c) / (100.0 * s)
    np.testing.assert_allclose(it["keypoints"][25 + 3, :2].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(it["keypoints"][:25, 2].numpy(), arr["openpose"][1, :, 2], atol=1e-6)
    np.testing.assert_allclose(it["pose"].numpy(), arr["pose"][1], atol=1e-6)
    np.testing.assert_allclose(it["pose_3d"].numpy(), arr["S"][1], atol=1e-6)
    # normalised image: de-normalised values in [0, 1]
    raw = it["img"] * torch.tensor(IMG_NORM_STD)[:, None, None] + torch.tensor(IMG_NORM_MEAN)[:, None, None]
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    # parsing: the leftArm block (label 14 at rows 30:90, cols 40:70) lands where the crop maps it
    lab = it["parsing"].numpy()
    assert set(np.unique(lab).tolist()) <= {0, 5, 14}
    u = (np.array([55.0, 60.0]) - c) * RES / (200 * s) + RES / 2
    assert lab[int(u[1]), int(u[0])] == 14


def test_missing_openpose_and_3d_give_zeros(make_dataset):
    npz, img_dir, _ = make_dataset(n=2, drop=("openpose", "S", "pose", "shape", "has_smpl", "gender"))
    it = SpinNpzDataset(npz, img_dir)[0]
    assert it["keypoints"][:25, 2].abs().sum() == 0
    assert not bool(it["has_smpl"]) and not bool(it["has_pose_3d"]) and it["gender"] == -1
    assert it["pose"].abs().sum() == 0 and it["pose_3d"].abs().sum() == 0


def test_augmented_sample_is_consistent(make_dataset, tmp_path):
    """With augmentation on, a dot drawn at a keypoint lands on the item's keypoint; the pose follows."""
    npz, img_dir, arr = make_dataset(n=1)
    x, y = 70.5, 55.5
    img = np.zeros((120, 160, 3), np.uint8)
    img[54:57, 69:72] = 255
    name = "images/dot.png"
    write_image(img_dir / name, img)
    part = np.zeros((1, 24, 3))
    part[0, 9] = [x, y, 1.0]  # Left Shoulder
    arr = dict(arr, imgname=np.array([name]), part=part)
    arr["center"] = np.array([[80.0, 60.0]])
    arr["scale"] = np.array([0.5])
    np.savez(tmp_path / "dot.npz", **arr)
    ds = SpinNpzDataset(tmp_path / "dot.npz", img_dir, augment=True, seed=3, parsing=False)
    seen_flip = seen_rot = False
    for epoch in range(12):
        ds.set_epoch(epoch)
        it = ds[0]
        params = ds.augment_params(0)
        assert bool(it["is_flipped"]) == params.flip and it["rot_angle"] == pytest.approx(params.rot)
        seen_flip |= params.flip
        seen_rot |= params.rot != 0
        raw = it["img"][0] * IMG_NORM_STD[0] + IMG_NORM_MEAN[0]
        w = torch.clamp(raw - 0.1, min=0).numpy()  # the dot (pixel noise only scales it)
        rows, cols = np.indices(w.shape)
        dot = np.array([((cols + 0.5) * w).sum() / w.sum(), ((rows + 0.5) * w).sum() / w.sum()])
        k = SPIN49.index("Right Shoulder" if params.flip else "Left Shoulder")
        px = (it["keypoints"][k, :2].double().numpy() + 1) * RES / 2
        assert np.linalg.norm(px - dot) < 1.0, (epoch, params, px, dot)
        np.testing.assert_allclose(it["pose"].numpy(), pose_processing(arr["pose"][0], params), atol=1e-6)
        assert it["scale"] == pytest.approx(0.5 * params.scale)
    assert seen_flip and seen_rot
    # deterministic in (seed, epoch, index)
    ds.set_epoch(4)
    a = ds[0]
    b = ds[0]
    torch.testing.assert_close(a["img"], b["img"])


def test_flip_mirrors_pose_in_dataset(make_dataset):
    npz, img_dir, arr = make_dataset(n=1)
    ds = SpinNpzDataset(npz, img_dir, augment=True, flip_prob=1.0, rot_zero_prob=1.0, noise_factor=0.0)
    it = ds[0]
    assert bool(it["is_flipped"])
    np.testing.assert_allclose(it["pose"].numpy(), flip_pose(arr["pose"][0]), atol=1e-6)
    # leftArm (14) became rightArm (15) in the parsing map
    assert 15 in it["parsing"].unique().tolist() and 14 not in it["parsing"].unique().tolist()


def test_colour_and_index_parsing_pngs_agree(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, (30, 40)).astype(np.uint8)
    write_parsing(tmp_path / "c.png", labels, colour=True)
    write_parsing(tmp_path / "i.png", labels, colour=False)
    np.testing.assert_array_equal(read_parsing_map(tmp_path / "c.png"), labels)
    np.testing.assert_array_equal(read_parsing_map(tmp_path / "i.png"), labels)
    from PIL import Image

    im = Image.fromarray(labels, mode="P")
    im.putpalette(CIHP_PALETTE.reshape(-1).tolist())
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_parsing_map(tmp_path / "p.png"), labels)
    # indices outside the label set (e.g. 255 "ignore") are background, as dsrbody.semantics reads them
    odd = labels.copy()
    odd[0, :5] = 255
    write_parsing(tmp_path / "odd.png", odd, colour=False)
    expected = labels.copy()
    expected[0, :5] = 0
    np.testing.assert_array_equal(read_parsing_map(tmp_path / "odd.png"), expected)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n broken")
    with pytest.raises(ValueError, match="broken.png"):
        read_parsing_map(tmp_path / "broken.png")


def _break_files(img_dir: Path, arr) -> None:
    (img_dir / arr["imgname"][1]).unlink()  # missing image
    (img_dir / arr["imgname"][2]).write_bytes(b"not a jpeg at all")  # corrupt image
    parsing = img_dir / "grph_sequences" / Path(arr["imgname"][3]).with_suffix(".png")
    parsing.unlink()  # missing parsing map
    parsing4 = img_dir / "grph_sequences" / Path(arr["imgname"][4]).with_suffix(".png")
    parsing4.write_bytes(b"\x89PNG broken")  # corrupt parsing map


def test_bad_files_skipped_and_counted(make_dataset):
    npz, img_dir, arr = make_dataset(n=6)
    _break_files(img_dir, arr)
    ds = SpinNpzDataset(npz, img_dir)
    items = [ds[i] for i in range(len(ds))]
    assert [bool(it["valid"]) for it in items] == [True, False, False, True, True, True]
    assert items[1]["skip_reason"] == "image_missing" and items[2]["skip_reason"] == "image_corrupt"
    assert [it["parsing_status"] for it in items] == ["ok", "off", "off", "missing", "corrupt", "ok"]
    assert not bool(items[3]["has_parsing"]) and items[3]["parsing"].sum() == 0
    assert ds.skipped.dropped == 2 and ds.skipped.count("parsing_missing") == 1
    assert ds.skipped.count("parsing_corrupt") == 1
    # re-reading the same samples does not double count
    ds[1]
    assert ds.skipped.dropped == 2
    text = ds.summary()
    assert "2 sample(s) skipped" in text and "missing image" in text and "unreadable image" in text
    assert str(img_dir / arr["imgname"][1]) in ds.skipped.paths("image_missing")

    batch = collate_samples(items)
    assert batch["num_valid"] == 4 and batch["img"].shape == (4, 3, RES, RES)
    assert [s["reason"] for s in batch["skipped"]] == ["image_missing", "image_corrupt"]
    assert batch["sample_index"].tolist() == [0, 3, 4, 5]


def test_counts_reach_consumer_through_workers(make_dataset):
    npz, img_dir, arr = make_dataset(n=6)
    _break_files(img_dir, arr)
    ds = SpinNpzDataset(npz, img_dir)
    loader = DataLoader(ds, batch_size=4, num_workers=1, collate_fn=collate_samples)
    n_valid = 0
    for batch in loader:
        ds.skipped.update(batch)
        n_valid += batch["num_valid"]
    assert n_valid == 4
    assert ds.skipped.dropped == 2
    assert ds.skipped.count("parsing_missing") == 1 and ds.skipped.count("parsing_corrupt") == 1
    ds.skipped.reset()
    assert ds.skipped.count() == 0 and "no sample skipped" in ds.summary()


def test_all_invalid_batch():
    log = SkipLog()
    items = [
        {"valid": torch.tensor(False), "dataset_name": "d", "sample_index": i, "imgname": "x.jpg",
         "skip_reason": "image_missing", "img_path": f"/r/x{i}.jpg"}
        for i in range(2)
    ]  # fmt: skip
    batch = collate_samples(items)
    assert batch["num_valid"] == 0 and len(batch["skipped"]) == 2
    log.update(batch)
    assert log.dropped == 2


def test_bad_box_is_skipped(make_dataset):
    npz, img_dir, arr = make_dataset(n=2, scale=np.array([0.5, 0.0]))
    ds = SpinNpzDataset(npz, img_dir)
    assert not bool(ds[1]["valid"]) and ds[1]["skip_reason"] == "bad_box"


def test_missing_key_names_key_and_file(make_dataset):
    npz, img_dir, _ = make_dataset(n=2, drop=("center",))
    with pytest.raises(ValueError, match=r"train\.npz.*'center'"):
        SpinNpzDataset(npz, img_dir)


def test_registry_requires_protocol_keys(make_dataset):
    npz, img_dir, _ = make_dataset(n=2, filename="3dpw_test.npz", drop=("gender",))
    with pytest.raises(ValueError, match=r"3dpw_test\.npz.*'gender'"):
        SpinNpzDataset(npz, img_dir)
    npz, img_dir, _ = make_dataset(n=2, filename="h36m_valid_protocol2.npz")
    ds = SpinNpzDataset(npz, img_dir)
    assert ds.name == "h36m-p2" and ds.info.protocol == "h36m-p2" and ds.info.split == "test"
    assert not ds.parsing and ds[0]["parsing_status"] == "off"  # no parsing maps for evaluation files
    assert set(DATASET_FILES) >= {
        "h36m_train.npz", "mpi_inf_3dhp_train.npz", "coco_2014_train.npz", "3dpw_train.npz", "3dpw_test.npz",
        "3dpw_test_with_mmpose.npz", "h36m_valid_protocol1.npz", "h36m_valid_protocol2.npz",
        "mpi_inf_3dhp_valid.npz",
    }  # fmt: skip


def test_wrong_shape_is_named(make_dataset):
    npz, img_dir, _ = make_dataset(n=2, part=np.zeros((2, 14, 3)))
    with pytest.raises(ValueError, match=r"'part' has shape \(2, 14, 3\)"):
        load_annotations(npz)


def test_missing_paths_name_path_and_layout(tmp_path, make_dataset):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz.*imgname, center, scale"):
        load_annotations(tmp_path / "nope.npz")
    npz, _, _ = make_dataset(n=1)
    with pytest.raises(FileNotFoundError, match=r"no_images.*grph_sequences"):
        SpinNpzDataset(npz, tmp_path / "no_images")
    with pytest.raises(FileNotFoundError, match=r"no_root.*expected"):
        find_annotation_file(tmp_path / "no_root", "3dpw_test.npz")
    (tmp_path / "dataset_extras").mkdir()
    (tmp_path / "dataset_extras" / "3dpw_test.npz").write_bytes(npz.read_bytes())
    assert find_annotation_file(tmp_path, "3dpw_test.npz") == tmp_path / "dataset_extras" / "3dpw_test.npz"


def test_extra_fields_pass_through(make_dataset):
    npz, img_dir, _ = make_dataset(
        n=2, body_model=np.array(["anny", "anny"]), phenotype=np.array([[0.1] * 6, [0.9] * 6], np.float32)
    )
    ds = SpinNpzDataset(npz, img_dir)
    it = ds[1]
    assert it["body_model"] == "anny"
    torch.testing.assert_close(it["phenotype"], torch.full((6,), 0.9))
    batch = collate_samples([ds[0], ds[1]])
    assert batch["body_model"] == ["anny", "anny"] and batch["phenotype"].shape == (2, 6)


def test_parsing_elsewhere_and_disabled(make_dataset, tmp_path):
    npz, img_dir, arr = make_dataset(n=2)
    other = tmp_path / "parsing_root"
    labels = np.zeros((120, 160), np.uint8)
    labels[:, :] = 2
    write_parsing(other / "grph" / Path(arr["imgname"][0]).with_suffix(".png"), labels, colour=True)
    ds = SpinNpzDataset(npz, img_dir, parsing_root=other, parsing_subdir="grph")
    assert ds[0]["parsing"].unique().tolist() == [2]
    off = SpinNpzDataset(npz, img_dir, parsing=False)
    it = off[0]
    assert it["parsing_status"] == "off" and not bool(it["has_parsing"])
    assert off.skipped.count() == 0
    with pytest.raises(ValueError, match="parsing_interp"):
        SpinNpzDataset(npz, img_dir, parsing_interp="linear")


def test_identity_params_without_augment(make_dataset):
    npz, img_dir, _ = make_dataset(n=1)
    ds = SpinNpzDataset(npz, img_dir, augment=False)
    assert ds.augment_params(0) == AugmentParams()


def test_augmentation_draw_is_augment_rng(make_dataset):
    """A sample's augmentation is :func:`augment_rng`'s draw for (seed, epoch, index): the stream the tests
    of crop_augment check is apart from the synthetic generator's."""
    from dsrbody.data.crop_augment import augment_rng, sample_augment_params

    npz, img_dir, _ = make_dataset(n=3)
    ds = SpinNpzDataset(npz, img_dir, augment=True, seed=5)
    ds.set_epoch(2)
    for i in range(3):
        assert ds.augment_params(i) == sample_augment_params(augment_rng(5, 2, i))


def test_has_pose_3d_is_per_sample(make_dataset):
    """A file with 3D joints may hold rows without them (all confidences 0, as `dsrbody synth --labels 2d`
    writes): those samples are not counted in the 3D term as zero-error ones."""
    npz, img_dir, arrays = make_dataset(n=2)
    S = np.array(arrays["S"], dtype=np.float64)
    S[0] = 0.0
    npz, img_dir, _ = make_dataset(n=2, S=S)
    ds = SpinNpzDataset(npz, img_dir, augment=False)
    assert not bool(ds[0]["has_pose_3d"]) and bool(ds[1]["has_pose_3d"])


def test_has_params_keeps_non_smpl_targets_and_nan_is_dropped(make_dataset):
    rng = np.random.default_rng(9)
    pose = rng.normal(0, 0.3, (3, 72))
    pose[2, 5] = np.nan
    npz, img_dir, _ = make_dataset(
        n=3, pose=pose, shape=rng.normal(size=(3, 6)), has_smpl=np.zeros(3), has_params=np.ones(3)
    )
    ds = SpinNpzDataset(npz, img_dir)
    it = ds[0]
    assert not bool(it["has_smpl"]) and bool(it["has_params"]) and it["betas"].shape == (6,)
    np.testing.assert_allclose(it["pose"].numpy(), pose[0], atol=1e-6)
    bad = ds[2]
    assert not bool(bad["has_params"]) and torch.isfinite(bad["pose"]).all() and bad["pose"].abs().sum() == 0
    # SPIN files without has_params: pose and betas only where has_smpl
    npz, img_dir, _ = make_dataset(n=2, has_smpl=np.array([1.0, 0.0]))
    ds = SpinNpzDataset(npz, img_dir)
    assert bool(ds[0]["has_params"]) and not bool(ds[1]["has_params"]) and ds[1]["pose"].abs().sum() == 0


def test_augmented_3d_joints_project_onto_augmented_keypoints(make_dataset):
    """Camera extras: the crop camera projects the augmented joints onto the augmented keypoints."""
    rng = np.random.default_rng(10)
    n = 1
    joints = np.concatenate([rng.normal(0, 0.4, (n, 24, 2)), rng.normal(5.0, 0.2, (n, 24, 1))], axis=2)
    focal, pp = np.array([600.0]), np.array([[83.0, 57.0]])
    part = np.ones((n, 24, 3))
    part[..., :2] = joints[..., :2] / joints[..., 2:] * focal[:, None, None] + pp[:, None]
    s = np.concatenate([joints, np.ones((n, 24, 1))], axis=2)
    cam_t = np.array([[0.1, -0.2, 5.0]])
    npz, img_dir, _ = make_dataset(
        n=n, part=part, S=s, focal_length=focal, principal_point=pp, cam_t=cam_t,
        center=np.array([[80.0, 60.0]]), scale=np.array([0.6]),
    )  # fmt: skip
    ds = SpinNpzDataset(npz, img_dir, augment=True, parsing=False, seed=1)
    flips = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        it = ds[0]
        flips.add(bool(it["is_flipped"]))
        j = it["pose_3d"][:, :3].double()
        f, c = it["crop_focal_length"].double(), it["crop_principal_point"].double()
        uv = j[:, :2] / j[:, 2:] * f + c
        kp = (it["keypoints"][25:, :2].double() + 1) * RES / 2
        torch.testing.assert_close(uv, kp, atol=1e-3, rtol=0)
        t = it["crop_cam_t"].double()
        assert t[2] == pytest.approx(5.0) and t[:2].norm() == pytest.approx(np.hypot(0.1, 0.2), rel=1e-5)
    assert flips == {True, False}


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_channel_order_is_rgb(make_dataset, tmp_path, suffix):
    npz, img_dir, arr = make_dataset(n=1)
    img = np.zeros((120, 160, 3), np.uint8)
    img[..., 0] = 230  # red
    img[..., 2] = 40
    name = f"images/red{suffix}"
    write_image(img_dir / name, img)
    np.savez(tmp_path / "red.npz", **dict(arr, imgname=np.array([name])))
    it = SpinNpzDataset(tmp_path / "red.npz", img_dir, parsing=False)[0]
    raw = it["img"][:, 112, 112] * torch.tensor(IMG_NORM_STD) + torch.tensor(IMG_NORM_MEAN)
    torch.testing.assert_close(raw, torch.tensor([230.0, 0.0, 40.0]) / 255, atol=0.02, rtol=0)


def test_set_epoch_reaches_persistent_workers(make_dataset):
    npz, img_dir, _ = make_dataset(n=4)
    ds = SpinNpzDataset(npz, img_dir, augment=True, parsing=False, seed=0)
    loader = DataLoader(ds, batch_size=4, num_workers=1, persistent_workers=True, collate_fn=collate_samples)
    flips = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        batch = next(iter(loader))
        expected = [ds.augment_params(i) for i in range(4)]  # drawn here, in the main process
        assert batch["is_flipped"].tolist() == [p.flip for p in expected]
        assert batch["rot_angle"].tolist() == pytest.approx([p.rot for p in expected])
        flips.append(batch["rot_angle"].tolist())
    assert flips[0] != flips[1] != flips[2]


def test_3dpw_test_layout_without_2d_keypoints_and_bytes_names(make_dataset):
    """SPIN's 3dpw_test.npz has imgname, center, scale, pose, shape, gender only; names may be bytes."""
    npz, img_dir, arr = make_dataset(
        n=2, filename="3dpw_test.npz", drop=("part", "openpose", "S", "has_smpl")
    )
    data = dict(np.load(npz))
    data["imgname"] = data["imgname"].astype("S")
    data["gender"] = data["gender"].astype("S")
    np.savez(npz, **data)
    ds = SpinNpzDataset(npz, img_dir)
    it = ds[1]
    assert ds.name == "3dpw" and it["imgname"] == arr["imgname"][1] and bool(it["valid"])
    assert bool(it["has_smpl"]) and not bool(it["has_pose_3d"]) and it["gender"] == 1
    assert it["keypoints"][:, 2].abs().sum() == 0


def test_pose_joints_follow_body_model_field(make_dataset):
    from dsrbody.body.anny import ANNY24_BONES

    rng = np.random.default_rng(13)
    pose = rng.normal(0, 0.3, (2, 72))
    npz, img_dir, _ = make_dataset(n=2, pose=pose, body_model=np.array(["anny", "smpl"]))
    ds = SpinNpzDataset(npz, img_dir, augment=True, flip_prob=1.0, rot_zero_prob=1.0, parsing=False)
    np.testing.assert_allclose(ds[0]["pose"].numpy(), flip_pose(pose[0], ANNY24_BONES), atol=1e-6)
    np.testing.assert_allclose(ds[1]["pose"].numpy(), flip_pose(pose[1]), atol=1e-6)
    npz, img_dir, _ = make_dataset(n=2, body_model=np.array(["smplx", "smplx"]))
    with pytest.raises(ValueError, match=r"train\.npz.*'smplx'"):
        SpinNpzDataset(npz, img_dir)


def test_truncated_images_and_off_palette_maps_are_skipped_and_counted(make_dataset):
    """A JPEG or PNG cut short (decoders would fill the rest with grey) is an unreadable image; a parsing
    map mostly in colours (or indices) outside the palette is "off palette" (no DSR loss), a map with a few
    such pixels stays usable; both are counted."""
    import cv2

    npz, img_dir, arr = make_dataset(n=7)
    maps = [img_dir / "grph_sequences" / Path(name).with_suffix(".png") for name in arr["imgname"]]
    jpg = img_dir / arr["imgname"][1]
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(jpg)) is not None  # OpenCV decodes half a JPEG (grey rest) without an error
    png = img_dir / arr["imgname"][2]  # a PNG under the .jpg name (decoders go by content)
    ok, buf = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (120, 160, 3), np.uint8))
    png.write_bytes(buf.tobytes()[: len(buf) * 2 // 3])
    labels = np.zeros((120, 160), np.uint8)
    labels[30:90, 40:70] = 14
    labels[30:90, 90:120] = 5
    off = CIHP_PALETTE[labels]
    off[labels > 0] = (7, 200, 13)  # a colour of no label: the whole person
    cv2.imwrite(str(maps[4]), off[:, :, ::-1])
    odd = labels.copy()
    odd[labels > 0] = 200  # an index of no label (index PNG)
    cv2.imwrite(str(maps[5]), odd)
    few = CIHP_PALETTE[labels]
    few[40:44, 45:49] = (7, 200, 13)  # 16 of 3600 person pixels: counted, the map still used
    cv2.imwrite(str(maps[0]), few[:, :, ::-1])
    half = maps[3].read_bytes()
    maps[3].write_bytes(half[: len(half) // 2])

    ds = SpinNpzDataset(npz, img_dir)
    items = [ds[i] for i in range(len(ds))]
    assert [it["skip_reason"] for it in items] == ["", "image_corrupt", "image_corrupt", "", "", "", ""]
    status = ["ok", "off", "off", "corrupt", "off_palette", "off_palette", "ok"]
    assert [it["parsing_status"] for it in items] == status
    assert not bool(items[4]["has_parsing"]) and items[4]["parsing"].sum() == 0
    assert items[6]["parsing_unknown"] == 0  # an untouched map
    assert (
        bool(items[0]["has_parsing"])
        and 0 < items[0]["parsing_unknown"] < 0.05 * (items[0]["parsing"] > 0).sum()
    )
    assert items[4]["parsing_unknown"] > 0 and items[5]["parsing_unknown"] > 0
    batch = collate_samples(items)
    ds.skipped.update(batch)
    assert ds.skipped.count("image_corrupt") == 2 and ds.skipped.count("parsing_corrupt") == 1
    assert ds.skipped.count("parsing_off_palette") == 2
    assert ds.skipped.unknown_pixels[0] == 3
    text = ds.summary()
    assert "2 sample(s) skipped, 3 without parsing map" in text and "outside the palette" in text
    assert str(jpg) in ds.skipped.paths("image_corrupt") and str(png) in ds.skipped.paths("image_corrupt")
    for path in (jpg, png):
        with pytest.raises(ValueError, match=r"truncated (JPEG|PNG)") as e:
            read_image(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)
    # the official bilinear resampling blends colours at label edges: the file's unknowns are still found
    official = SpinNpzDataset(npz, img_dir, parsing_interp="bilinear_official")
    assert [official[i]["parsing_status"] for i in (0, 4, 5, 6)] == ["ok", "off_palette", "off_palette", "ok"]
    assert (
        official[6]["parsing_unknown"] == 0 and official[0]["parsing_unknown"] == items[0]["parsing_unknown"]
    )


def test_a_batch_mixing_files_with_and_without_body_model_keeps_it(make_dataset, tmp_path):
    """A file without ``body_model`` holds SPIN's (SMPL) parameters; its items say so, so that a batch
    mixing it with a synthetic Anny file still knows which samples have Anny parameters (the key was
    dropped from such a batch, and every Anny sample lost its ground truth)."""
    from dsrbody.data.spin_npz import collate_samples
    from dsrbody.losses.targets import params_valid

    npz_smpl, img_dir, _ = make_dataset(n=1, filename="smpl.npz")
    rng = np.random.default_rng(3)
    npz_anny, _, _ = make_dataset(
        n=1, filename="anny.npz", pose=rng.normal(0, 0.2, (1, 72)), shape=np.full((1, 10), 0.5),
        has_params=np.ones(1), body_model=np.array(["anny"]),
    )  # fmt: skip
    items = [SpinNpzDataset(npz_anny, img_dir)[0], SpinNpzDataset(npz_smpl, img_dir)[0]]
    batch = collate_samples(items)
    assert list(batch["body_model"]) == ["anny", "smpl"]
    assert params_valid(batch, "anny").tolist() == [True, False]
