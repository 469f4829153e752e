"""The README stays true: every setting documented, every command it names exists."""

import re
from pathlib import Path

from worker.cli import build_parser
from worker.settings import Settings

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table():
    """Each environment variable Settings reads has a row in the README."""
    missing = [
        name.upper() for name in Settings.model_fields if f"| `{name.upper()}` |" not in README
    ]
    assert not missing, f"add these to the README's configuration table: {missing}"


def test_named_commands_exist():
    """Every `pooul-worker <command>` the README shows is a registered sub-command."""
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    named = set(re.findall(r"`pooul-worker ([a-z]+)", README))
    assert named, "the README names no command"
    assert named <= set(commands), named - set(commands)


def test_quick_start_is_two_make_targets():
    """The quick start runs `make dev` and `make test`, and both targets exist."""
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make dev" in quick_start and "make test" in quick_start
    makefile = (Path(__file__).parent.parent / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^dev:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
