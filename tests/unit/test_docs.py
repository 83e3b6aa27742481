"""The README documents every config key, handler type and handler option."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from handlers import load_handler_types
from service import config

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTIONS = {
    "server": config.ServerConfig, "storage": config.StorageConfig,
    "upstream": config.UpstreamConfig, "security": config.SecurityConfig,
}


def keys() -> list[str]:
    found = [f"{name}.{f.encode_name}" for name, tp in SECTIONS.items()
             for f in msgspec.structs.fields(tp)]
    found += [f"retry.{f.encode_name}" for f in msgspec.structs.fields(config.RetryConfig)]
    found += [f"rules[].{f.encode_name}" for f in msgspec.structs.fields(config.RuleConfig)]
    return found


@pytest.mark.parametrize("key", keys())
def test_config_key_is_documented(key):
    assert f"`{key}`" in README or f"`handlers.NAME.{key}`" in README


@pytest.mark.parametrize("name", sorted(load_handler_types()))
def test_handler_type_and_options_are_documented(name):
    cls = load_handler_types()[name]
    row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"handler type {name} has no row in the README's table"
    for field in msgspec.structs.fields(cls.Config):
        assert f"`{field.encode_name}`" in row, f"{name}.{field.encode_name} is undocumented"
