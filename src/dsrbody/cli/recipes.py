"""``dsrbody recipes``: the training recipes shipped in the package.

    dsrbody recipes                       list them (name, what it is, where the file is)
    dsrbody recipes copy NAME DEST [--force]   write one out (DEST: a folder or a file name)

``dsrbody train --config NAME`` (a bare name, no folder) reads the packaged recipe directly; a copied
recipe whose ``base:`` is not beside it finds its base among the packaged ones by name.
"""

from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``dsrbody recipes``."""
    parser.description = "List the packaged training recipes, or copy one out to edit it."
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="list the recipes (the default)")
    cp = sub.add_parser("copy", help="write a recipe out")
    cp.add_argument("name", help="recipe name (see `dsrbody recipes`)")
    cp.add_argument("dest", help="folder (gets NAME.yaml) or file to write")
    cp.add_argument("--force", action="store_true", help="overwrite an existing file")


def _summary(text: str) -> str:
    """The recipe's first comment line (what it is)."""
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def run(args: argparse.Namespace) -> int:
    """List or copy."""
    from pathlib import Path

    from dsrbody.cli import CLIError
    from dsrbody.train.config import packaged_recipes, recipes_dir

    recipes = packaged_recipes()
    if getattr(args, "action", None) in (None, "list"):
        if not recipes:
            raise CLIError(f"{recipes_dir()}: no packaged recipes in this installation")
        width = max(len(n) for n in recipes)
        for name, path in recipes.items():
            print(f"{name:<{width}}  {_summary(path.read_text())}")
        print(f"({recipes_dir()}; use: dsrbody train --config NAME, or dsrbody recipes copy NAME DEST)")
        return 0
    name = args.name[: -len(".yaml")] if args.name.endswith(".yaml") else args.name
    if name not in recipes:
        raise CLIError(f"no packaged recipe '{args.name}' (there are: {', '.join(recipes) or 'none'})")
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / f"{name}.yaml"
    if dest.exists() and not args.force:
        raise CLIError(f"{dest} exists (--force overwrites it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(recipes[name].read_text())
    print(f"wrote {dest}")
    return 0
