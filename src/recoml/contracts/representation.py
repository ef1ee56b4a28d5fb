"""What turns a :class:`~recoml.contracts.HitBatch` into a model's input, on the model's device."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from recoml.contracts.batch import HitBatch


class Representation(nn.Module):
    """Base of every representation builder (images, hit graphs, point clouds, tracker graphs).

    A builder declares what it :attr:`builds` (models declare what they ``accepts``; the trainer refuses
    a mismatch in one sentence), the store hit fields it reads (:attr:`hit_fields`), and the input
    dimensions the model is built with (:meth:`input_dims`, so no config value has to "equal" another).
    A builder whose features are fitted on the training split takes a ``normalizer`` (a
    ``FeatureNormalizer`` over its ``feature_names``) and holds it as a submodule; one whose features need
    nothing fitted (fixed detector scales) holds none.
    """

    #: The input kind it builds: "image", "graph", "points", "track_graph", ...
    builds: ClassVar[str]
    #: Store hit fields it reads (water Cherenkov: sensor id, charge, time).
    hit_fields: ClassVar[tuple[str, ...]] = ("hit_pmt", "hit_charge", "hit_time")
    #: What hit times are measured from before they become features: "none" (as stored), "first" or
    #: "median" hit of the event, or its "trigger" time (see ``recoml.data.normalization``). Anything but
    #: "none" makes the model independent of the store's time origin (see :mod:`recoml.data.identity`).
    time_reference: str = "none"
    #: Whether :meth:`prepare` can run in a DataLoader worker and hand its result to the main process (it
    #: has ``.to()``); CPU training does so, see ``EventDataModule.build_in_workers``.
    builds_in_workers: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_") and not isinstance(getattr(cls, "builds", None), str):
            raise TypeError(f"representation class {cls.__qualname__} must set the class attribute `builds`")

    @property
    def normalized_features(self) -> tuple[str, ...]:
        """Features the module fits a ``FeatureNormalizer`` for on the training split (passed back to the
        builder as ``normalizer=``). Empty: the builder needs none."""
        return ()

    def input_dims(self) -> dict[str, int]:
        """Keyword arguments giving the model its input widths (``in_channels``, ...)."""
        raise NotImplementedError

    def fit_statistics(self, batches: Iterable[HitBatch]) -> None:
        """Fit what the builder itself learns from training batches beyond its normalizer. Default:
        nothing."""

    def warm_up(self) -> None:
        """Build, in this process, what every batch looks up (a detector's lists of nearest sensors), before
        DataLoader workers start: forked workers then share it instead of each building it. Default:
        nothing."""

    def prepare(self, batch: HitBatch) -> Any:
        """The part of building that may run in a DataLoader worker; :meth:`finish` completes it in the
        process that trains. Default: the whole output (``finish`` returns it as it is). A builder whose
        output is much larger than its hits (images) hands over something hits-sized instead."""
        return self(batch)

    def finish(self, prepared: Any) -> Any:
        """The model's input from :meth:`prepare`'s result."""
        return prepared

    def new_output(self, n_events: int) -> torch.Tensor | None:
        """A blank output for up to ``n_events`` events that :meth:`finish_into` can fill batch after batch,
        or None when the output has no fixed size (graphs, point clouds). DataLoader workers then finish
        batches into such tensors in shared memory (``recoml.data.slots``) instead of handing over
        :meth:`prepare`'s result."""
        return None

    def finish_into(
        self, prepared: Any, out: torch.Tensor, written: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Finish ``prepared`` into ``out`` (a :meth:`new_output` tensor that held an earlier batch):
        clear what that batch wrote (``written``, this method's earlier record; None: clear it whole),
        fill in this batch; returns the batch's view of ``out`` and the record of what it wrote."""
        raise NotImplementedError(f"{type(self).__name__} has no fixed-size output")
