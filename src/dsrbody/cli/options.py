"""Options shared by several commands: the body-model option group, built from the registry.

Every command that builds or picks a body model adds its options with :func:`add_body_options`, so the
choices are :data:`dsrbody.body.factory.BODY_MODELS`' names and a new family registered there is
accepted everywhere. Reading the registry imports neither torch nor a body model (``--help`` stays fast).
"""

from __future__ import annotations

import argparse

__all__ = ["add_body_options"]


def add_body_options(
    parser: argparse.ArgumentParser,
    *,
    flag: str = "--body",
    from_checkpoint: bool = False,
    gender: bool = True,
    topology: bool = False,
    checkpoint_mesh: str = "training",
) -> argparse._ArgumentGroup:
    """Add the "body model" option group: the family (``flag``), ``--model-path`` and, when asked,
    ``--gender`` and ``--topology``.

    Args:
        parser: the command's parser.
        flag: the option naming the family: ``--body`` (``args.body``) or ``--model`` (``args.model``).
        from_checkpoint: the command takes the body model from a checkpoint: the options default to
            None (the checkpoint's; the default family where nothing says) and ``--topology`` takes any
            mesh name the family accepts. Otherwise the family defaults to
            :data:`~dsrbody.body.factory.DEFAULT_BODY_MODEL`, ``--gender`` to ``neutral`` and
            ``--topology`` (one of the registered families' meshes) to None, the family's default mesh.
        gender: add ``--gender`` (:data:`~dsrbody.body.factory.GENDERS`).
        topology: add ``--topology``, the mesh of families that have several.
        checkpoint_mesh: with ``from_checkpoint``, which of the checkpoint's meshes ``--topology``
            defaults to (``"training"`` or ``"evaluation"``), for the help text.

    Returns:
        the argument group.
    """
    from dsrbody.body.factory import BODY_MODELS, DEFAULT_BODY_MODEL, GENDERS

    specs = list(BODY_MODELS.values())

    def labels(specs_) -> str:
        return "/".join(s.label for s in specs_)

    group = parser.add_argument_group("body model")
    if from_checkpoint:
        group.add_argument(
            flag,
            default=None,
            choices=tuple(BODY_MODELS),
            help=f"body model where the checkpoint does not say (default: {DEFAULT_BODY_MODEL})",
        )
    else:
        group.add_argument(
            flag,
            default=DEFAULT_BODY_MODEL,
            choices=tuple(BODY_MODELS),
            help=f"body model (default {DEFAULT_BODY_MODEL})",
        )
    with_files = [s for s in specs if s.needs_files]
    group.add_argument(
        "--model-path",
        default=None,
        help="; ".join(f"{s.label}: {s.files_help}" for s in with_files) or "model files",
    )
    if gender:
        gendered = [s for s in specs if s.gendered]
        group.add_argument(
            "--gender",
            default=None if from_checkpoint else "neutral",
            choices=GENDERS,
            help=f"{labels(gendered)}: which model file"
            + (
                " (default: the checkpoint's, else neutral)"
                if from_checkpoint
                else "; a family with one model for all genders shows that gender's average body"
            ),
        )
    if topology:
        meshed = [s for s in specs if s.topologies]
        if from_checkpoint:
            group.add_argument(
                "--topology",
                default=None,
                help=f"{labels(meshed)} mesh (default: the checkpoint's {checkpoint_mesh} mesh)",
            )
        else:
            choices = tuple(dict.fromkeys(t for s in meshed for t in s.topologies))
            group.add_argument(
                "--topology",
                default=None,
                choices=choices,
                help=f"{labels(meshed)} mesh (default: the family's first): "
                + "; ".join(f"{s.label} {', '.join(s.topologies)}" for s in meshed),
            )
    return group
