"""Experiment definitions: read from JSON or YAML (or a dict), checked field by field so
that every error names the path of the bad field (`metrics.guardrails[1].event`).

See docs/experiments.md for the format; `Experiment.as_dict()` writes it back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from touchpoints.errors import InvalidInput
from touchpoints.insights.frame import Condition
from touchpoints.insights.reports import parse_time

UNITS = ("user", "customer")
MEASURES = ("conversion", "count", "sum")
KINDS = (*MEASURES, "ratio")
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


@dataclass(frozen=True)
class Measure:
    """What one unit contributes: `conversion` (1 if it did `event`), `count` (how many
    times) or `sum` (of `property`), over events matching every `where` condition."""

    kind: str
    event: str
    property: str | None = None
    where: tuple[Condition, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "event": self.event}
        if self.property:
            out["property"] = self.property
        if self.where:
            out["where"] = [f"{c.field}{'!=' if c.negate else '='}{c.value}" for c in self.where]
        return out


@dataclass(frozen=True)
class Metric:
    """A measure per unit after its first exposure (within `within_days` when set), or a
    ratio of two measures summed over units (revenue per order)."""

    name: str
    numerator: Measure
    denominator: Measure | None = None
    within_days: float | None = None
    higher_is_better: bool = True
    cuped: bool = True

    @property
    def kind(self) -> str:
        return "ratio" if self.denominator else self.numerator.kind

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.denominator:
            out |= {
                "numerator": self.numerator.as_dict(),
                "denominator": self.denominator.as_dict(),
            }
        else:
            out |= {k: v for k, v in self.numerator.as_dict().items() if k != "kind"}
        if self.within_days is not None:
            out["within_days"] = self.within_days
        return out | {"higher_is_better": self.higher_is_better, "cuped": self.cuped}


@dataclass(frozen=True)
class Variant:
    key: str
    weight: float


@dataclass(frozen=True)
class Experiment:
    """An experiment: its variants (the first is control unless `control` says), the unit
    randomised, the time exposures count, the primary and guardrail metrics."""

    key: str
    variants: tuple[Variant, ...]
    primary: Metric
    guardrails: tuple[Metric, ...] = ()
    unit: str = "user"
    start: datetime | None = None
    stop: datetime | None = None
    name: str = ""
    control: str = ""
    coverage: float = 1.0
    seed: str = ""
    cuped_days: int = 14

    @property
    def variant_keys(self) -> list[str]:
        return [v.key for v in self.variants]

    @property
    def weights(self) -> list[float]:
        return [v.weight for v in self.variants]

    @property
    def metrics(self) -> list[Metric]:
        return [self.primary, *self.guardrails]

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "unit": self.unit,
            "variants": [{"key": v.key, "weight": v.weight} for v in self.variants],
            "control": self.control,
            "coverage": self.coverage,
            "seed": self.seed,
            "start": self.start.isoformat() if self.start else None,
            "stop": self.stop.isoformat() if self.stop else None,
            "cuped_days": self.cuped_days,
            "metrics": {
                "primary": self.primary.as_dict(),
                "guardrails": [m.as_dict() for m in self.guardrails],
            },
        }


# -- reading --------------------------------------------------------------------------


def parse_experiment(source: str | Mapping[str, Any]) -> Experiment:
    """An `Experiment` from JSON or YAML text or a mapping; `InvalidInput` names the field."""
    data = _load(source) if isinstance(source, str) else source
    if not isinstance(data, Mapping):
        raise InvalidInput("an experiment definition is an object", field="experiment")
    _known(
        data,
        "",
        {
            "key",
            "name",
            "unit",
            "variants",
            "control",
            "coverage",
            "seed",
            "start",
            "stop",
            "metrics",
            "cuped_days",
        },
    )
    key = _key(data.get("key"), "key")
    variants = _variants(data.get("variants"))
    keys = [v.key for v in variants]
    control = data.get("control") or keys[0]
    if control not in keys:
        raise InvalidInput(f"control must be one of the variants {keys}", field="control")
    unit = data.get("unit", "user")
    if unit not in UNITS:
        raise InvalidInput(f"unit is one of {', '.join(UNITS)}, not {unit!r}", field="unit")
    start, stop = _time(data.get("start"), "start"), _time(data.get("stop"), "stop", end=True)
    if start and stop and stop <= start:
        raise InvalidInput("stop must come after start", field="stop")
    metrics = data.get("metrics")
    if not isinstance(metrics, Mapping) or "primary" not in metrics:
        raise InvalidInput("metrics needs a primary metric", field="metrics.primary")
    _known(metrics, "metrics", {"primary", "guardrails"})
    guard = metrics.get("guardrails") or []
    if not isinstance(guard, list):
        raise InvalidInput("guardrails is a list of metrics", field="metrics.guardrails")
    primary = _metric(metrics["primary"], "metrics.primary")
    guardrails = tuple(_metric(m, f"metrics.guardrails[{i}]") for i, m in enumerate(guard))
    names = [m.name for m in (primary, *guardrails)]
    if len(set(names)) != len(names):
        raise InvalidInput("metric names must differ", field="metrics")
    coverage = _number(data.get("coverage", 1.0), "coverage", low=0.0, high=1.0)
    if coverage == 0:
        raise InvalidInput("coverage must be above 0", field="coverage")
    seed = data.get("seed") or key
    if not isinstance(seed, str):
        raise InvalidInput("seed is text", field="seed")
    cuped_days = data.get("cuped_days", 14)
    if (
        not isinstance(cuped_days, int)
        or isinstance(cuped_days, bool)
        or not 0 <= cuped_days <= 365
    ):
        raise InvalidInput("cuped_days is a whole number from 0 to 365", field="cuped_days")
    name = data.get("name") or key
    if not isinstance(name, str):
        raise InvalidInput("name is text", field="name")
    return Experiment(
        key,
        variants,
        primary,
        guardrails,
        unit,
        start,
        stop,
        name,
        control,
        coverage,
        seed,
        cuped_days,
    )


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(
            f"the definition is neither JSON nor YAML: {exc}", field="experiment"
        ) from None


def _known(data: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    for name in data:
        if name not in allowed:
            where = f"{path}.{name}" if path else str(name)
            raise InvalidInput(
                f"unknown field {where!r}; expected one of {', '.join(sorted(allowed))}",
                field=where,
            )


def _key(value: Any, path: str) -> str:
    if not isinstance(value, str) or not KEY.fullmatch(value):
        raise InvalidInput(
            f"{path} is 1-100 letters, digits, '_', '-' or '.', not {value!r}", field=path
        )
    return value


def _number(value: Any, path: str, low: float, high: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInput(
            f"{path} is a number from {low:g} to {high:g}, not {value!r}", field=path
        )
    return float(value)


def _time(value: Any, path: str, *, end: bool = False) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.isoformat()
    return parse_time(str(value), path, end=end)


def _variants(value: Any) -> tuple[Variant, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise InvalidInput("variants is a list of at least two variants", field="variants")
    out = []
    for i, item in enumerate(value):
        path = f"variants[{i}]"
        if isinstance(item, str):
            item = {"key": item}
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{path} is an object with key and weight", field=path)
        _known(item, path, {"key", "weight"})
        weight = _number(item.get("weight", 1), f"{path}.weight", low=0.0)
        out.append(Variant(_key(item.get("key"), f"{path}.key"), weight))
    if len({v.key for v in out}) != len(out):
        raise InvalidInput("variant keys must differ", field="variants")
    if sum(v.weight for v in out) <= 0:
        raise InvalidInput("the variants' weights cannot all be 0", field="variants")
    return tuple(out)


def _measure(data: Any, path: str, kind: str | None = None) -> Measure:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{path} is an object", field=path)
    kind = kind or data.get("kind")
    if kind not in MEASURES:
        raise InvalidInput(
            f"{path}.kind is one of {', '.join(MEASURES)}, not {kind!r}", field=f"{path}.kind"
        )
    event = data.get("event")
    if not isinstance(event, str) or not event.strip():
        raise InvalidInput(f"{path}.event names the event to count", field=f"{path}.event")
    prop = data.get("property")
    if kind == "sum" and (not isinstance(prop, str) or not prop.strip()):
        raise InvalidInput(f"{path}.property names the property to sum", field=f"{path}.property")
    where = data.get("where") or []
    if isinstance(where, Mapping):
        where = [f"{k}={v}" for k, v in where.items()]
    if not isinstance(where, list):
        raise InvalidInput(f"{path}.where is a list of FIELD=VALUE", field=f"{path}.where")
    try:
        conditions = tuple(Condition.parse(str(w)) for w in where)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=f"{path}.where") from None
    return Measure(kind, event.strip(), prop.strip() if kind == "sum" else None, conditions)


def _metric(data: Any, path: str) -> Metric:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{path} is an object", field=path)
    _known(
        data,
        path,
        {
            "name",
            "kind",
            "event",
            "property",
            "where",
            "numerator",
            "denominator",
            "within_days",
            "higher_is_better",
            "cuped",
        },
    )
    kind = data.get("kind")
    if kind not in KINDS:
        raise InvalidInput(
            f"{path}.kind is one of {', '.join(KINDS)}, not {kind!r}", field=f"{path}.kind"
        )
    if kind == "ratio":
        numerator = _measure(data.get("numerator"), f"{path}.numerator")
        denominator: Measure | None = _measure(data.get("denominator"), f"{path}.denominator")
        if numerator.kind == "conversion" or denominator.kind == "conversion":  # type: ignore[union-attr]
            raise InvalidInput("a ratio's parts are counts or sums", field=f"{path}.numerator")
    else:
        numerator, denominator = _measure(data, path, kind), None
    name = data.get("name") or (numerator.event if not denominator else None)
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{path}.name is needed", field=f"{path}.name")
    within = data.get("within_days")
    within = None if within is None else _number(within, f"{path}.within_days", low=0.001)
    flags = {}
    for flag in ("higher_is_better", "cuped"):
        value = data.get(flag, True)
        if not isinstance(value, bool):
            raise InvalidInput(f"{path}.{flag} is true or false", field=f"{path}.{flag}")
        flags[flag] = value
    return Metric(name.strip(), numerator, denominator, within, **flags)
