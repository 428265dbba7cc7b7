"""A 16-sample synthetic dataset (+ 4 test samples), made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_testkit import make_synth16


@pytest.fixture(scope="session")
def synth16(tmp_path_factory) -> Path:
    return make_synth16(tmp_path_factory.getbasetemp())
