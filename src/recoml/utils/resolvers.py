"""OmegaConf resolvers the configs use (registered when recoml is imported)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from omegaconf import OmegaConf

from recoml.io.runs import resume_dir


@lru_cache(maxsize=64)
def _content_tag(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digest[:8]


def geometry_name(path: str) -> str:
    """``<file stem>_<8 hex of its sha256>``: a geometry file's name that two different files never share,
    so toy stores simulated for two ``detector=from_file`` geometries never land in one file."""
    p = Path(str(path))
    if not p.is_file():
        return p.stem or "from_file"
    st = p.stat()
    return f"{p.stem}_{_content_tag(str(p.resolve()), st.st_mtime_ns, st.st_size)}"


def register() -> None:
    OmegaConf.register_new_resolver("geometry_name", geometry_name, replace=True)
    OmegaConf.register_new_resolver("resume_dir", resume_dir, replace=True)
