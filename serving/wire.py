"""Answers on the wire: encoded once to JSON bytes, straight from pydantic's serializer.

BentoML 1.4 turns a returned pydantic answer into JSON by wrapping it in its own output model,
dumping it to a dict (to check for a plain string) and then dumping it again as JSON; an
endpoint that returns a ready `Response` skips all three. The bytes are the same JSON either way.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response

JSON = "application/json"


def encode_answer(answer: BaseModel) -> bytes:
    """The answer as JSON bytes, exactly as `answer.model_dump_json()` writes it."""
    return answer.__pydantic_serializer__.to_json(answer)


def json_response(answer: BaseModel) -> Response:
    """A 200 carrying the encoded answer."""
    return Response(encode_answer(answer), media_type=JSON)
