"""Fixtures of the conformance-kit tests."""

from __future__ import annotations

import pytest

import pyimgano.plugins as plugins


@pytest.fixture
def kit_registry():
    """The process registry with every installed plugin plus the in-test plugin "kit"."""
    import kit_plugins

    registry = plugins.Registry().discover()
    record = registry.register_module(kit_plugins, "kit")
    assert record.status == "ok", record.error
    plugins._registry = registry
    try:
        yield registry
    finally:
        plugins.reset_registry()
