"""Classes a user would write in their own package, plugged in by ``_target_`` in the tests."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn


class TinyImageNet(nn.Module):
    """A user's own image model: any nn.Module taking (in_channels, out_dim)."""

    accepts = "image"

    def __init__(self, in_channels: int, out_dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class CountingCallback(pl.Callback):
    batches = 0

    def on_train_batch_end(self, *args, **kwargs) -> None:
        CountingCallback.batches += 1


class NaNImageNet(TinyImageNet):
    """A user's image model that goes wrong: every output is NaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


class EventCounter(pl.Callback):
    """Writes the store rows each rank evaluated to ``<run>/events_<stage>_rank<r>.json``.

    Validation keeps the last epoch's events; test keeps the events of the (single) test loop.
    """

    def __init__(self) -> None:
        self.seen: dict[str, list[int]] = {"val": [], "test": []}

    def _record(self, stage: str, batch) -> None:
        self.seen[stage] += batch.event_index.tolist()

    def _write(self, trainer: pl.Trainer, stage: str) -> None:
        import json
        from pathlib import Path

        if trainer.sanity_checking:
            return
        path = Path(trainer.default_root_dir) / f"events_{stage}_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.seen[stage]))
        self.seen[stage] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._record("val", batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._record("test", batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, "test")


class BatchMarker(pl.Callback):
    """Touches ``<run>/batch_<n>.done`` at the end of every training batch (a marker to poll for).

    ``delay`` seconds of sleep after each batch keep a run alive long enough to be signalled.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import time
        from pathlib import Path

        if trainer.is_global_zero:
            (Path(trainer.default_root_dir) / f"batch_{trainer.global_step}.done").touch()
        time.sleep(self.delay)


class StopAfterEpochs(pl.Callback):
    """Stops training cleanly after ``epochs`` epochs (as a pre-empted job would, at an epoch boundary)."""

    def __init__(self, epochs: int = 1) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class TrainerSpy(pl.Callback):
    """Keeps the last Trainer it was attached to (``TrainerSpy.trainer``), to inspect after ``train(cfg)``."""

    trainer: pl.Trainer | None = None
    stages: list[str] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        TrainerSpy.trainer = trainer
        TrainerSpy.stages.append(stage)
