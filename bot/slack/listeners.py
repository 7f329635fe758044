"""The Slack listeners: acknowledge at once, decide in the domain, do slow work on the bot's own pool."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor, Future
from functools import partial
from typing import Any, Literal

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core.commands import (
    HistoryCommand,
    ListCommand,
    RebootCommand,
    ShowHelp,
    ShowPicker,
    StatusCommand,
    Unparseable,
    parse,
)
from bot.core.listing import SharedListing
from bot.core.mentions import find_instances
from bot.core.reboots import (
    Accepted,
    AlreadyUsed,
    Confirmed,
    Expired,
    NeedsSecondApprover,
    NotRequester,
    Offer,
    RebootService,
    Refused,
    new_correlation_id,
)
from bot.dbss.errors import DbssApiError, DbssError
from bot.dbss.models import Instance
from bot.slack import messages
from bot.slack.messages import Links
from bot.slack.priority import AcksFirst

log = logging.getLogger(__name__)

MESSAGE_SHORTCUT = "dbss_reboot_from_message"
GLOBAL_SHORTCUT = "dbss_reboot_global"
TS = re.compile(r"\d{1,12}\.\d{1,9}")

# Errors of chat.postMessage that mean "the bot cannot post here" rather than "something broke".
CANNOT_POST = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action"})


def _say_privately(respond: Respond, text: str = "", **kwargs: Any) -> bool:
    """An ephemeral message through response_url, which works even where the bot is not a member.

    False when it could not be delivered (no response_url in the payload, or Slack refused it)."""
    if not respond.response_url:
        log.warning("no response_url to answer on; the private answer was dropped")
        return False
    response = respond(text=text, response_type="ephemeral", replace_original=False, **kwargs)
    if response.status_code != 200:
        log.warning("response_url answered HTTP %s", response.status_code)
        return False
    return True


def privately(respond: Respond) -> Callable[[str], bool]:
    return partial(_say_privately, respond)


def _dbss_unavailable(err: DbssError) -> str:
    if isinstance(err, DbssApiError):
        return (
            f":warning: DBSS refused the instance list: {messages.code(err.error_code or 'no code')} "
            f"{messages.escape(err.error_msg)} (HTTP {err.status_code}, request ID "
            f"{messages.code(err.request_id or 'none')})."
        )
    return f":warning: DBSS could not be reached ({messages.escape(type(err).__name__)}). Try again shortly."


def register(
    app: App,
    *,
    service: RebootService,
    acks_first: AcksFirst,
    urgent: Executor,
    links: Links,
    listing: SharedListing,
) -> None:
    """Wire the slash command, the picker and the card's buttons onto the app.

    Slow work goes through `acks_first`, which holds it while requests are being acknowledged, then runs on
    the work pool. Work that must start at once (opening a modal before its trigger_id expires, acting on a
    button click) goes to `urgent`, a small pool of its own, so it waits neither for acks nor behind a
    storm's cards.
    """
    policy = service.policy
    app.use(acks_first)

    def run_reporting(correlation_id: str, tell: Callable[[str], object], job: Callable[[], object]) -> None:
        try:
            job()
        except Exception:
            log.exception("unexpected error", extra={"correlation_id": correlation_id})
            try:
                tell(
                    f":boom: Something went wrong on the bot's side (ref `{correlation_id}`). Check the card's "
                    "thread and the audit trail before trying again; the platform team has the details in the "
                    "logs.",
                )
            except Exception:
                log.exception("could not tell the person about the error", extra={"correlation_id": correlation_id})

    def in_background(
        correlation_id: str, tell: Callable[[str], object], job: Callable[[], object], *, now: bool = False
    ) -> None:
        """Run slow work off the acknowledging path; an unexpected error is logged and told to the person.

        In a storm a thousand jobs wait in `acks_first` at once, and every object they hold is work for the
        garbage collector while acks are being served: the slash command passes `partial`s of plain values
        and the app's one Slack client, not closures over the request. `now`: a person is waiting on this
        very job (a button click), so it goes to `urgent`, ahead of a storm's cards."""
        reporting = partial(run_reporting, correlation_id, tell, job)
        if now:
            urgent.submit(reporting)
        else:
            acks_first.submit(reporting)

    def post_card(
        *,
        user: str,
        channel: str,
        instance_id: str,
        correlation_id: str,
        tell: Callable[[str], object],
        client: WebClient,
        thread_ts: str | None = None,
        reason: str | None = None,
        known: list[Instance] | None = None,
    ) -> None:
        """On the work pool: the quick checks, then the card once the shared instance list has arrived.
        `tell` answers the person privately; `thread_ts` puts the card in a thread (an alert's); `known` is
        an instance list the caller has just read, so it is not read again."""
        refusal = service.check_request(
            user=user, channel=channel, instance_id=instance_id, correlation_id=correlation_id
        )
        if refusal is not None:
            tell(messages.offer_refusal(refusal, links))
            return

        def with_listing(answer: list[Instance] | DbssError) -> None:
            result = service.make_offer(
                user=user,
                channel=channel,
                instance_id=instance_id,
                correlation_id=correlation_id,
                listing=answer,
                reason=reason,
            )
            if isinstance(result, Offer):
                post_offer(result, tell=tell, client=client, thread_ts=thread_ts)
            else:
                tell(messages.offer_refusal(result, links))

        def arrived(future: Future[list[Instance]]) -> None:
            try:
                answer: list[Instance] | DbssError = future.result()
            except DbssError as err:
                answer = err
            with_listing(answer)

        if known is not None:
            with_listing(known)
            return
        # No thread waits for DBSS: the answer comes back as a callback, and the card is posted on the pool.
        listing.fetch().add_done_callback(lambda f: in_background(correlation_id, tell, lambda: arrived(f)))

    def post_offer(offer: Offer, *, tell: Callable[[str], object], client: WebClient, thread_ts: str | None) -> None:
        c = offer.confirmation
        try:
            posted = client.chat_postMessage(
                channel=c.channel,
                thread_ts=thread_ts,
                text=messages.card_text(offer),
                blocks=messages.card(offer, second_approver=service.require_second_approver),
            )
        except SlackApiError as err:
            error = str(err.response.get("error", "unknown_error"))
            if error not in CANNOT_POST:
                raise
            service.store.record(
                "card_failed",
                correlation_id=c.nonce,
                user_id=c.requester,
                instance_id=c.instance_id,
                channel=c.channel,
                outcome="not_posted",
                detail=error,
            )
            tell(messages.cannot_post_here(error))
            return
        service.card_posted(offer, thread_ts=str(posted["ts"]))

    def read_only(command: StatusCommand | ListCommand | HistoryCommand, respond: Respond) -> None:
        match command:
            case StatusCommand(instance_id=iid):
                try:
                    instance = next((i for i in listing.list_instances() if i.id == iid), None)
                except DbssError as err:
                    _say_privately(respond, _dbss_unavailable(err))
                    return
                if instance is None:
                    _say_privately(respond, f":mag: No DBSS audit instance {messages.code(iid)} in this project.")
                    return
                _say_privately(respond, messages.status_text(instance, service.store.last_reboot(iid), links))
            case ListCommand(page=page):
                try:
                    instances = listing.list_instances()
                except DbssError as err:
                    _say_privately(respond, _dbss_unavailable(err))
                    return
                _say_privately(respond, messages.list_text(instances, page=page, project_id=service.project_id))
            case HistoryCommand(instance_id=iid):
                entries, outcomes = service.history(iid)
                _say_privately(respond, messages.history_text(entries, outcomes, links, iid))

    def show_picker(respond: Respond) -> None:
        try:
            instances = listing.list_instances()
        except DbssError as err:
            _say_privately(respond, _dbss_unavailable(err) + " Type `/dbss-reboot &lt;instance_id&gt;` instead.")
            return
        _say_privately(respond, "Choose a DBSS instance to reboot", blocks=messages.picker(instances))

    @app.command("/dbss-reboot")
    def on_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        # No lambdas or nested functions here: each would give every call its own closure cells (see
        # in_background).
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
                service.refuse_request,
                user=user,
                channel=channel,
                reason=refusal,
                text=text,
                correlation_id=correlation_id,
            )
        else:
            ack()
            match parsed:
                case RebootCommand(instance_id=iid, reason=why):
                    job = partial(
                        post_card,
                        user=user,
                        channel=channel,
                        instance_id=iid,
                        correlation_id=correlation_id,
                        tell=tell,
                        client=app.client,
                        reason=why,
                    )
                case ShowPicker():
                    job = partial(show_picker, respond)
                case StatusCommand() | ListCommand() | HistoryCommand():
                    job = partial(read_only, parsed, respond)
                case _:
                    return
        in_background(correlation_id, tell, job)

    @app.action(messages.PICK_ACTION)
    def on_pick(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        user = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        selected = action.get("selected_option") or {}
        instance_id = str(selected.get("value") or "")
        correlation_id = new_correlation_id()
        block_id = str(action.get("block_id") or "")
        thread = (
            block_id.removeprefix(messages.THREAD_BLOCK_PREFIX)
            if block_id.startswith(messages.THREAD_BLOCK_PREFIX)
            else ""
        )
        thread_ts = thread if TS.fullmatch(thread) else None  # the alert's thread, when picked from a shortcut

        def pick() -> None:
            reply = parse(instance_id)  # the same checks as a typed ID: a forged value gets the same refusal
            if not isinstance(reply, RebootCommand):
                _say_privately(respond, ":no_entry: That is not a DBSS instance ID. Nothing was done.")
                return
            if respond.response_url:
                respond(delete_original=True)
            post_card(
                user=user,
                channel=channel,
                instance_id=reply.instance_id,
                correlation_id=correlation_id,
                tell=privately(respond),
                client=client,
                thread_ts=thread_ts,
            )

        in_background(correlation_id, privately(respond), pick)

    @app.shortcut(MESSAGE_SHORTCUT)
    def on_message_shortcut(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        """ "Reboot DBSS instance" on an alert: the card goes in the alert's thread, with every usual check."""
        ack()
        user = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or "")
        message = body.get("message") if isinstance(body.get("message"), dict) else {}
        assert isinstance(message, dict)
        thread = str(message.get("thread_ts") or message.get("ts") or "")
        thread_ts = thread if TS.fullmatch(thread) else None
        correlation_id = new_correlation_id()
        tell = privately(respond)
        refusal = policy.refusal(user, channel)
        if refusal is not None:
            in_background(correlation_id, tell, lambda: tell(f":no_entry: {messages.escape(refusal)}"))
            return

        def look() -> None:
            try:
                instances: list[Instance] | None = listing.list_instances()
            except DbssError:
                instances = None
            found = find_instances(message, instances)
            if len(found) == 1:
                post_card(
                    user=user,
                    channel=channel,
                    instance_id=found[0],
                    correlation_id=correlation_id,
                    tell=tell,
                    client=client,
                    thread_ts=thread_ts,
                    known=instances,
                )
                return
            if instances is None:
                tell(_dbss_unavailable(DbssError()) if not found else messages.several_found(len(found)))
                return
            by_id = {i.id: i for i in instances}
            if found:
                blocks = messages.picker(
                    [by_id[i] for i in found if i in by_id],
                    prompt=messages.several_found(len(found)),
                    thread_ts=thread_ts,
                )
                _say_privately(respond, messages.several_found(len(found)), blocks=blocks)
            else:
                blocks = messages.picker(instances, prompt=messages.none_found(), thread_ts=thread_ts)
                _say_privately(respond, messages.none_found(), blocks=blocks)

        in_background(correlation_id, tell, look)

    @app.shortcut(GLOBAL_SHORTCUT)
    def on_global_shortcut(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        """ "Reboot a DBSS instance" from anywhere: a modal with the picker, a channel and a reason."""
        ack()
        user = str((body.get("user") or {}).get("id") or "")
        trigger = str(body.get("trigger_id") or "")
        refusal = policy.user_refusal(user)
        correlation_id = new_correlation_id()

        def fill(view: dict[str, Any]) -> None:
            try:
                instances = listing.list_instances()
            except DbssError as err:
                client.views_update(
                    view_id=view.get("id"),
                    hash=view.get("hash"),
                    view=messages.modal(None, error=_dbss_unavailable(err)),
                )
                return
            client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=messages.modal(instances))

        def open_modal() -> None:
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
            in_background(correlation_id, lambda text: log.warning("modal: %s", text), lambda: fill(view))

        # trigger_id lasts 3 s: the modal opens off the request thread, but at once.
        urgent.submit(open_modal)

    @app.view(messages.MODAL_CALLBACK)
    def on_modal_submit(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        """Checked as the slash command is, before the modal closes; then the card in the chosen channel."""
        user = str((body.get("user") or {}).get("id") or "")
        values = (view.get("state") or {}).get("values") or {}
        instance_id = str(
            ((values.get(messages.MODAL_INSTANCE) or {}).get(messages.MODAL_INSTANCE) or {})
            .get("selected_option", {})
            .get("value")
            or ""
        )
        channel = str(
            ((values.get(messages.MODAL_CHANNEL) or {}).get(messages.MODAL_CHANNEL) or {}).get("selected_conversation")
            or ""
        )
        reason_text = str(
            ((values.get(messages.MODAL_REASON) or {}).get(messages.MODAL_REASON) or {}).get("value") or ""
        )
        reason = " ".join(reason_text.split())[:300] or None
        errors: dict[str, str] = {}
        if parse(instance_id) != RebootCommand(instance_id):
            errors[messages.MODAL_INSTANCE] = "Choose an instance from the list."
        refusal = policy.user_refusal(user)
        if refusal is not None:
            errors[messages.MODAL_INSTANCE] = refusal[:150]
        elif not channel:
            errors[messages.MODAL_CHANNEL] = "Choose the channel for the confirmation card."
        elif policy.refusal(user, channel) is not None:
            errors[messages.MODAL_CHANNEL] = "Reboots are not enabled in that channel (BOT_ALLOWED_CHANNELS)."
        if errors:
            ack(response_action="errors", errors=errors)
            return
        ack()
        correlation_id = new_correlation_id()

        def tell(text: str) -> None:
            try:
                client.chat_postEphemeral(channel=channel, user=user, text=text)
            except SlackApiError as err:
                log.warning(
                    "could not answer privately after the modal", extra={"slack_error": err.response.get("error")}
                )

        in_background(
            correlation_id,
            tell,
            lambda: post_card(
                user=user,
                channel=channel,
                instance_id=instance_id,
                correlation_id=correlation_id,
                tell=tell,
                client=client,
                reason=reason,
            ),
        )

    def on_click(action_name: Literal["confirm", "cancel"]) -> Callable[..., None]:
        def listener(
            ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient
        ) -> None:
            ack()
            container = body.get("container") or {}
            message = body.get("message") or {}
            clicker = str((body.get("user") or {}).get("id") or "")
            channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
            message_ts = str(container.get("message_ts") or message.get("ts") or "")
            thread_ts = str(message.get("thread_ts") or message_ts)
            token = action.get("value")
            blocks = message.get("blocks")
            original_blocks: list[dict[str, Any]] = blocks if isinstance(blocks, list) else []

            def decide_and_act() -> None:
                decision = service.decide(
                    token=token if isinstance(token, str) else "",
                    clicker=clicker,
                    channel=channel,
                    thread_ts=thread_ts,
                    action=action_name,
                )
                match decision:
                    case Refused(reason=reason):
                        _say_privately(respond, f":no_entry: {messages.escape(reason)}")
                        return
                    case NotRequester():
                        _say_privately(respond, messages.not_requester(decision))
                        return
                    case NeedsSecondApprover():
                        _say_privately(respond, messages.needs_second_approver(decision))
                        return
                    case AlreadyUsed():
                        _say_privately(
                            respond, ":information_source: This card was already answered. Nothing more was done."
                        )
                        return
                line = messages.decision_line(decision)
                try:
                    client.chat_update(
                        channel=channel, ts=message_ts, text=line, blocks=messages.resolved_card(original_blocks, line)
                    )
                except SlackApiError as err:  # the card keeps its buttons, but they are used up: go on regardless
                    log.warning("could not update the card", extra={"slack_error": err.response.get("error")})
                if isinstance(decision, Expired):
                    _say_privately(respond, line)
                if not isinstance(decision, Confirmed):
                    return
                outcome = service.execute(decision, thread_ts=thread_ts)
                c = decision.confirmation
                who = f"Requested by {messages.mention(c.requester)}"
                if decision.second_approver:
                    who += f", approved by {messages.mention(decision.by)}"
                text = f"{messages.outcome_text(outcome)}\n{who}, ref `{c.nonce}`."
                if isinstance(outcome, Accepted):
                    text += " I will follow it here until it is healthy again."
                try:
                    client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text)
                    service.outcome_reported(c.nonce, how="thread")
                except SlackApiError as err:  # the outcome is in the audit trail; make sure the person sees it too
                    log.warning(
                        "could not post the outcome in the thread",
                        extra={"correlation_id": c.nonce, "slack_error": err.response.get("error")},
                    )
                    if _say_privately(respond, text):
                        service.outcome_reported(c.nonce, how="privately")

            in_background(new_correlation_id(), privately(respond), decide_and_act, now=True)

        return listener

    app.action(messages.CONFIRM_ACTION)(on_click("confirm"))
    app.action(messages.CANCEL_ACTION)(on_click("cancel"))

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error in a listener", exc_info=error)
