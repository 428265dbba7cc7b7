"""Parsing maps: file forms, bad input, cleaning, the MC rule, distance maps, merged classes, weights."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dsrbody.semantics import labels as L
from dsrbody.semantics import parsing as P

FACE, LARM, RARM, LSHOE, RSHOE = 13, 14, 15, 18, 19
UPPER, PANTS, HAIR = 5, 9, 2


def _random_map(shape=(40, 50), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 20, size=shape).astype(np.uint8)
    m[0, :20] = np.arange(20)
    return m


# ----------------------------------------------------------------------------------------------
# File forms
# ----------------------------------------------------------------------------------------------


def test_index_palette_colour_and_16bit_pngs_read_the_same(tmp_path):
    labels = _random_map()
    Image.fromarray(labels).save(tmp_path / "index.png")
    Image.fromarray(L.CIHP_PALETTE[labels]).save(tmp_path / "colour.png")
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "index16.png")
    # a palette PNG whose embedded palette is NOT the CIHP one: the indices are the labels
    p = Image.fromarray(labels)
    p.putpalette(L.voc_palette(256).ravel().tolist())
    p.save(tmp_path / "palette.png")
    # a grey index map saved as RGB
    Image.fromarray(np.repeat(labels[..., None], 3, axis=2)).save(tmp_path / "grey_rgb.png")
    rgba = np.concatenate([L.CIHP_PALETTE[labels], np.full(labels.shape + (1,), 255, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    for name in ["index", "colour", "index16", "palette", "grey_rgb", "rgba"]:
        got = P.read_parsing(tmp_path / f"{name}.png")
        assert got.dtype == np.uint8 and got.shape == labels.shape, name
        np.testing.assert_array_equal(got, labels, err_msg=name)


def test_write_parsing_round_trip_and_colours(tmp_path):
    labels = _random_map(seed=1)
    P.write_parsing(tmp_path / "sub" / "m.png", labels)
    with Image.open(tmp_path / "sub" / "m.png") as img:
        assert img.mode == "P"
        rgb = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(rgb, L.CIHP_PALETTE[labels])
    np.testing.assert_array_equal(P.read_parsing(tmp_path / "sub" / "m.png"), labels)
    atr = (labels % 18).astype(np.uint8)
    P.write_parsing(tmp_path / "atr.png", atr, label_set="atr")
    np.testing.assert_array_equal(P.read_parsing(tmp_path / "atr.png", label_set="atr"), atr)
    with pytest.raises(ValueError, match="outside"):
        P.write_parsing(tmp_path / "bad.png", np.full((3, 3), 20, np.uint8))


def test_unknown_colours_warn_or_raise(tmp_path):
    labels = _random_map()
    rgb = L.CIHP_PALETTE[labels].copy()
    rgb[5:8, 10:12] = (1, 2, 3)  # 6 pixels of an unknown colour
    rgb[20, 20] = (255, 255, 255)  # 1 more
    path = tmp_path / "odd.png"
    Image.fromarray(rgb).save(path)
    with pytest.warns(P.ParsingWarning, match=r"odd\.png: 7 of 2000 pixels .*\(1,2,3\) x6"):
        got = P.read_parsing(path)
    expected = labels.copy()
    expected[5:8, 10:12] = 0
    expected[20, 20] = 0
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(P.ParsingError, match=r"odd\.png: 7 of 2000 pixels"):
        P.read_parsing(path, strict=True)


def test_out_of_range_indices_are_unknown(tmp_path):
    labels = _random_map()
    labels[3, 3] = 200
    Image.fromarray(labels).save(tmp_path / "idx.png")
    with pytest.warns(P.ParsingWarning, match=r"1 of 2000 pixels have indices outside .* 200 x1"):
        got = P.read_parsing(tmp_path / "idx.png")
    assert got[3, 3] == 0
    with pytest.raises(P.ParsingError):
        P.read_parsing(tmp_path / "idx.png", strict=True)


def test_size_mismatch_names_both_sizes_and_files(tmp_path):
    labels = _random_map(shape=(30, 40))
    P.write_parsing(tmp_path / "map.png", labels)
    Image.fromarray(np.zeros((224, 200, 3), np.uint8)).save(tmp_path / "img.jpg")
    msg = r"map\.png is 30x40 \(HxW\) but its image .*img\.jpg is 224x200"
    with pytest.raises(P.ParsingError, match=msg):
        P.read_parsing(tmp_path / "map.png", image_path=tmp_path / "img.jpg")
    with pytest.raises(P.ParsingError, match=r"30x40 .* 31x40"):
        P.read_parsing(tmp_path / "map.png", expected_size=(31, 40))
    assert P.read_parsing(tmp_path / "map.png", expected_size=(30, 40)).shape == (30, 40)


def test_empty_missing_and_broken_maps(tmp_path):
    P.write_parsing(tmp_path / "empty.png", np.zeros((10, 12), np.uint8))
    with pytest.warns(P.ParsingWarning, match=r"empty\.png: parsing map is empty"):
        P.read_parsing(tmp_path / "empty.png")
    with pytest.raises(P.ParsingError, match="empty"):
        P.read_parsing(tmp_path / "empty.png", on_empty="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not P.read_parsing(tmp_path / "empty.png", on_empty="ignore").any()
    with pytest.raises(FileNotFoundError, match="nope.png"):
        P.read_parsing(tmp_path / "nope.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(P.ParsingError, match="broken.png: cannot read"):
        P.read_parsing(tmp_path / "broken.png")


# ----------------------------------------------------------------------------------------------
# Cleaning
# ----------------------------------------------------------------------------------------------


def _two_people() -> tuple[np.ndarray, np.ndarray]:
    m = np.zeros((120, 200), np.uint8)
    m[20:100, 30:70] = UPPER  # person A
    m[10:25, 40:60] = FACE
    m[20:110, 150:190] = PANTS  # person B
    m[10:20, 160:180] = FACE
    kp = np.array([[40.0, 15.0, 0.9], [60.0, 95.0, 0.8], [160.0, 50.0, 0.2], [170.0, 60.0, 0.0]])
    return m, kp


def _clean_reference(labels: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """The cleaning rule in plain numpy, one map: background outside the box of the keypoints with
    confidence > 0.3 grown by 30 px (pixel centres inside), the map unchanged without such a keypoint."""
    sel = keypoints[keypoints[:, 2] > 0.3]
    if len(sel) == 0:
        return labels.copy()
    x0, x1 = sel[:, 0].min() - 30, sel[:, 0].max() + 30
    y0, y1 = sel[:, 1].min() - 30, sel[:, 1].max() + 30
    cx, cy = np.arange(labels.shape[1]) + 0.5, np.arange(labels.shape[0]) + 0.5
    keep = ((cy >= y0) & (cy <= y1))[:, None] & ((cx >= x0) & (cx <= x1))[None, :]
    return np.where(keep, labels, 0).astype(labels.dtype)


def _clean(labels: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """:func:`clean_parsing_batch` of one map."""
    out = P.clean_parsing_batch(torch.from_numpy(labels)[None], torch.from_numpy(keypoints)[None])[0]
    assert out.dtype == torch.uint8
    return out.numpy()


def test_cleaning_removes_a_second_person():
    m, kp = _two_people()
    out = _clean(m, kp)
    # box: x in [40-30, 60+30] = [10, 90], y in [15-30, 95+30] = [-15, 125]; person B's keypoints have
    # confidence <= 0.3 and do not count
    assert (out[:, 150:] == 0).all()
    np.testing.assert_array_equal(out[:, :90], m[:, :90])
    # pixel centres c + 0.5 in [10, 90]: columns 10..89 kept
    m2 = np.full((5, 100), HAIR, np.uint8)
    out2 = _clean(m2, np.array([[40.0, 2.0, 1.0], [60.0, 2.0, 1.0]]))
    kept = np.flatnonzero(out2[0])
    assert kept.min() == 10 and kept.max() == 89
    # no confident keypoint: unchanged
    np.testing.assert_array_equal(_clean(m, kp * [1, 1, 0]), m)


def test_clean_parsing_batch_matches_the_rule():
    m, kp = _two_people()
    kp2 = np.array([[170.0, 60.0, 1.0], [180.0, 70.0, 0.5], [0, 0, 0]])
    kp3 = np.zeros((3, 3))
    labels = torch.from_numpy(np.stack([m, m, m]))
    kps = torch.from_numpy(np.stack([kp[:3], kp2, kp3]))
    out = P.clean_parsing_batch(labels, kps)
    for i, k in enumerate([kp[:3], kp2, kp3]):
        np.testing.assert_array_equal(out[i].numpy(), _clean_reference(m, k))


# ----------------------------------------------------------------------------------------------
# MC mask, distance map, merged classes, class weights
# ----------------------------------------------------------------------------------------------


def test_sixty_pixel_rule():
    m = np.zeros((20, 20), np.uint8)
    m.ravel()[:60] = FACE  # exactly 60: not counted (needs more than 60)
    m.ravel()[100:161] = LARM  # 61: counted
    m.ravel()[200:300] = UPPER  # not an MC label
    m.ravel()[300:310] = RSHOE  # 10: not counted
    first = m.copy()
    m.ravel()[60] = FACE
    mask_b, present_b = P.mc_mask_batch(torch.from_numpy(np.stack([first, m, np.zeros_like(m)])))
    assert present_b.dtype == torch.bool and mask_b.dtype == torch.bool
    assert torch.nonzero(present_b[0]).ravel().tolist() == [LARM]
    np.testing.assert_array_equal(mask_b[0].numpy(), first == LARM)
    assert torch.nonzero(present_b[1]).ravel().tolist() == [FACE, LARM]
    np.testing.assert_array_equal(mask_b[1].numpy(), (m == FACE) | (m == LARM))
    assert not mask_b[2].any() and not present_b[2].any()
    counts = P.label_counts_batch(torch.from_numpy(np.stack([first, m])))
    assert counts[0, FACE] == 60 and counts[1, FACE] == 61 and counts[0, RSHOE] == 10
    assert counts.dtype == torch.int64 and counts.sum(1).tolist() == [400, 400]


def _brute_force_distance(mask: np.ndarray) -> np.ndarray:
    H, W = mask.shape
    pts = np.argwhere(mask)
    out = np.zeros((H, W))
    for r in range(H):
        for c in range(W):
            out[r, c] = min(np.hypot(r - pr, c - pc) for pr, pc in pts)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distance_map_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((11, 14)) < [0.02, 0.1, 0.4][seed]
    mask[rng.integers(11), rng.integers(14)] = True
    d = P.distance_map(mask)
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, _brute_force_distance(mask), rtol=1e-6, atol=1e-6)
    db = P.distance_map_batch(torch.from_numpy(np.stack([mask, ~mask])))
    np.testing.assert_allclose(db[0].numpy(), d)
    np.testing.assert_allclose(db[1].numpy(), _brute_force_distance(~mask), rtol=1e-6, atol=1e-6)


def test_distance_map_of_empty_mask_is_zero():
    np.testing.assert_array_equal(P.distance_map(np.zeros((4, 5), bool)), np.zeros((4, 5)))


def test_merge_labels():
    m = np.arange(20, dtype=np.uint8)[None].repeat(3, 0)
    merged = P.merge_labels_batch(torch.from_numpy(m)[None])
    assert merged.dtype == torch.int64 and merged.shape == (1, 3, 20)
    assert merged[0, 0].tolist() == [0, 1, 1, 2, 1, 2, 2, 2, 3, 3, 2, 1, 3, 1, 4, 5, 6, 7, 6, 7]


def test_class_weights_on_a_constructed_map():
    m = np.zeros((20, 20), np.uint8)  # 400 pixels
    flat = m.ravel()
    flat[:70] = FACE  # head: 70 (face) + 30 (hair) = 100
    flat[70:100] = HAIR
    flat[100:160] = UPPER  # upperclothes: exactly 60 -> counts
    flat[160:190] = PANTS  # pants: 30 -> weight 0
    flat[190:250] = LSHOE  # leftLeg: 60 (shoe) + 20 (leg) = 80
    flat[250:270] = 16
    # background: 400 - 270 = 130
    merged = P.merge_labels_batch(torch.from_numpy(m)[None])[0]
    expected = np.array([60 / 130, 60 / 100, 60 / 60, 0, 0, 0, 60 / 80, 0], np.float32)
    wb = P.class_weights_batch(torch.stack([merged, torch.zeros_like(merged)]))
    assert wb.dtype == torch.float32
    np.testing.assert_allclose(wb[0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(wb[1].numpy(), [1, 0, 0, 0, 0, 0, 0, 0])  # background only
    small = P.class_weights_batch(torch.zeros(1, 5, 5, dtype=torch.int64))
    assert not small.any()  # 25 px < 60: nothing counts
