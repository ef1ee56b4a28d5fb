"""What produced a result: ONE provenance record (recoml version, git commit, command, host, UTC time,
the data files' content hashes) and ONE file hash, used by run directories, checkpoints, stores,
predictions and conversions alike."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import recoml._version
from recoml.io.atomic import write_text


@lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirtiness of the recoml checkout (empty when not run from a git checkout)."""
    root = Path(recoml._version.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(dirty)}


def file_sha256(path: str | os.PathLike, block: int = 8 << 20) -> str:
    """Hex sha256 of a file's content, read in blocks (constant memory; hashlib releases the GIL, so a
    thread can hash while another converts)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


#: The keys :func:`record` always writes (who wrote a file, with what, when), besides ``data_files``.
RECORD_KEYS = ("recoml_version", "git_commit", "git_dirty", "command", "host", "created_utc")


def record(
    data_files: Iterable[str | os.PathLike] | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The provenance record: who wrote this, when, from what. ``data_files`` (hashed) when given,
    then ``extra`` on top (e.g. a store's own attributes)."""
    out: dict[str, Any] = {
        "recoml_version": recoml._version.__version__,
        **git_state(),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "host": socket.gethostname(),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if data_files is not None:
        out["data_files"] = [
            {"path": str(Path(p).resolve()), "sha256": file_sha256(p)}
            for p in data_files
            if Path(p).is_file()
        ]
    out.update(extra or {})
    return out


def write_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """JSON written atomically (a reader never sees half a file)."""
    return write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
