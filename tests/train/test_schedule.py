"""``cosine_schedule``: linear warm-up to 1, cosine decay to ``min_ratio`` at ``total_steps``, flat after."""

from __future__ import annotations

import math

import pytest

from dsrbody.train.module import cosine_schedule


@pytest.mark.parametrize("total, warmup, min_ratio", [(100, 10, 0.02), (50, 1, 0.1), (7, 3, 0.0)])
def test_warmup_peak_decay_and_floor(total, warmup, min_ratio):
    f = cosine_schedule(total, warmup, min_ratio)
    # linear warm-up: (step + 1) / warmup, reaching 1 at its last step
    for k in range(warmup):
        assert f(k) == pytest.approx((k + 1) / warmup)
    diffs = [f(k + 1) - f(k) for k in range(warmup - 1)]
    assert all(d == pytest.approx(1 / warmup) for d in diffs)
    assert f(warmup - 1) == pytest.approx(1.0) and f(warmup) == pytest.approx(1.0)
    # min_ratio at the total step count and after it
    for k in (total, total + 1, 10 * total):
        assert f(k) == pytest.approx(min_ratio)
    # monotone decreasing after warm-up (strictly, until the floor)
    after = [f(k) for k in range(warmup, total + 1)]
    assert all(a > b for a, b in zip(after, after[1:]))
    # the cosine itself, against an independent formula
    for k in range(warmup, total + 1):
        t = (k - warmup) / (total - warmup)
        expected = min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * t)) / 2
        assert f(k) == pytest.approx(expected, abs=1e-12)
    # halfway through the decay: the mean of peak and floor
    if (total - warmup) % 2 == 0:
        assert f(warmup + (total - warmup) // 2) == pytest.approx((1 + min_ratio) / 2)
    assert all(min_ratio <= f(k) <= 1.0 for k in range(0, total + 5))


def test_no_warmup_starts_at_the_peak():
    f = cosine_schedule(10, 0, 0.5)
    assert f(0) == 1.0 and f(10) == pytest.approx(0.5) and f(5) == pytest.approx(0.75)
    assert cosine_schedule(10)(10) == pytest.approx(0.01)  # default min_ratio
