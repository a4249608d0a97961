"""Where trained models live: ``data/models/<name>/model.pt`` (committed, with MODEL_CARD.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ml.settings import get_settings

MODEL_FILE = "model.pt"


def resolve_model(model: str | None, train_command: str = "python -m ml train --config cpu") -> tuple[str, Path]:
    """``(name, path)`` of a model given by name (a folder of ``data/models``) or by a file path.

    Args:
        train_command: the command the error message suggests for making the model.

    Raises:
        FileNotFoundError: neither a known model name nor an existing file.
    """
    model = model or get_settings().model
    candidate = Path(model)
    if candidate.suffix == ".pt" and candidate.is_file():
        return candidate.stem if candidate.stem != "model" else candidate.parent.name, candidate
    path = get_settings().models_dir / model / MODEL_FILE
    if path.is_file():
        return model, path
    raise FileNotFoundError(
        f"no model {model!r}: expected {path} (train one with: {train_command})"
    )


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
