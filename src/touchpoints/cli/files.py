"""Reading a definition a user wrote in a file: JSON or YAML, one object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from touchpoints.errors import InvalidInput


def read_document(file: str) -> dict[str, Any]:
    """The object in a .json/.yaml file; InvalidInput (field `file`) naming what is wrong."""
    path = Path(file)
    if not path.is_file():
        raise InvalidInput(f"no file {file}", field="file")
    try:
        found = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{file} is not JSON or YAML: {exc}", field="file") from exc
    if not isinstance(found, dict):
        raise InvalidInput(f"{file} must hold one object", field="file")
    return found
