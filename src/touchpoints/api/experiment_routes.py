"""Experiments over HTTP: saving a definition needs an admin key; listing them and asking
a unit's variant need a read key. The analysis is the `experiment` report under
`/v1/insights/experiment?key=...`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from starlette.responses import Response

from touchpoints.api.auth import off_loop, require
from touchpoints.api.responses import JSON
from touchpoints.errors import InvalidInput
from touchpoints.models.experiments import assignment, list_experiments, save_experiment

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
MAX_UNIT = 500


@router.get("")
async def get_experiments(request: Request) -> Response:
    """The saved experiments: key, name, unit, variants and weights, start, stop, primary
    metric."""
    await require(request, "read")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, list_experiments, warehouse))


@router.get("/{key}/assignment")
async def get_assignment(key: str, request: Request, unit: str | None = None) -> Response:
    """The variant of `unit` (a user id, anonymous id or customer id, as the experiment's
    unit says): the same answer on every call and machine. `variant` is null when the
    experiment's coverage leaves the unit out. Record what was shown as an
    `Experiment Viewed` event (`experiment_id`, `variation_id`)."""
    await require(request, "read")
    if unit is None or not unit.strip() or len(unit) > MAX_UNIT:
        raise InvalidInput(f"unit is a non-empty id of at most {MAX_UNIT} characters", field="unit")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, assignment, warehouse, key, unit))


@router.put("/{key}")
async def put_experiment(
    key: str, request: Request, definition: dict[str, Any] = Body(...)
) -> Response:
    """Create or replace an experiment (see docs/experiments.md for the definition); the
    key in the body, if any, must be the key in the path. Errors name the bad field."""
    await require(request, "admin")
    if definition.get("key", key) != key:
        raise InvalidInput("the key in the body differs from the key in the path", field="key")
    warehouse = request.app.state.services.warehouse
    return JSON(await off_loop(request, save_experiment, warehouse, {**definition, "key": key}))
