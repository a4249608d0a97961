"""The one checkpoint format of matmap's models: a ``torch.save`` dict written atomically and
read back with ``weights_only=True``.

A checkpoint is ``{"kind", "format", "config", "state_dict", **extra}``: ``kind`` names the
model family, ``format`` the version of that family's layout, ``config`` the plain dict its
configuration rebuilds from, ``state_dict`` the weights; ``extra`` holds whatever the trainer
adds (history, test scores, vocabulary …). Each family declares one :class:`CheckpointFormat`
and keeps only its own part, rebuilding the network from the payload::

    FORMAT = CheckpointFormat("cmml", 1, "CMML", "python -m ml train --config cpu", untagged=True)
    save_checkpoint(path, FORMAT, asdict(model.config), model.state_dict(), extra)
    payload = load_checkpoint(path, FORMAT, device)

Nothing here knows a model: the rebuild (config class, ``load_state_dict(strict=True)``) stays
with each model.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

#: Keys every checkpoint holds; ``extra`` may not override them.
RESERVED_KEYS = ("kind", "format", "config", "state_dict")


@dataclass(frozen=True)
class CheckpointFormat:
    """What one model family writes and accepts.

    Attributes:
        kind: the ``kind`` field of its files (``"cmml"``, ``"cgcnn-property"`` …).
        version: the layout version written and the only one read (the ``format`` field).
        label: how error messages name it (``"not a matmap <label> checkpoint"``).
        command: the command that makes such a file, named in error messages.
        untagged: also accept a file with no ``kind`` field (this family's files written
            before the field existed; they must still have ``version``).
    """

    kind: str
    version: int
    label: str
    command: str
    untagged: bool = False


def write_atomic(path: Path | str, payload) -> None:
    """``torch.save`` ``payload`` to ``path`` through ``<path>.part`` then a rename, so that
    ``path`` holds either its old content or the whole new one, never a partial file.

    Args:
        path: the file to write; its folder is created.
        payload: anything ``torch.save`` takes.

    Raises:
        Whatever ``torch.save`` raises (the ``.part`` file is removed, ``path`` left as it was).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path | str, spec: CheckpointFormat, config: dict, state_dict: dict,
                    extra: dict | None = None) -> None:
    """Write ``{"kind", "format", "config", "state_dict", **extra}`` atomically to ``path``.

    Args:
        path: the model file; its folder is created.
        spec: the model family (its ``kind`` and ``version`` are written).
        config: the configuration as a plain dict (what the loader rebuilds the model from).
        state_dict: the weights and buffers.
        extra: more entries (plain types and tensors only: the file is read ``weights_only``).

    Raises:
        ValueError: ``extra`` holds one of :data:`RESERVED_KEYS`.
    """
    clash = sorted(set(extra or {}) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"extra entries {clash} would overwrite the checkpoint's own fields")
    payload = {"kind": spec.kind, "format": spec.version, "config": config, "state_dict": state_dict}
    payload.update(extra or {})
    write_atomic(path, payload)


def load_checkpoint(path: Path | str, spec: CheckpointFormat, device: torch.device | str = "cpu",
                    command: str | None = None) -> dict:
    """Read a file of :func:`save_checkpoint` (``weights_only=True``) and check that it is one
    of ``spec``: a dict of its kind and version with a ``config`` and a ``state_dict``.

    Args:
        path: the model file.
        spec: the family expected.
        device: where the tensors are mapped.
        command: the command error messages name (default ``spec.command``).

    Returns:
        The whole payload; the model is rebuilt from it by the caller.

    Raises:
        FileNotFoundError: no such file. ValueError: a file that is not a checkpoint, or one of
        another kind or format version (each message names the file and the command that makes
        a good one).
    """
    path = Path(path)
    command = command or spec.command
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path} (make one with: {command})")
    refused = f"{path} is not a matmap {spec.label} checkpoint ({spec.kind} format {spec.version})"
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ValueError(f"{refused}: unreadable ({detail}); make one with: {command}") from exc
    if not isinstance(payload, dict):
        raise ValueError(f"{refused}: it holds a {type(payload).__name__}; make one with: {command}")
    kind = payload.get("kind", spec.kind if spec.untagged else None)
    if kind != spec.kind:
        raise ValueError(f"{refused}: its kind is {kind!r}; make one with: {command}")
    found = payload.get("format")
    if found != spec.version:
        if isinstance(found, int) and found > spec.version:
            raise ValueError(f"{refused}: its format {found} is newer than this code reads "
                             f"(update matmap, or make one with: {command})")
        raise ValueError(f"{refused}: its format is {found!r}; make one with: {command}")
    missing = [key for key in ("config", "state_dict") if not isinstance(payload.get(key), dict)]
    if missing:
        raise ValueError(f"{refused}: no {' or '.join(missing)}; make one with: {command}")
    return payload
