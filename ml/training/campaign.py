"""A training campaign that outlives one session: one resumable checkpoint and its log.

Both trainers (:mod:`ml.training.cmml`, the map model; :mod:`ml.training.vae`, the generator) write
``run_dir/last.pt`` and ``run_dir/log.csv`` atomically at every checkpoint. Since a session's
machine may not be kept, a copy of both is kept beside the model (``train_state.pt``,
``train_log.csv``, a few MB, committed with it), and ``--resume`` on a clean clone continues
from that copy when ``run_dir`` has none.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import torch

from ml.models.checkpoint import write_atomic

#: The resumable state and its log, kept beside the model.
TRAIN_STATE_FILE, TRAIN_LOG_FILE = "train_state.pt", "train_log.csv"


def write_log(path: Path, history: list[dict]) -> None:
    """Write the per-epoch rows as CSV (the columns of the first row); nothing when empty."""
    if not history:
        return
    fields = list(dict.fromkeys(key for row in history for key in row))
    tmp = Path(path).with_name(Path(path).name + ".part")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


class Campaign:
    """The checkpoint of one run and its kept copy.

    Args:
        run_dir: where ``last.pt`` and ``log.csv`` are written.
        keep_dir: the model folder, where :meth:`keep` copies them (``None``: no copy).
    """

    def __init__(self, run_dir: Path, keep_dir: Path | None = None) -> None:
        self.folder = Path(run_dir)
        self.checkpoint = self.folder / "last.pt"
        self.log = self.folder / "log.csv"
        self.kept = Path(keep_dir) / TRAIN_STATE_FILE if keep_dir is not None else None

    def source(self) -> Path | None:
        """The checkpoint a resume reads: ``run_dir/last.pt``, else the kept copy, else ``None``."""
        if self.checkpoint.is_file():
            return self.checkpoint
        if self.kept is not None and self.kept.is_file():
            return self.kept  # a clean clone: continue the committed campaign
        return None

    def load(self, device: torch.device | str = "cpu") -> dict:
        """The saved state (a dict of tensors, numbers and lists; ``weights_only``).

        Raises:
            FileNotFoundError: neither ``run_dir/last.pt`` nor the kept copy exists.
        """
        source = self.source()
        if source is None:
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint}"
                                    + (f" nor {self.kept}" if self.kept is not None else ""))
        return torch.load(source, map_location=device, weights_only=True)

    def save(self, state: dict, history: list[dict]) -> None:
        """Write ``state`` to ``last.pt`` and ``history`` to ``log.csv``, each atomically."""
        write_atomic(self.checkpoint, state)
        write_log(self.log, history)

    def keep(self) -> None:
        """Copy the checkpoint and its log beside the model (no-op without ``keep_dir``)."""
        if self.kept is None or not self.checkpoint.is_file():
            return
        self.kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.checkpoint, self.kept)
        if self.log.is_file():
            shutil.copyfile(self.log, self.kept.with_name(TRAIN_LOG_FILE))
