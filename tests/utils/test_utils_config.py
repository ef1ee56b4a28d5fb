"""recoml.utils.config: Hydra/OmegaConf nodes as the plain dicts library functions take."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from recoml.utils.config import config_dict


def test_config_dict_resolves_by_default_and_keeps_nested_containers():
    cfg = OmegaConf.create({"a": 1, "b": "${a}", "c": {"d": [1, 2]}})
    out = config_dict(cfg)
    assert out == {"a": 1, "b": 1, "c": {"d": [1, 2]}}
    assert type(out) is dict and type(out["c"]) is dict and type(out["c"]["d"]) is list


def test_config_dict_can_leave_interpolations_and_missing_values():
    cfg = OmegaConf.create({"a": 1, "b": "${a}", "m": "???"})
    assert config_dict(cfg, resolve=False) == {"a": 1, "b": "${a}", "m": "???"}


def test_config_dict_refuses_a_list_node():
    with pytest.raises(TypeError, match="expected a mapping config node, got list"):
        config_dict(OmegaConf.create([1, 2]))
