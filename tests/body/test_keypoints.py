import torch

from dsrbody.body.keypoints import (
    COCO17,
    H36M17,
    H36M_TO_LSP14,
    LSP14,
    SMPL24,
    SPIN49,
    flip_keypoints,
    swap_left_right,
)

# SPIN's constants (constants.py), written out here as the independent reference.
SPIN_OP_FLIP = [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21]
SPIN_J24_FLIP = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22]
SMPL_FLIP = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]


def test_spin49_layout():
    assert len(SPIN49) == 49
    assert SPIN49.names[0] == "OP Nose" and SPIN49.names[25] == "Right Ankle"
    assert SPIN49.index("Top of Head (LSP)") == 38 and SPIN49.index("Pelvis (MPII)") == 39


def test_flip_permutations_equal_spin_and_are_involutions():
    assert SPIN49.flip_perm == SPIN_OP_FLIP + [25 + i for i in SPIN_J24_FLIP]
    assert SMPL24.flip_perm == SMPL_FLIP
    for kps in (SPIN49, COCO17, H36M17, LSP14, SMPL24):
        p = kps.flip_perm
        assert [p[i] for i in p] == list(range(len(kps)))
        for i, j in enumerate(p):
            a, b = kps.names[i], kps.names[j]
            if "left" in a.lower() or "right" in a.lower() or a.startswith("OP L") or a.startswith("OP R"):
                assert a != b and swap_left_right(a) == b


def test_flip_keypoints_twice_is_identity():
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(3, 49, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(flip_keypoints(flip_keypoints(kp, SPIN49), SPIN49), kp)
    px = torch.rand(49, 3, generator=g, dtype=torch.float64) * 224
    f = flip_keypoints(px, SPIN49, width=224)
    assert torch.allclose(f[SPIN49.index("Left Wrist"), 0], 224 - px[SPIN49.index("Right Wrist"), 0])
    assert torch.allclose(flip_keypoints(f, SPIN49, width=224), px)


def test_h36m_to_lsp14_gives_lsp_order():
    names = [H36M17.names[i] for i in H36M_TO_LSP14]
    assert names[:12] == list(LSP14.names[:12])
    assert names[12:] == ["Thorax", "Head"]


def test_swap_left_right_name_styles():
    assert swap_left_right("upperarm01.L") == "upperarm01.R" and swap_left_right("wrist.R") == "wrist.L"
    assert swap_left_right("spine05") == "spine05" and swap_left_right("OP MidHip") == "OP MidHip"
    assert swap_left_right("left_collar") == "right_collar" and swap_left_right("Right Ear") == "Left Ear"
