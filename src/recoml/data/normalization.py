"""Per-hit features and their normalization, shared by every representation.

A :class:`FeatureNormalizer` keeps one ``mean_<name>`` / ``std_<name>`` buffer pair per feature so the
statistics travel inside the model's ``state_dict`` (and so inside every checkpoint): a run can be
re-evaluated from its checkpoint alone. :func:`fit_normalizer` computes them in one streaming pass over a
dataloader; geometric features are scaled by the detector size by default, which needs no data at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from recoml.contracts.batch import HitBatch
from recoml.contracts.detector import Detector
from recoml.data.store import EventStore
from recoml.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Node/point features in the order the architecture fixes (docs/architecture.md).
DEFAULT_FEATURES: tuple[str, ...] = ("x", "y", "z", "dir_x", "dir_y", "dir_z", "charge", "time")
#: Features read from the detector through the hit's PMT id; every other name is a ``batch.hits`` field.
GEOMETRY_FEATURES: tuple[str, ...] = ("x", "y", "z", "dir_x", "dir_y", "dir_z")


def event_of_hits(batch: HitBatch) -> torch.Tensor:
    """Event number of every hit, ``(H,)`` int64, without a host-device sync.

    ``HitBatch.batch`` lets ``repeat_interleave`` find the output size from the data (a sync on CUDA);
    the number of hits is already known from the hit arrays' shape.
    """
    offsets = batch.offsets
    n_hits = batch.hits["pmt"].shape[0]
    counts = offsets[1:] - offsets[:-1]
    events = torch.arange(len(counts), device=offsets.device)
    return torch.repeat_interleave(events, counts, output_size=n_hits)


def detector_geometry(detector: Detector) -> torch.Tensor:
    """``(P, 6)`` float32 table of PMT position (cm) and facing direction, indexed by PMT id."""
    pos = torch.as_tensor(detector.sensor_positions, dtype=torch.float32)
    direction = torch.as_tensor(detector.sensor_directions, dtype=torch.float32)
    return torch.cat([pos, direction], dim=1)


def geometry_scales(detector: Detector) -> dict[str, tuple[float, float]]:
    """Default ``(mean, std)`` of the geometric features, as the detector declares them."""
    return detector.feature_scales()


class FeatureNormalizer(nn.Module):
    """``(log1p(v) if name in log_features else v - mean) / std`` per named feature.

    Statistics are buffers ``mean_<name>`` and ``std_<name>`` (0-dim float32), so they are saved with the
    model. Build it empty (0 / 1) from the run's config and let ``load_state_dict`` fill it, or get a
    fitted one from :func:`fit_normalizer`. ``log_features`` (typically ``("charge",)``) is config, not
    state: charges spread over orders of magnitude and ``log1p`` tames them (negative charges, e.g. from
    pedestal subtraction, are clamped to 0 first).
    """

    def __init__(
        self,
        features: Sequence[str] = DEFAULT_FEATURES,
        log_features: Sequence[str] = (),
        mean: Mapping[str, float] | None = None,
        std: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.feature_names: tuple[str, ...] = tuple(features)
        unknown = set(log_features) - set(self.feature_names)
        if unknown:
            raise ConfigError(f"FeatureNormalizer: log_features {sorted(unknown)} are not among the features")
        self.log_features: frozenset[str] = frozenset(log_features)
        mean = dict(mean or {})
        std = dict(std or {})
        for name in self.feature_names:
            s = float(std.get(name, 1.0))
            if not s > 0:
                raise ConfigError(f"FeatureNormalizer: std of {name!r} must be > 0, got {s}")
            self.register_buffer(f"mean_{name}", torch.tensor(float(mean.get(name, 0.0))))
            self.register_buffer(f"std_{name}", torch.tensor(s))

    def __contains__(self, name: str) -> bool:
        return name in self.feature_names

    def stats(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(mean, std)`` buffers of one feature."""
        if name not in self.feature_names:
            raise ConfigError(f"FeatureNormalizer has no statistics for {name!r} (has {self.feature_names})")
        return getattr(self, f"mean_{name}"), getattr(self, f"std_{name}")

    def transform(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """The pre-standardization transform (``log1p`` or identity)."""
        if name in self.log_features:
            return torch.log1p(values.clamp_min(0))
        return values

    def forward(self, name: str, values: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats(name)
        return (self.transform(name, values) - mean) / std

    def normalize_columns(self, names: Sequence[str], x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x (..., F)`` whose last axis holds ``names`` in order (one fused op per column set)."""
        if x.shape[-1] != len(names):
            raise ConfigError(f"normalize_columns: {len(names)} names for {x.shape[-1]} columns")
        log_cols = [i for i, n in enumerate(names) if n in self.log_features]
        if log_cols:
            x = x.clone()
            x[..., log_cols] = torch.log1p(x[..., log_cols].clamp_min(0))
        mean = torch.stack([self.stats(n)[0] for n in names])
        std = torch.stack([self.stats(n)[1] for n in names])
        return (x - mean) / std

    def extra_repr(self) -> str:
        return f"features={self.feature_names}, log_features={sorted(self.log_features)}"


TIME_REFERENCES = ("none", "first", "median", "trigger")
#: The per-event field a ``trigger`` time reference subtracts from a store whose times start at the vertex:
#: the event's trigger time (ns) on the clock of its hit times.
TRIGGER_TIME = "trigger_time"


def relative_times(
    time: torch.Tensor, offsets: torch.Tensor, reference: str, trigger: torch.Tensor | None = None
) -> torch.Tensor:
    """Hit times minus a per-event reference: ``first`` (the earliest hit), ``median`` (the median hit
    time, robust to early noise hits) or ``trigger`` (``trigger``, the events' trigger times ``(B,)``;
    ``None``: the times are already trigger-relative and stay as stored); ``none`` leaves them as stored.
    A store whose times carry a trigger offset (WCSim digits, KM3NeT) then looks like one whose times
    start at the vertex."""
    if reference == "none" or time.numel() == 0 or (reference == "trigger" and trigger is None):
        return time
    counts = offsets[1:] - offsets[:-1]
    event = torch.repeat_interleave(
        torch.arange(len(counts), device=time.device), counts, output_size=len(time)
    )
    if reference == "trigger":
        assert trigger is not None  # checked above
        return time - trigger.reshape(len(counts)).to(time.dtype)[event]
    if reference == "first":
        ref = torch.full((len(counts),), float("inf"), device=time.device, dtype=time.dtype)
        ref = ref.scatter_reduce(0, event, time, "amin", include_self=True)
    else:
        order = torch.argsort(time, stable=True)
        order = order[torch.argsort(event[order], stable=True)]  # by event, then by time
        middle = (offsets[:-1] + (counts - 1).clamp(min=0) // 2).clamp(max=len(time) - 1)
        ref = time[order][middle]
    return time - torch.where(counts > 0, ref, torch.zeros_like(ref))[event]


def batch_relative_times(time: torch.Tensor, batch: HitBatch, reference: str) -> torch.Tensor:
    """:func:`relative_times` of a batch's hit ``time``; ``trigger`` subtracts the batch's per-event
    :data:`TRIGGER_TIME` when it carries one (see :func:`time_reference_fields`)."""
    return relative_times(time, batch.offsets, reference, batch.targets.get(TRIGGER_TIME))


def time_reference_fields(reference: str, store: EventStore) -> tuple[str, ...]:
    """The per-event fields a time reference reads from ``store`` besides its hits.

    Only ``trigger`` reads anything, and what it does follows the store's declared ``time_origin``:

    * ``trigger`` (WCSim digits, KM3NeT hits): the times already count from the trigger; they are used as
      stored (the identity) and nothing more is read;
    * otherwise (``vertex``, as the toy simulation, or undeclared), a per-event ``trigger_time`` field
      (ns, on the hit times' clock) is read and subtracted from every hit time of its event;
    * a store with neither is refused in one sentence naming it and what is missing.
    """
    if reference != "trigger":
        return ()
    origin = store.attrs.get("time_origin")
    if origin == "trigger":
        return ()
    if TRIGGER_TIME in store.event_fields:
        return (TRIGGER_TIME,)
    raise DataError(
        f"{store.path}: time_reference=trigger needs hit times measured from the trigger "
        f"(store attribute time_origin=trigger) or a per-event '{TRIGGER_TIME}' field (ns), but this store "
        f"has time_origin={origin or 'undeclared'} and no '{TRIGGER_TIME}'; use time_reference=first or "
        "median, or convert the events with their trigger time"
    )


class HitFeatures(nn.Module):
    """``(H, F)`` float32 per-hit features: geometry gathered by PMT id, the rest read from ``batch.hits``.

    Holds the PMT table as a non-persistent buffer (it follows ``.to(device)`` but stays out of
    checkpoints: it is rebuilt from the detector config). ``time_reference`` (none | first | median |
    trigger) makes the ``time`` feature relative to a per-event reference (:func:`relative_times`).
    """

    #: Buffers (registered in __init__).
    pmt_geometry: torch.Tensor

    def __init__(
        self,
        detector: Detector,
        features: Sequence[str] = DEFAULT_FEATURES,
        normalizer: FeatureNormalizer | None = None,
        time_reference: str = "none",
    ) -> None:
        super().__init__()
        if time_reference not in TIME_REFERENCES:
            raise ConfigError(
                f"time_reference must be one of {list(TIME_REFERENCES)}, got {time_reference!r}"
            )
        self.time_reference = time_reference
        self.feature_names: tuple[str, ...] = tuple(features)
        if not self.feature_names:
            raise ConfigError("HitFeatures: at least one feature is needed")
        if normalizer is not None:
            missing = [n for n in self.feature_names if n not in normalizer]
            if missing:
                raise ConfigError(f"the normalizer has no statistics for features {missing}")
        self.normalizer = normalizer
        self.register_buffer("pmt_geometry", detector_geometry(detector), persistent=False)
        self._geo_cols = [GEOMETRY_FEATURES.index(n) for n in self.feature_names if n in GEOMETRY_FEATURES]
        self._geo_out = [i for i, n in enumerate(self.feature_names) if n in GEOMETRY_FEATURES]
        # The default order puts x..dir_z first: a slice copy instead of an advanced-index scatter.
        self._geo_prefix = self._geo_out == self._geo_cols == list(range(len(self._geo_cols)))

    def forward(self, batch: HitBatch) -> torch.Tensor:
        pmt = batch.hits["pmt"].long()
        out = torch.empty(pmt.shape[0], len(self.feature_names), device=pmt.device, dtype=torch.float32)
        if self._geo_cols:
            geo = self.pmt_geometry.index_select(0, pmt)
            if self._geo_prefix:
                out[:, : len(self._geo_cols)] = geo[:, : len(self._geo_cols)]
            else:
                out[:, self._geo_out] = geo[:, self._geo_cols]
        for i, name in enumerate(self.feature_names):
            if name in GEOMETRY_FEATURES:
                continue
            if name not in batch.hits:
                raise DataError(f"hit feature {name!r} is not in the batch (has {sorted(batch.hits)})")
            value = batch.hits[name]
            if name == "time":
                value = batch_relative_times(value.float(), batch, self.time_reference)
            out[:, i] = value
        if self.normalizer is not None:
            out = self.normalizer.normalize_columns(self.feature_names, out)
        return out


def fit_normalizer(
    batches: Iterable[HitBatch],
    detector: Detector,
    features: Sequence[str] = DEFAULT_FEATURES,
    log_features: Sequence[str] = ("charge",),
    fit_geometry: bool = False,
    max_batches: int | None = None,
    time_reference: str = "none",
) -> FeatureNormalizer:
    """Fit a :class:`FeatureNormalizer` in one streaming pass over ``batches`` (e.g. the train dataloader).

    Per batch the count, mean and sum of squared deviations are computed in float64 and merged with
    Chan's parallel update (numerically stable even for ``time`` offsets of thousands of ns). Statistics
    are over all hits (population std, ``ddof=0``) after the ``log_features`` transform. Geometric
    features use :func:`geometry_scales` unless ``fit_geometry``. A constant feature gets std 1.
    """
    features = tuple(features)
    scales = geometry_scales(detector)
    fitted = [n for n in features if fit_geometry or n not in GEOMETRY_FEATURES]
    raw = HitFeatures(detector, fitted, time_reference=time_reference) if fitted else None
    log_set = set(log_features)
    count = 0
    mean = torch.zeros(len(fitted), dtype=torch.float64)
    m2 = torch.zeros(len(fitted), dtype=torch.float64)
    n_batches = 0
    if raw is not None:
        for batch in batches:
            if max_batches is not None and n_batches >= max_batches:
                break
            n_batches += 1
            if raw.pmt_geometry.device != batch.offsets.device:
                raw = raw.to(batch.offsets.device)
            x = raw(batch).double()
            for i, name in enumerate(fitted):
                if name in log_set:
                    x[:, i] = torch.log1p(x[:, i].clamp_min(0))
            n_b = x.shape[0]
            if n_b == 0:
                continue
            mean_dev = x.mean(0)
            m2_b = ((x - mean_dev) ** 2).sum(0).cpu()
            mean_b = mean_dev.cpu()
            total = count + n_b
            delta = mean_b - mean
            mean = mean + delta * (n_b / total)
            m2 = m2 + m2_b + delta**2 * (count * n_b / total)
            count = total
        if count == 0:
            raise DataError("fit_normalizer: the batches hold no hits to fit feature statistics on")
        log.info("fitted feature statistics on %d hits from %d batches", count, n_batches)
    std = torch.sqrt(m2 / max(count, 1))
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    for name in features:
        if name in fitted:
            i = fitted.index(name)
            means[name] = float(mean[i])
            s = float(std[i])
            if not s > 0:
                log.warning("feature %r is constant over the fitted hits; using std 1", name)
                s = 1.0
            stds[name] = s
        else:
            means[name], stds[name] = scales[name]
    return FeatureNormalizer(features, [n for n in log_features if n in features], means, stds)
