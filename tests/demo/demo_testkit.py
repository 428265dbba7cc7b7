"""Helpers for the demo/fit tests: a tiny untrained regressor checkpoint and a few synthetic images."""

from __future__ import annotations

from pathlib import Path

import torch


def write_tiny_checkpoint(body, path: Path, topology: str = "anny", head_hidden: int = 32) -> Path:
    """A dsrbody-style self-describing checkpoint of an untrained ResNet-18 regressor on ``body`` (Anny)."""
    from dsrbody.models import build_regressor

    torch.manual_seed(0)
    reg = build_regressor(body, "resnet18", head_hidden=head_hidden)
    meta = {
        "version": "test",
        "body": {"name": "anny", "model_path": None, "gender": "neutral", "topology": topology},
        "backbone": "resnet18",
        "config": {"model": {"n_iter": 3}, "body": {"eval_topology": topology}},
    }
    sd = {f"model.{k}": v for k, v in reg.state_dict().items()}
    torch.save({"dsrbody": meta, "state_dict": sd, "epoch": 0}, path)
    return path


def write_synth(out: Path, num: int = 3) -> Path:
    """``num`` synthetic test samples (SPIN format, images, parsing maps) in ``out``; returns the .npz."""
    from dsrbody.data.synth.generator import SynthConfig, generate

    return generate(SynthConfig(num=num, seed=0, split="test"), out, progress=False)


def shared_synth(tmp_path_factory, num: int = 3) -> Path:
    """The session's synthetic folder, made once however many test folders ask for it."""
    d = tmp_path_factory.getbasetemp() / "demo_shared_synth"
    if not (d / "synth_test.npz").is_file():
        write_synth(d, num)
    return d


def shared_checkpoint(body, tmp_path_factory) -> Path:
    """The session's tiny checkpoint, written once."""
    p = tmp_path_factory.getbasetemp() / "demo_shared_tiny.ckpt"
    if not p.is_file():
        write_tiny_checkpoint(body, p)
    return p
