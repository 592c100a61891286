"""The HTTP edge in front of BentoML: content types, the docs page, the OpenAPI spec, 400 logs.

BentoML 1.4 parses any body by its Content-Type (a multipart body without a boundary gives a
500), serves a docs page that loads a third-party tag manager, declares every 400 `detail` a
string (it is a list of field errors) and leaves pydantic's `null` types in an OpenAPI 3.0
spec; it also logs every rejected request at ERROR with a traceback that carries the request's
values. `RequestGuard` answers the first three itself; `QuietRejections` turns the fourth into
one INFO line naming the fields, never their values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.auth import header_value

log = logging.getLogger(__name__)

JSON = "application/json"
DOCS_PAGE = b"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>Loyal API</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script>
      window.onload = function () {
        window.ui = SwaggerUIBundle({
          url: "./docs.json",
          dom_id: "#swagger-ui",
          validatorUrl: null,
          deepLinking: true,
          presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
          layout: "StandaloneLayout",
        });
      };
    </script>
  </body>
</html>
"""
"""The docs page: BentoML's Swagger UI from the service's own files, no third-party script."""

_MESSAGE = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_FIELD_ERROR = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "loc": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
    },
    "required": ["type", "loc", "msg"],
}
_INVALID = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "array", "items": _FIELD_ERROR}},
    "required": ["error", "detail"],
}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error_responses(auth: bool) -> dict[str, Any]:
    """The error answers every API route really gives, by status code."""
    responses = {
        "400": _answer("Invalid request: `detail` lists each field and its problem.", _INVALID),
        "415": _answer("The body is not application/json.", _MESSAGE),
        "500": _answer("Unexpected error (details in the service log only).", _MESSAGE),
        "503": _answer("A store the call needs is down; nothing was recorded.", _MESSAGE),
    }
    if auth:
        responses["401"] = _answer("Missing or wrong API key.", _MESSAGE)
    return responses


def openapi_30(node: Any) -> Any:
    """Pydantic's JSON schema made OpenAPI 3.0: `anyOf [X, {type: null}]` becomes nullable X."""
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: openapi_30(value) for key, value in node.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}
        elif len(rest) == 1:
            out["allOf"] = rest
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    return out


Schemas = Mapping[str, tuple[type[BaseModel] | None, type[BaseModel]]]
"""Route -> (request model or None, response model)."""


def loyal_spec(spec: dict[str, Any], routes: Schemas, auth: bool) -> dict[str, Any]:
    """BentoML's spec with Loyal's own request and answer schemas and its real error answers.

    BentoML flattens each `anyOf` to its first member, so `filtered: null` and every other
    optional answer field lose their null; the schemas are generated here from the pydantic
    models instead, as OpenAPI 3.0 (`nullable`), with shared parts under components.
    """
    fixed = openapi_30(spec)
    components = fixed.setdefault("components", {}).setdefault("schemas", {})
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        components.pop(name, None)
    for route, (request, answer) in routes.items():
        post = fixed.get("paths", {}).get(route, {}).get("post")
        if post is None:
            continue
        ok = dict(post["responses"].get("200") or post["responses"].get(200) or {})
        ok["content"] = {JSON: {"schema": _component(answer, components)}}
        post["responses"] = {"200": ok, **error_responses(auth)}
        if request is not None:
            body = {JSON: {"schema": _component(request, components)}}
            post["requestBody"] = {"required": True, "content": body}
    return fixed


def _component(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """A model's OpenAPI 3.0 schema under components (with its nested models); its $ref."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, nested in schema.pop("$defs", {}).items():
        components[name] = openapi_30(nested)
    components[model.__name__] = openapi_30(schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


class RequestGuard:
    """ASGI middleware: 415 for non-JSON bodies on API routes, and Loyal's docs page and spec.

    Args:
        app: the next ASGI app.
        routes: the API routes (POST, JSON bodies).
        spec: builds the OpenAPI spec (called once, on the first `/docs.json`).
    """

    def __init__(self, app: ASGIApp, routes: Iterable[str], spec: Callable[[], dict[str, Any]]):
        self.app = app
        self.routes = frozenset(routes)
        self._spec_factory = spec
        self._spec: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", "")).rstrip("/") or "/"
        method = scope.get("method", "GET")
        if method in ("GET", "HEAD") and path == "/":
            await _send(send, 200, DOCS_PAGE, "text/html; charset=utf-8")
        elif method in ("GET", "HEAD") and path == "/docs.json":
            if self._spec is None:
                self._spec = json.dumps(self._spec_factory()).encode()
            await _send(send, 200, self._spec, JSON)
        elif path in self.routes and not _is_json(header_value(scope, "content-type")):
            kind = (header_value(scope, "content-type") or "").split(";")[0].strip()[:80]
            log.info("415 %s %s: content type %r", method, path, kind)
            body = {"error": f"unsupported content type {kind!r}: send {JSON}"}
            await _send(send, 415, json.dumps(body).encode(), JSON)
        else:
            await self.app(scope, receive, send)


def _is_json(content_type: str | None) -> bool:
    """A missing Content-Type reads as JSON (BentoML's default); otherwise it must be JSON."""
    if content_type is None:
        return True
    return content_type.split(";")[0].strip().lower() == JSON


async def _send(send: Send, status: int, body: bytes, media_type: str) -> None:
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class QuietRejections(logging.Filter):
    """Turn BentoML's ERROR-with-traceback for a rejected request into one INFO line.

    The line names the path and the fields at fault, never their values (no personal data,
    no log flooding); a 503 (a store down) becomes one WARNING line; other server errors keep
    their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a 4xx record in place; let every other record through unchanged."""
        if not record.exc_info or record.exc_info[1] is None:
            return True
        rejection = rejection_line(record.exc_info[1])
        if rejection is None:
            return True
        path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "%d %s: %s", (rejection[0], path, rejection[1])
        level = logging.WARNING if rejection[0] == 503 else logging.INFO
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.exc_info, record.exc_text = None, None
        return True


def rejection_line(exc: BaseException) -> tuple[int, str] | None:
    """(400, '2 invalid fields: context.tier (...), k (...)') for a rejected request, a 503's
    status and message, else None."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        fields = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'} ({e['type']})" for e in exc.errors()
        ]
        shown = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
        return 400, f"{len(fields)} invalid field{'s' if len(fields) != 1 else ''}: {shown}"
    if isinstance(exc, BentoMLException) and exc.error_code.value < 500:
        return exc.error_code.value, type(exc).__name__
    if isinstance(exc, BentoMLException) and exc.error_code.value == 503:
        return 503, str(exc)  # Loyal's own words: a store is down, nothing recorded
    return None
