"""Shared pieces of the sandbox tests: one HTTP client session per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session (the merchant's side of the wire)."""
    async with aiohttp.ClientSession() as session:
        yield session
