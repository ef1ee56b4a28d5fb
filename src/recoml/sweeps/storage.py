"""Where a study lives: a journal file (default; works on NFS and needs no server) or an RDB URL.

Every process pointed at the same storage and study name shares the study, which is how a resumed
command, parallel workers and SLURM array tasks cooperate. Trials left RUNNING by a worker that died
are marked failed: RDB storages by Optuna's heartbeat, journal files by checking the worker's process
on this host (recorded with every trial).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from recoml.errors import ConfigError

log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.log"


def is_url(spec: str | None) -> bool:
    return bool(spec) and "://" in str(spec)


def journal_path(spec: str | None, study_dir: str | Path) -> Path:
    """The journal file of a non-URL storage spec (null: ``<study_dir>/journal.log``)."""
    return Path(spec) if spec else Path(study_dir) / JOURNAL_NAME


def describe(spec: str | None, study_dir: str | Path) -> str:
    """Storage for logs and file headers, with any password hidden."""
    if is_url(spec):
        from sqlalchemy.engine import make_url

        try:
            return make_url(str(spec)).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - a malformed URL is reported by open_storage
            return str(spec)
    return f"journal file {journal_path(spec, study_dir)}"


@contextmanager
def _sqlite_init_lock(url: str) -> Iterator[None]:
    """An exclusive lock beside a SQLite database while Optuna creates or upgrades its tables."""
    prefix = "sqlite:///"
    database = url[len(prefix) :] if url.startswith(prefix) else ""
    lock = Path(database).with_suffix(".init-lock")
    # No lock for in-memory databases, and never create a missing directory: opening must fail and say so.
    if database in ("", ":memory:") or not lock.parent.is_dir():
        yield
        return
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_storage(
    spec: str | None,
    study_dir: str | Path,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> BaseStorage:
    """Open (creating if needed) the storage named by ``hpo.storage``; a :class:`ConfigError` if it cannot."""
    if is_url(spec):
        kwargs: dict[str, Any] = {}
        if heartbeat_interval:
            kwargs = {"heartbeat_interval": int(heartbeat_interval), "grace_period": grace_period}
        try:
            with _sqlite_init_lock(str(spec)):
                return RDBStorage(str(spec), **kwargs)
        except Exception as err:  # noqa: BLE001 - SQLAlchemy, drivers and Optuna raise many kinds
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"hpo.storage: cannot open {describe(spec, study_dir)}: {reason}") from err
    path = journal_path(spec, study_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The open(O_EXCL) lock works on NFS, where the study directory of a cluster usually lives.
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    except OSError as err:
        raise ConfigError(f"hpo.storage: cannot open the journal file {path}: {err.strerror or err}") from err


# -- workers that died ------------------------------------------------------------------------------
def worker_attrs() -> dict[str, object]:
    """Recorded on each trial: which process on which host runs it (to spot dead workers later)."""
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": me.create_time()}


def _alive(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials whose worker process on this host is gone as FAIL; returns their numbers.

    A killed ``python -m recoml.hpo`` cannot tell the storage; without this its trial would stay RUNNING
    forever in a journal file. Trials of other hosts are left alone (RDB heartbeats cover them).
    """
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") != host or "pid" not in attrs:
            continue
        if _alive(int(attrs["pid"]), float(attrs.get("pid_started", 0.0))):
            continue
        storage = study._storage  # noqa: SLF001 - Optuna has no public call to fail someone else's trial
        storage.set_trial_user_attr(trial._trial_id, "error", f"worker process {attrs['pid']} on {host} died")
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        failed.append(trial.number)
    if failed:
        log.warning("trials %s were left running by a worker that died: marked failed", failed)
    return failed
