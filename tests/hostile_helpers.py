"""Hostile checkpoints for the tests: a pickle payload, a config payload, each of which would write a
marker file if anything in it ran (tests/test_hostile_inputs.py, the tracking tests)."""

from __future__ import annotations

from pathlib import Path

import torch


class Payload:
    """Unpickling this runs ``exec``: the pickle payload a hostile checkpoint hides in an extra key."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self):
        return (exec, (self.code,))


def raw_checkpoint(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def pickle_payload(src: Path, dst: Path, marker: Path) -> Path:
    """``src`` with an extra key whose unpickling writes ``marker``."""
    raw = raw_checkpoint(src)
    raw["extra"] = Payload(marker)
    torch.save(raw, dst)
    return dst


def config_payload(src: Path, dst: Path, place: str, node: object) -> Path:
    """``src`` with ``node`` stored at the dotted ``place`` of its training config."""
    raw = raw_checkpoint(src)
    config = raw["hyper_parameters"]["config"]
    *parents, leaf = place.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[leaf] = node
    torch.save(raw, dst)
    return dst


def savetxt(marker: Path) -> dict:
    """A target Hydra's own blocklist lets through: building it writes ``marker``."""
    return {"_target_": "numpy.savetxt", "fname": str(marker), "X": [1.0]}
