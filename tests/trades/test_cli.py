"""`pooul-worker trades`: registered, and refuses to start without merchant keys."""

from __future__ import annotations

import pytest

from worker.cli import build_parser, main


def test_trades_command_is_registered_with_a_port_option() -> None:
    """The sub-command parses `--port` and dispatches to the trades worker."""
    args = build_parser().parse_args(["trades", "--port", "0"])
    assert args.command == "trades"
    assert args.port == 0


def test_trades_refuses_to_start_without_merchant_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With POOUL_MERCHANT_KEYS empty no query could be signed: exit code 2, a clear message."""
    monkeypatch.delenv("POOUL_MERCHANT_KEYS", raising=False)
    monkeypatch.delenv("POOUL_MERCHANT_KEYS_FILE", raising=False)
    assert main(["trades"]) == 2
    assert "POOUL_MERCHANT_KEYS is empty" in capsys.readouterr().out


def test_trades_refuses_an_out_of_range_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port outside 0..65535 is refused before anything starts."""
    monkeypatch.setenv("POOUL_MERCHANT_KEYS", '{"888": "k"}')
    assert main(["trades", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().out
