"""dsrbody.eval.synth_eval's helpers that need no model: the split of a batch by its ground truth's body
model (gendered SMPL)."""

from __future__ import annotations

import torch

from dsrbody.eval.synth_eval import gender_groups


def test_gender_groups_partition_the_valid_samples_by_gender():
    """Each valid sample lands in exactly one group: male and female codes in their model's group,
    unknown codes (-1, 2) in the default's; invalid samples in none."""
    gender = torch.tensor([0, 1, -1, 0, 2, 1, 0])
    valid = torch.tensor([True, True, True, False, True, True, True])
    groups = gender_groups(gender, {0: "male", 1: "female"}, "neutral", valid)
    assert [m for _, m in groups] == ["male", "female", "neutral"]
    masks = torch.stack([g for g, _ in groups]).int()
    assert torch.equal(masks.sum(0), valid.int())  # disjoint, and their union is `valid`
    by_model = {m: g.nonzero().flatten().tolist() for g, m in groups}
    assert by_model == {"male": [0, 6], "female": [1, 5], "neutral": [2, 4]}


def test_gender_groups_without_gendered_models_is_one_group():
    valid = torch.tensor([True, False, True])
    for gender, models in ((torch.tensor([0, 1, 0]), None), (torch.tensor([0, 1, 0]), {}), (None, {0: "m"})):
        ((mask, model),) = gender_groups(gender, models, "default", valid)
        assert model == "default" and torch.equal(mask, valid)
