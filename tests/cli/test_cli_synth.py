import numpy as np

from dsrbody.cli import main


def test_synth_cli_writes_split_and_sheet(tmp_path, capsys, anny_body):
    out = tmp_path / "ds"
    sheet = tmp_path / "sheet.png"
    rc = main(["synth", "--out", str(out), "--num", "3", "--split", "test", "--workers", "1", "--quiet",
               "--contact-sheet", str(sheet)])  # fmt: skip
    assert rc == 0
    data = np.load(out / "synth_test.npz")
    assert len(data["imgname"]) == 3 and sheet.stat().st_size > 1000
    card = (out / "README.md").read_text()
    assert "| test | 3 |" in card
    # a second run of the same command is a no-op; --num 0 is a one-line error
    assert main(["synth", "--out", str(out), "--num", "3", "--split", "test", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["synth", "--out", str(tmp_path / "other"), "--num", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsrbody synth: error:") and "--num" in err and "\n" not in err


def test_options_may_follow_positional_overrides():
    """`dsrbody train --config C a=1 --out X b=2`: overrides on both sides of an option."""
    import argparse

    from dsrbody.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser)
    args = parser.parse_intermixed_args(["--config", "c.yaml", "a=1", "--out", "x", "b=2"])
    assert args.overrides == ["a=1", "b=2"] and args.out == "x"
