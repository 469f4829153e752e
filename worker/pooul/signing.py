"""Pooul MD5 signing, exactly as the protocol page describes it.

    sign({"total_fee": 12, "body": "test"}, key)      # → upper-case hex MD5
    verify(raw_data, envelope["sign"], key)            # constant time, case-insensitive

Requests are signed over their top-level fields; responses and notifies over the raw `data`
object as received (never a re-serialised model: the platform may add fields).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["canonical_string", "sign", "verify", "verify_any"]


def _render(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    # Nested objects/lists are not in the documented fields; render them as compact JSON so
    # an unexpected structured field is still covered by the signature deterministically.
    return orjson.dumps(value).decode()


def canonical_string(fields: Mapping[str, Any]) -> str:
    """`a=1&b=x` over every field but `sign`, null and "" dropped, ASCII order, no encoding."""
    return "&".join(
        f"{name}={_render(value)}"
        for name, value in sorted(fields.items())
        if name != "sign" and value is not None and value != ""
    )


def sign(fields: Mapping[str, Any], key: str) -> str:
    """The upper-case hex MD5 signature of `fields` under the merchant `key`."""
    payload = f"{canonical_string(fields)}&key={key}".encode()
    return hashlib.md5(payload, usedforsecurity=False).hexdigest().upper()


def verify(fields: Mapping[str, Any], signature: str, key: str) -> bool:
    """True when `signature` matches; constant-time and case-insensitive on the hex digits."""
    expected = sign(fields, key).encode("ascii")
    try:
        given = signature.upper().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, given)


def verify_any(fields: Mapping[str, Any], signature: str, keys: Iterable[str]) -> bool:
    """True when any of a merchant's active keys (rotation) verifies the signature."""
    # No short-circuit: the time taken does not tell which key matched.
    results = [verify(fields, signature, key) for key in keys]
    return any(results)
