"""Where the CLI's reads and writes go: the running server that owns the warehouse
file, or the warehouse itself when no server runs (see `touchpoints.warehouse.ownership`).
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from touchpoints.collect.sources import add_source, list_sources
from touchpoints.errors import TouchpointsError, WarehouseError
from touchpoints.insights import segments
from touchpoints.privacy.audit import CONTROL_ACTOR
from touchpoints.privacy.consent_config import set_source_mode
from touchpoints.privacy.keys import add_key, list_keys, revoke_key
from touchpoints.privacy.rebuild import rebuild
from touchpoints.privacy.source_privacy import set_source_ip_mode
from touchpoints.warehouse import connect, duckdb_path
from touchpoints.warehouse.ownership import ServerInfo, running_server


class Target(Protocol):
    def sql(self, query: str) -> tuple[list[str], list[dict[str, Any]]]: ...
    def add_source(self, name: str, channel: str, ip_mode: str) -> dict[str, Any]: ...
    def list_sources(self) -> list[dict[str, Any]]: ...
    def build(self, full: bool, settings: dict[str, Any]) -> dict[str, Any]: ...
    def profile(self, identifier: str, limit: int) -> dict[str, Any]: ...
    def add_key(self, name: str, role: str) -> dict[str, Any]: ...
    def list_keys(self) -> list[dict[str, Any]]: ...
    def revoke_key(self, key_id: str) -> dict[str, Any]: ...
    def report(self, name: str, params: dict[str, Any]) -> dict[str, Any]: ...
    def set_source(
        self, source_id: str, ip_mode: str | None, consent_mode: str | None
    ) -> dict[str, Any]: ...
    def save_segment(self, name: str, rule: dict[str, Any]) -> dict[str, Any]: ...
    def refresh_segment(self, name: str) -> dict[str, Any]: ...
    def delete_segment(self, name: str) -> dict[str, Any]: ...
    def save_experiment(self, definition: dict[str, Any]) -> dict[str, Any]: ...
    def assignment(self, key: str, unit: str) -> dict[str, Any]: ...
    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any: ...
    def close(self) -> None: ...


class LocalTarget:
    def __init__(self, url: str) -> None:
        self.warehouse = connect(url)
        self._api: Any = None  # (services, client) once a REST call needs them

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """A REST call answered in this process by the API over this warehouse, so that a
        verb that is a thin face over an endpoint works alike with and without a server."""
        if self._api is None:
            from starlette.testclient import TestClient

            from touchpoints.api.app import Services, create_app

            token = secrets.token_urlsafe(32)
            services = Services.open(self.warehouse, control_token=token)
            client = TestClient(
                create_app(services),
                base_url="http://localhost",
                headers={"Authorization": f"Bearer {token}"},
                raise_server_exceptions=True,
            )
            self._api = (services, client)
        response = self._api[1].request(method, path, json=json, params=params)
        return answer(response, "the warehouse")

    def sql(self, query: str) -> tuple[list[str], list[dict[str, Any]]]:
        table = self.warehouse.query(query)
        return table.column_names, table.to_pylist()

    def add_source(self, name: str, channel: str, ip_mode: str) -> dict[str, Any]:
        made = add_source(self.warehouse, name, channel, ip_mode)
        return {**made.source.as_dict(), "write_key": made.write_key}

    def list_sources(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in list_sources(self.warehouse)]

    def build(self, full: bool, settings: dict[str, Any]) -> dict[str, Any]:
        return rebuild(self.warehouse, full=full, settings=settings)

    def profile(self, identifier: str, limit: int) -> dict[str, Any]:
        from touchpoints.models.customer_voice import profile_with_voice  # heavy: when used

        return profile_with_voice(self.warehouse, identifier, limit, actor=CONTROL_ACTOR)

    def add_key(self, name: str, role: str) -> dict[str, Any]:
        key, secret = add_key(self.warehouse, name, role)
        return {**key.as_dict(), "key": secret}

    def list_keys(self) -> list[dict[str, Any]]:
        return [k.as_dict() for k in list_keys(self.warehouse)]

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return revoke_key(self.warehouse, key_id).as_dict()

    def report(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        from touchpoints.models.reports import run_report  # heavy: when used

        return run_report(self.warehouse, name, params).as_dict()

    def set_source(
        self, source_id: str, ip_mode: str | None, consent_mode: str | None
    ) -> dict[str, Any]:
        changed: dict[str, Any] = {"source_id": source_id}
        if ip_mode is not None:
            changed["ip_mode"] = set_source_ip_mode(self.warehouse, source_id, ip_mode)["ip_mode"]
        if consent_mode is not None:
            made = set_source_mode(self.warehouse, source_id, consent_mode, actor="cli")
            changed["consent_mode"] = made["consent_mode"]
        return changed

    def save_segment(self, name: str, rule: dict[str, Any]) -> dict[str, Any]:
        return segments.save_segment(self.warehouse, name, rule)

    def refresh_segment(self, name: str) -> dict[str, Any]:
        found = segments.evaluate_segment(self.warehouse, name)
        return {"name": found.name, "computed_at": found.as_of.isoformat(), "size": found.size}

    def delete_segment(self, name: str) -> dict[str, Any]:
        segments.delete_segment(self.warehouse, name)
        return {"deleted": name}

    def save_experiment(self, definition: dict[str, Any]) -> dict[str, Any]:
        from touchpoints.models import experiments  # heavy: when used

        return experiments.save_experiment(self.warehouse, definition)

    def assignment(self, key: str, unit: str) -> dict[str, Any]:
        from touchpoints.models import experiments  # heavy: when used

        return experiments.assignment(self.warehouse, key, unit)

    def close(self) -> None:
        if self._api is not None:
            self._api[1].close()
            self._api[0].close()
        self.warehouse.close()


class RemoteTarget:
    """Asks the server that owns the file, with the control token it left beside it."""

    def __init__(self, info: ServerInfo) -> None:
        self.info = info
        self.client = httpx.Client(
            base_url=info.url, timeout=300, headers={"Authorization": f"Bearer {info.token}"}
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise WarehouseError(f"the server at {self.info.url} did not answer: {exc}") from exc
        return answer(response, f"the server at {self.info.url}")

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        return self._call(method, path, json=json, params=params)

    def sql(self, query: str) -> tuple[list[str], list[dict[str, Any]]]:
        body = self._call("POST", "/v1/admin/sql", json={"sql": query})
        return body["columns"], body["rows"]

    def add_source(self, name: str, channel: str, ip_mode: str) -> dict[str, Any]:
        return self._call(
            "POST",
            "/v1/admin/sources",
            json={"name": name, "channel": channel, "ip_mode": ip_mode},
        )

    def list_sources(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/admin/sources")

    def build(self, full: bool, settings: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/admin/build", json={"full": full, "settings": settings})

    def profile(self, identifier: str, limit: int) -> dict[str, Any]:
        return self._call(
            "GET", f"/v1/profiles/{quote(identifier, safe='')}", params={"limit": limit}
        )

    def add_key(self, name: str, role: str) -> dict[str, Any]:
        return self._call("POST", "/v1/admin/keys", json={"name": name, "role": role})

    def list_keys(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/admin/keys")

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/admin/keys/{quote(key_id, safe='')}/revoke")

    def report(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("GET", f"/v1/insights/{quote(name, safe='')}", params=params)

    def set_source(
        self, source_id: str, ip_mode: str | None, consent_mode: str | None
    ) -> dict[str, Any]:
        changed: dict[str, Any] = {"source_id": source_id}
        base = f"/v1/admin/sources/{quote(source_id, safe='')}"
        if ip_mode is not None:
            made = self._call("PUT", f"{base}/ip-mode", json={"mode": ip_mode})
            changed["ip_mode"] = made["ip_mode"]
        if consent_mode is not None:
            made = self._call("PUT", f"{base}/consent-mode", json={"mode": consent_mode})
            changed["consent_mode"] = made["consent_mode"]
        return changed

    def save_segment(self, name: str, rule: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/segments", json={"name": name, "rule": rule})

    def refresh_segment(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/segments/{quote(name, safe='')}/refresh")

    def delete_segment(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/segments/{quote(name, safe='')}")

    def save_experiment(self, definition: dict[str, Any]) -> dict[str, Any]:
        key = quote(definition["key"], safe="")
        return self._call("PUT", f"/v1/experiments/{key}", json=definition)

    def assignment(self, key: str, unit: str) -> dict[str, Any]:
        path = f"/v1/experiments/{quote(key, safe='')}/assignment"
        return self._call("GET", path, params={"unit": unit})

    def close(self) -> None:
        self.client.close()


def answer(response: httpx.Response, who: str) -> Any:
    """The JSON body of an API answer, or its error as a `TouchpointsError`."""
    try:
        body = response.json()
    except ValueError:
        raise WarehouseError(f"{who} answered {response.status_code} without JSON") from None
    if response.status_code >= 400:
        raise TouchpointsError(body.get("message", "the server refused"), field=body.get("field"))
    return body


def open_target(url: str) -> Target:
    path = duckdb_path(url)
    if path is not None:
        info = running_server(path)
        if info is not None:
            return RemoteTarget(info)
    return LocalTarget(url)
