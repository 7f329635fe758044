"""Reading DBSS, IAM and API-gateway error answers, whatever shape their bodies take."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx

from bot.dbss.errors import DbssApiError, DbssThrottled

E = TypeVar("E", bound=DbssApiError)
_MAX_MESSAGE = 500


def _find_code_and_message(body: Any, depth: int = 0) -> tuple[str | None, str | None]:
    """error_code/error_msg at the top level, else errorCode/errorMsg, else code/message, else nested."""
    if not isinstance(body, dict) or depth > 4:
        return None, None
    for code_key, msg_key in (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message")):
        if code_key in body or msg_key in body:
            code, msg = body.get(code_key), body.get(msg_key)
            return (str(code) if code is not None else None, str(msg) if msg is not None else None)
    for value in body.values():
        code, msg = _find_code_and_message(value, depth + 1)
        if code is not None or msg is not None:
            return code, msg
    return None, None


def _find_key(body: Any, key: str, depth: int = 0) -> str | None:
    if not isinstance(body, dict) or depth > 4:
        return None
    if isinstance(body.get(key), str) and body[key]:
        return str(body[key])
    for value in body.values():
        found = _find_key(value, key, depth + 1)
        if found:
            return found
    return None


def api_error(response: httpx.Response, *, error_class: type[E]) -> E | DbssThrottled:
    """The error an answer stands for: the three JSON shapes, Keystone's, or a non-JSON body."""
    text = response.text
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    code, msg = _find_code_and_message(body)
    if code is None and msg is None:
        code = str(response.status_code)
        msg = " ".join(text.split())[:_MAX_MESSAGE] or response.reason_phrase or "no error message"
    request_id = response.headers.get("X-Request-Id") or _find_key(body, "request_id")
    kwargs: dict[str, Any] = {
        "status_code": response.status_code,
        "error_code": code,
        "error_msg": (msg or "")[:_MAX_MESSAGE],
        "request_id": request_id,
        "encoded_authorization_message": _find_key(body, "encoded_authorization_message"),
    }
    throttled = response.status_code == 429 or (code or "").upper() in {"APIGW.0308", "APIG.0308"}
    if throttled:
        return DbssThrottled(**kwargs)
    return error_class(**kwargs)
