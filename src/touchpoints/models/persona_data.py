"""Personas of the warehouse's customers: behaviour as of the last event (the churn
feature table, which never looks past its cutoff), clustered by `models.personas`."""

from __future__ import annotations

from datetime import timedelta

from touchpoints.models.churn_features import customer_table
from touchpoints.models.churn_service import last_event
from touchpoints.models.personas import PersonaModel, fit_personas
from touchpoints.warehouse.connection import Warehouse

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
