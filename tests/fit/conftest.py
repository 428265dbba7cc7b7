"""Fixtures of the demo tests (one tiny checkpoint and three synthetic images per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo"))
from demo_testkit import shared_checkpoint, shared_synth


@pytest.fixture(scope="session")
def tiny_ckpt(anny_body, tmp_path_factory):
    return shared_checkpoint(anny_body, tmp_path_factory)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    return shared_synth(tmp_path_factory)
