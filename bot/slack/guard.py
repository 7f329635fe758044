"""The first look at every request from Slack, before Bolt parses it: signed, fresh, small, and shaped as the bot's
listeners expect. Anything else is answered at once with one log line and nothing done.

Bolt parses a body before it checks the signature, and its parsing and matchers raise (HTTP 500, a traceback) on
invalid UTF-8, a payload that is not a JSON object, `actions: null` or `[]`, a `user` that is a list... so in HTTP
mode the signature is checked here first, on the raw bytes, and an unsigned, stale or oversized request gets a 4xx
without being parsed. A signed request that is malformed can only come from Slack itself or from someone holding
the signing secret: it gets 200 with an empty body (Slack neither retries nor shows an error), and nothing is done.
In Socket Mode the envelope's payload is checked the same way and acknowledged with nothing done.

The checks mirror Bolt's own reading of a body (`slack_bolt.request.internals.parse_body`), so that what passes
here is exactly what Bolt's parsing, context building and matchers can take. Bolt's own signature check stays on
behind this one.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

MAX_BODY = 4 * 2**20  # a message shortcut carries the whole message, URL-encoded: up to three times its JSON
MAX_AGE_SECONDS = 300  # Slack's (and Bolt's) window for X-Slack-Request-Timestamp, either way
MAX_DEPTH = 64  # Slack's deepest payloads (rich text in a message's attachments) nest about 15 levels
MAX_FIELDS = 100  # form fields of a slash command: Slack sends about a dozen

# The interactive payloads the bot has listeners for; Bolt's matchers raise on others' odd shapes too.
INTERACTIVE_TYPES = frozenset(
    {"block_actions", "view_submission", "view_closed", "shortcut", "message_action", "block_suggestion"}
)
# Top-level fields Bolt's context building reads as a string when present.
_STRINGS = (
    "type",
    "user_id",
    "channel_id",
    "team_id",
    "enterprise_id",
    "thread_ts",
    "response_url",
    "trigger_id",
    "api_app_id",
    "callback_id",
    "action_id",
    "block_id",
    "value",
)
# Fields of the Events API and of workflow functions: Bolt follows them into nested lookups (where a list instead
# of an object raises), and no payload the bot handles has them. `command` would make Bolt treat an interactive
# payload as a slash command.
_FOREIGN = (
    "command",
    "event",
    "authorizations",
    "item",
    "assistant_thread",
    "previous_message",
    "function_data",
    "function_execution_id",
    "bot_access_token",
)
_VIEW_STRINGS = ("id", "hash", "callback_id", "type", "private_metadata", "app_installed_team_id", "team_id")
# Fields of a state value element the modal reads, with the types Slack sends.
_ELEMENT_STRINGS = ("type", "value", "selected_conversation", "selected_channel", "selected_user", "selected_date")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request answered here, not passed on: its HTTP status (4xx, or 200 with nothing done) and what was wrong."""

    status: int
    reason: str
    reply: str = ""  # for a slash command: a private answer to the person, as the 200's JSON body


class Malformed(ValueError):
    """The body or payload is not what Slack sends; the message says what was wrong, `reply` what to tell a person
    who typed a command (if anything)."""

    def __init__(self, reason: str, *, reply: str = "") -> None:
        super().__init__(reason)
        self.reply = reply


# --- HTTP ---------------------------------------------------------------------------------------------------------


def check_signature(
    body: bytes, timestamp: str | None, signature: str | None, *, secret: bytes, now: float
) -> str | None:
    """Why Slack's v0 signature over `body` does not hold (missing, stale, wrong), or None when it does."""
    if not timestamp or not signature:
        return "no Slack signature"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return "a malformed X-Slack-Request-Timestamp"
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return "a stale X-Slack-Request-Timestamp (more than 5 minutes off)"
    expected = "v0=" + hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return "a wrong Slack signature"
    return None


