"""Who is in an audience: checking a definition, and finding its members now.

A definition is a JSON object with exactly one of these kinds (plus the optional
`refresh_every_minutes` and `description`):

- ``{"segment": NAME}``: the members of a saved segment (`insights.segments`).
- ``{"rule": RULE}``: a segment rule (`insights.segment_rules`), inline.
- ``{"funnel": {"steps": [...], "dropped_after": K, "within_days": N, "window": "7d"}}``:
  the customers whose events of the last N days (default 30) reached step K of the
  funnel but not step K + 1 (`insights.funnels.dropped_after`); `window`, the time from
  the first to the last step, defaults to N days.
- ``{"model": "churn", "min_risk": 0.6, "min_clv": 100.0, "horizon_days": 90}``: the
  customers whose churn risk over the horizon is at least `min_risk` and, when given,
  whose 12-month CLV is at least `min_clv` (`models.churn_service`, `models.clv_data`).
- ``{"model": "recommend", "product_id": "sku-1", "top": 500, "algorithm": "als"}``: the
  `top` customers likeliest to want the product (highest positive score of the
  recommender, leaving out those who bought it; ties by customer id).
- ``{"list": ["email:ana@example.com", "phone:+44…", "user_id:u-1", …]}``: an uploaded
  list. Each identifier is normalised as identity resolution does and kept only in its
  pseudonymous form (emails and phones as blinds); members are the customers whose
  identities hold one of them, the rest are counted as `unmatched`.

Errors raise `InvalidInput` whose `field` names the bad part (``funnel.dropped_after``,
``list[3]``, ``rule.and[0].value``). Model scores come from a `ModelScores`; the
default fits the models on the warehouse, and a caller may hand in its own (scores
computed elsewhere, or ahead of time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import ibis
import numpy as np
import pandas as pd

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.identity.lookup import CUSTOMER_ID, KINDS, is_blind, stored_config
from touchpoints.insights.frame import USER, Scope, user_events
from touchpoints.insights.funnels import MAX_STEPS, Step, dropped_after, parse_window
from touchpoints.insights.segment_rules import RuleChecker
from touchpoints.insights.segments import members, saved_segments
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.personal import (
    TRIM_PATTERN,
    IdentifierRules,
    canonical,
    pseudonym_of,
)

__all__ = [
    "FittedModels",
    "Found",
    "ModelScores",
    "check_definition",
    "find_members",
    "kind_of",
]

SOURCE_KINDS = ("segment", "rule", "funnel", "model", "list")
COMMON_KEYS = ("refresh_every_minutes", "description")
MODEL_KEYS = {
    "churn": ("min_risk", "min_clv", "horizon_days"),
    "recommend": ("product_id", "top", "algorithm"),
}
ALGORITHMS = ("als", "cooccurrence", "popularity")
FUNNEL_KEYS = ("steps", "dropped_after", "within_days", "window")
MAX_LIST = 1_000_000
MAX_MINUTES = 366 * 24 * 60
MAX_DESCRIPTION = 500
_SPACE = re.compile(TRIM_PATTERN)


def kind_of(definition: Mapping[str, Any]) -> str:
    """Which of `SOURCE_KINDS` a checked definition is."""
    return next(k for k in SOURCE_KINDS if k in definition)


# -- checking ----------------------------------------------------------------------------


def check_definition(warehouse: Warehouse, definition: Any) -> dict[str, Any]:
    """The definition as it is stored: checked, defaults filled in, an uploaded list in
    its pseudonymous forms. Saved segments it names must exist."""
    if not isinstance(definition, Mapping):
        raise InvalidInput("an audience definition is a JSON object", field="definition")
    kinds = [k for k in SOURCE_KINDS if k in definition]
    if len(kinds) != 1:
        found = "several" if kinds else "none"
        raise InvalidInput(
            f"a definition has exactly one of {', '.join(SOURCE_KINDS)} ({found} here)",
            field="definition",
        )
    kind = kinds[0]
    extra = MODEL_KEYS.get(str(definition.get("model")), ()) if kind == "model" else ()
    for key in definition:
        if key not in (kind, *COMMON_KEYS, *extra):
            raise InvalidInput(f"{key!r} is not a field of a {kind!r} audience", field=key)
    out: dict[str, Any] = {}
    every = definition.get("refresh_every_minutes")
    if every is not None:
        out["refresh_every_minutes"] = _whole(every, "refresh_every_minutes", 1, MAX_MINUTES)
    description = definition.get("description")
    if description is not None:
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidInput(
                f"description is text of at most {MAX_DESCRIPTION} characters",
                field="description",
            )
        out["description"] = description
    checkers = {"segment": _check_segment, "rule": _check_rule, "funnel": _check_funnel,
                "model": _check_model, "list": _check_list}  # fmt: skip
    out.update(checkers[kind](warehouse, definition))
    return out


def _whole(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{where} is a whole number from {low} to {high}", field=where)
    return int(value)


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInput(f"{where} is a number from {low} to {high}", field=where)
    return float(value)


def _check_segment(warehouse: Warehouse, definition: Mapping[str, Any]) -> dict[str, Any]:
    name = definition["segment"]
    if not isinstance(name, str) or name not in saved_segments(warehouse):
        raise InvalidInput(f"there is no saved segment {str(name)[:100]!r}", field="segment")
    return {"segment": name}


def _check_rule(warehouse: Warehouse, definition: Mapping[str, Any]) -> dict[str, Any]:
    rule = definition["rule"]
    RuleChecker(saved_segments(warehouse)).check(rule, "rule")
    return {"rule": rule}


def _check_funnel(warehouse: Warehouse, definition: Mapping[str, Any]) -> dict[str, Any]:
    funnel = definition["funnel"]
    if not isinstance(funnel, Mapping):
        raise InvalidInput("funnel is an object with steps and dropped_after", field="funnel")
    for key in funnel:
        if key not in FUNNEL_KEYS:
            raise InvalidInput(f"{key!r} is not a field of a funnel", field=f"funnel.{key}")
    steps = funnel.get("steps")
    if not isinstance(steps, list) or not 2 <= len(steps) <= MAX_STEPS:
        raise InvalidInput(f"funnel.steps is a list of 2 to {MAX_STEPS} steps",
                           field="funnel.steps")  # fmt: skip
    for i, step in enumerate(steps):
        if not isinstance(step, str):
            raise InvalidInput("a step is text: EVENT or EVENT[field=value]",
                               field=f"funnel.steps[{i}]")  # fmt: skip
        try:
            Step.parse(step)
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field=f"funnel.steps[{i}]") from exc
    dropped = _whole(funnel.get("dropped_after"), "funnel.dropped_after", 1, len(steps) - 1)
    days = _whole(funnel.get("within_days", 30), "funnel.within_days", 1, 3650)
    window = funnel.get("window", f"{days}d")
    try:
        parse_window(window if isinstance(window, str) else "")
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="funnel.window") from exc
    return {"funnel": {"steps": list(steps), "dropped_after": dropped, "within_days": days,
                       "window": window}}  # fmt: skip


def _check_model(warehouse: Warehouse, definition: Mapping[str, Any]) -> dict[str, Any]:
    model = definition["model"]
    if model not in MODEL_KEYS:
        raise InvalidInput(f"model is one of {', '.join(MODEL_KEYS)}", field="model")
    if model == "churn":
        out: dict[str, Any] = {
            "model": "churn",
            "min_risk": _number(definition.get("min_risk", 0.5), "min_risk", 0.0, 1.0),
            "horizon_days": _whole(definition.get("horizon_days", 90), "horizon_days", 1, 3650),
        }
        if definition.get("min_clv") is not None:
            out["min_clv"] = _number(definition["min_clv"], "min_clv", 0.0, float("inf"))
        return out
    product = definition.get("product_id")
    if not isinstance(product, str) or not product.strip() or len(product) > 200:
        raise InvalidInput("product_id is the id of a product", field="product_id")
    algorithm = definition.get("algorithm", "als")
    if algorithm not in ALGORITHMS:
        raise InvalidInput(f"algorithm is one of {', '.join(ALGORITHMS)}", field="algorithm")
    top = _whole(definition.get("top"), "top", 1, MAX_LIST)
    return {"model": "recommend", "product_id": product.strip(), "top": top,
            "algorithm": algorithm}  # fmt: skip


def _check_list(warehouse: Warehouse, definition: Mapping[str, Any]) -> dict[str, Any]:
    given = definition["list"]
    if not isinstance(given, list) or not 1 <= len(given) <= MAX_LIST:
        raise InvalidInput(f"list holds 1 to {MAX_LIST} identifiers", field="list")
    config = stored_config(warehouse)
    rules = IdentifierRules(config.country_code, config.strip_plus_addressing)
    forms = [_pseudonymous(warehouse, item, f"list[{i}]", rules) for i, item in enumerate(given)]
    return {"list": list(dict.fromkeys(forms))}


def _pseudonymous(warehouse: Warehouse, item: Any, where: str, rules: IdentifierRules) -> str:
    """One uploaded identifier as identities hold it: never an email or phone in clear."""
    if not isinstance(item, str) or not item or len(item) > 512:
        raise InvalidInput("an identifier is kind:value text (email:…, phone:…, user_id:…)",
                           field=where)  # fmt: skip
    if CUSTOMER_ID.match(item):
        return item
    kind, _, raw = item.partition(":")
    value = _SPACE.sub("", raw)
    if kind not in KINDS or not value:
        raise InvalidInput(f"an identifier starts with one of {', '.join(KINDS)} and a colon",
                           field=where)  # fmt: skip
    if kind in ("email", "phone"):
        if is_blind(kind, value):
            return f"{kind}:{value}"
        form = canonical(kind, value, rules)
        if form is None:
            raise InvalidInput(f"that is not a valid {kind}", field=where)
        return f"{kind}:{warehouse.vault.blind(kind, form)}"
    if kind == "loyalty_id":
        return f"{kind}:{value.upper()}"
    alias, _ = pseudonym_of(warehouse.vault, value, rules)
    return f"{kind}:{alias or value}"


# -- members -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """The members found now, and what else is worth reporting (`unmatched`)."""

    customer_ids: frozenset[str]
    notes: dict[str, Any] = field(default_factory=dict)


class ModelScores(Protocol):
    """Where model audiences get their scores, each a Series indexed by customer id."""

    def churn_risk(self, warehouse: Warehouse, horizon: timedelta) -> pd.Series: ...
    def clv(self, warehouse: Warehouse) -> pd.Series: ...
    def product_scores(
        self, warehouse: Warehouse, product_id: str, algorithm: str
    ) -> pd.Series: ...


class FittedModels:
    """Scores of the models fitted on the warehouse as it is now."""

    def churn_risk(self, warehouse: Warehouse, horizon: timedelta) -> pd.Series:
        """Risk of not buying in the next `horizon` (`churn_service.current_risk`)."""
        from touchpoints.models.churn_service import current_risk

        return current_risk(warehouse, horizon)["risk"]

    def clv(self, warehouse: Warehouse) -> pd.Series:
        """12-month CLV by BG/NBD and Gamma-Gamma (`clv_data.score_customers`)."""
        from touchpoints.models.clv_data import (
            fit_from_transactions,
            score_customers,
            warehouse_transactions,
        )

        scored = score_customers(fit_from_transactions(warehouse_transactions(warehouse)))
        if "clv" not in scored.columns:
            raise InvalidInput("CLV needs repeat buyers with spend; there are none",
                               field="min_clv")  # fmt: skip
        return scored["clv"]

    def product_scores(self, warehouse: Warehouse, product_id: str, algorithm: str) -> pd.Series:
        """Every customer's score for the product, those who bought it left out."""
        from touchpoints.models.recommend_service import fitted

        recommender = fitted(warehouse, algorithm)
        data = recommender.data
        column = data.item_index.get(product_id)
        if column is None:
            raise InvalidInput(f"no customer has interacted with product {product_id!r}",
                               field="product_id")  # fmt: skip
        rows = np.arange(len(data.users), dtype=np.int64)
        scores = np.empty(len(rows), dtype=np.float64)
        for start in range(0, len(rows), 2048):
            batch = rows[start : start + 2048]
            scores[batch] = recommender.scores(batch)[:, column]
        bought = np.asarray(data.purchased[:, column].todense()).ravel() > 0
        return pd.Series(scores[~bought], index=pd.Index(data.users[~bought], name=USER))


