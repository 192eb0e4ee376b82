"""Fixtures of the keyboard tests."""

from __future__ import annotations

import pytest

from keyboard.store import Device


@pytest.fixture
def device(tmp_path):
    """An empty device log in a temporary home (test files that need a filled one define their own)."""
    with Device(tmp_path / "devices" / "dev-1", create=True) as d:
        yield d
