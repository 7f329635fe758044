"""Shortcuts: "Reboot DBSS instance" on an alert message, and "Reboot a DBSS instance" from anywhere."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.core.mentions import find_instances
from bot.core.reboots import new_correlation_id
from bot.dbss.errors import DbssError
from bot.dbss.models import Instance
from bot.slack import messages
from bot.slack.listeners.common import TS, Deps, dbss_unavailable, privately, say_privately

log = logging.getLogger(__name__)

MESSAGE_SHORTCUT = "dbss_reboot_from_message"
GLOBAL_SHORTCUT = "dbss_reboot_global"


def register(app: App, deps: Deps) -> None:
    app.shortcut(MESSAGE_SHORTCUT)(partial(on_message_shortcut, deps))
    app.shortcut(GLOBAL_SHORTCUT)(partial(on_global_shortcut, deps))


def on_message_shortcut(deps: Deps, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
    """The card goes in the alert's thread, with every usual check."""
    ack()
    user = str((body.get("user") or {}).get("id") or "")
    channel = str((body.get("channel") or {}).get("id") or "")
    message = body.get("message") if isinstance(body.get("message"), dict) else {}
    assert isinstance(message, dict)
    thread = str(message.get("thread_ts") or message.get("ts") or "")
    thread_ts = thread if TS.fullmatch(thread) else None
    correlation_id = new_correlation_id()
    tell = privately(respond)
    refusal = deps.policy.refusal(user, channel)
    if refusal is not None:
        deps.in_background(correlation_id, tell, partial(tell, f":no_entry: {messages.escape(refusal)}"))
        record = partial(
            deps.refused,
            user=user,
            channel=channel,
            reason=refusal,
            text="message shortcut",
            correlation_id=correlation_id,
        )
        deps.in_background(correlation_id, tell, record)
        return
    job = partial(
        look_in_alert,
        deps,
        respond,
        message,
        user=user,
        channel=channel,
        thread_ts=thread_ts,
        correlation_id=correlation_id,
    )
    deps.in_background(correlation_id, tell, job)


def look_in_alert(
    deps: Deps,
    respond: Respond,
    message: dict[str, Any],
    *,
    user: str,
    channel: str,
    thread_ts: str | None,
    correlation_id: str,
) -> None:
    tell = privately(respond)
    try:
        instances: list[Instance] | None = deps.listing.list_instances()
    except DbssError:
        instances = None
    found = find_instances(message, instances)
    if len(found) == 1:
        deps.post_card(
            user=user,
            channel=channel,
            instance_id=found[0],
            correlation_id=correlation_id,
            tell=tell,
            thread_ts=thread_ts,
            known=instances,
        )
        return
    if instances is None:  # no menu without the list: say so, and how to go on
        tell(messages.no_menu_dbss_down(found, dbss_unavailable(DbssError())))
        return
    menu = deps.reachable(instances, channel)  # a channel scoped to some regions is offered only theirs
    by_id = {i.id: i for i in menu}
    note = messages.unreadable_note(instances)
    if found:
        blocks = messages.picker(
            [by_id[i] for i in found if i in by_id], prompt=messages.several_found(len(found)), thread_ts=thread_ts
        )
        say_privately(respond, messages.several_found(len(found)) + note, blocks=blocks)
    else:
        blocks = messages.picker(menu, prompt=messages.none_found(), thread_ts=thread_ts)
        say_privately(respond, messages.none_found() + note, blocks=blocks)


def on_global_shortcut(deps: Deps, ack: Ack, body: dict[str, Any]) -> None:
    """A modal with the picker, a channel and a reason."""
    ack()
    user = str((body.get("user") or {}).get("id") or "")
    trigger = str(body.get("trigger_id") or "")
    # trigger_id lasts 3 s: the modal opens off the request thread, but at once.
    deps.urgent.submit(partial(open_modal, deps, user=user, trigger=trigger, correlation_id=new_correlation_id()))


def open_modal(deps: Deps, *, user: str, trigger: str, correlation_id: str) -> None:
    client = deps.client
    refusal = deps.policy.user_refusal(user)
    if refusal is not None:
        deps.refused(user=user, channel="", reason=refusal, text="global shortcut", correlation_id=correlation_id)
    try:
        if refusal is not None:
            client.views_open(
                trigger_id=trigger, view=messages.modal(None, error=f":no_entry: {messages.escape(refusal)}")
            )
            return
        # A placeholder now, filled in once the instance list is here.
        opened = client.views_open(trigger_id=trigger, view=messages.modal(None))
    except Exception:
        log.exception("could not open the modal", extra={"correlation_id": correlation_id})
        return
    view = opened.get("view") or {}
    deps.in_background(correlation_id, partial(_log_modal, correlation_id), partial(fill_modal, deps, view))


def fill_modal(deps: Deps, view: dict[str, Any]) -> None:
    try:
        instances = deps.listing.list_instances()
    except DbssError as err:
        deps.client.views_update(
            view_id=view.get("id"), hash=view.get("hash"), view=messages.modal(None, error=dbss_unavailable(err))
        )
        return
    deps.client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=messages.modal(instances))


def _log_modal(correlation_id: str, text: str) -> None:
    log.warning("modal: %s", text, extra={"correlation_id": correlation_id})
