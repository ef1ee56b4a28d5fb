"""recoml's Hydra config tree, shipped inside the package and found as ``pkg://recoml.conf``.

Users add their own config directories to the search path with ``--config-dir DIR`` or
``hydra.searchpath=[file://DIR]``: new options for any group (the packaged tree is searched first, so a
changed copy of a packaged option needs a new name).
"""

from __future__ import annotations

from pathlib import Path

#: The module Hydra's ``initialize_config_module`` and the ``pkg://`` search path name.
CONFIG_MODULE = "recoml.conf"
#: What ``@hydra.main(config_path=...)`` takes for it.
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
#: The directory on disk (for reading a single YAML file, e.g. ``CONF_DIR / "detector" / "wcte.yaml"``).
CONF_DIR = Path(__file__).resolve().parent
