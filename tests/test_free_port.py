"""`free_port` hands out ports no outgoing connection can take before they are bound."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from worker import broker
from worker.broker import free_port


def _bind(port: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_ports_come_from_below_the_ephemeral_range(tmp_path: Path, monkeypatch) -> None:
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("32768\t60999\n")
    monkeypatch.setattr(broker, "_EPHEMERAL_RANGE", ranges)
    ports = {free_port() for _ in range(20)}
    assert all(10_000 <= port < 32768 for port in ports), ports
    for port in ports:
        _bind(port)  # free when handed out


def test_a_port_in_use_is_never_handed_out(tmp_path: Path, monkeypatch) -> None:
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("11000 60999")  # room for exactly 1,000 ports: 10000-10999
    monkeypatch.setattr(broker, "_EPHEMERAL_RANGE", ranges)
    held = []
    try:
        for port in range(10_000, 10_500):  # half of them taken (those that can be)
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        taken = {sock.getsockname()[1] for sock in held}
        for _ in range(20):
            port = free_port()
            assert port not in taken
            _bind(port)
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("content", ["1024 65535", "garbage", None])
def test_without_room_or_a_readable_range_it_still_gives_a_free_port(
    tmp_path: Path, monkeypatch, content: str | None
) -> None:
    ranges = tmp_path / "ip_local_port_range"
    if content is not None:
        ranges.write_text(content)
    monkeypatch.setattr(broker, "_EPHEMERAL_RANGE", ranges)
    _bind(free_port())
