"""What produced a result: recoml version, git commit, command, and the data files' content hashes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import recoml._version


@lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirtiness of the recoml checkout (empty when not run from a git checkout)."""
    root = Path(recoml._version.__file__).resolve().parents[2]
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


def file_sha256(path: str | Path, block: int = 1 << 22) -> str:
    """Content hash of a file, read in blocks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def collect(data_files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Provenance record for a run directory, a checkpoint or an output file's attributes."""
    files = [
        {"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in data_files if Path(p).exists()
    ]
    return {
        "recoml_version": recoml._version.__version__,
        **git_state(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "host": socket.gethostname(),
        "time_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data_files": files,
    }


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write JSON under a temporary name, then rename (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path
