"""Callbacks recoml adds to Lightning's: a checkpoint on pre-emption signals."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

#: What ``signal.getsignal`` returns and ``signal.signal`` takes.
SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class SignalCheckpoint(pl.Callback):
    """On SIGTERM or SIGUSR1 (SLURM sends it before pre-emption) save ``last.ckpt`` and stop.

    The checkpoint is written when Lightning stops between batches, so it holds consistent optimizer,
    scheduler, loop and RNG state; ``ckpt_path=last`` resumes from it.
    """

    def __init__(self, dirpath: str | Path, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")) -> None:
        self.dirpath = Path(dirpath)
        self.signals = [getattr(signal, name) for name in signals]
        self.received: int | None = None
        self._previous: dict[int, SignalHandler] = {}

    def _handler(self, signum: int, frame) -> None:  # noqa: ANN001 - signal handler signature
        self.received = signum
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        # SIGUSR1 is ours to turn into a clean stop; Lightning does the same for SIGTERM.
        if self.received is not None:
            raise SIGTERMException()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        # Lightning raises SIGTERMException between batches, so the state saved here is consistent.
        if not isinstance(exception, SIGTERMException):
            return
        signum = self.received or signal.SIGTERM
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        log.warning("received %s: saved %s; resume with ckpt_path=last", signal.Signals(signum).name, path)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
