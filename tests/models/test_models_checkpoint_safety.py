"""Weight files never run code: every reader of checkpoints uses the safe ``weights_only`` loader, refuses
a file that needs anything but tensors and plain containers in one line naming the file and the type, and
still reads dsrbody's, SPIN's and DSR's layouts (DSR's yacs/Lightning metadata as plain dicts)."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from models_testkit import TinyBody

from dsrbody.models.checkpoint import read_state_dict, torch_load_file

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class _Call:
    """Pickles as a call of ``fn(*args)`` (what a hostile file does on loading with full unpickling)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _raw_stack_global(module: str, name: str, *calls: str) -> bytes:
    """A protocol-4 pickle: STACK_GLOBAL ``module``/``name`` then one REDUCE per string argument."""
    out = io.BytesIO()
    out.write(b"\x80\x04")
    for text in (module, name):
        data = text.encode()
        out.write(b"\x8c" + bytes([len(data)]) + data)
    out.write(b"\x93")
    for arg in calls:
        data = arg.encode()
        out.write(b"\x8c" + bytes([len(data)]) + data + b"\x85R")
    out.write(b".")
    return out.getvalue()


def _hostile_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Checkpoints that create ``marker`` when loaded with full unpickling, in several shapes."""
    sd = {"model.head.fc1.weight": torch.zeros(2, 2)}
    cmd = f"touch {marker}"
    files: dict[str, tuple[object, dict]] = {
        "os_system_in_meta.ckpt": ({"state_dict": sd, "dsrbody": _Call(os.system, cmd)}, {}),
        "exec_in_hparams.ckpt": (
            {"state_dict": sd, "hyper_parameters": _Call(exec, f"open({str(marker)!r}, 'w')")},
            {},
        ),
        "legacy_format_eval.pt": (
            {"model": sd, "optimizer": _Call(eval, f"open({str(marker)!r}, 'w')")},
            {"_use_new_zipfile_serialization": False},
        ),
        "open_as_weights.pth": ({"fc.weight": torch.zeros(1), "x": _Call(open, str(marker), "w")}, {}),
    }
    out = {}
    for name, (obj, kw) in files.items():
        out[name] = folder / name
        torch.save(obj, out[name], **kw)
    raw = folder / "raw_pickle.ckpt"  # not a torch file at all: a bare pickle
    raw.write_bytes(pickle.dumps(_Call(os.system, cmd), protocol=2))
    out["raw_pickle.ckpt"] = raw
    walk = folder / "dotted_walk.ckpt"  # protocol-4 dotted name walking to exec
    walk.write_bytes(
        _raw_stack_global(
            "numpy.dtypes", "_add_dtype_helper.__builtins__.get", "exec", f"open({str(marker)!r},'w')"
        )
    )
    out["dotted_walk.ckpt"] = walk
    return out


@pytest.fixture()
def hostile(tmp_path):
    marker = tmp_path / "MARKER"
    return _hostile_files(tmp_path, marker), marker


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_every_reader_refuses_a_file_that_would_run_code(hostile):
    from dsrbody.models import load_regressor_checkpoint
    from dsrbody.models.hmr import Regressor
    from dsrbody.models.loader import read_checkpoint
    from dsrbody.train.module import read_checkpoint_meta

    files, marker = hostile
    reg = Regressor(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4)), 4, TinyBody())
    needs = {
        "os_system_in_meta.ckpt": "posix.system",
        "exec_in_hparams.ckpt": "exec",
        "legacy_format_eval.pt": "eval",
        "open_as_weights.pth": "open",
        "raw_pickle.ckpt": "posix.system",
        "dotted_walk.ckpt": "safe loader refuses",  # torch refuses the opcode itself
    }
    for name, path in files.items():
        for read in (
            torch_load_file,
            read_state_dict,
            read_checkpoint_meta,
            read_checkpoint,
            lambda p: load_regressor_checkpoint(reg, p),
        ):
            with pytest.raises(ValueError) as e:
                read(path)
            msg = _one_line(e)
            assert str(path) in msg and "refused" in msg and needs[name] in msg, msg
    assert not marker.exists()


def test_commands_refuse_a_hostile_checkpoint_before_building_anything(hostile, tmp_path, capsys):
    from dsrbody.cli import main
    from dsrbody.train import load_config
    from dsrbody.train.build import build_model
    from dsrbody.train.run import run_training

    files, marker = hostile
    bad = files["os_system_in_meta.ckpt"]
    data = tmp_path / "data.npz"
    data.write_bytes(b"")
    for argv in (
        ["eval", "--ckpt", str(bad), "--data", str(tmp_path)],
        ["fit", "--ckpt", str(bad), "--data", str(data), "--out", str(tmp_path / "fit"), "--quiet"],
        ["demo", "--ckpt", str(bad), "--image", str(data), "--out", str(tmp_path / "demo"), "--quiet"],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"{bad}: refused" in err and "posix.system" in err, err
    # model.init_checkpoint and train --resume read the metadata first, with the safe loader
    cfg = load_config(CONFIGS / "synth_dsr.yaml", [f"model.init_checkpoint={bad}"])
    with pytest.raises(ValueError, match="refused"):
        build_model(cfg, None)
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.ckpt").write_bytes(bad.read_bytes())
    with pytest.raises(ValueError, match="refused"):
        run_training(load_config(CONFIGS / "synth_dsr.yaml"), out_dir=out, resume=True)
    assert not marker.exists()


def test_plain_layouts_load_with_the_safe_loader(tmp_path):
    sd = OrderedDict(w=torch.ones(2), b=torch.zeros(1))
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=1e-3)
    cases = {
        "bare.pth": sd,
        # SPIN's model_checkpoint.pt (saved by torch 1.1: the legacy format), optimiser state included
        "model_checkpoint.pt": {
            "model": sd,
            "optimizer": opt.state_dict(),
            "epoch": 3,
            "total_step_count": 9,
        },
        "dsrbody.ckpt": {"state_dict": sd, "dsrbody": {"body": {"name": "anny"}, "config": {"a": [1, None]}}},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name, _use_new_zipfile_serialization=name != "model_checkpoint.pt")
        loaded, _ = read_state_dict(tmp_path / name)
        assert torch.equal(loaded["w"], sd["w"]), name


def test_dsr_lightning_metadata_is_read_as_plain_dicts(tmp_path):
    """DSR's released checkpoints (Lightning 0.8) pickle their yacs ``CfgNode`` recipe inside Lightning's
    ``AttributeDict``: both become plain ``OrderedDict`` s and no class of theirs is imported."""
    made = {}
    for mod_name, cls_name in (
        ("yacs.config", "CfgNode"),
        ("pytorch_lightning.utilities.parsing", "AttributeDict"),
    ):
        mod = types.ModuleType(mod_name)
        cls = type(cls_name, (dict,), {"__module__": mod_name})
        setattr(mod, cls_name, cls)
        made[mod_name] = (mod, cls)
    for part in ("yacs", "pytorch_lightning", "pytorch_lightning.utilities"):
        made.setdefault(part, (types.ModuleType(part), None))
    saved = {k: sys.modules.get(k) for k in made}
    try:
        sys.modules.update({k: m for k, (m, _) in made.items()})
        CfgNode, AttributeDict = made["yacs.config"][1], made["pytorch_lightning.utilities.parsing"][1]
        node = CfgNode(LR=5e-5, DSR=CfgNode(SIGMA_VAL=1e-5))
        node.__dict__["__immutable__"] = True
        hp = AttributeDict(METHOD="dsr", OPTIMIZER=node)
        path = tmp_path / "dsr_w3DPW_checkpoint.pt"
        torch.save({"state_dict": {"model.head.fc1.weight": torch.ones(1)}, "hyper_parameters": hp}, path)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    obj = torch_load_file(path)
    hp = obj["hyper_parameters"]
    assert type(hp) is OrderedDict and type(hp["OPTIMIZER"]) is OrderedDict
    assert hp["OPTIMIZER"]["DSR"]["SIGMA_VAL"] == 1e-5 and hp["METHOD"] == "dsr"
    sd, layout = read_state_dict(path)
    assert layout == "state_dict" and list(sd) == ["model.head.fc1.weight"]
