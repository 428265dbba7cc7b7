"""Linear blend skinning with shape and pose blend shapes (the SMPL forward model), one step per function.

The SMPL forward pass (Loper et al. 2015), for a batch of ``B`` bodies with ``V`` vertices, ``J`` joints
and ``S`` shape coefficients:

1. :func:`shape_blend_shapes`: rest vertices ``T(beta) = T_bar + sum_s beta_s S_s``.
2. :func:`vertices_to_joints`: rest joints ``J(beta) = J_regressor T(beta)`` (linear, so it can be
   precomputed per shape basis: :func:`joints_from_shape`).
3. :func:`pose_features` + :func:`pose_blend_shapes`: ``T_P = T(beta) + sum_k (R_k - I)_flat P_k``.
4. :func:`batch_rigid_transform`: world transform of every joint along the kinematic tree, and the
   skinning transforms ``A_j = G_j * [I | -J_j]`` (the rest pose removed).
5. :func:`skin_vertices`: ``v' = sum_j w_vj A_j [v; 1]``.

:func:`lbs` chains them in the natural ``(B, V, 3)`` layout (the reference). :class:`~dsrbody.body.smpl.SMPL`
runs the same steps coordinate-major, ``(B, 3, V)``, for speed: :func:`blend` adds a blend-shape basis
stored as ``(K, 3 V)`` rows of ``(3, V)`` arrays with one fused ``addmm``, and :func:`skin_vertices_t`
blends the transforms with one ``(12 B, J) x (J, V)`` product and applies them with vectorised
multiply-adds (hand-written backward).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

__all__ = [
    "shape_blend_shapes",
    "vertices_to_joints",
    "joints_from_shape",
    "pose_features",
    "pose_blend_shapes",
    "kinematic_levels",
    "batch_rigid_transform",
    "skin_vertices",
    "skin_vertices_t",
    "blend",
    "skin_vertices_reference",
    "lbs",
]


def shape_blend_shapes(betas: torch.Tensor, shapedirs: torch.Tensor) -> torch.Tensor:
    """Vertex offsets of the shape blend shapes.

    Args:
        betas: ``(B, S')`` shape coefficients, ``S' <= S`` (the first ``S'`` components are used).
        shapedirs: ``(S, 3 V)`` basis, row ``s`` = component ``s`` as ``(V, 3)`` flattened, metres.

    Returns:
        ``(B, V, 3)`` offsets in metres.
    """
    n = betas.shape[1]
    return (betas @ shapedirs[:n]).view(betas.shape[0], -1, 3)


def vertices_to_joints(J_regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Regress joints (or keypoints) from vertices.

    Args:
        J_regressor: ``(K, V)`` regressor (rows usually sum to 1).
        vertices: ``(B, V, 3)`` metres.

    Returns:
        ``(B, K, 3)`` metres.
    """
    return torch.matmul(J_regressor, vertices)


def joints_from_shape(
    betas: torch.Tensor, joint_template: torch.Tensor, joint_shapedirs: torch.Tensor
) -> torch.Tensor:
    """Rest joints of a shaped body, ``J_regressor (T_bar + sum beta_s S_s)``, from precomputed
    ``joint_template = J_regressor T_bar`` and ``joint_shapedirs = J_regressor S_s`` (equal by
    linearity, and ``V / J`` times cheaper).

    Args:
        betas: ``(B, S')``.
        joint_template: ``(J, 3)`` metres.
        joint_shapedirs: ``(S, 3 J)``.

    Returns:
        ``(B, J, 3)`` rest joint locations, metres.
    """
    n = betas.shape[1]
    return joint_template + (betas @ joint_shapedirs[:n]).view(betas.shape[0], -1, 3)


def pose_features(rot_mats: torch.Tensor) -> torch.Tensor:
    """SMPL's pose-blend-shape features: ``R_j - I`` of every non-root joint, flattened row-major.

    Args:
        rot_mats: ``(B, J, 3, 3)`` relative joint rotations (joint 0 = the root, not used).

    Returns:
        ``(B, 9 (J - 1))``; entry ``9 (j - 1) + 3 r + c`` is ``R_j[r, c] - I[r, c]``.
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).reshape(rot_mats.shape[0], -1)


def pose_blend_shapes(pose_feature: torch.Tensor, posedirs: torch.Tensor) -> torch.Tensor:
    """Vertex offsets of the pose blend shapes.

    Args:
        pose_feature: ``(B, P)`` from :func:`pose_features`.
        posedirs: ``(P, 3 V)`` basis, metres per unit feature.

    Returns:
        ``(B, V, 3)`` offsets in metres.
    """
    return (pose_feature @ posedirs).view(pose_feature.shape[0], -1, 3)


def blend(template: torch.Tensor, coeffs: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Template plus a linear combination of basis rows, in whatever flat layout the basis uses
    (one fused matrix product; used for both blend shapes in :class:`~dsrbody.body.smpl.SMPL`).

    Args:
        template: ``(N,)``, ``(1, N)`` or ``(B, N)``.
        coeffs: ``(B, K')`` with ``K' <= K`` (the first ``K'`` basis rows are used).
        basis: ``(K, N)``.

    Returns:
        ``(B, N)`` = ``template + coeffs @ basis[:K']``.
    """
    n = coeffs.shape[1]
    if template.dim() == 1:
        template = template.unsqueeze(0)
    return torch.addmm(template.expand(coeffs.shape[0], -1), coeffs, basis[:n])


def kinematic_levels(parents: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Group the joints of a tree by depth, for one batched product per depth.

    Args:
        parents: ``(J,)`` parent of each joint, ``-1`` for the root; parents come before children.

    Returns:
        For each depth ``d >= 1``: ``(joints at depth d, position of each one's parent in the list of
        depth d - 1)``. Depth 0 is the root alone.
    """
    parents = [int(p) for p in parents]
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        if not 0 <= parents[j] < j:
            raise ValueError(f"parents must list each parent before its child, got {parents}")
        depth[j] = depth[parents[j]] + 1
    by_depth: list[list[int]] = [[] for _ in range(max(depth) + 1)]
    for j, d in enumerate(depth):
        by_depth[d].append(j)
    if by_depth[0] != [0]:
        raise ValueError(f"joint 0 must be the only root, got parents {parents}")
    levels = []
    for d in range(1, len(by_depth)):
        prev = {j: i for i, j in enumerate(by_depth[d - 1])}
        levels.append((by_depth[d], [prev[parents[j]] for j in by_depth[d]]))
    return levels


@functools.lru_cache(maxsize=64)
def _kinematic_plan(
    parents: tuple[int, ...], device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """Index tensors for :func:`batch_rigid_transform` (cached per tree and device): the joints in
    depth order, the inverse permutation, each sorted joint's parent (the root's points at an extra
    zero joint), and per depth ``(start, stop, parents' positions in the previous depth's block)``
    where the positions are a ``slice`` when contiguous."""
    levels = kinematic_levels(parents)
    J = len(parents)
    order = [0] + [j for idx, _ in levels for j in idx]
    inv = [0] * J
    for pos, j in enumerate(order):
        inv[j] = pos
    par_sorted = [J] + [parents[j] for j in order[1:]]
    steps = []
    start = 1
    for idx, par_pos in levels:
        n = len(idx)
        a, m = par_pos[0], len(par_pos)
        sel: slice | torch.Tensor
        if par_pos == list(range(a, a + m)):
            sel = slice(a, a + m)
        else:
            sel = torch.as_tensor(par_pos, device=device)
        steps.append((start, start + n, sel))
        start += n
    as_t = functools.partial(torch.as_tensor, dtype=torch.long, device=device)
    return as_t(order), as_t(inv), as_t(par_sorted), steps


def batch_rigid_transform(
    rot_mats: torch.Tensor, joints: torch.Tensor, parents: Sequence[int] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose the skeleton: chain the relative rotations down the kinematic tree.

    Joint ``j`` has the local transform ``L_j = [R_j | J_j - J_parent(j)]`` (the root:
    ``[R_0 | J_0]``); its world transform is ``G_j = G_parent(j) L_j``. The joints are processed one
    depth of the tree at a time (one batched 4x4 product per depth).

    Args:
        rot_mats: ``(B, J, 3, 3)`` rotations relative to the parent (joint 0: global orientation).
        joints: ``(B, J, 3)`` rest joint locations, metres.
        parents: ``(J,)`` parent indices, ``-1`` for the root, parents before children.

    Returns:
        ``(posed_joints (B, J, 3) metres, transforms (B, J, 3, 4))`` where
        ``transforms[:, j] = [G_j.R | G_j.t - G_j.R J_j]`` maps a rest-pose point rigidly attached to
        joint ``j`` to its posed location.
    """
    if isinstance(parents, torch.Tensor):
        parents = parents.tolist()
    order, inv, par_sorted, steps = _kinematic_plan(tuple(int(p) for p in parents), str(joints.device))
    B, J = rot_mats.shape[:2]
    # local transforms in depth order: [R | J - J_parent], bottom row (0, 0, 0, 1)
    padded = torch.nn.functional.pad(joints, (0, 0, 0, 1))  # joint J is the origin (the root's parent)
    rel = padded[:, order] - padded[:, par_sorted]
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=joints.dtype, device=joints.device).expand(B, J, 1, 4)
    local = torch.cat([torch.cat([rot_mats[:, order], rel.unsqueeze(-1)], dim=-1), bottom], dim=-2)
    world = [local[:, :1]]
    for start, stop, sel in steps:
        world.append(world[-1][:, sel] @ local[:, start:stop])
    G = torch.cat(world, dim=1)[:, inv]  # (B, J, 4, 4), joint order
    R, t = G[:, :, :3, :3], G[:, :, :3, 3]
    transforms = torch.cat([R, (t - (R @ joints.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)], dim=-1)
    return t, transforms


class _SkinVerticesT(torch.autograd.Function):
    """Coordinate-major linear blend skinning with a hand-written backward (see :func:`skin_vertices_t`).

    Autograd through the obvious formulation (a blended ``(B, V, 3, 4)`` transform applied with a
    batched 3x4 product per vertex) spends most of its time in tiny batched matrix products. Here
    everything per vertex runs in a vertex-minor layout (``(B, 3, 4, V)`` blended transforms,
    ``(B, 3, V)`` coordinates) as a few vectorised multiply-adds, and the two large products are
    single ``(12 B, J) x (J, V)`` matrix products.
    """

    @staticmethod
    def forward(ctx, v_t: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
        B, J = transforms.shape[:2]
        V = weights.shape[0]
        A_t = transforms.permute(0, 2, 3, 1).reshape(B * 12, J)
        T = (A_t @ weights.transpose(0, 1)).view(B, 3, 4, V)  # blended transforms, vertex-minor
        out = torch.addcmul(T[:, :, 3], T[:, :, 0], v_t[:, 0:1])
        for k in (1, 2):
            out.addcmul_(T[:, :, k], v_t[:, k : k + 1])
        ctx.save_for_backward(v_t, weights, A_t, T)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        v_t, weights, A_t, T = ctx.saved_tensors
        B, _, _, V = T.shape
        J = weights.shape[1]
        g_t = grad_out.contiguous()  # (B, 3, V)
        grad_v = grad_w = grad_A = None
        if ctx.needs_input_grad[0]:
            grad_v = T[:, 0, :3] * g_t[:, 0:1]
            for i in (1, 2):
                grad_v.addcmul_(T[:, i, :3], g_t[:, i : i + 1])
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            vh_t = torch.cat([v_t, torch.ones_like(v_t[:, :1])], dim=1)  # (B, 4, V)
            gT = (g_t.unsqueeze(2) * vh_t.unsqueeze(1)).view(B * 12, V)
            if ctx.needs_input_grad[2]:
                grad_A = (gT @ weights).view(B, 3, 4, J).permute(0, 3, 1, 2)
            if ctx.needs_input_grad[1]:
                grad_w = gT.transpose(0, 1) @ A_t
        return grad_v, grad_w, grad_A


def skin_vertices_t(v_t: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning in coordinate-major layout: ``v'_v = sum_j w_vj A_j [v_v; 1]``.

    Args:
        v_t: ``(B, 3, V)`` rest-pose vertices (with blend shapes), metres, coordinate-major.
        weights: ``(V, J)`` skinning weights.
        transforms: ``(B, J, 3, 4)`` skinning transforms from :func:`batch_rigid_transform`.

    Returns:
        ``(B, 3, V)`` posed vertices, metres. Differentiable in all three inputs (first order).
    """
    return _SkinVerticesT.apply(v_t, weights, transforms)


def skin_vertices(vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning: ``v'_v = sum_j w_vj A_j [v_v; 1]``.

    Args:
        vertices: ``(B, V, 3)`` rest-pose vertices (with blend shapes), metres.
        weights: ``(V, J)`` skinning weights.
        transforms: ``(B, J, 3, 4)`` skinning transforms from :func:`batch_rigid_transform`.

    Returns:
        ``(B, V, 3)`` posed vertices, metres. Differentiable in all three inputs (first order).
    """
    out_t = skin_vertices_t(vertices.transpose(1, 2).contiguous(), weights, transforms)
    return out_t.transpose(1, 2).contiguous()


def skin_vertices_reference(
    vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor
) -> torch.Tensor:
    """Plain-autograd :func:`skin_vertices` (same arguments and result), for tests and double backward."""
    B, J = transforms.shape[:2]
    T = torch.matmul(weights, transforms.reshape(B, J, 12)).view(B, -1, 3, 4)
    return (T[..., :3] @ vertices.unsqueeze(-1)).squeeze(-1) + T[..., 3]


def lbs(
    betas: torch.Tensor,
    rot_mats: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor,
    J_regressor: torch.Tensor,
    parents: Sequence[int],
    weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole SMPL forward pass from the basic arrays (reference implementation; :class:`SMPL`
    uses the same steps with precomputed joint bases).

    Args:
        betas: ``(B, S')``; rot_mats: ``(B, J, 3, 3)``; v_template: ``(V, 3)``; shapedirs:
        ``(S, 3 V)``; posedirs: ``(9 (J - 1), 3 V)``; J_regressor: ``(J, V)``; parents: ``(J,)``;
        weights: ``(V, J)``.

    Returns:
        ``(vertices (B, V, 3), posed_joints (B, J, 3), rest_vertices (B, V, 3))``, metres.
    """
    v_shaped = v_template + shape_blend_shapes(betas, shapedirs)
    joints = vertices_to_joints(J_regressor, v_shaped)
    v_posed = v_shaped + pose_blend_shapes(pose_features(rot_mats), posedirs)
    posed_joints, transforms = batch_rigid_transform(rot_mats, joints, parents)
    return skin_vertices(v_posed, weights, transforms), posed_joints, v_shaped
