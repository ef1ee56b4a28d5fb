"""``recoml <verb> [Hydra arguments]``: the console script, the same as ``python -m recoml.<verb> ...``.

Each verb runs its module as ``__main__`` (what ``python -m`` does), so Hydra sees the same arguments and
Lightning's DDP launcher re-runs the ranks as ``python -m recoml.<verb> ...``.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

#: verb -> what it does (``recoml --help``); each is the module ``recoml.<verb>``.
VERBS = {
    "train": "train a model, test it, and report where everything went",
    "predict": "run a checkpoint over a dataset split into predictions.h5",
    "evaluate": "metrics, plots and a report from one or more predictions files",
    "export": "a checkpoint to ONNX (normalization inside), checked against PyTorch",
    "convert": "real data (ROOT through uproot, TrackML CSV) into the event store",
    "simulate": "toy events (water Cherenkov rings, tracker helices) into an event store",
    "hpo": "an Optuna study over training configs (resumable)",
    "bench": "throughput in events/s of simulation, loading, representations and training",
    "display": "event displays (PNG + PDF views, interactive 3D HTML) of a store or predictions",
}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [
        "usage: recoml <command> [overrides ...] [--config-dir DIR] [--help]",
        "",
        "commands (each the same as `python -m recoml.<command>`):",
        *(f"  {verb:<{width}}  {what}" for verb, what in VERBS.items()),
        "",
        "`recoml <command> --help` lists that command's config groups and options (Hydra's help).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to ``recoml.<verb>``; 2 for an unknown verb."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0 if args else 2
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        sys.stderr.write(f"error: recoml has no command '{verb}'; choose one of {', '.join(VERBS)}\n")
        return 2
    sys.argv = [f"recoml {verb}", *rest]  # runpy sets argv[0] to the module's file, as python -m does
    runpy.run_module(f"recoml.{verb}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
