"""Logger factories that need more than Lightning's constructors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

log = logging.getLogger(__name__)


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_logger(
    save_dir: str,
    project: str = "recoml",
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    offline: bool | None = None,
    log_model: bool = False,
    **kwargs,
):
    """A WandbLogger that falls back to offline mode (said once) when no API key is configured.

    Runs are grouped by ``group`` (the experiment name, or the HPO study / multirun name).
    """
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not _wandb_credentials()
        if offline:
            rank_zero_warn(
                "wandb: no API key found (WANDB_API_KEY or ~/.netrc); logging offline to " + save_dir
            )
    if offline:
        os.environ.setdefault("WANDB_MODE", "offline")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=group,
        tags=list(tags),
        offline=offline,
        log_model=log_model,
        **kwargs,
    )
