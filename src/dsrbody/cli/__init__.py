"""The ``dsrbody`` command.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. Modules are
imported only when their command runs, so ``dsrbody --help`` stays fast. Bad input is reported as
one line; set ``DSRBODY_DEBUG=1`` to get the traceback instead.

What a command prints (``print``) is its output. Library code reports through :mod:`logging` (loggers
under ``dsrbody``): the console shows warnings only, ``dsrbody -v COMMAND`` adds the informational
messages (and Lightning's), ``-vv`` debug messages with the logger's name.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from dsrbody import __version__

# (command, module under dsrbody.cli, one-line help). Add a line here for a new command.
COMMANDS: list[tuple[str, str, str]] = [
    ("body", "body", "pose a body model and write its mesh (.obj/.ply)"),
    ("prior", "prior", "build a semantic clothing prior (scans or procedural outfits) or paint one"),
    ("synth", "synth", "generate a synthetic clothed-human dataset in the SPIN/DSR format"),
    ("train", "train", "train the regressor with SPIN and DSR losses from a YAML recipe"),
    (
        "recipes",
        "recipes",
        "list the packaged training recipes or copy one out (dsrbody recipes copy NAME DEST)",
    ),
    (
        "cache",
        "cache",
        "build the frozen backbone's feature caches of a recipe's datasets, several processes at once",
    ),
    ("curve", "curve", "plot a training run's validation metrics against samples seen, beside the mean body"),
    ("export", "export", "write the inference weights (fp16, no optimiser state) of a training checkpoint"),
    ("eval", "eval", "evaluate a checkpoint: MPJPE, PA-MPJPE, PVE, PVE-T (mm), JSON and a table"),
    ("render", "render", "render a posed body: shaded, body parts, soft silhouette, side view, overlay"),
    ("demo", "demo", "reconstruct bodies in images, folders or videos (overlays, meshes, parameters)"),
    ("fit", "fit", "fit body models to images by optimisation with keypoint and DSR losses"),
    ("fetch", "fetch", "download SPIN's public data and ImageNet ResNet-50 weights (checksums, resume)"),
]


class CLIError(Exception):
    """An error the CLI reports as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command (help texts only; options load lazily)."""
    parser = argparse.ArgumentParser(
        prog="dsrbody",
        description="Regress 3D human bodies from images of clothed people, with DSR losses.",
    )
    parser.add_argument("--version", action="version", version=f"dsrbody {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="before the command: more messages on the console (-v informational, -vv debug)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, _module, help_text in COMMANDS:
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_parser(name: str, module_name: str) -> tuple[argparse.ArgumentParser, object]:
    module = importlib.import_module(f"dsrbody.cli.{module_name}")
    parser = argparse.ArgumentParser(prog=f"dsrbody {name}")
    module.add_parser(parser)
    return parser, module


class _ConsoleHandler(logging.Handler):
    """Writes records to the ``sys.stderr`` of the moment (so that redirections and captures see them)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never stop a command
            self.handleError(record)


def setup_logging(verbose: int = 0) -> int:
    """Console logging for a command: warnings by default, informational messages with ``verbose`` 1,
    debug with 2. Applies to the ``dsrbody`` loggers; training sets Lightning's to the same level
    (:func:`dsrbody.train.run.quiet_lightning`). Returns the level."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("dsrbody")
    # by marker, not class: a re-imported dsrbody.cli has another _ConsoleHandler class
    for h in [h for h in logger.handlers if getattr(h, "dsrbody_console", False)]:
        logger.removeHandler(h)
    handler = _ConsoleHandler()
    handler.dsrbody_console = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s" if verbose >= 2 else "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return level


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dsrbody`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = 0
    while argv and (argv[0] in ("-v", "--verbose") or argv[0].strip("v") == "-" and len(argv[0]) > 2):
        verbose += 1 if argv[0] == "--verbose" else len(argv[0]) - 1
        argv.pop(0)
    setup_logging(verbose)
    top = build_parser()
    if not argv or argv[0] not in {c[0] for c in COMMANDS}:
        top.parse_args(argv)  # handles --help / --version / unknown commands
        top.print_help()
        return 2
    name = argv[0]
    module_name = next(m for c, m, _ in COMMANDS if c == name)
    parser, module = _command_parser(name, module_name)
    # intermixed: positional overrides may come before and after options (`train --config C a=1 --out X b=2`)
    try:
        args = parser.parse_intermixed_args(argv[1:])
    except TypeError:  # parsers with sub-actions (e.g. `prior build|show`) cannot be intermixed
        args = parser.parse_args(argv[1:])
    if isinstance(getattr(args, "device", None), str):  # --device auto: CUDA when present, else CPU
        from dsrbody.devices import resolve_device

        args.device = resolve_device(args.device)
    try:
        return int(module.run(args) or 0)
    except (CLIError, FileNotFoundError, ValueError) as exc:  # one-line errors for bad input
        if os.environ.get("DSRBODY_DEBUG"):
            raise
        print(f"dsrbody {name}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
