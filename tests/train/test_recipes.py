"""Recipe inheritance (``base:``), packaged recipes (``--config NAME``, ``dsrbody recipes``), and the
rewritten recipes resolving to exactly what they said before they inherited."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dsrbody.cli import main
from dsrbody.train.config import (
    ConfigError,
    find_recipe,
    load_config,
    packaged_recipes,
    read_recipe,
    recipes_dir,
)

ROOT = Path(__file__).resolve().parents[2]
BEFORE = Path(__file__).resolve().parent / "data" / "recipes_before"


def _plain(cfg):
    return OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("name", ["spin_baseline", "synth_baseline"])
def test_rewritten_recipes_resolve_as_before(name):
    """tests/train/data/recipes_before/ holds the recipes as they were written out in full."""
    new = load_config(ROOT / "configs" / f"{name}.yaml")
    old = load_config(BEFORE / f"{name}.yaml")
    assert _plain(new) == _plain(old)
    assert "base" in (ROOT / "configs" / f"{name}.yaml").read_text()


def test_configs_is_the_packaged_folder():
    assert (ROOT / "configs").resolve() == recipes_dir().resolve()
    assert set(packaged_recipes()) >= {
        "dsr_paper",
        "spin_baseline",
        "synth_cpu",
        "synth_dsr",
        "synth_baseline",
    }


def test_bare_name_finds_the_packaged_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    for spec in ("synth_dsr", "synth_dsr.yaml"):
        assert find_recipe(spec) == packaged_recipes()["synth_dsr"]
    assert load_config("spin_baseline").name == "spin_baseline"
    with pytest.raises(FileNotFoundError, match="packaged recipes: .*dsr_paper"):
        load_config("no_such_recipe")
    with pytest.raises(FileNotFoundError, match="config file does not exist"):
        load_config("sub/synth_dsr.yaml")  # a path is never looked up in the package
    (tmp_path / "synth_dsr.yaml").write_text("name: mine\n")
    assert load_config("synth_dsr.yaml").name == "mine"  # an existing file wins


def test_base_merges_mappings_and_replaces_lists(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "name: a\ndata:\n  root: R\n  batch_size: 8\n  train:\n    - npz: x.npz\n      img_dir: .\n"
        "    - npz: y.npz\n      img_dir: .\noptim:\n  lr: 0.1\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text(
        "base: ../a.yaml\nname: b\ndata:\n  train:\n    - npz: ${data.root}/z.npz\n      img_dir: .\n"
    )
    cfg = load_config(tmp_path / "sub" / "b.yaml", ["optim.lr=0.5"])
    assert cfg.name == "b" and cfg.data.batch_size == 8 and cfg.optim.lr == 0.5
    assert [d.npz for d in cfg.data.train] == ["R/z.npz"]  # the list replaced, interpolation kept
    # a packaged base by bare name from anywhere
    (tmp_path / "c.yaml").write_text("base: synth_dsr\nname: c\n")
    assert load_config(tmp_path / "c.yaml").model.backbone == "resnet18"


def test_base_errors_name_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\noptim:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: unknown config key 'optim\.lrr'"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"recipe bases form a cycle: a\.yaml -> b\.yaml -> a\.yaml") as e:
        load_config(tmp_path / "a.yaml")
    assert "\n" not in str(e.value)
    (tmp_path / "s.yaml").write_text("base: s.yaml\n")
    with pytest.raises(ConfigError, match="cycle: s.yaml -> s.yaml"):
        read_recipe(tmp_path / "s.yaml")
    (tmp_path / "m.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"m\.yaml: base recipe 'missing\.yaml' not found"):
        load_config(tmp_path / "m.yaml")
    assert main(["train", "--config", str(tmp_path / "a.yaml")]) == 1  # one line, no traceback


def test_recipes_command_lists_and_copies(tmp_path, capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in packaged_recipes():
        assert name in out
    assert main(["recipes", "copy", "synth_cpu", str(tmp_path)]) == 0
    copied = tmp_path / "synth_cpu.yaml"
    assert copied.read_text() == packaged_recipes()["synth_cpu"].read_text()
    assert main(["recipes", "copy", "spin_baseline", str(tmp_path / "mine.yaml")]) == 0
    # its base is not beside it: the packaged one is found by name
    assert _plain(load_config(tmp_path / "mine.yaml")) == _plain(load_config("spin_baseline"))
    capsys.readouterr()
    assert main(["recipes", "copy", "synth_cpu", str(tmp_path)]) == 1  # never overwrites silently
    assert "exists" in capsys.readouterr().err
    assert main(["recipes", "copy", "synth_cpu", str(tmp_path), "--force"]) == 0
    assert main(["recipes", "copy", "nope", str(tmp_path)]) == 1
