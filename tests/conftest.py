"""Session-wide fixtures: body models are built once per test session, not per test."""

from __future__ import annotations

import os

import pytest
import torch

# Tests run on 2 cores; keep torch from oversubscribing when several processes share them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def smpl_dir(tmp_path_factory):
    """A folder with generated files in the exact official SMPL layout (see dsrbody.testing.smpl_files):
    SMPL_{NEUTRAL,MALE,FEMALE}.pkl/.npz, J_regressor_extra.npy, J_regressor_h36m.npy, smpl_mean_params.npz."""
    from dsrbody.testing.smpl_files import write_smpl_files

    return write_smpl_files(tmp_path_factory.mktemp("smpl"))


@pytest.fixture(scope="session")
def anny_body():
    """The default Anny body model (one per session: its first build on a fresh machine takes ~40 s)."""
    from dsrbody.body.anny import AnnyBody

    return AnnyBody()


@pytest.fixture(scope="session")
def cpu_run(tmp_path_factory):
    """The output folder of a 4-step ``dsrbody train --resume-if-any`` run of configs/synth_cpu.yaml on the
    16-sample synthetic set, validated on its 4 test samples after steps 2 and 4 (see
    tests/train/train_testkit.py, make_cpu_run). Read it, do not write into it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
    from train_testkit import make_cpu_run

    return make_cpu_run(tmp_path_factory.getbasetemp())
