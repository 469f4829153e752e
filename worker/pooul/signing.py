"""Pooul MD5 signing, exactly as the protocol page describes it.

    sign({"total_fee": 12, "body": "test"}, key)      # → upper-case hex MD5
    verify(raw_data, envelope["sign"], key)            # constant time, case-insensitive

Requests are signed over their top-level fields; responses and notifies over the raw `data`
object as received (never a re-serialised model: the platform may add fields).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = [
    "AS_SENT_LIMIT",
    "canonical_string",
    "sign",
    "verify",
    "verify_any",
    "verify_any_received",
]


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
    # The ingress runs this for every notify: sorting the names (not the items) and rendering
    # plain `str`/`int` values inline is about 40 % cheaper than a generator over `_render`,
    # and gives exactly the same string.
    parts: list[str] = []
    append = parts.append
    for name in sorted(fields):
        value = fields[name]
        cls = value.__class__
        if cls is str:
            if value and name != "sign":
                append(f"{name}={value}")
        elif cls is int:
            if name != "sign":
                append(f"{name}={value}")
        elif value is not None and name != "sign" and value != "":
            append(f"{name}={_render(value)}")
    return "&".join(parts)


def sign(fields: Mapping[str, Any], key: str) -> str:
    """The upper-case hex MD5 signature of `fields` under the merchant `key`."""
    return _digest(canonical_string(fields), key)


def verify(fields: Mapping[str, Any], signature: str, key: str) -> bool:
    """True when `signature` matches; constant-time and case-insensitive on the hex digits."""
    return verify_any(fields, signature, (key,))


def verify_any(fields: Mapping[str, Any], signature: str, keys: Iterable[str]) -> bool:
    """True when any of a merchant's active keys (rotation) verifies the signature.

    Fields that cannot be rendered (a structure nested deeper than the JSON renderer goes:
    nothing the platform sends) cannot have been signed: False, not an exception."""
    try:
        given = signature.upper().encode("ascii")
    except UnicodeEncodeError:
        return False
    try:
        canonical = canonical_string(fields)  # the same for every key: built once
    except (TypeError, RecursionError):
        return False
    # No short-circuit: the time taken does not tell which key matched.
    results = [hmac.compare_digest(_digest(canonical, key).encode("ascii"), given) for key in keys]
    return any(results)


def verify_any_received(
    data: Mapping[str, Any], body: bytes, signature: str, keys: Iterable[str]
) -> bool:
    """`verify_any` over `data` as parsed from `body`, and, only if that fails and `data` has a
    number that parsing may have rewritten (a float: `0.10` reads as 0.1, `1e2` as 100.0, an
    integer past 64 bits as a float), once more over those numbers exactly as `body` spells
    them. The platform signs its own text; which one it is for such numbers is not documented,
    and a correct notify must not be refused for it (the key is needed for either).

    The second pass is for bodies of a notify's size (`AS_SENT_LIMIT`): it parses the whole
    body again with a Python hook per number, and an unsigned caller's large body of floats
    would otherwise cost the ingress about five times the rejection of any other junk."""
    keys = tuple(keys)
    if verify_any(data, signature, keys):
        return True
    if len(body) > AS_SENT_LIMIT or not any(type(value) is float for value in data.values()):
        return False
    as_sent = _data_as_sent(body)
    return as_sent is not None and verify_any(as_sent, signature, keys)


# A notify is one to two KiB (about 25 fields); eight times that still fits any the platform
# may send, and bounds what a second parse can cost.
AS_SENT_LIMIT = 16 * 1024


class _NumberText(str):
    """A JSON number kept as the text it was sent as (rendered as is in the signing string)."""


def _data_as_sent(body: bytes) -> dict[str, Any] | None:
    try:
        envelope = json.loads(body, parse_float=_NumberText, parse_int=_NumberText)
    except (ValueError, RecursionError):
        return None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    return data if isinstance(data, dict) else None


def _digest(canonical: str, key: str) -> str:
    payload = f"{canonical}&key={key}".encode()
    return hashlib.md5(payload, usedforsecurity=False).hexdigest().upper()
