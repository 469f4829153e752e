"""The ingress's per-request shortcuts give exactly what the plain definitions give.

The canonical signing string and the JSON log formatter were rewritten for speed; each is checked
here against the straightforward version it replaced, on inputs chosen to hit every branch.
"""

from __future__ import annotations

import enum
import logging
import random
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from worker.logs import JsonFormatter
from worker.pooul.signing import canonical_string, sign, verify, verify_any


def _reference_render(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _reference_canonical(fields: dict[str, Any]) -> str:
    """The protocol's rule, written the obvious way (the pre-optimisation implementation)."""
    return "&".join(
        f"{name}={_reference_render(value)}"
        for name, value in sorted(fields.items())
        if name != "sign" and value is not None and value != ""
    )


class _Text(str):
    pass


class _Number(enum.IntEnum):
    TWELVE = 12


_VALUES: list[Any] = [
    "x",
    "",
    "测试 & =",
    0,
    12,
    -7,
    True,
    False,
    None,
    1.5,
    0.0,
    [1, "a"],
    {"k": None},
    _Text("sub"),
    _Text(""),
    _Number.TWELVE,
]


def test_canonical_string_matches_the_reference_on_every_kind_of_value():
    """For random field sets over every value kind (str/int subclasses, bools, floats, nested,
    null, empty, a `sign` field) the fast canonical string equals the reference one."""
    rng = random.Random(20261125)
    names = ["a", "B", "a_b", "sign", "sign_type", "total_fee", "z", "trade_id"]
    for _ in range(2000):
        fields = {name: rng.choice(_VALUES) for name in rng.sample(names, rng.randint(0, 8))}
        assert canonical_string(fields) == _reference_canonical(fields), fields


def test_rotation_builds_one_string_but_checks_every_key():
    """verify_any accepts a signature made with any listed key, rejects others and non-hex text,
    and agrees with verify for a single key."""
    fields = {"trade_id": "T1", "total_fee": 12, "body": "茶"}
    signature = sign(fields, "k2")
    assert verify_any(fields, signature.lower(), ["k1", "k2", "k3"])
    assert not verify_any(fields, signature, ["k1", "k3"])
    assert not verify_any(fields, "签名", ["k2"])
    assert verify(fields, signature, "k2") and not verify(fields, signature, "k1")


def _reference_format(record: logging.LogRecord) -> dict[str, Any]:
    """What the formatter printed before it was optimised, as a dict (key order kept)."""
    standard = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
        "message",
        "asctime",
        "taskName",
    }
    entry: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for name, value in record.__dict__.items():
        if name not in standard and not name.startswith("_"):
            entry[name] = value
    return entry


class _Record(logging.LogRecord):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.early = "set before the standard attributes"
        super().__init__(*args, **kwargs)


def test_json_log_lines_keep_their_fields_and_order():
    """Extra fields come out in the order given, private ones skipped, fields added after the
    record was made (by another formatter or a filter) included, for plain and custom records."""
    logger = logging.getLogger("tests.ingress.hot_path")
    formatter = JsonFormatter()
    extra = {"trade_id": "T", "merchant_id": None, "_secret": "k", "status": 403, "peer": "::1"}
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    records = [
        logger.makeRecord(logger.name, logging.INFO, "f.py", 1, "notify", (), None, extra=extra),
        logger.makeRecord(logger.name, logging.WARNING, "f.py", 1, "m %s", ("x",), None),
        _Record(logger.name, logging.ERROR, "f.py", 1, "custom", (), None),
    ]
    failed = logger.makeRecord(
        logger.name, logging.ERROR, "f.py", 1, "e", (), exc_info, extra=extra
    )
    for record in [*records, failed]:
        expected = _reference_format(record)
        line = orjson.loads(formatter.format(record))
        exc = line.pop("exc", None)
        assert list(line.items()) == list(expected.items())
        assert (exc is not None) == (record is failed)
        logging.Formatter("%(asctime)s %(message)s").format(record)  # adds message, asctime
        record.added_by_a_filter = 7
        line = orjson.loads(formatter.format(record))
        line.pop("exc", None)
        assert list(line.items()) == list(_reference_format(record).items())
        assert line["added_by_a_filter"] == 7
    assert "early" in orjson.loads(formatter.format(records[2]))
