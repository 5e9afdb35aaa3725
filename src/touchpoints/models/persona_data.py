"""Personas of the warehouse's customers: behaviour as of the last event (the churn
feature table, which never looks past its cutoff), clustered by `models.personas`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from touchpoints.insights.frame import USER
from touchpoints.models.churn_features import customer_table
from touchpoints.models.churn_service import last_event
from touchpoints.models.personas import PersonaModel, breakdown, fit_personas
from touchpoints.warehouse.connection import Warehouse
from touchpoints.warehouse.functions import json_text

#: Behaviour that describes a customer for personas (from the churn features).
PERSONA_FEATURES = {
    "frequency": "orders",
    "monetary": "revenue",
    "average_order_value": "order value",
    "tenure_days": "tenure",
    "recency_days": "days since last order",
    "sessions_30_90d": "recent visits",
    "share_store": "store share",
    "share_app": "app share",
    "email_opens_90d": "email opens",
}


def customer_personas(warehouse: Warehouse, max_clusters: int = 8) -> PersonaModel:
    """Personas of the customers who ordered, on their behaviour as of the last event."""
    table = customer_table(warehouse, last_event(warehouse) + timedelta(microseconds=1))
    columns = [c for c in PERSONA_FEATURES if c in table.columns]
    return fit_personas(table[columns].fillna(0.0), range(2, max_clusters + 1),
                        labels=PERSONA_FEATURES)  # fmt: skip


def trait_values(warehouse: Warehouse, trait: str) -> pd.Series:
    """One profile trait per customer (`traits.country`, `traits.gender`…), as text."""
    profiles = warehouse.table("profiles")
    table = profiles.select(USER, value=json_text(profiles.traits, trait)).to_pandas()
    return table.set_index(USER)["value"]


def persona_breakdown(model: PersonaModel, values: pd.Series) -> list[dict[str, Any]]:
    """The share of each trait value within each persona, as rows."""
    shares = breakdown(model.clusters, values)
    names = {p.cluster: p.name for p in model.personas}
    return [
        {"cluster": int(cluster), "name": names[int(cluster)], "value": str(value),
         "share": float(shares.loc[cluster, value])}
        for cluster in shares.index for value in shares.columns
        if shares.loc[cluster, value] > 0
    ]  # fmt: skip
