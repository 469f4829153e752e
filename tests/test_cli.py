"""The `pooul-worker` command line, run as a real subprocess."""

import os
import subprocess
import sys
import uuid

from worker.cli import build_parser


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_help_lists_the_roles():
    """`--help` names the sandbox and topics commands."""
    result = run_cli("--help")
    assert result.returncode == 0
    assert "sandbox" in result.stdout and "topics" in result.stdout


def test_every_subcommand_has_help():
    """Each registered sub-command builds its parser and prints help."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        result = run_cli(name, "--help")
        assert result.returncode == 0, (name, result.stderr)


def test_topics_create_twice_on_a_fresh_broker(kafka_bootstrap):
    """`topics create` succeeds twice in a row; the second run finds every topic existing."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **{
            f"POOUL_TOPIC_{name}": f"cli-{name.lower()}-{suffix}"
            for name in (
                "ORDER_REQUESTS",
                "ORDER_RESULTS",
                "TRADE_SIGNALS",
                "TRADE_STATE",
                "ORDER_STATE",
                "PAYMENT_EVENTS",
                "DEAD_LETTERS",
            )
        },
    }
    first = run_cli("topics", "create", "--partitions", "2", env=env)
    second = run_cli("topics", "create", "--partitions", "2", env=env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout.count("created") == 7
    assert second.stdout.count("exists") == 7
    described = run_cli("topics", "describe", env=env)
    assert described.returncode == 0, described.stderr
    assert f"cli-trade_state-{suffix}" in described.stdout
