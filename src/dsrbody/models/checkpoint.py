"""Reading weight files and placing their tensors by name, with a full account of every key.

Layouts understood (docs/design.md, Paper recipe):

- a bare state dict ``{name: tensor}`` (torchvision ``resnet50-*.pth``, dsrbody's own ``.pt``);
- SPIN's ``model_checkpoint.pt``: ``{'model': state_dict, 'optimizer': ..., ...}`` with flat names
  (``conv1.weight``, ``layer4.2.bn3.running_var``, ``fc1.weight``, ``decpose.bias``, ``init_pose``);
- Lightning checkpoints, DSR's ``dsr_w3DPW_checkpoint.pt`` / ``dsr_wo3DPW_checkpoint.pt`` among them:
  ``{'state_dict': ...}`` with ``model.backbone.`` / ``model.head.`` prefixes, plus the SMPL buffers
  of DSR's modules (``model.smpl.smpl.*``, ``smpl.*``, ``smpl_native.*``, ``J_regressor``), which are
  rebuilt here from the user's SMPL files and therefore deliberately not loaded.

Every source key ends up in exactly one of :class:`LoadReport`'s lists: ``loaded``, ``ignored``
(with the reason) or ``unexpected``; every target key not loaded is ``missing``; same-name tensors
of different shapes are ``mismatched``. The official code loads with ``strict=False`` and silently
drops whatever does not fit; here anything unexpected, missing or mismatched is an error unless
the caller allows it.

Reading never runs code from the file: :func:`torch_load_file` uses PyTorch's ``weights_only``
loader with a short allow-list of plain metadata stand-ins (:data:`PLAIN_STAND_INS`) and refuses,
in one line naming the file and the type, anything else a pickle could build.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "LoadReport",
    "read_state_dict",
    "torch_load_file",
    "PLAIN_STAND_INS",
    "place_state_dict",
    "HEAD_KEYS",
    "BODY_MODEL_PREFIXES",
    "load_regressor_checkpoint",
]

#: first name components of SPIN's HMR head (``hmr.py``) parameters and buffers.
HEAD_KEYS = ("fc1", "fc2", "decpose", "decshape", "deccam", "init_pose", "init_shape", "init_cam")
#: prefixes (after ``module.`` is removed) of body-model buffers stored in DSR's Lightning checkpoints.
BODY_MODEL_PREFIXES = ("model.smpl.", "smpl.", "smpl_native.", "J_regressor", "body_model.")
#: wrapper prefixes stripped before classifying a key (DDP's ``module.``, Lightning's ``model.``...).
WRAPPER_PREFIXES = ("module.", "model.", "regressor.", "net.")


@dataclass
class LoadReport:
    """Where every key of a weight file went.

    Attributes:
        source: the file (or a description of the mapping).
        loaded: ``(source key, target key)`` pairs copied into the module.
        missing: target keys that received nothing.
        unexpected: source keys that could not be placed anywhere.
        ignored: reason -> source keys deliberately not loaded (e.g. SMPL buffers, ImageNet ``fc``).
        mismatched: ``(source key, target key, source shape, target shape)``.
    """

    source: str
    loaded: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: dict[str, list[str]] = field(default_factory=dict)
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, max_names: int = 6) -> str:
        """A few lines for logs: counts, then examples of every problem."""

        def names(keys: list[str]) -> str:
            more = f", ... (+{len(keys) - max_names})" if len(keys) > max_names else ""
            return ", ".join(keys[:max_names]) + more

        lines = [f"{self.source}: loaded {len(self.loaded)} tensors"]
        for reason, keys in self.ignored.items():
            lines.append(f"  ignored {len(keys)} ({reason}): {names(keys)}")
        if self.missing:
            lines.append(
                f"  missing {len(self.missing)} (kept at their initial values): {names(self.missing)}"
            )
        if self.unexpected:
            lines.append(
                f"  unexpected {len(self.unexpected)} (could not be placed): {names(self.unexpected)}"
            )
        for sk, tk, ss, ts in self.mismatched[:max_names]:
            lines.append(f"  shape mismatch: {sk} {list(ss)} in the file vs {tk} {list(ts)} in the model")
        if len(self.mismatched) > max_names:
            lines.append(f"  ... and {len(self.mismatched) - max_names} more shape mismatches")
        return "\n".join(lines)

    def raise_if_bad(self, allow_missing: bool = False, allow_unexpected: bool = False) -> None:
        """Raise ``ValueError`` naming the file and the offending keys, unless allowed.

        Shape mismatches are always an error (a checkpoint of another backbone or body model).
        """
        problems = []
        if self.mismatched:
            sk, tk, ss, ts = self.mismatched[0]
            problems.append(
                f"{len(self.mismatched)} tensors have other shapes than the model's (first: {sk} "
                f"{list(ss)} vs {tk} {list(ts)}); the file was made for another backbone or body model"
            )
        if self.missing and not allow_missing:
            problems.append(f"{len(self.missing)} model keys are missing from it (first: {self.missing[:3]})")
        if self.unexpected and not allow_unexpected:
            problems.append(f"{len(self.unexpected)} keys could not be placed (first: {self.unexpected[:3]})")
        if problems:
            raise ValueError(f"{self.source}: " + "; ".join(problems))


#: Metadata classes that released checkpoints pickle beside their tensors (DSR's Lightning 0.8
#: checkpoints: the yacs ``CfgNode`` recipe inside Lightning's ``AttributeDict``; older Lightning:
#: ``argparse.Namespace``). The safe loader reads them as plain ``OrderedDict`` s (items and instance
#: attributes kept); none of their code is imported or run.
PLAIN_STAND_INS = (
    "yacs.config.CfgNode",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "argparse.Namespace",
)

_TORCH_VERSION = tuple(int(x) for x in re.findall(r"\d+", torch.__version__)[:2])

_NEEDS = (
    (re.compile(r"GLOBAL ([\w.<>]+) was not an allowed global"), "the global {}"),
    (re.compile(r"GLOBAL ([\w.<>]+) whose module"), "the global {}"),
    (re.compile(r"unrecognized function (.+?)(?: which belongs|$)", re.M), "a call of {}"),
    (re.compile(r"but got (<class '[^']+'>)"), "an object of {}"),
)


def _refusal(path: Path, error: Exception) -> str:
    """The one-line refusal of a file the safe loader would not read: the file and what it needs."""
    text = str(error)
    for pattern, what in _NEEDS:
        m = pattern.search(text)
        if m:
            needed = what.format(m.group(1).strip())
            break
    else:
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]  # torch's reason: the second
        detail = paragraphs[1].splitlines()[0] if len(paragraphs) > 1 else type(error).__name__
        needed = f"something the safe loader refuses ({detail.replace('WeightsUnpickler error: ', '')})"
    return (
        f"{path}: refused: reading it needs {needed}, not one of the plain types dsrbody loads from weight "
        "files (tensors, numbers, strings, lists, dicts); such a file can run code when loaded"
    )


def torch_load_file(path: Path) -> object:
    """``torch.load`` on CPU with the safe ``weights_only`` loader, never full unpickling.

    Tensors, plain containers (dict, list, tuple, ``OrderedDict``, sets), numbers and strings are read;
    so are the metadata classes of :data:`PLAIN_STAND_INS` (as plain ``OrderedDict`` s). That covers
    dsrbody's own checkpoints (Lightning's and the exported ones), bare state dicts (torchvision), SPIN's
    ``model_checkpoint.pt`` (model and optimiser state dicts) and DSR's Lightning checkpoints. Anything
    else (a pickled object whose loading could run code) is refused before it is built.

    Raises:
        ValueError: one line naming the file and the type or call it needs, or saying it is not a
            PyTorch file.
    """
    from collections import OrderedDict
    from contextlib import nullcontext

    # (class, "module.name") stand-ins need torch >= 2.6; older torch reads no stand-in (DSR's metadata
    # is then refused like any other class: safe, not tolerant)
    allow = getattr(torch.serialization, "safe_globals", None) if _TORCH_VERSION >= (2, 6) else None
    try:
        with allow([(OrderedDict, name) for name in PLAIN_STAND_INS]) if allow else nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if str(e).startswith("Weights only load failed") or "allowed global" in str(e):
            raise ValueError(_refusal(Path(path), e)) from None
        raise ValueError(f"{path}: not a PyTorch weight file ({_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - any reader error means the same to the user
        raise ValueError(f"{path}: not a PyTorch weight file ({_first_line(e)})") from None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read the tensors of a weight file.

    Args:
        path: a ``.pt``/``.pth``/``.ckpt`` file with a bare state dict, ``{'model': ...}`` (SPIN) or
            ``{'state_dict': ...}`` (Lightning, DSR).

    Returns:
        ``(state_dict, layout)`` with ``layout`` one of ``"bare"``, ``"model"``, ``"state_dict"``.
        Non-tensor entries are dropped.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a weight file or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    obj = torch_load_file(path)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict or a checkpoint dict, found {type(obj).__name__}")
    layout = "bare"
    for key in ("state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            inner = inner.state_dict()
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj, layout = inner, key
            break
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError(
            f"{path}: no tensors found (expected a state dict, {{'model': state_dict}} "
            f"or {{'state_dict': ...}}; "
            f"top-level keys: {list(obj.keys())[:8]})"
        )
    return sd, layout


def strip_wrappers(key: str) -> str:
    """Remove leading wrapper prefixes (``module.``, ``model.``, ``regressor.``, ``net.``) repeatedly."""
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def place_state_dict(
    module: nn.Module,
    source: Mapping[str, torch.Tensor],
    mapper: Callable[[str], tuple[str | None, str | None]],
    source_name: str,
    *,
    allow_missing: bool = False,
    allow_unexpected: bool = False,
) -> LoadReport:
    """Copy tensors into ``module`` by mapped names and account for every key.

    Args:
        module: the target.
        source: source state dict.
        mapper: ``source key -> (target key or None, ignore reason or None)``; a key mapped to
            ``(None, None)`` is unexpected.
        source_name: what the report names (usually the file path).
        allow_missing: accept target keys that receive nothing (they keep their values).
        allow_unexpected: accept source keys that cannot be placed.

    Returns:
        The :class:`LoadReport`; dtypes are cast to the target's.

    Raises:
        ValueError: (see :meth:`LoadReport.raise_if_bad`) before anything is copied, so a refused
        file leaves the module unchanged.
    """
    target = module.state_dict()
    report = LoadReport(source=source_name)
    new_values: dict[str, torch.Tensor] = {}
    for sk, value in source.items():
        tk, reason = mapper(sk)
        if reason is not None:
            report.ignored.setdefault(reason, []).append(sk)
            continue
        if tk is None or tk not in target:
            report.unexpected.append(sk)
            continue
        if tuple(value.shape) != tuple(target[tk].shape):
            report.mismatched.append((sk, tk, tuple(value.shape), tuple(target[tk].shape)))
            continue
        if tk in new_values:
            report.unexpected.append(sk)  # two source keys for one target: keep the first
            continue
        new_values[tk] = value
        report.loaded.append((sk, tk))
    report.missing = [k for k in target if k not in new_values]
    report.raise_if_bad(allow_missing=allow_missing, allow_unexpected=allow_unexpected)
    merged = dict(target)
    merged.update({k: v.to(dtype=target[k].dtype) for k, v in new_values.items()})
    module.load_state_dict(merged, strict=False)
    return report


def _regressor_mapper(
    target_keys: set[str], backbone_roots: tuple[str, ...]
) -> Callable[[str], tuple[str | None, str | None]]:
    """Map SPIN / DSR / dsrbody key names onto a :class:`~dsrbody.models.hmr.Regressor`'s
    (``backbone_roots``: the backbone's flat parameter roots, its ``state_dict_roots``)."""

    def mapper(key: str) -> tuple[str | None, str | None]:
        raw = key[len("module.") :] if key.startswith("module.") else key
        if raw.startswith(BODY_MODEL_PREFIXES) or key.startswith(BODY_MODEL_PREFIXES):
            return None, "body-model buffers; rebuilt from your body-model files"
        k = strip_wrappers(raw)
        if k.startswith("backbone.") or k.startswith("head."):
            part, rest = k.split(".", 1)
        else:
            root = k.split(".", 1)[0]
            if root in backbone_roots:
                part, rest = "backbone", k
            elif root in HEAD_KEYS:
                part, rest = "head", k
            else:
                return None, None
        tk = f"{part}.{rest}"
        if part == "backbone" and rest.startswith("fc.") and tk not in target_keys:
            return None, "ImageNet classifier of the backbone; unused by the regressor"
        return tk, None

    return mapper


def load_regressor_checkpoint(
    regressor: nn.Module,
    path: str | Path,
    *,
    allow_missing: bool = False,
    allow_unexpected: bool = False,
) -> LoadReport:
    """Load SPIN's ``model_checkpoint.pt``, DSR's Lightning checkpoints or dsrbody's own weights into
    a regressor (``backbone.*`` + ``head.*``), accounting for every key.

    Args:
        regressor: a :class:`~dsrbody.models.hmr.Regressor` (anything with ``backbone`` and ``head``).
        path: the weight file.
        allow_missing: accept regressor keys absent from the file (they keep their values).
        allow_unexpected: accept file keys that cannot be placed (they are listed in the report).

    Returns:
        The :class:`LoadReport` (``report.summary()`` for logs).

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable file; shape mismatches (a checkpoint
        of another backbone or body model); missing/unexpected keys unless allowed. Nothing is
        loaded when a shape mismatches.
    """
    sd, layout = read_state_dict(path)
    target_keys = set(regressor.state_dict().keys())
    roots = tuple(getattr(regressor.backbone, "state_dict_roots", ()))
    return place_state_dict(
        regressor,
        sd,
        _regressor_mapper(target_keys, roots),
        f"{path} ({layout} layout)",
        allow_missing=allow_missing,
        allow_unexpected=allow_unexpected,
    )
