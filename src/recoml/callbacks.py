"""Callbacks recoml adds to Lightning's: a checkpoint on pre-emption signals, training curves in the run
directory and the loggers, progress as a bar on a terminal and as plain lines elsewhere, and a warning
when a CPU run is predicted to take long."""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import pandas as pd
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from recoml.loggers import log_figures
from recoml.plotting.style import apply_style, save_figure
from recoml.plotting.training import plot_training_curves

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


class TrainingCurves(pl.Callback):
    """``<dirpath>/<stem>.png|pdf``: loss and metrics vs epoch, redrawn after every epoch from the CSV
    logger's ``metrics.csv`` (a resumed run's file holds the whole history); at the end of fit the figure
    also goes to every logger that keeps images (TensorBoard, W&B, MLflow)."""

    def __init__(self, dirpath: str | Path, stem: str = "training_curves", plot_style: str | None = None):
        self.dirpath = Path(dirpath)
        self.stem = stem
        self.plot_style = plot_style
        self.png: Path | None = None
        self._said_no_csv = False

    def _csv(self, trainer: pl.Trainer) -> CSVLogger | None:
        found = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if found is None and not self._said_no_csv:
            log.info("no csv logger configured: training curves are not drawn (add logger=csv or many)")
            self._said_no_csv = True
        return found

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        csv = self._csv(trainer) if trainer.is_global_zero else None
        if csv is None:
            return
        csv.save()  # flush the rows Lightning holds back (it writes every flush_logs_every_n_steps)
        path = Path(csv.experiment.metrics_file_path)
        if not path.is_file():
            return
        frame = pd.read_csv(path)
        per_epoch = trainer.num_training_batches / max(1, trainer.accumulate_grad_batches)
        apply_style(self.plot_style)
        try:
            fig = plot_training_curves(
                frame,
                per_epoch if math.isfinite(per_epoch) else None,
                f"training curves: {path.parent.parent.name}",
            )
        except ValueError as err:  # nothing logged yet (e.g. an epoch shorter than log_every_n_steps)
            log.debug("training curves not drawn: %s", err)
            return
        self.png = save_figure(fig, self.dirpath, self.stem)["png"]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and self.png is not None and self.png.is_file():
            log_figures(trainer.loggers, {self.stem: self.png}, step=trainer.global_step)


def progress_bar(refresh_rate: int = 20, every_s: float = 60.0) -> ProgressBar:
    """Lightning's tqdm bar when stderr is a terminal; otherwise (batch jobs, pipes, files) plain log
    lines every ``every_s`` seconds and at the end of each epoch, instead of thousands of tqdm frames."""
    if sys.stderr.isatty():
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return LogProgress(every_s=every_s)


class LogProgress(ProgressBar):
    """Progress as log lines: ``epoch 3/8: batch 120/400, 35.2 batches/s, train/loss=0.5312`` every
    ``every_s`` seconds, a summary with the validation metrics at the end of each epoch and of testing."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._enabled = True
        self._start = self._last = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        items = self.get_metrics(trainer, pl_module).items()
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items if "/" in k)

    def _epochs(self, trainer: pl.Trainer) -> str:
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        return f"epoch {trainer.current_epoch + 1}/{total}"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = time.perf_counter()
        if not (self._enabled and trainer.is_global_zero) or now - self._last < self.every_s:
            return
        self._last = now
        done = args[-1] + 1  # batch_idx
        total = self.total_train_batches
        rate = done / max(now - self._start, 1e-9)
        log.info(
            "%s: batch %d/%s, %.3g batches/s, %s",
            self._epochs(trainer),
            done,
            total if math.isfinite(total) else "?",
            rate,
            self._metrics(trainer, pl_module),
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            took = time.perf_counter() - self._start
            log.info("%s done in %.0f s: %s", self._epochs(trainer), took, self._metrics(trainer, pl_module))

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            log.info("test done in %.0f s", time.perf_counter() - self._start)


class CostEstimate(pl.Callback):
    """On the CPU, time ``timed_batches`` training batches (after ``skip_batches`` of warm-up) and warn
    when the configured epochs extrapolate to more than ``warn_minutes`` (e.g. model=gnn at its default
    size on the toy set: hours), with the estimate and what makes it faster."""

    def __init__(self, warn_minutes: float = 30.0, timed_batches: int = 3, skip_batches: int = 1) -> None:
        self.warn_minutes = warn_minutes
        self.timed_batches = timed_batches
        self.skip_batches = skip_batches
        self.estimate_s: float | None = None
        self._t0: float | None = None

    def _timing(self, trainer: pl.Trainer) -> bool:
        return (
            self.estimate_s is None
            and trainer.is_global_zero
            and isinstance(trainer.accelerator, CPUAccelerator)
            and trainer.current_epoch == 0
        )

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int):
        if batch_idx == self.skip_batches and self._timing(trainer):
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        batch_idx = args[-1]
        if (
            self._t0 is None
            or batch_idx != self.skip_batches + self.timed_batches - 1
            or not self._timing(trainer)
        ):
            return
        per_batch = (time.perf_counter() - self._t0) / self.timed_batches
        batches = trainer.num_training_batches
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        if not math.isfinite(batches):
            return
        self.estimate_s = per_batch * batches * epochs
        if self.estimate_s > 60 * self.warn_minutes:
            log.warning(
                "training on the CPU is predicted to take about %s (%.2f s per batch x %d batches x %d "
                "epochs, validation not counted); a GPU (trainer=gpu), a smaller model, fewer epochs "
                "(trainer.max_epochs) or fewer batches (trainer.limit_train_batches) is faster",
                _duration(self.estimate_s),
                per_batch,
                batches,
                epochs,
            )


def _duration(seconds: float) -> str:
    """``1.5 h``, ``42 min``, ``12 s``."""
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"
