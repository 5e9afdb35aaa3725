"""Personal data in clear for those allowed to see it: a profile read, an access export.

Stored rows hold emails and phones as blinds (`email:<blind>`) and personal traits as
sealed tokens. A `Revealer` opens the tokens it is shown and learns from the identifier
tokens which blind stands for which email or phone, so that the identifiers of the same
person read in clear too. It only ever learns from the rows it is given: the person's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from touchpoints.warehouse.personal import BLINDED_KINDS, IdentifierRules, canonical, reveal
from touchpoints.warehouse.vault import TOKEN, Vault, is_token

_BLINDED = re.compile(r"\b(email|phone):([A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")


class Revealer:
    """Opens tokens and turns `email:<blind>` back into `email:<address>`."""

    def __init__(self, vault: Vault, rules: IdentifierRules) -> None:
        self.vault, self.rules = vault, rules
        self.clear: dict[str, str] = {}  # "email:<blind>" -> "email:ana@example.com"

    def learn(self, values: Iterable[Any]) -> None:
        """Remember the identifiers sealed inside these JSON values."""
        for value in values:
            self._learn(value)

    def _learn(self, value: Any, key: str = "") -> None:
        if isinstance(value, Mapping):
            for inner_key, item in value.items():
                self._learn(item, inner_key)
        elif isinstance(value, list):
            for item in value:
                self._learn(item, key)
        elif key in BLINDED_KINDS and is_token(value):
            match = TOKEN.match(value)
            if match is not None and match.group(1) == "i":
                opened = self.vault.open(key, value)
                clear = canonical(key, opened, self.rules) or str(opened).strip()
                self.clear.setdefault(f"{key}:{match.group(2)}", f"{key}:{clear}")

    def value(self, value: Any, key: str = "payload") -> Any:
        """A JSON value or column value with tokens opened and known blinds in clear."""
        opened = reveal(self.vault, value, key)
        return self._identifiers(opened)

    def _identifiers(self, value: Any) -> Any:
        if isinstance(value, str):
            return _BLINDED.sub(lambda m: self.clear.get(m.group(0), m.group(0)), value)
        if isinstance(value, Mapping):
            return {key: self._identifiers(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._identifiers(item) for item in value]
        return value