def screen(
    body: bytes, *, timestamp: str | None, signature: str | None, content_type: str | None, secret: bytes, now: float
) -> Refusal | None:
    """None when Bolt may have this request; else how to answer it. The signature is checked before any parsing."""
    wrong = check_signature(body, timestamp, signature, secret=secret, now=now)
    if wrong is not None:
        if _is_ssl_check(body):  # Slack's certificate probe, which Bolt answers 200 unsigned: nothing to do
            return Refusal(200, "ssl_check")
        return Refusal(401, wrong)
    try:
        read_body(body, content_type)
    except Malformed as err:
        return Refusal(200, str(err), err.reply)
    return None


def read_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The request as Bolt will read it (a slash command's form, or an interactive payload), checked; or Malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("a body that is not UTF-8", reply=_unreadable_command(body)) from None
    if not text:
        raise Malformed("an empty body")
    if text.startswith("\ufeff"):
        # The signature covers the mark, so it cannot be stripped for Bolt; Slack never sends one.
        raise Malformed("a body that starts with a byte-order mark")
    if (content_type or "").split(";")[0] == "application/json" or text.startswith("{"):
        raise Malformed("a JSON body: the bot takes no Events API requests, only commands and interactivity")
    fields = _form(text)
    if "payload" in text:  # as Bolt decides: then it reads only the `payload` field, as JSON
        if "payload" not in fields:
            # Bolt reads such a form as empty: a command whose text says "payload" would be lost without a word.
            raise Malformed(
                "a form that mentions 'payload' without a payload field (Bolt would read it as empty)",
                reply=_PAYLOAD_WORD if fields.get("command", "").startswith("/") else "",
            )
        payload = loads(fields["payload"])
        check_interactive(payload)
        return payload
    check_command(fields)
    return fields


def _form(text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError as err:  # includes UnicodeDecodeError in a %-escape, and too many fields
        reply = _unreadable_command(text.encode()) if isinstance(err, UnicodeDecodeError) else ""
        raise Malformed(f"a form that does not parse ({_short(err)})", reply=reply) from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Malformed("a form with a field given twice")
    return fields


def _unreadable_command(body: bytes) -> str:
    """The private answer to a slash command whose text is not UTF-8 (a person typed it: they must hear back), or
    "" for anything else."""
    try:
        fields = dict(parse_qsl(body.decode("utf-8", "replace"), errors="replace", max_num_fields=MAX_FIELDS))
    except ValueError:
        return ""
    command = fields.get("command", "")
    if not command.startswith("/") or "payload" in fields:
        return ""
    shown = command[:40].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")
    return _UNREADABLE.format(command=shown)


def _is_ssl_check(body: bytes) -> bool:
    if len(body) > 1000 or b"ssl_check=1" not in body:
        return False
    try:
        fields = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=10))
    except ValueError:
        return False
    return fields.get("ssl_check") == "1" and "payload" not in fields and "command" not in fields


def guarded(
    slack: WSGIApplication, *, signing_secret: str, path: str, clock: Callable[[], float] = time.time
) -> WSGIApplication:
    """`slack` (Bolt's WSGI handler) behind the guard, for POSTs to `path`; other requests pass straight on."""
    if not signing_secret:
        raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET")
    secret = signing_secret.encode()

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != path:
            return slack(environ, start_response)
        length = str(environ.get("CONTENT_LENGTH") or "0")
        if not (length.isascii() and length.isdigit()):
            return _answer(start_response, Refusal(400, "a malformed Content-Length"))
        if int(length) > MAX_BODY:
            return _answer(start_response, Refusal(413, f"a body of {length} bytes (at most {MAX_BODY})"))
        stream = environ.get("wsgi.input")
        body = stream.read(int(length)) if stream is not None and int(length) else b""
        if len(body) != int(length):
            return _answer(start_response, Refusal(400, "a body shorter than its Content-Length"))
        refusal = screen(
            body,
            timestamp=environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP"),
            signature=environ.get("HTTP_X_SLACK_SIGNATURE"),
            content_type=environ.get("CONTENT_TYPE"),
            secret=secret,
            now=clock(),
        )
        if refusal is not None:
            return _answer(start_response, refusal)
        environ["wsgi.input"] = io.BytesIO(body)  # Bolt reads the same bytes again
        return slack(environ, start_response)

    return application


