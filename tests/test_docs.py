"""Documentation that cannot drift: the schema page, the README, the CLI help."""

from __future__ import annotations

import re
from pathlib import Path

from touchpoints.warehouse import TABLES

ROOT = Path(__file__).resolve().parents[1]


def test_every_column_is_documented() -> None:
    text = (ROOT / "docs" / "schema.md").read_text()
    sections = dict(re.findall(r"^## `(\w+)`\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    assert set(sections) == set(TABLES)
    for table, schema in TABLES.items():
        documented = re.findall(r"^\| `(\w+)` \|", sections[table], re.M)
        assert documented == list(schema.names), table


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "make run" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_cli_examples_name_real_verbs() -> None:
    from typer.main import get_command

    from touchpoints.cli.main import app

    command = get_command(app)
    verbs = set(command.commands)  # type: ignore[attr-defined]
    text = (ROOT / "README.md").read_text()
    used = set(re.findall(r"^touchpoints (?:--warehouse \S+ )?([a-z]+)", text, re.M))
    assert used, "the README shows no CLI example"
    assert used <= verbs, used - verbs
