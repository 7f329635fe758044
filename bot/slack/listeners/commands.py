"""`/dbss-reboot`: help, the reboot card, the picker, and the read-only subcommands."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from slack_bolt import Ack, App, Respond

from bot.core.commands import (
    HistoryCommand,
    ListCommand,
    RebootByName,
    RebootCommand,
    ShowHelp,
    ShowPicker,
    StatusCommand,
    Unparseable,
    by_name,
    parse,
)
from bot.core.reboots import new_correlation_id
from bot.dbss.errors import DbssError
from bot.dbss.models import Instance
from bot.slack import messages
from bot.slack.listeners.common import Deps, dbss_unavailable, privately, say_privately

COMMAND = "/dbss-reboot"


def register(app: App, deps: Deps) -> None:
    app.command(COMMAND)(partial(on_command, deps))


def on_command(deps: Deps, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
    # No lambdas or nested functions here: each would give every call its own closure cells (see in_background).
    policy = deps.policy
    user = str(command.get("user_id") or "")
    channel = str(command.get("channel_id") or "")
    text = str(command.get("text") or "")
    correlation_id = new_correlation_id()
    parsed = parse(text)
    if isinstance(parsed, ShowHelp):
        ack(response_type="ephemeral", text=messages.help_text(may_reboot_here=policy.refusal(user, channel)))
        return
    if isinstance(parsed, StatusCommand | ListCommand | HistoryCommand):
        refusal = policy.user_refusal(user)  # read-only and private: the channel list does not apply
    else:
        refusal = policy.refusal(user, channel)
    if refusal is None and isinstance(parsed, Unparseable):
        refusal = parsed.reason
    tell = privately(respond)
    if refusal is not None:
        ack(response_type="ephemeral", text=f":no_entry: {messages.escape(refusal)}")
        job: Callable[[], object] = partial(
            deps.service.refuse_request,
            user=user,
            channel=channel,
            reason=refusal,
            text=text,
            correlation_id=correlation_id,
        )
    else:
        match parsed:
            case RebootCommand(instance_id=what) | RebootByName(name=what):
                ack(response_type="ephemeral", text=messages.looking_up(what))
            case _:
                ack()
        match parsed:
            case RebootByName(name=name, reason=why):
                job = partial(
                    card_by_name,
                    deps,
                    respond,
                    user=user,
                    channel=channel,
                    name=name,
                    reason=why,
                    correlation_id=correlation_id,
                    pending=deps.listing.fetch(),
                )
            case RebootCommand(instance_id=iid, reason=why):
                job = partial(
                    deps.post_card,
                    user=user,
                    channel=channel,
                    instance_id=iid,
                    correlation_id=correlation_id,
                    tell=tell,
                    reason=why,
                    pending=deps.listing.fetch(find=iid),  # started now, so the card never waits for a second call
                )
            case ShowPicker():
                job = partial(show_picker, deps, respond, channel=channel)
            case StatusCommand() | ListCommand() | HistoryCommand():
                job = partial(read_only, deps, parsed, respond)
            case _:
                return
    deps.in_background(correlation_id, tell, job)


def card_by_name(
    deps: Deps,
    respond: Respond,
    *,
    user: str,
    channel: str,
    name: str,
    reason: str | None,
    correlation_id: str,
    pending: Future[list[Instance]],
) -> None:
    """A reboot asked for by name: exactly one instance of that name gets the card (showing the ID it resolved
    to); several get a menu of just those; none, or no list, is said plainly."""
    resolve = partial(
        _resolve_name,
        deps,
        respond,
        user=user,
        channel=channel,
        name=name,
        reason=reason,
        correlation_id=correlation_id,
    )
    deps.with_listing(pending, correlation_id, privately(respond), resolve)


def _resolve_name(
    deps: Deps,
    respond: Respond,
    answer: list[Instance] | DbssError,
    *,
    user: str,
    channel: str,
    name: str,
    reason: str | None,
    correlation_id: str,
) -> None:
    tell = privately(respond)
    if isinstance(answer, DbssError):
        tell(dbss_unavailable(answer) + " A name needs the instance list: use the instance ID instead.")
        return
    found = by_name(answer, name)
    failed: dict[str, DbssError] = getattr(answer, "unreadable", {})
    if len(found) == 1 and failed:  # the only one found may not be the only one: the ID says which
        deps.refused(
            user=user, channel=channel, reason="name not unique for sure", text=name, correlation_id=correlation_id
        )
        tell(messages.name_unsure(name, found[0], list(failed)))
        return
    if len(found) == 1:
        deps.post_card(
            user=user,
            channel=channel,
            instance_id=found[0].id,
            correlation_id=correlation_id,
            tell=tell,
            reason=reason,
            known=answer,
        )
    elif found:
        prompt = messages.several_named(name, len(found))
        say_privately(respond, prompt, blocks=messages.picker(found, prompt=prompt))
    else:
        deps.refused(
            user=user, channel=channel, reason="no instance of that name", text=name, correlation_id=correlation_id
        )
        tell(messages.no_such_name(name, deps.service.project_id, answer))


def read_only(deps: Deps, command: StatusCommand | ListCommand | HistoryCommand, respond: Respond) -> None:
    service, links = deps.service, deps.links
    if isinstance(command, HistoryCommand):
        entries, outcomes = service.history(command.instance_id)
        say_privately(respond, messages.history_text(entries, outcomes, links, command.instance_id))
        return
    try:
        listed = deps.listing.list_instances()
    except DbssError as err:
        say_privately(respond, dbss_unavailable(err))
        return
    match command:
        case StatusCommand(instance_id=iid):
            instance = next((i for i in listed if i.id == iid), None)
            if instance is None:
                say_privately(respond, messages.no_such_id(iid, listed, single=deps.listing.single))
                return
            say_privately(respond, messages.status_text(instance, service.store.last_reboot(iid), links))
        case ListCommand(page=page):
            say_privately(respond, messages.list_text(listed, page=page, project_id=service.project_id))


def show_picker(deps: Deps, respond: Respond, *, channel: str) -> None:
    try:
        instances = deps.reachable(deps.listing.list_instances(), channel)
    except DbssError as err:
        say_privately(respond, dbss_unavailable(err) + " Type `/dbss-reboot &lt;instance_id&gt;` instead.")
        return
    text = "Choose a DBSS instance to reboot" if instances else messages.NONE_VISIBLE
    blocks = messages.picker(instances)
    if note := messages.unreadable_note(instances):
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note.strip()}]})
    say_privately(respond, text + note, blocks=blocks)
