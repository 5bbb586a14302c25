"""Fixtures of the fault tests: real services that are killed when the test ends."""

from __future__ import annotations

import pytest

from tests.faults.processes import Services


@pytest.fixture
def services(tmp_path):
    running = Services(tmp_path)
    yield running
    running.stop_all()
