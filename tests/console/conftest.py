"""Fixtures for the console tests: one server per module (starting one costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.console.console_harness import Console, start_console


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    yield from start_console(tmp_path_factory.mktemp("console") / "data")