_PAYLOAD_WORD = (
    ":warning: The bot cannot read a command that contains the word `payload` (a limit of the Slack library it "
    "uses). Nothing was done; please type it again without that word."
)
_UNREADABLE = (
    ":warning: I could not read the text of that `{command}` command (it is not valid UTF-8). Nothing was done; "
    "please type it again."
)
_STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized", 413: "413 Content Too Large"}


def _answer(start_response: StartResponse, refusal: Refusal) -> list[bytes]:
    if refusal.reason != "ssl_check":
        log.warning("refused a request to the Slack endpoint: %s", refusal.reason, extra={"status": refusal.status})
    content_type = "text/plain; charset=utf-8"
    if refusal.reply:
        body = json.dumps({"response_type": "ephemeral", "text": refusal.reply}).encode()
        content_type = "application/json"
    elif refusal.status == 200:
        body = b""
    else:
        body = _STATUS[refusal.status].split(" ", 1)[1].encode() + b"\n"
    start_response(_STATUS[refusal.status], [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


# --- Socket Mode --------------------------------------------------------------------------------------------------


def check_envelope(message: Mapping[str, Any]) -> str | None:
    """Why a Socket Mode envelope (already a JSON object, with an envelope_id) must not reach Bolt, or None."""
    kind, payload = message.get("type"), message.get("payload")
    retry = message.get("retry_attempt")
    if retry is not None and (not isinstance(retry, int) or isinstance(retry, bool)):
        return "a retry_attempt that is not a number"
    if not isinstance(message.get("retry_reason"), str | None):
        return "a retry_reason that is not a string"
    if not isinstance(payload, dict):
        return f"a payload that is a {type(payload).__name__}, not an object"
    try:
        _check_depth(payload)
        if kind == "slash_commands":
            if not all(isinstance(v, str) for v in payload.values()):
                raise Malformed("a slash command with a field that is not a string")
            check_command(payload)
        elif kind == "interactive":
            check_interactive(payload)
        else:
            raise Malformed(f"an envelope of type {_short(kind)}: the bot takes only commands and interactivity")
    except Malformed as err:
        return str(err)
    return None


# --- payloads -----------------------------------------------------------------------------------------------------


def loads(text: str) -> dict[str, Any]:
    """Strict JSON: an object, no duplicate keys, no NaN or Infinity, nested at most MAX_DEPTH deep."""
    try:
        value = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except RecursionError:
        raise Malformed("a payload nested too deep") from None
    except ValueError as err:
        raise Malformed(f"a payload that is not JSON ({_short(err)})") from None
    if not isinstance(value, dict):
        raise Malformed(f"a payload that is a JSON {type(value).__name__}, not an object")
    _check_depth(value)
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a key given twice")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_depth(value: Any) -> None:
    level: list[Any] = [value]
    for _ in range(MAX_DEPTH):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item if isinstance(item, list) else ())
            if isinstance(child, dict | list)
        ]
        if not level:
            return
    raise Malformed(f"a payload nested more than {MAX_DEPTH} deep")


def check_command(fields: Mapping[str, str]) -> None:
    """A slash command's form: the fields every listener reads, present."""
    command = fields.get("command", "")
    if not command.startswith("/"):
        raise Malformed("a form that is neither a slash command nor an interactive payload")
    for name in ("user_id", "channel_id"):
        if not fields.get(name):
            raise Malformed(f"a slash command without {name}")