def find_members(
    warehouse: Warehouse,
    definition: Mapping[str, Any],
    now: datetime,
    models: ModelScores | None = None,
) -> Found:
    """The customers in the audience at `now` (definition as `check_definition` gives)."""
    kind = kind_of(definition)
    if kind == "list":
        return _list_members(warehouse, definition["list"])
    if kind == "model":
        return Found(_model_members(warehouse, definition, models or FittedModels()))
    if kind == "funnel":
        spec = definition["funnel"]
        scope = Scope(start=now - timedelta(days=spec["within_days"]), end=now)
        found = dropped_after(
            user_events(warehouse, scope),
            [Step.parse(s) for s in spec["steps"]],
            parse_window(spec["window"]),
            spec["dropped_after"],
        )
    else:
        saved = saved_segments(warehouse)
        if kind == "segment":
            if definition["segment"] not in saved:
                raise NotFound(f"there is no saved segment {definition['segment']!r}",
                               field="segment")  # fmt: skip
            rule = saved[definition["segment"]]
        else:
            rule = definition["rule"]
        found = members(warehouse, rule, now, segments=saved)
    ids = found.select(USER).to_pyarrow().column(USER).to_pylist()
    return Found(frozenset(i for i in ids if i is not None))


def _list_members(warehouse: Warehouse, forms: list[str]) -> Found:
    identities = warehouse.table("identities")
    wanted = ibis.memtable({"form": forms}, schema={"form": "string"})
    by_identifier = wanted.join(identities, wanted.form == identities.identifier).select(
        "form", USER
    )
    customers = identities.select(USER).distinct()
    by_customer = wanted.join(customers, wanted.form == customers[USER]).select("form", USER)
    rows = ibis.union(by_identifier, by_customer).to_pyarrow().to_pylist()
    matched = {row["form"] for row in rows}
    return Found(
        frozenset(row[USER] for row in rows),
        {"listed": len(forms), "unmatched": len(set(forms) - matched)},
    )


def _model_members(
    warehouse: Warehouse, definition: Mapping[str, Any], models: ModelScores
) -> frozenset[str]:
    if definition["model"] == "churn":
        risk = models.churn_risk(warehouse, timedelta(days=definition["horizon_days"]))
        chosen = risk[risk >= definition["min_risk"]]
        if "min_clv" in definition:
            worth = models.clv(warehouse).reindex(chosen.index).fillna(0.0)
            chosen = chosen[worth >= definition["min_clv"]]
        return frozenset(str(i) for i in chosen.index)
    scores = models.product_scores(warehouse, definition["product_id"], definition["algorithm"])
    frame = pd.DataFrame({"id": scores.index.astype(str), "score": scores.to_numpy(float)})
    frame = frame[frame.score > 0].sort_values(["score", "id"], ascending=[False, True])
    return frozenset(frame.id.head(definition["top"]))
