"""The HTTP edge before BentoML: 415s, the docs page, an honest OpenAPI spec, quiet 400 logs."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.guard import QuietRejections, RequestGuard, loyal_spec, openapi_30
from serving.schemas import FeedbackRequest, NextBestActionResponse

pytestmark = pytest.mark.unit

ROUTES = ("/next_best_action", "/feedback")


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"got": (await request.body()).decode()})


def guarded() -> TestClient:
    app = Starlette(routes=[Route(r, echo, methods=["POST"]) for r in ROUTES])
    spec = {"openapi": "3.0.2", "paths": {}}
    return TestClient(RequestGuard(app, routes=ROUTES, spec=lambda: spec))


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/vnd.bentoml+pickle",
        "application/octet-stream",
    ],
)
def test_bodies_that_are_not_json_get_415(content_type: str) -> None:
    """Issue 16, point 5: multipart without a boundary gave a 500 on every endpoint."""
    client = guarded()
    for route in ROUTES:
        response = client.post(route, content=b"--x", headers={"Content-Type": content_type})
        assert response.status_code == 415
        assert "application/json" in response.json()["error"]


def test_json_bodies_pass() -> None:
    client = guarded()
    assert client.post("/feedback", json={"a": 1}).status_code == 200
    sent = client.post(
        "/feedback", content=b"{}", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert sent.status_code == 200


def test_docs_page_loads_no_third_party_script() -> None:
    page = guarded().get("/").text
    assert "swagger-ui-bundle.js" in page and "./docs.json" in page
    assert "googletagmanager" not in page and "http://" not in page and "https://" not in page
    assert guarded().get("/docs.json").json()["openapi"] == "3.0.2"


def test_nullable_fields_are_declared_the_openapi_3_0_way() -> None:
    schema = openapi_30(NextBestActionResponse.model_json_schema())
    assert '"type": "null"' not in json.dumps(schema)
    filtered = schema["properties"]["filtered"]
    assert filtered["nullable"] is True and filtered["type"] == "array"
    assert schema["properties"]["tier"] == {"nullable": True, "title": "Tier", "type": "string"}


def test_error_answers_in_the_spec_are_the_real_ones() -> None:
    spec: dict[str, Any] = {
        "paths": {"/feedback": {"post": {"responses": {"200": {"description": "ok"}, "404": {}}}}},
        "components": {"schemas": {"InvalidArgument": {}}},
    }
    fixed = loyal_spec(spec, {"/feedback": (FeedbackRequest, NextBestActionResponse)}, auth=True)
    post = fixed["paths"]["/feedback"]["post"]
    responses = post["responses"]
    assert set(responses) == {"200", "400", "401", "415", "500", "503"}
    detail = responses["400"]["content"]["application/json"]["schema"]["properties"]["detail"]
    assert detail["type"] == "array"
    schemas = fixed["components"]["schemas"]
    assert "InvalidArgument" not in schemas
    ok = responses["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/NextBestActionResponse"}
    assert schemas["NextBestActionResponse"]["properties"]["filtered"]["nullable"] is True
    assert "RejectedOut" in schemas and "ActionOut" in schemas
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/FeedbackRequest"}
    assert '"type": "null"' not in json.dumps(fixed)


def test_a_rejected_request_is_logged_as_one_info_line_without_its_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 16, point 5: every 400 logged a traceback holding the request's values."""
    logger = logging.getLogger("test.guard.bentoml")
    logger.addFilter(QuietRejections())
    try:
        FeedbackRequest.model_validate({"customer_id": "SECRET-NAME", "channel": "fax"})
    except ValidationError:
        with caplog.at_level(logging.INFO, logger="test.guard.bentoml"):
            logger.error("Exception on %s [%s]", "/feedback", "POST", exc_info=sys.exc_info())
    (record,) = caplog.records
    assert record.levelno == logging.INFO and record.exc_info is None
    line = record.getMessage()
    assert line.startswith("400 /feedback: 2 invalid fields: action_id (missing), outcome")
    assert "SECRET-NAME" not in caplog.text and "fax" not in caplog.text
    assert "Traceback" not in caplog.text


def test_server_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.guard.bentoml5xx")
    logger.addFilter(QuietRejections())
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        with caplog.at_level(logging.INFO, logger="test.guard.bentoml5xx"):
            logger.error("Exception on %s [%s]", "/feedback", "POST", exc_info=True)
    assert caplog.records[0].levelno == logging.ERROR and "Traceback" in caplog.text
