"""``dsrbody curve`` on the tiny CPU run, and ``dsrbody train --resume-if-any``: a fresh start without
OUT/checkpoints/last.ckpt (the shared run was made that way), a resumed run with one."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_testkit import CPU_RUN_BATCH, CPU_RUN_STEPS, cpu_run_args, make_synth16  # noqa: E402

from dsrbody.cli import main  # noqa: E402

pytestmark = pytest.mark.slow


def steps_logged(metrics_csv: Path, key: str = "train/loss_step") -> list[int]:
    return [int(r["step"]) for r in csv.DictReader(metrics_csv.open(newline="")) if r.get(key)]


def test_curve_cli(cpu_run, tmp_path, capsys):
    import imageio.v3 as iio

    out = tmp_path / "pics" / "curve.png"
    argv = ["curve", str(cpu_run), "--out", str(out), "--target", "pa_mpjpe=65", "--title", "tiny"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    last = CPU_RUN_STEPS * CPU_RUN_BATCH
    assert lines[0].startswith(f"2 validations, last at {last:,} samples: MPJPE ")
    assert lines[0].count("(mean body ") == 4 and "PA-MPJPE" in lines[0] and "PVE-T" in lines[0]
    assert lines[-1] == f"wrote {out}"
    pic = iio.imread(out)
    assert pic.ndim == 3 and pic.shape[1] > 2 * pic.shape[0]
    assert main(argv[:3] + [str(tmp_path / "zoom.png"), "--zoom"]) == 0 and (tmp_path / "zoom.png").is_file()
    capsys.readouterr()
    assert main(["curve", str(cpu_run), "--out", str(tmp_path / "x.png"), "--target", "pa_mpjpe"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected METRIC=MM" in err[0] and not (tmp_path / "x.png").exists()
    assert main(["curve", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 1
    assert "no config.yaml" in capsys.readouterr().err


def test_resume_if_any_started_the_shared_run_fresh(cpu_run):
    versions = sorted(p.name for p in (cpu_run / "csv").iterdir())
    assert versions == ["version_0"]
    assert steps_logged(cpu_run / "csv" / "version_0" / "metrics.csv") == list(range(CPU_RUN_STEPS))


def test_resume_if_any_resumes_from_last_ckpt(cpu_run, tmp_path_factory, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cpu_run, run)
    synth = make_synth16(tmp_path_factory.getbasetemp())
    assert main(cpu_run_args(synth, run, f"trainer.max_steps={CPU_RUN_STEPS + 1}")) == 0
    ck = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == CPU_RUN_STEPS + 1  # one more step from where the copy stopped
    # one training step logged, in a new version, after the first run's (not from 0 again). Lightning
    # numbers it CPU_RUN_STEPS + 1, one ahead of a run that did not stop: on restore it adds the increment
    # that a checkpoint saved by a callback (on_train_batch_end) lacks, and last.ckpt was saved after fit.
    assert steps_logged(run / "csv" / "version_1" / "metrics.csv") in ([CPU_RUN_STEPS], [CPU_RUN_STEPS + 1])
    assert steps_logged(run / "csv" / "version_0" / "metrics.csv") == list(range(CPU_RUN_STEPS))
    assert f"{CPU_RUN_STEPS + 1} step(s)" in capsys.readouterr().out


def test_resume_if_any_decides_from_the_output_folder(monkeypatch, tmp_path, capsys):
    """Without last.ckpt: run_training(resume=False); with it: resume=True; --resume without one: the
    one-line error of run_training."""
    import dsrbody.train.run as train_run

    calls = []

    def fake(cfg, out_dir=None, resume=False, callbacks=()):
        calls.append(resume)
        raise ValueError("stop here")  # a one-line error: rc 1, nothing trained

    config = str(Path(__file__).resolve().parents[2] / "configs" / "synth_cpu.yaml")
    out = tmp_path / "out"
    argv = ["train", "--config", config, "--out", str(out)]
    monkeypatch.setattr(train_run, "run_training", fake)
    assert main([*argv, "--resume-if-any"]) == 1
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert main([*argv, "--resume-if-any"]) == 1
    assert main(argv) == 1
    assert calls == [False, True, False]
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*argv[:-1], str(tmp_path / "empty"), "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint to resume from" in err[0]
