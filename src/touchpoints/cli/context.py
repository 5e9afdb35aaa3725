"""What every verb shares: the chosen warehouse, the way to reach it, `--format`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from touchpoints.cli.output import Format
from touchpoints.cli.target import Target, open_target
from touchpoints.warehouse import default_url


class _State:
    warehouse: str = default_url()


state = _State()


@contextmanager
def reach() -> Iterator[Target]:
    """The running server that owns the warehouse, or the warehouse itself."""
    target = open_target(state.warehouse)
    try:
        yield target
    finally:
        target.close()


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
