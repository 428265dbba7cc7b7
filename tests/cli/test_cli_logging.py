"""Library code logs instead of printing; the console shows warnings unless ``dsrbody -v``; Lightning's
advertising tips and torch's ``_pytree`` deprecation warnings stay off the console during training."""

from __future__ import annotations

import ast
import logging
import warnings
from pathlib import Path

import dsrbody
from dsrbody.cli import main, setup_logging

SRC = Path(dsrbody.__file__).resolve().parent


def test_no_print_in_library_code():
    """Only the CLI prints (its output); everything else uses logging."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


def test_console_level_and_verbose(capsys):
    log = logging.getLogger("dsrbody.some.module")
    try:
        setup_logging(0)
        log.info("an informational message")
        log.warning("a warning")
        err = capsys.readouterr().err
        assert "a warning" in err and "informational" not in err
        assert main(["-v", "recipes"]) == 0
        assert logging.getLogger("dsrbody").level == logging.INFO
        log.info("an informational message")
        assert "an informational message" in capsys.readouterr().err
        assert main(["-vv", "recipes"]) == 0
        assert logging.getLogger("dsrbody").level == logging.DEBUG
        assert main(["recipes"]) == 0
        assert logging.getLogger("dsrbody").level == logging.WARNING
        handlers = [h for h in logging.getLogger("dsrbody").handlers if getattr(h, "dsrbody_console", False)]
        assert len(handlers) == 1  # one console handler however many commands ran (pytest may add its own)
    finally:
        setup_logging(0)


def test_lightning_tips_and_pytree_warnings_are_quiet():
    import io

    from dsrbody.train.run import quiet_lightning

    # what Lightning's rank_zero_info does on the first process (called directly: the rank is not ours)
    rank_zero_info = logging.getLogger("lightning.pytorch.utilities.rank_zero").info

    console = io.StringIO()  # stands for Lightning's console handler (whatever stream it was bound to)
    handler = logging.StreamHandler(console)
    lightning_logger = logging.getLogger("lightning.pytorch")
    lightning_logger.addHandler(handler)
    try:
        setup_logging(1)  # even with -v
        quiet_lightning()
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing litlogger")
        with warnings.catch_warnings(record=True) as caught:
            quiet_lightning()
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1)
        assert caught == []
        rank_zero_info("GPU available: False, used: False")
        assert "Tip" not in console.getvalue() and "GPU available" in console.getvalue()  # -v: info lines
        console.truncate(0)
        console.seek(0)
        setup_logging(0)
        quiet_lightning()
        rank_zero_info("GPU available: False, used: False")
        assert "GPU available" not in console.getvalue()  # quiet by default
    finally:
        lightning_logger.removeHandler(handler)
        setup_logging(0)
