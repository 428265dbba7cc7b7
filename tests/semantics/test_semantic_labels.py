"""Label sets, palettes, conversions, DSR groups and flip swaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dsrbody.semantics import labels as L
from dsrbody.semantics.parsing import decode_colors, encode_colors, flip_parsing, read_parsing


def _voc_reference(n: int) -> list[tuple[int, int, int]]:
    """Independent VOC colour map: bit k of the label goes to channel k % 3, bit position 7 - k // 3."""
    out = []
    for lab in range(n):
        rgb = [0, 0, 0]
        for k in range(24):
            if lab >> k & 1:
                rgb[k % 3] += 1 << (7 - k // 3)
        out.append(tuple(rgb))
    return out


def test_cihp_names_and_palette_follow_design():
    assert len(L.CIHP) == 20
    assert L.CIHP.names[13] == "face" and L.CIHP.names[19] == "rightShoe"
    assert tuple(L.CIHP_PALETTE[5]) == (255, 85, 0)  # upperclothes
    assert tuple(L.CIHP_PALETTE[11]) == (52, 86, 128)  # scarf
    assert tuple(L.CIHP_PALETTE[16]) == (85, 255, 170)  # leftLeg


def test_atr_names_and_voc_palette():
    assert L.ATR.names == (
        "background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress", "belt",
        "left-shoe", "right-shoe", "face", "left-leg", "right-leg", "left-arm", "right-arm", "bag", "scarf",
    )  # fmt: skip
    assert [tuple(c) for c in L.ATR_PALETTE.tolist()] == _voc_reference(18)
    assert tuple(L.ATR_PALETTE[1]) == (128, 0, 0) and tuple(L.ATR_PALETTE[17]) == (128, 64, 0)


@pytest.mark.parametrize("ls", [L.CIHP, L.ATR], ids=["cihp", "atr"])
def test_palette_round_trip_arrays_and_png(ls, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(ls), size=(23, 31)).astype(np.uint8)
    labels[0, : len(ls)] = np.arange(len(ls))  # every label at least once
    rgb = encode_colors(labels, ls)
    assert rgb.shape == (23, 31, 3) and rgb.dtype == np.uint8
    back, unknown = decode_colors(rgb, ls)
    np.testing.assert_array_equal(back, labels)
    assert not unknown.any()
    path = tmp_path / f"{ls.name}.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(read_parsing(path, label_set=ls), labels)


def test_label_index_by_name_forms():
    assert L.CIHP.index("leftArm") == 14
    assert L.CIHP.index("left_arm") == 14 and L.CIHP.index("Left-Arm") == 14
    assert L.ATR.index("upper_clothes") == 4
    with pytest.raises(KeyError, match="belt"):
        L.CIHP.index("belt")
    assert L.label_indices(["face", 19]) == [13, 19]
    with pytest.raises(ValueError, match="outside"):
        L.label_indices([20])


def test_atr_cihp_conversion_table():
    def norm(name):
        return name.lower().replace("-", "")

    for i, n in enumerate(L.ATR_NAMES):
        target = L.CIHP_NAMES[L.ATR_TO_CIHP[i]]
        if n == "belt":
            assert target == "pants"
        elif n == "bag":
            assert target == "background"
        else:
            assert norm(target) == norm(n)
    # round trip is the identity on every ATR label that has a CIHP counterpart
    atr = np.arange(18)
    keep = ~np.isin(atr, [L.ATR.index("belt"), L.ATR.index("bag")])
    np.testing.assert_array_equal(L.cihp_to_atr(L.atr_to_cihp(atr))[keep], atr[keep])
    # many-to-one the other way
    assert L.ATR_NAMES[L.CIHP_TO_ATR[L.CIHP.index("coat")]] == "upper-clothes"
    assert L.ATR_NAMES[L.CIHP_TO_ATR[L.CIHP.index("socks")]] == "pants"
    t = L.atr_to_cihp(torch.tensor([[11, 14]], dtype=torch.uint8))
    assert t.dtype == torch.uint8 and t.tolist() == [[13, 14]]
    with pytest.raises(ValueError, match="outside"):
        L.atr_to_cihp(np.array([18]))


def test_dsr_groups():
    assert L.MC_INDICES.tolist() == [13, 14, 15, 18, 19]
    assert L.MC_MASK.sum() == 5
    expected = [
        0,
        1,
        1,
        2,
        1,
        2,
        2,
        2,
        3,
        3,
        2,
        1,
        3,
        1,
        4,
        5,
        6,
        7,
        6,
        7,
    ]  # docs/design.md, Clothing labels, by hand
    assert L.CIHP_TO_MERGED.tolist() == expected
    assert L.MERGE_MATRIX.shape == (20, 8)
    np.testing.assert_array_equal(L.MERGE_MATRIX.sum(1), np.ones(20))
    np.testing.assert_array_equal(L.MERGE_MATRIX.argmax(1), expected)
    assert L.CIHP_TO_MERGED_TENSOR.tolist() == expected and L.CIHP_TO_MERGED_TENSOR.dtype == torch.int64
    assert torch.equal(L.MERGE_MATRIX_TENSOR, torch.from_numpy(L.MERGE_MATRIX.copy()))


def test_flip_permutations_swap_left_and_right():
    perm = L.CIHP_FLIP_PERM
    for a, b in [("leftArm", "rightArm"), ("leftLeg", "rightLeg"), ("leftShoe", "rightShoe")]:
        assert perm[L.CIHP.index(a)] == L.CIHP.index(b) and perm[L.CIHP.index(b)] == L.CIHP.index(a)
    unswapped = [i for i, n in enumerate(L.CIHP_NAMES) if "left" not in n and "right" not in n]
    np.testing.assert_array_equal(perm[unswapped], unswapped)
    np.testing.assert_array_equal(perm[perm], np.arange(20))
    aperm = L.ATR_FLIP_PERM
    assert aperm[L.ATR.index("left-arm")] == L.ATR.index("right-arm")
    assert aperm[L.ATR.index("left-shoe")] == L.ATR.index("right-shoe")
    assert aperm[L.ATR.index("right-leg")] == L.ATR.index("left-leg")
    np.testing.assert_array_equal(aperm[aperm], np.arange(18))
    # flips commute with the conversions and the merge
    np.testing.assert_array_equal(L.ATR_TO_CIHP[aperm], perm[L.ATR_TO_CIHP])
    np.testing.assert_array_equal(L.CIHP_TO_MERGED[perm], L.MERGED_FLIP_PERM[L.CIHP_TO_MERGED])
    assert L.MERGED_FLIP_PERM.tolist() == [0, 1, 2, 3, 5, 4, 7, 6]


def test_flip_parsing_mirrors_and_swaps():
    la, ra, face = L.CIHP.index("leftArm"), L.CIHP.index("rightArm"), L.CIHP.index("face")
    m = np.zeros((4, 6), dtype=np.uint8)
    m[:, 0] = la  # left arm at the image's left edge
    m[1, 2] = face
    f = flip_parsing(m)
    assert (f[:, 5] == ra).all() and f[1, 3] == face
    assert (f[:, :5][f[:, :5] != face] == 0).all()
    np.testing.assert_array_equal(flip_parsing(f), m)
    ft = flip_parsing(torch.from_numpy(m)[None])
    np.testing.assert_array_equal(ft[0].numpy(), f)
    atr = np.array([[L.ATR.index("left-shoe"), 0]], dtype=np.uint8)
    assert flip_parsing(atr, "atr").tolist() == [[0, L.ATR.index("right-shoe")]]
