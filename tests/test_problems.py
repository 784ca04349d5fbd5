"""Problem details of the HTTP API in-process: what no subprocess test can provoke (a bug
in a route), and the OpenAPI declarations they come with."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import structlog
from litestar.testing import TestClient

from zart_es.api import create_app
from zart_es.api._problems import PROBLEMS

pytestmark = pytest.mark.pure


class BuggyClient:
    """Stands in for the Client of the app: every call the routes make is a bug."""

    async def stats(self) -> Any:
        raise RuntimeError("a bug in a route")

    async def close(self) -> None:
        return None


def test_building_the_app_warns_of_nothing() -> None:
    """Every handler declares where each argument comes from (FromPath, FromQuery,
    JSONBody, QueryParameter): Litestar 2.25 warns for each it has to infer, and those
    inferences stop working in Litestar 3."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_app(client=BuggyClient())  # type: ignore[arg-type]
    assert [str(w.message) for w in caught] == []


def test_a_bug_is_a_500_problem_and_logged() -> None:
    app = create_app(client=BuggyClient())  # type: ignore[arg-type]
    with TestClient(app) as http, structlog.testing.capture_logs() as logged:
        reply = http.get("/stats")
    assert reply.status_code == 500
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json() == {"type": "urn:zart-es:problem:internal_error",
                            "title": "Internal error", "status": 500, "instance": "/stats",
                            "detail": "RuntimeError (see the API's log)",
                            "code": "internal_error"}
    bug = next(entry for entry in logged if entry["event"] == "unhandled error in a route")
    assert bug["log_level"] == "error"
    assert str(bug["exc_info"]) == "a bug in a route"  # logged with its traceback


def test_the_openapi_document_declares_what_routes_answer() -> None:
    schema = create_app(client=BuggyClient()).openapi_schema.to_schema()  # type: ignore[arg-type]
    operations = {(method.upper(), path): op for path, item in schema["paths"].items()
                  for method, op in item.items()}
    cancel = operations[("POST", "/executions/{execution_id}/cancel")]["responses"]
    assert set(cancel) == {"202", "401", "404", "409", "422", "503"}  # no phantom 400
    conflict = cancel["409"]["content"]["application/problem+json"]["schema"]
    assert conflict == {"$ref": "#/components/schemas/ProblemDetails"}
    assert "execution_ended" in cancel["409"]["description"]
    start = operations[("POST", "/executions")]["responses"]
    assert {"200", "201", "400", "413", "422"} <= set(start)
    assert set(operations[("GET", "/livez")]["responses"]) == {"200"}
    assert "security" not in operations[("GET", "/healthz")]
    assert operations[("GET", "/stats")]["security"] == [{"bearer": []}]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {tag["name"] for tag in schema["tags"]} >= {"executions", "admin", "schedules"}
    every_status = {status for op in operations.values() for status in op["responses"]}
    declared = {str(status) for status, _, _ in PROBLEMS.values()} | {"200", "201", "202"}
    assert every_status <= declared
