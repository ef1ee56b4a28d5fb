"""HitBatch: a whole batch of events as flat hit arrays plus offsets, cheap to move to a device."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class HitBatch:
    """Flat hits of ``B`` events.

    ``hits[name]`` are ``(H,)`` (or ``(H, ...)``) tensors; event ``i`` owns rows
    ``offsets[i]:offsets[i+1]`` (``offsets`` has ``B + 1`` entries, ``offsets[0] == 0``).
    ``targets[name]`` are per-event tensors with leading dimension ``B`` (``labels``, ``energies``,
    ``positions``, ``angles``, ...), ``event_index`` the events' rows in the store.
    Lightning moves it to the device through :meth:`to`. ``inputs`` is the model's input already built
    from these hits (a representation's output, made in a DataLoader worker when training on a CPU), or
    None when the model builds it itself.
    """

    hits: dict[str, torch.Tensor]
    offsets: torch.Tensor
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    event_index: torch.Tensor | None = None
    inputs: Any = None

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_hits(self) -> int:
        return int(self.offsets[-1])

    @property
    def counts(self) -> torch.Tensor:
        """Hits per event, ``(B,)``."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def batch(self) -> torch.Tensor:
        """Event number of every hit, ``(H,)`` (PyG's ``batch`` vector)."""
        return torch.repeat_interleave(torch.arange(self.n_events, device=self.offsets.device), self.counts)

    def to(self, *args, **kwargs) -> HitBatch:
        """Move every tensor (``non_blocking`` etc. are passed through)."""
        return HitBatch(
            hits={k: v.to(*args, **kwargs) for k, v in self.hits.items()},
            offsets=self.offsets.to(*args, **kwargs),
            targets={k: v.to(*args, **kwargs) for k, v in self.targets.items()},
            event_index=None if self.event_index is None else self.event_index.to(*args, **kwargs),
            inputs=None if self.inputs is None else self.inputs.to(*args, **kwargs),
        )

    def pin_memory(self) -> HitBatch:
        return HitBatch(
            hits={k: v.pin_memory() for k, v in self.hits.items()},
            offsets=self.offsets.pin_memory(),
            targets={k: v.pin_memory() for k, v in self.targets.items()},
            event_index=None if self.event_index is None else self.event_index.pin_memory(),
            inputs=getattr(self.inputs, "pin_memory", lambda: self.inputs)(),
        )

    def __len__(self) -> int:
        return self.n_events
