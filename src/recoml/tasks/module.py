"""The one LightningModule: representation (on the device) -> model -> task, with metrics and optimizers
from the config. Every part is built from the resolved config stored in the checkpoint, so
``RecoModule.load_from_checkpoint(path)`` (the same as :func:`recoml.load_model`: the safe loader, not
Lightning's) rebuilds the trained model from the checkpoint alone.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Iterable, Iterator
from typing import Any, cast

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MeanMetric, Metric

from recoml.contracts.batch import HitBatch
from recoml.contracts.detector import Detector
from recoml.contracts.representation import Representation
from recoml.contracts.task import Task
from recoml.data.normalization import (
    FeatureNormalizer,
    batch_relative_times,
    fit_normalizer,
    geometry_scales,
)
from recoml.errors import ConfigError, DataError, RecomlError
from recoml.io.checkpoint import Checkpoint, load_checkpoint, state_mismatch, trusting

log = logging.getLogger(__name__)

#: Features standardized after log1p: charges spread over orders of magnitude.
LOG_FEATURES = ("charge",)


class NonFiniteLossError(RecomlError):
    """The loss became NaN or infinite."""


class RecoModule(pl.LightningModule):
    """Generic reconstruction module. ``config`` is the full resolved training config (a plain dict)."""

    #: Buffers (registered in __init__).
    fitted: torch.Tensor

    def __init__(self, config: dict[str, Any], provenance: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        cfg = OmegaConf.create(config)
        self.detector = instantiate(cfg.detector)
        self.task = instantiate(cfg.task)
        # Any: builders differ in what they offer beyond forward (fit_statistics, kind, out_channels).
        self.representation: Any = build_representation(cfg, self.detector)
        self.normalizer = representation_normalizer(self.representation)
        self.net = build_net(cfg, self.representation, self.task)
        augment = cfg.get("augment") or {}
        self.augment = instantiate(augment)(detector=self.detector) if augment else None
        self.channels_last = bool(cfg.get("channels_last", False)) and self.representation.builds == "image"
        extra = (cfg.get("metrics") or {}).get("extra") or {}
        self.metrics = nn.ModuleDict(
            {stage: self.task.make_metrics() for stage in ("val", "test")}
            | {
                f"{stage}_extra": nn.ModuleDict({k: instantiate(v) for k, v in extra.items()})
                for stage in ("val", "test")
            }
            # Evaluation shards are unpadded (every event once), so the loss is a metric too:
            # an exact event-weighted mean across ranks.
            | {f"{stage}_loss": MeanMetric() for stage in ("val", "test")}
        )
        self.optimizer_cfg = cfg.optimizer
        self.scheduler_cfg = cfg.get("scheduler") or {}
        self.register_buffer("fitted", torch.tensor(False))
        # Keys of the events trained on (recoml.data.identity.event_keys), kept in the checkpoint so that
        # prediction can refuse to score them; not a buffer: older checkpoints load without it.
        self.train_event_keys: torch.Tensor | None = None

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: Any,
        map_location: Any = "cpu",
        *args: Any,
        trust: Iterable[str] = (),
        **kwargs: Any,
    ) -> RecoModule:
        """:func:`recoml.load_model`: Lightning's loader would build the stored config unchecked (code could
        run from the file), so the one safe loader is used. Lightning's other options are refused."""
        if args or kwargs:
            raise ConfigError(
                f"RecoModule.load_from_checkpoint takes checkpoint_path, map_location and trust only, got "
                f"{[*map(repr, args), *kwargs]}: the model is rebuilt from the checkpoint's own config"
            )
        return build_module(load_checkpoint(str(checkpoint_path), trust)).to(map_location)

    # -- data-dependent set-up ------------------------------------------------------------------
    def fit_statistics(self, batches: Iterable[HitBatch]) -> None:
        """One pass per fit over training batches: input normalization and task target statistics.

        ``batches`` must be re-iterable: a list, or the bounded sample of
        :meth:`EventDataModule.statistics_sample` (read anew each pass, never held in memory at once).
        """
        if isinstance(batches, Iterator):
            raise TypeError(
                "fit_statistics needs re-iterable batches (a list or a StatisticsSample), not an iterator"
            )
        if self.normalizer is not None:
            fitted = fit_normalizer(
                batches,
                self.detector,
                self.normalizer.feature_names,
                sorted(self.normalizer.log_features),
                time_reference=self.representation.time_reference,
            )
            self.normalizer.load_state_dict(fitted.state_dict())
        # What the builder learns itself (e.g. a tracker's layer pairs); nothing for most.
        self.representation.fit_statistics(batches)
        self.task.fit(batches)
        self.fitted.fill_(True)

    # -- forward --------------------------------------------------------------------------------
    def inputs(self, batch: HitBatch) -> Any:
        """What the net consumes: the representation of ``batch``, finished from what a DataLoader worker
        prepared (``batch.inputs``) or built here (images in channels-last layout when configured)."""
        if batch.inputs is not None:
            inputs = self.representation.finish(batch.inputs)
        else:
            inputs = self.representation(batch)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def forward(self, batch: HitBatch) -> torch.Tensor:
        inputs = self.inputs(batch)
        out = self.net(inputs)
        if self.task.node_level and out.dim() == 3:  # padded point clouds -> flat hits, in hit order
            flat = out.new_zeros(batch.n_hits, out.shape[-1])
            flat[inputs.index[inputs.mask]] = out[inputs.mask]
            out = flat
        return out

    def _loss(self, batch: HitBatch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(batch)
        loss = self.task.loss(out, batch)
        if not torch.isfinite(loss):
            events = [] if batch.event_index is None else batch.event_index[:20].tolist()
            raise NonFiniteLossError(
                f"{stage} loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                f"the batch holds events {events}{' ...' if batch.n_events > 20 else ''} "
                "(check those events' inputs, the learning rate, or enable gradient clipping)"
            )
        return out, loss

    def training_step(self, batch: HitBatch, batch_idx: int) -> torch.Tensor:
        # On the device, training only: exact detector symmetries (already drawn in the DataLoader worker
        # when it built the inputs).
        if self.augment is not None and batch.inputs is None:
            batch = self.augment(batch)
        _, loss = self._loss(batch, "train")
        self.log("train/loss", loss, batch_size=batch.n_events, prog_bar=True)
        return loss

    def _eval_step(self, batch: HitBatch, stage: str) -> None:
        out, loss = self._loss(batch, stage)
        self._loss_metric(stage).update(loss.detach(), weight=batch.n_events)
        self.task.update_metrics(self.metrics[stage], out, batch)
        extra = self._extra_metrics(stage)
        if extra:
            pred = self.task.predict(out)
            truth = self.task.truth(batch)
            for metric in extra.values():
                metric.update(next(iter(pred.values())), next(iter(truth.values())))

    def _loss_metric(self, stage: str) -> MeanMetric:
        return cast(MeanMetric, self.metrics[f"{stage}_loss"])

    def _extra_metrics(self, stage: str) -> dict[str, Metric]:
        return {k: cast(Metric, m) for k, m in cast(nn.ModuleDict, self.metrics[f"{stage}_extra"]).items()}

    def validation_step(self, batch: HitBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: HitBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        values = flatten_metrics(self.metrics[stage]) | flatten_metrics(self.metrics[f"{stage}_extra"])
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=False)
        self.log(f"{stage}/loss", self._loss_metric(stage).compute(), prog_bar=True)
        for suffix in ("", "_extra", "_loss"):
            reset_metrics(self.metrics[f"{stage}{suffix}"])

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def predict_step(self, batch: HitBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        out = self(batch)
        result = {f"pred/{k}": v for k, v in self.task.predict(out).items()}
        if all(f in batch.targets for f in self.task.target_fields):  # real data may have no truth
            result |= {f"true/{k}": v for k, v in self.task.truth(batch).items()}
        result["event_index"] = batch.event_index
        result["offsets"] = batch.offsets
        score = self.ood_score(batch)
        if score is not None:
            result["ood_score"] = score
        return result

    def ood_score(self, batch: HitBatch) -> torch.Tensor | None:
        """Per event, the mean squared z-score of its hits' non-geometric inputs (charge, time) under the
        training normalization statistics: about 1 for events like the training ones, large for inputs
        far outside them (other units, a time offset, another detector). ``None`` without statistics."""
        norm = self.normalizer
        if norm is None or not bool(self.fitted):
            return None
        names = [n for n in norm.feature_names if n in batch.hits]
        if not names or batch.n_events == 0:
            return None
        reference = self.representation.time_reference
        z2 = torch.zeros_like(batch.hits[names[0]], dtype=torch.float32)
        for name in names:
            value = batch.hits[name].float()
            if name == "time":
                value = batch_relative_times(value, batch, reference)
            z2 = z2 + norm(name, value).float() ** 2
        counts = batch.offsets[1:] - batch.offsets[:-1]
        event = torch.repeat_interleave(
            torch.arange(len(counts), device=z2.device), counts, output_size=len(z2)
        )
        total = torch.zeros(len(counts), device=z2.device).index_add_(0, event, z2 / len(names))
        return total / counts.clamp(min=1)

    # -- optimization ---------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = instantiate(self.optimizer_cfg)(self.parameters())
        factory = self.scheduler_cfg.get("scheduler")
        if not factory:
            return optimizer
        kwargs = {}
        if self.scheduler_cfg.get("total_steps_arg"):
            kwargs[self.scheduler_cfg["total_steps_arg"]] = max(
                1, int(self.trainer.estimated_stepping_batches)
            )
        scheduler = instantiate(factory)(optimizer, **kwargs)
        config = {"scheduler": scheduler, "interval": self.scheduler_cfg.get("interval", "epoch")}
        if self.scheduler_cfg.get("monitor"):
            config["monitor"] = self.scheduler_cfg["monitor"]
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["recoml"] = self.hparams.get("provenance") or {}
        if self.train_event_keys is not None:
            checkpoint["recoml_events"] = {"train_keys": self.train_event_keys}
        # Lightning restores optimizer, scheduler and loops; the global RNGs (dropout, augmentation)
        # are ours to keep, so that a resumed run draws what the uninterrupted one would have.
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only when resuming a fit: loading a model for inference must not reseed the caller's RNGs.
        resuming = self._trainer is not None and self._trainer.state.fn == "fit"
        if "recoml_events" in checkpoint:
            self.train_event_keys = checkpoint["recoml_events"]["train_keys"]
        if resuming and "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])


def rng_states() -> dict[str, Any]:
    """The state of every global random number generator training draws from."""
    import random

    import numpy as np

    state = np.random.get_state()
    assert isinstance(state, tuple)  # the legacy MT19937 state (legacy=True is the default)
    name, key, pos, gauss, cached = state
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # numpy's key as a tensor: checkpoints must load with torch.load(weights_only=True).
        "numpy": [str(name), torch.from_numpy(key.astype(np.int64)), int(pos), int(gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    name, key, pos, gauss, cached = states["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def flatten_metrics(metrics: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """Compute a MetricCollection, a Metric, or a (nested) ModuleDict of them as ``{name: value}``."""
    from torchmetrics import Metric, MetricCollection

    if isinstance(metrics, MetricCollection):
        return {f"{prefix}{k}": v for k, v in metrics.compute().items()}
    if isinstance(metrics, Metric):
        return {prefix.rstrip("/"): metrics.compute()}
    assert isinstance(metrics, nn.ModuleDict)
    out: dict[str, torch.Tensor] = {}
    for name, child in metrics.items():
        if isinstance(child, Metric) and child.update_count == 0:
            continue
        out |= flatten_metrics(child, f"{prefix}{name}/")
    return out


def reset_metrics(metrics: nn.Module) -> None:
    from torchmetrics import Metric

    for m in metrics.modules():
        if isinstance(m, Metric):
            m.reset()


def build_representation(cfg: DictConfig, detector: Detector) -> Representation:
    """The model's representation builder, fed by the detector (buffers move with the module), with a
    feature normalizer whose statistics :meth:`RecoModule.fit_statistics` fits on the training split."""
    factory = instantiate(cfg.model.representation)
    try:
        probe = factory(detector=detector)
    except (AttributeError, TypeError, ValueError) as err:
        raise ConfigError(
            f"model={cfg.model.name} needs a '{cfg.model.representation._target_.rsplit('.', 1)[-1]}' "
            f"representation that detector={detector.name} cannot provide: {err}"
        ) from err
    names = probe.normalized_features
    if not names:  # e.g. tracker graphs: fixed detector scales, nothing fitted from data
        return probe
    scales = geometry_scales(detector)
    normalizer = FeatureNormalizer(
        names,
        log_features=[n for n in LOG_FEATURES if n in names],
        mean={n: m for n, (m, _) in scales.items() if n in names},
        std={n: s for n, (_, s) in scales.items() if n in names},
    )
    return factory(detector=detector, normalizer=normalizer)


def representation_normalizer(representation: nn.Module) -> FeatureNormalizer | None:
    """The normalizer a builder holds (images keep it directly, graphs/points in their feature module),
    or None for builders that need nothing fitted."""
    for module in representation.modules():
        if isinstance(module, FeatureNormalizer):
            return module
    return None


def declared_options(factory: Any, model_name: str) -> Any:
    """The net's partial with only the config options its constructor declares.

    ``model.net._target_=mypackage.MyNet`` keeps the chosen model's other options (resnet18's ``width``,
    ``stem``, ...), which MyNet never asked for: they are left out, in one warning, unless the
    constructor takes ``**kwargs``. Hydra's struct mode already refuses a misspelt key (it needs ``+``).
    """
    if not isinstance(factory, functools.partial):
        return factory
    try:
        params = inspect.signature(factory.func).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass everything
        return factory
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return factory
    unknown = sorted(set(factory.keywords) - set(params))
    if not unknown:
        return factory
    name = getattr(factory.func, "__qualname__", str(factory.func))
    log.warning(
        "model.net: %s does not declare %s (options of model=%s); they are not passed",
        name,
        ", ".join(unknown),
        model_name,
    )
    kept = {k: v for k, v in factory.keywords.items() if k in params}
    return functools.partial(factory.func, *factory.args, **kept)


def build_net(cfg: DictConfig, representation: Representation, task: Task) -> nn.Module:
    """Instantiate the network with its input width from the representation and output width from the task."""
    factory = declared_options(instantiate(cfg.model.net), cfg.model.name)
    cls = getattr(factory, "func", factory)
    wants = getattr(cls, "accepts", None)
    if not isinstance(wants, str):
        raise ConfigError(
            f"model={cfg.model.name}: {cls.__name__} must declare the input it accepts as a class attribute "
            "(accepts = 'image', 'graph', 'points' or 'track_graph')"
        )
    if wants != representation.builds:
        raise ConfigError(
            f"model={cfg.model.name} ({cls.__name__}) accepts '{wants}' inputs but its representation "
            f"builds '{representation.builds}'"
        )
    kwargs: dict[str, Any] = {**representation.input_dims(), "out_dim": task.out_dim}
    if task.node_level:
        if representation.builds == "image":
            raise ConfigError(
                f"task={task.name} needs one output per hit; model={cfg.model.name} makes images. "
                "Use a graph or point-cloud model (model=gnn, pointnet, gat, gcn, graphsage)."
            )
        kwargs["node_level"] = True
    return factory(**kwargs)


def build_module(ckpt: Checkpoint) -> RecoModule:
    """The trained :class:`~recoml.tasks.module.RecoModule` in eval mode, on the CPU."""

    with trusting(ckpt.trust):  # checkpoints read while building (a tracking stage's embedding) get `trust`
        module = RecoModule(ckpt.config, ckpt.provenance)
    mismatch = state_mismatch(module.state_dict(), ckpt.state_dict)
    if mismatch:
        raise DataError(f"{ckpt.path}: the state dict does not fit the model its config builds ({mismatch})")
    module.load_state_dict(ckpt.state_dict)
    return module.eval()
