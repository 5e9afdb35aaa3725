"""Touchpoints: an open-source, privacy-first customer data and insights platform."""

from __future__ import annotations

__version__ = "0.1.0"

from touchpoints.errors import TouchpointsError
from touchpoints.warehouse import Warehouse, connect

__all__ = ["TouchpointsError", "Warehouse", "__version__", "connect"]