def check_interactive(payload: dict[str, Any]) -> None:
    """An interactive payload of a type the bot handles, with every field Bolt or a listener reads of the right type."""
    kind = payload.get("type")
    if not isinstance(kind, str) or kind not in INTERACTIVE_TYPES:
        raise Malformed(f"an interactive payload of type {_short(kind)}, which the bot does not handle")
    for name in _FOREIGN:
        if name in payload:
            raise Malformed(f"a {kind} payload with a {name!r} field")
    for name in _STRINGS:
        _string(payload, name, kind)
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        raise Malformed(f"a {kind} payload without user.id")
    for name in ("team", "enterprise", "channel"):
        _id_holder(payload, name, kind)
    for name in ("container", "message", "state", "view"):
        if not isinstance(payload.get(name), dict | None):
            raise Malformed(f"a {kind} payload whose {name} is not an object")
    message = payload.get("message") or {}
    for name in ("ts", "thread_ts", "text"):
        _string(message, name, f"{kind} message")
    if not isinstance(message.get("blocks"), list | None) or not isinstance(message.get("attachments"), list | None):
        raise Malformed(f"a {kind} payload whose message blocks or attachments are not lists")
    container = payload.get("container") or {}
    for name in ("message_ts", "channel_id", "thread_ts"):
        _string(container, name, f"{kind} container")
    view = payload.get("view") or {}
    for name in _VIEW_STRINGS:
        _string(view, name, f"{kind} view")
    urls = payload.get("response_urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, dict) for u in urls)):
        raise Malformed(f"a {kind} payload whose response_urls is not a list of objects")
    if kind == "block_actions":
        _check_actions(payload.get("actions"))
    elif kind in ("view_submission", "view_closed"):
        _check_view(payload.get("view"), kind)
    elif kind in ("shortcut", "message_action"):
        if not payload.get("callback_id"):
            raise Malformed(f"a {kind} without callback_id")
        if kind == "message_action" and not isinstance(payload.get("message"), dict):
            raise Malformed("a message_action without its message")
    elif kind == "block_suggestion":
        if not payload.get("action_id"):
            raise Malformed("a block_suggestion without action_id")
        if not isinstance(payload.get("value"), str):
            raise Malformed("a block_suggestion without the typed value")
        if payload.get("view") is not None:
            _check_view(payload["view"], kind, state_required=False)


def _check_actions(actions: Any) -> None:
    if not isinstance(actions, list) or not actions:
        raise Malformed("a block_actions payload whose actions is not a non-empty list")
    for action in actions:
        if not isinstance(action, dict) or not isinstance(action.get("action_id"), str) or not action["action_id"]:
            raise Malformed("a block_actions payload with an action that has no action_id")
        for name in ("block_id", "value", "type", "action_ts"):
            _string(action, name, "block_actions action")
        _option(action, "block_actions action")


def _check_view(view: Any, kind: str, *, state_required: bool = True) -> None:
    if not isinstance(view, dict):
        raise Malformed(f"a {kind} payload without its view")
    if kind != "block_suggestion" and not view.get("callback_id"):
        raise Malformed(f"a {kind} payload without view.callback_id")
    state = view.get("state")
    if state is None and not state_required:
        return
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        raise Malformed(f"a {kind} payload without view.state.values")
    for block in values.values():
        if not isinstance(block, dict):
            raise Malformed(f"a {kind} payload whose state values hold a block that is not an object")
        for element in block.values():
            if not isinstance(element, dict):
                raise Malformed(f"a {kind} payload whose state values hold an element that is not an object")
            for name in _ELEMENT_STRINGS:
                _string(element, name, f"{kind} state element")
            _option(element, f"{kind} state element")


def _option(holder: dict[str, Any], where: str) -> None:
    """`selected_option` may be null (nothing chosen) or an option whose value is a string."""
    option = holder.get("selected_option")
    if option is not None and not (isinstance(option, dict) and isinstance(option.get("value"), str | None)):
        raise Malformed(f"a {where} whose selected_option is not an option")
    options = holder.get("selected_options")
    if options is not None and not (isinstance(options, list) and all(isinstance(o, dict) for o in options)):
        raise Malformed(f"a {where} whose selected_options is not a list of options")


def _string(holder: dict[str, Any], name: str, where: str) -> None:
    if not isinstance(holder.get(name), str | None):
        raise Malformed(f"a {where} whose {name} is not a string")


def _id_holder(payload: dict[str, Any], name: str, kind: str) -> None:
    """team, enterprise, channel: Bolt takes a string, or an object whose id is a string."""
    value = payload.get(name)
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, dict) or not isinstance(value.get("id"), str | None):
        raise Malformed(f"a {kind} payload whose {name} is neither an ID nor an object with one")
    if name == "team" and not isinstance(value.get("enterprise_id"), str | None):
        raise Malformed(f"a {kind} payload whose team.enterprise_id is not a string")


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
