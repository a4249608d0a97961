"""The training scaffold of matmap's trainers (:mod:`ml.training.cmml`, the map model;
:mod:`ml.training.property`, the property predictors; :mod:`ml.training.vae`, the generator).

What every trainer did alike lives here: the device (:func:`pick_device`), the processes of a
``torchrun`` launch (:func:`init_distributed`, :func:`agree`), resuming from the checkpoint of a
:class:`~ml.training.campaign.Campaign` (:func:`resume`), and the epoch loop (:class:`EpochLoop`):
run the trainer's epoch, append its log row to the history, checkpoint (``run_dir/last.pt`` and
``run_dir/log.csv``, atomically) and stop between epochs once the session's ``max_minutes`` are
spent. A trainer supplies what is its own: one callable that runs an epoch (steps, validation)
and returns its log row, and the state it checkpoints (model, optimiser, …).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from ml.training.campaign import Campaign

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    """CUDA when present (the local rank's GPU under torchrun, ``LOCAL_RANK``), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` alone; under ``torchrun``
    (``WORLD_SIZE`` > 1) the process group is joined first (``nccl`` on CUDA, ``gloo`` on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def agree(flag: bool, world: int, device: torch.device | str) -> bool:
    """Rank 0's ``flag``, the same on every process (a clock differs between processes).

    A collective under torchrun: every rank must call it at the same point."""
    if world == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def resume(campaign: Campaign, device: torch.device | str, check: Callable[[dict], None],
           restore: Mapping[str, Any]) -> tuple[int, list[dict], dict]:
    """Load the campaign's checkpoint into the trainer's objects.

    Args:
        campaign: its :meth:`~ml.training.campaign.Campaign.source` is read (``run_dir/last.pt``,
            else the copy kept beside the model).
        device: where tensors are mapped.
        check: raises ``ValueError`` when the checkpoint was made with another recipe.
        restore: checkpoint key → object with ``load_state_dict`` (a module is loaded with
            ``strict=True``), e.g. ``{"state_dict": model, "optimiser": optimiser}``.

    Returns:
        ``(epochs done, history, the whole state)``.

    Raises:
        FileNotFoundError: no checkpoint. ValueError: another recipe (``check``), or a
        checkpoint whose tensors do not fit the objects (another model layout).
    """
    state = campaign.load(device)
    check(state)
    try:
        for key, target in restore.items():
            if isinstance(target, torch.nn.Module):
                target.load_state_dict(state[key], strict=True)
            else:
                target.load_state_dict(state[key])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ValueError(f"--resume: {campaign.source()} was made with another configuration or model layout "
                         f"({' '.join(str(exc).split())[:200]})") from exc
    return int(state["epoch"]), list(state["history"]), state


@dataclass
class EpochLoop:
    """Epochs of one session, each logged and checkpointed.

    Attributes:
        campaign: where checkpoints and the log go.
        epochs: the recipe's number of epochs (the loop ends there).
        max_minutes: stop between epochs (and, through :meth:`out_of_time`, wherever the
            trainer asks) once this wall time of the session has passed; ``None``: no limit.
        keep_every_checkpoint: also copy each checkpoint beside the model (:meth:`Campaign.keep`).
        main: this process writes checkpoints (rank 0 under torchrun).
        world: processes of a torchrun launch (the stop decision is rank 0's, :func:`agree`).
        device: of the :func:`agree` collective.
        history: the log rows, one per finished epoch (resumed ones included).
        began: the session's start, seconds since the epoch.
    """

    campaign: Campaign
    epochs: int
    max_minutes: float | None = None
    keep_every_checkpoint: bool = False
    main: bool = True
    world: int = 1
    device: torch.device | str = "cpu"
    history: list[dict] = field(default_factory=list)
    began: float = field(default_factory=lambda: time.time())  # looked up at each call (tests patch the clock)

    def save(self, state: dict) -> None:
        """Checkpoint ``state`` with ``history`` (``last.pt``) and write ``log.csv``; no-op off rank 0."""
        if not self.main:
            return
        self.campaign.save({**state, "history": self.history}, self.history)
        if self.keep_every_checkpoint:
            self.campaign.keep()

    def out_of_time(self) -> bool:
        """Whether the session's ``max_minutes`` have passed (rank 0's clock; a collective under torchrun)."""
        if self.max_minutes is None:
            return False
        return agree(time.time() - self.began >= 60 * self.max_minutes, self.world, self.device)

    def run(self, start: int, fit_epoch: Callable[[int], dict | None], state: Callable[[], dict]) -> bool:
        """Run epochs ``start … epochs - 1``; return whether every epoch has run.

        Args:
            start: epochs already done (a resumed run's).
            fit_epoch: ``fit_epoch(epoch)`` (from 0) trains and validates one epoch and returns
                its log row (on rank 0; any dict elsewhere), or ``None`` when it stopped inside
                the epoch (having checkpointed there itself): the loop then ends.
            state: what the end-of-epoch checkpoint holds besides ``epoch`` and ``history``.
        """
        for epoch in range(start, self.epochs):
            if epoch > start and self.out_of_time():
                self._stopped()
                return False
            row = fit_epoch(epoch)
            if row is None:
                self._stopped()
                return False
            if self.main:
                self.history.append(row)
                self.save({**state(), "epoch": epoch + 1})
        return True

    def _stopped(self) -> None:
        if self.main:
            log.info("stopped after %.0f min at a checkpoint (max_minutes %s, %d epochs done): --resume continues",
                     (time.time() - self.began) / 60, self.max_minutes, len(self.history))
