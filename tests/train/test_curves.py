"""Learning curves (dsrbody.train.curves) of the tiny CPU run and of hand-written logs, and what that run
logged: validation after steps 2 and 4, the mean body at the first validation only, images per second."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from train_testkit import CPU_RUN_BATCH, CPU_RUN_STEPS, CPU_RUN_VAL_EVERY

from dsrbody.train.curves import plot_learning_curve, read_validation_log

METRICS = ("mpjpe", "pa_mpjpe", "pve", "pve_t", "pve_t_sc", "score")


def csv_rows(run) -> list[dict]:
    rows = []
    for f in sorted((run / "csv").glob("version_*/metrics.csv")):
        rows += list(csv.DictReader(f.open(newline="")))
    return rows


def test_validation_log_of_a_run(cpu_run):
    log = read_validation_log(cpu_run)
    assert log.run == cpu_run and log.batch == CPU_RUN_BATCH
    # Lightning logs a validation after n trained steps at step n - 1
    n_val = CPU_RUN_STEPS // CPU_RUN_VAL_EVERY
    assert log["step"] == [CPU_RUN_VAL_EVERY * (i + 1) - 1 for i in range(n_val)]
    assert log["samples"] == [CPU_RUN_VAL_EVERY * (i + 1) * CPU_RUN_BATCH for i in range(n_val)]
    last = torch.load(cpu_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert log["samples"][-1] == last["global_step"] * CPU_RUN_BATCH  # the samples the weights have seen
    for k in METRICS:
        assert len(log[k]) == n_val and all(math.isfinite(v) and v > 0 for v in log[k]), k
        assert math.isfinite(log.reference[k]) and log.reference[k] > 0, k
    assert log["n_samples"] == [4.0] * n_val
    assert set(log.reference) == set(METRICS)  # the mean body's, logged once


def test_the_run_logs_the_mean_body_once_and_its_throughput(cpu_run):
    rows = csv_rows(cpu_run)
    ref_rows = [r for r in rows if r.get("val_mean_body/mpjpe")]
    assert [int(r["step"]) for r in ref_rows] == [CPU_RUN_VAL_EVERY - 1]  # the first validation only
    assert ref_rows[0]["val/mpjpe"]  # in the same row as the model's metrics
    ips = {int(r["step"]): float(r["train/images_per_s"]) for r in rows if r.get("train/images_per_s")}
    assert 0 not in ips  # the first step (start-up) is not measured
    assert {1, CPU_RUN_STEPS - 1} <= set(ips) and all(0 < v < 1e5 for v in ips.values())
    assert ips[1] != ips[CPU_RUN_STEPS - 1]  # measured again after the validation
    assert len(ips) <= CPU_RUN_STEPS - 1


def _write_run(run, batch: int = 8, devices="2", versions: dict | None = None) -> None:
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"data:\n  batch_size: {batch}\ntrainer:\n  devices: {devices!r}\n")
    for name, rows in (versions or {}).items():
        d = run / "csv" / name
        d.mkdir(parents=True)
        keys = sorted({k for r in rows for k in r})
        with (d / "metrics.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)


def test_validation_log_of_hand_written_logs(tmp_path):
    """Two processes of batch 8 (16 samples a step); a resumed run's versions read in numeric order
    (version_10 after version_2): the later value of a step wins."""
    run = tmp_path / "run"
    _write_run(
        run,
        versions={
            "version_2": [
                {"epoch": 0, "step": 4, "train/loss_step": 3.0},
                {"epoch": 0, "step": 9, "val/mpjpe": 200.0, "val/pa_mpjpe": 90.0,
                 "val_mean_body/mpjpe": 400.0, "val_mean_body/pa_mpjpe": 150.0},
                {"epoch": 0, "step": 19, "val/mpjpe": 150.0, "val/pa_mpjpe": 80.0},
            ],
            "version_10": [
                {"epoch": 1, "step": 19, "val/mpjpe": 140.0, "val/pa_mpjpe": 70.0},
                {"epoch": 1, "step": 29, "val/pa_mpjpe": 60.0},  # no mpjpe: not a validation row
                {"epoch": 1, "step": 39, "val/mpjpe": 120.0},
            ],
        },
    )  # fmt: skip
    log = read_validation_log(run)
    assert log.batch == 16
    assert log["step"] == [9, 19, 39] and log["samples"] == [160, 320, 640]
    assert log["mpjpe"] == [200.0, 140.0, 120.0]
    assert log["pa_mpjpe"][:2] == [90.0, 70.0] and math.isnan(log["pa_mpjpe"][2])
    assert log.reference == {"mpjpe": 400.0, "pa_mpjpe": 150.0}
    out = plot_learning_curve(run, tmp_path / "pics" / "curve.png", targets={"pa_mpjpe": 65.0})
    import imageio.v3 as iio

    pic = iio.imread(out)
    assert pic.ndim == 3 and pic.shape[1] > 2 * pic.shape[0]  # the metrics side by side


def test_validation_log_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        read_validation_log(tmp_path / "none")
    _write_run(tmp_path / "nolog", devices="1")
    with pytest.raises(FileNotFoundError, match="no version_"):
        read_validation_log(tmp_path / "nolog")
    _write_run(tmp_path / "noval", versions={"version_0": [{"step": 3, "train/loss_step": 1.0}]})
    with pytest.raises(ValueError, match="no validation metrics"):
        read_validation_log(tmp_path / "noval")


def test_continued_runs_on_one_axis(tmp_path):
    """A second run started from the first one's checkpoint of step 19 (batch 16, so 320 samples): its
    samples count on from there, and the first run's validations after that checkpoint are dropped."""
    from dsrbody.train.curves import read_continued_log

    first, second = tmp_path / "first", tmp_path / "second"
    _write_run(
        first,
        versions={"version_0": [
            {"step": 9, "val/mpjpe": 200.0, "val_mean_body/mpjpe": 400.0},
            {"step": 19, "val/mpjpe": 150.0},
            {"step": 29, "val/mpjpe": 900.0},  # after the checkpoint the second run started from
        ]},
    )  # fmt: skip
    ckpt = tmp_path / "step19.ckpt"
    torch.save({"global_step": 19, "state_dict": {}}, ckpt)
    second.mkdir()
    (second / "config.yaml").write_text(
        f"data:\n  batch_size: 4\ntrainer:\n  devices: '1'\nmodel:\n  init_checkpoint: {ckpt}\n"
    )
    d = second / "csv" / "version_0"
    d.mkdir(parents=True)
    d.joinpath("metrics.csv").write_text("step,val/mpjpe,val/pa_mpjpe\n4,120.0,70.0\n9,110.0,60.0\n")
    log = read_continued_log([first, second])
    assert log["step"] == [9, 19, 24, 29]
    assert log["samples"] == [160, 320, 320 + 20, 320 + 40]
    assert log["mpjpe"] == [200.0, 150.0, 120.0, 110.0]
    assert math.isnan(log["pa_mpjpe"][0]) and log["pa_mpjpe"][2:] == [70.0, 60.0]
    assert log.reference == {"mpjpe": 400.0}
    assert log.starts == [(0, "first"), (320, "second")]  # where each run begins, for the plot's marks
    assert read_validation_log(first).starts == [(0, "first")]
    plot_learning_curve([first, second], tmp_path / "chain.png")
    # zoomed: the axes fit the values (the mean body, 400 mm, goes in the panel's title)
    out = plot_learning_curve([first, second], tmp_path / "zoom.png", targets={"mpjpe": 100.0}, zoom=True)
    assert out.stat().st_size > 0
    # a later run that does not say where it started is refused
    with pytest.raises(ValueError, match="does not continue"):
        read_continued_log([first, first])
