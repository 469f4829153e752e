"""Fixtures of the runtime tests: settings with fresh topics and fast timings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.fixtures.broker import SettingsFactory
from tests.runtime.helpers import FAST
from worker.settings import Settings

RuntimeSettingsFactory = Callable[..., Awaitable[Settings]]


@pytest.fixture
def make_runtime_settings(make_settings: SettingsFactory) -> RuntimeSettingsFactory:
    """Factory: settings with created topics and the fast timings of `helpers.FAST`."""

    async def factory(**overrides: Any) -> Settings:
        return await make_settings(**{**FAST, **overrides})

    return factory
