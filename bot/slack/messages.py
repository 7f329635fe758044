"""Block Kit and text for every answer of the bot: pure functions, tested without Slack."""

from __future__ import annotations

import re
from typing import Any

from bot.core.commands import USAGE
from bot.core.follow import Ending, Progress
from bot.core.reboots import (
    Accepted,
    AlreadyUsed,
    BusyOnConfirm,
    Cancelled,
    Confirmed,
    CoolingDown,
    Expired,
    InFlight,
    Interrupted,
    NeedsSecondApprover,
    NotRebootable,
    NotRequester,
    NotSent,
    Offer,
    OfferResult,
    Outcome,
    OutcomeUnknown,
    Refused,
    Rejected,
    UnknownInstance,
)
from bot.core.store import AuditEntry, FollowUp, Lock
from bot.dbss.models import Instance

Blocks = list[dict[str, Any]]
CONFIRM_ACTION = "dbss_reboot_confirm"
CANCEL_ACTION = "dbss_reboot_cancel"
PICK_ACTION = "dbss_reboot_pick"
CARD_ACTIONS_BLOCK = "dbss_reboot_actions"
LIST_PAGE_SIZE = 25
PICKER_LIMIT = 100  # Slack's limit on the options of a static select
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")
_MAX_API_TEXT = 500


# What Slack would turn into a link by itself: a URL with a scheme, or a bare domain (`evil.example/reset`).
_LINKABLE = re.compile(r"[a-z][a-z0-9+.-]*://\S+|(?<![\w.@+-])(?:[\w.+-]+@)?(?:[a-z0-9-]+\.)+[a-z]{2,}(?:/\S*)?", re.I)


def _flat(text: str) -> str:
    """One line, at most _MAX_API_TEXT characters, with mrkdwn's control characters as entities."""
    flat = " ".join(str(text).split())
    if len(flat) > _MAX_API_TEXT:
        flat = flat[: _MAX_API_TEXT - 1] + "…"
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str) -> str:
    """Text from an API or a person made inert for mrkdwn: no mentions, no links, no broadcasts. What Slack would
    link by itself (a bare URL, domain or address) outside the text's own code spans is set as inline code, which
    Slack shows as typed and never links. An unpaired backtick becomes a quote: it cannot open a span that would
    swallow one of these."""
    flat = _flat(text)
    if flat.count("`") % 2:
        last = flat.rindex("`")
        flat = f"{flat[:last]}'{flat[last + 1 :]}"
    parts = flat.split("`")  # even parts are outside code spans
    for i in range(0, len(parts), 2):
        parts[i] = _LINKABLE.sub(lambda m: "`" + m.group(0) + "`", parts[i])
    return "`".join(parts)


def code(text: str) -> str:
    """Inline code for IDs; backticks removed so the span cannot be closed early."""
    return "`" + _flat(text).replace("`", "'") + "`"


def mention(user_id: str) -> str:
    """A user mention, only for something that is really a Slack user ID."""
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else code(user_id)


class Links:
    """Links into the workspace, from the URL auth.test reports (e.g. https://acme.slack.com/)."""

    def __init__(self, team_url: str | None) -> None:
        self._base = team_url if team_url and team_url.startswith("https://") else None

    def thread(self, channel: str | None, ts: str | None, text: str = "thread") -> str:
        if not (
            self._base and channel and ts and re.fullmatch(r"[CGD][A-Z0-9]+", channel) and re.fullmatch(r"\d+\.\d+", ts)
        ):
            return "(no thread link)"
        return f"<{self._base}archives/{channel}/p{ts.replace('.', '')}|{text}>"


def when(epoch: float) -> str:
    """A Slack date token: shown in each reader's own time zone."""
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{int(epoch)}>"


def duration(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _plain(text: str, limit: int) -> dict[str, Any]:
    flat = " ".join(text.split())
    return {"type": "plain_text", "text": flat if len(flat) <= limit else flat[: limit - 1] + "…"}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def help_text(*, may_reboot_here: str | None) -> str:
    lines = [
        "*DBSS reboot bot*",
        f"• `{escape(USAGE)}`: shows the instance on a card with Reboot / Cancel, then reboots it when confirmed "
        "and follows it until it is healthy again, in the card's thread.",
        "• `/dbss-reboot`: pick an instance from a menu.",
        "• `/dbss-reboot status &lt;instance_id&gt;`: name, status, task, version, region and the last reboot.",
        "• `/dbss-reboot list [page]`: the project's instances with status and task.",
        "• `/dbss-reboot history [instance_id]`: the latest reboots: who, when, outcome, thread.",
        "• `/dbss-reboot help`: this message.",
        "The instance ID is 32 to 64 letters, digits or '-', as shown in the DBSS console.",
    ]
    lines.append(
        "You may request reboots in this channel."
        if may_reboot_here is None
        else f"You cannot request reboots here: {escape(may_reboot_here)}"
    )
    return "\n".join(lines)


def _in(target: str | None) -> str:
    """ " in ap-southeast-1" after an instance ID in a thread, when the bot serves several targets."""
    return f" in {escape(target.partition(':')[0])}" if target else ""


def region_of(instance: Instance) -> str | None:
    """The label of the target that listed the instance (its region, or region/project_id when one region has
    two projects); None when the bot serves one target only."""
    return instance.where or (instance.target.partition(":")[0] if instance.target else None)


def _in_region(offer: Offer) -> str:
    """ " in cn-north-4" on a card, when the bot serves several targets (their labels are settings, not API text)."""
    return f" in *{offer.target.label}*" if offer.target is not None and offer.confirmation.target else ""


def _instance_fields(instance: Instance, region: str | None = None) -> list[dict[str, Any]]:
    fields = [
        {"type": "mrkdwn", "text": f"*Instance*\n{escape(instance.name) or '_(no name)_'}"},
        {"type": "mrkdwn", "text": f"*ID*\n{code(instance.id)}"},
        {"type": "mrkdwn", "text": f"*Status*\n{escape(instance.status)}"},
        {"type": "mrkdwn", "text": f"*Task*\n{escape(instance.task)}"},
    ]
    if region:
        fields.append({"type": "mrkdwn", "text": f"*Region*\n{code(region)}"})
    return fields


def card_text(offer: Offer) -> str:
    """The notification fallback of the card."""
    c = offer.confirmation
    name = escape(offer.instance.name) if offer.instance else code(c.instance_id)
    return f"{mention(c.requester)} asks to reboot DBSS instance {name}{_in_region(offer)}"


def card(offer: Offer, *, second_approver: bool = False) -> Blocks:
    """The confirmation card: who asks, what will be rebooted, and the Confirm / Cancel buttons."""
    c = offer.confirmation
    blocks: Blocks = [
        _section(f":warning: {mention(c.requester)} asks to *reboot* a DBSS audit instance{_in_region(offer)}."),
    ]
    region = offer.target.label if offer.target is not None and c.target else None
    if offer.instance is not None:
        blocks.append({"type": "section", "fields": _instance_fields(offer.instance, region)})
    else:
        blocks.append(
            _section(
                f"*ID* {code(c.instance_id)}" + (f" in {code(region)}" if region else "") + "\n"
                ":grey_question: *The instance's state could not be read* "
                f"({escape(offer.state_unreadable or 'unknown reason')}). Check it in the DBSS console before "
                "confirming."
            )
        )
    if offer.reason:
        blocks.append(_section(f"*Reason:* {escape(offer.reason)}"))
    who = (
        f"Needs a second approver: anyone on the allow-list except {mention(c.requester)} can confirm."
        if second_approver
        else f"Only {mention(c.requester)} can confirm."
    )
    blocks.append(
        _context(f"{who} This card expires <!date^{c.expires_at}^{{time}}|in a few minutes>. Ref `{c.nonce}`")
    )
    blocks.append(
        {
            "type": "actions",
            "block_id": CARD_ACTIONS_BLOCK,
            "elements": [
                {
                    "type": "button",
                    "action_id": CONFIRM_ACTION,
                    "style": "danger",
                    "text": _plain("Reboot", 75),
                    "value": offer.token,
                    "confirm": {
                        "title": _plain("Reboot this instance?", 100),
                        "text": _plain(
                            # Only the validated ID here: plain_text is no place for API-supplied names.
                            f"Instance {c.instance_id} will restart now. Auditing stops while it reboots.",
                            300,
                        ),
                        "confirm": _plain("Reboot", 30),
                        "deny": _plain("Keep running", 30),
                        "style": "danger",
                    },
                },
                {"type": "button", "action_id": CANCEL_ACTION, "text": _plain("Cancel", 75), "value": offer.token},
            ],
        }
    )
    return blocks


def resolved_card(original: Blocks, status_line: str) -> Blocks:
    """The card as it was, without its buttons, with a line saying what became of it."""
    kept = [b for b in original if b.get("type") != "actions" and b.get("block_id") != CARD_ACTIONS_BLOCK]
    return [*kept, _section(status_line)]


def _who(decision: Confirmed) -> str:
    c = decision.confirmation
    if decision.second_approver:
        return f"requested by {mention(c.requester)}, approved by {mention(decision.by)}"
    return f"confirmed by {mention(decision.by)}"


def decision_line(decision: Confirmed | Cancelled | Expired | AlreadyUsed | BusyOnConfirm | CoolingDown) -> str:
    """The line that replaces the buttons on the card. A check mark only ever means "back to ACTIVE"."""
    match decision:
        case Confirmed():
            return f":hourglass_flowing_sand: Calling DBSS: {_who(decision)}. The outcome follows in the thread."
        case Cancelled(by=by):
            return f":no_entry_sign: Cancelled by {mention(by)}. Nothing was rebooted."
        case Expired(confirmation=c):
            return (
                f":hourglass: Expired. Nothing was rebooted; to ask again, run `/dbss-reboot {escape(c.instance_id)}`."
            )
        case BusyOnConfirm(lock=lock):
            return f":no_entry: Not rebooted: {_in_flight(lock)}"
        case CoolingDown(last=last, cooldown_seconds=cooldown):
            return f":no_entry: Not rebooted: {_cooling(last, cooldown, None)}"
        case AlreadyUsed():
            return ":information_source: This confirmation was already used."


def _cooling(last: AuditEntry, cooldown: float, links: Links | None) -> str:
    link = f" ({links.thread(last.channel, last.thread_ts)})" if links else ""
    return (
        f"this instance was rebooted by {mention(last.user_id or '')} at {when(last.at)}{link}, less than "
        f"{duration(cooldown)} ago (BOT_COOLDOWN_SECONDS). Check that thread before rebooting again."
    )


def needs_second_approver(decision: NeedsSecondApprover) -> str:
    return (
        ":no_entry: A second approver is required: someone else on the allow-list must confirm your request. "
        "Nothing was done."
    )


def not_requester(decision: NotRequester) -> str:
    return (
        f":no_entry: Only the person who asked ({mention(decision.confirmation.requester)}) can confirm this "
        "reboot. Nothing was done."
    )


def _in_flight(lock: Lock) -> str:
    return (
        f"a reboot of this instance is already in flight, started by {mention(lock.owner)} "
        f"(ref `{lock.correlation_id}`)."
    )


def offer_refusal(result: OfferResult, links: Links | None = None) -> str:
    """The private answer to a command that gets no card."""
    match result:
        case CoolingDown(last=last, cooldown_seconds=cooldown):
            return f":no_entry: Not offered: {_cooling(last, cooldown, links)}"
        case Refused(reason=reason):
            return f":no_entry: {escape(reason)}"
        case InFlight(lock=lock):
            return f":no_entry: Not offered: {_in_flight(lock)} Wait for it to finish."
        case UnknownInstance(instance_id=iid, project_id=pid, regions=regions, unreadable=unreadable) if unreadable:
            found_in = [r for r in regions if r not in unreadable]
            return (
                f":mag: {code(iid)} is not in "
                + (", ".join(code(r) for r in found_in) if found_in else "any region that answered")
                + f", and {', '.join(code(r) for r in unreadable)} cannot be read right now, so the bot cannot tell "
                "where it is. Nothing was done; try again in a minute, or check the ID in the DBSS console."
            )
        case UnknownInstance(instance_id=iid, project_id=pid, regions=regions):
            where = f"any of the regions {', '.join(code(r) for r in regions)}" if regions else f"project {code(pid)}"
            return (
                f":mag: No DBSS audit instance {code(iid)} in {where}. Check the ID in the DBSS "
                "console (it is the instance's ID, not its name)."
            )
        case NotRebootable(instance=instance):
            return (
                f":no_entry: {escape(instance.name) or code(instance.id)} ({code(instance.id)}) is "
                f"*{escape(instance.status)}* with task *{escape(instance.task)}*. It is offered for reboot only when "
                "ACTIVE with task NO_TASK. Wait for the current task to finish, or check it in the DBSS console."
            )
        case Offer():
            raise ValueError("an Offer is not a refusal")


def unreadable_note(instances: list[Instance]) -> str:
    """A line naming the regions whose list could not be read (several targets, some down), or nothing."""
    failed: dict[str, Exception] = getattr(instances, "unreadable", {})
    if not failed:
        return ""
    return (
        f"\n:warning: {', '.join(code(label) for label in failed)} cannot be read right now "
        f"({escape('; '.join(f'{label}: {type(err).__name__}' for label, err in failed.items()))}): "
        "its instances are not shown."
    )


def looking_up(what: str) -> str:
    """The slash command's immediate, private answer while the instance list is read."""
    return f":mag: Looking up {code(what)}…"


def several_named(name: str, count: int) -> str:
    return f"{count} DBSS instances are named {code(name)}. Which one should be rebooted? You will see a card first."


def no_such_name(name: str, project_id: str, instances: list[Instance] | None = None) -> str:
    regions = getattr(instances, "regions", None)
    where = f"any of the regions {', '.join(code(r) for r in regions)}" if regions else f"project {code(project_id)}"
    return (
        f":mag: No DBSS audit instance is named or has the ID {code(name)} in {where}. "
        "`/dbss-reboot list` shows names and IDs." + unreadable_note(instances or [])
    )


def slack_busy(error: str) -> str:
    return (
        f":hourglass: Slack is rate-limiting this channel or is having trouble (`{escape(error)}`), so the "
        "confirmation card was not posted. Nothing was done; try again in a minute."
    )


def card_maybe_posted(error: str) -> str:
    return (
        f":grey_question: Slack did not answer while the confirmation card was posted (`{escape(error)}`), and "
        "could not be asked whether it arrived. If a card is in the channel, it is valid; if not, run the command "
        "again. Nothing was rebooted."
    )


def cannot_post_here(error: str) -> str:
    return (
        f":electric_plug: I cannot post the confirmation card in this channel (`{escape(error)}`). "
        "Invite me with `/invite @dbss-reboot` (or add the app in the channel's settings) and run the command again."
    )


_HINTS = {
    403: "Check the IAM policy of the bot's credentials: it needs DBSS reboot permission in this project.",
    429: "DBSS throttled the call. Wait a minute before trying again.",
    401: "The bot's credentials were refused. The platform team should check DBSS_* credentials.",
}


def _hint(outcome: Rejected) -> str:
    err = outcome.error
    if err.error_code == "DBSS.10020132" or (err.status_code == 200 and err.error_code is None):
        return "DBSS could not reboot the instance. Check its state in the DBSS console before trying again."
    if err.status_code >= 500:
        return "DBSS had an internal error. Nothing was rebooted; try again later or open a ticket with the request ID."
    return _HINTS.get(err.status_code, "Nothing was rebooted.")


def outcome_text(outcome: Outcome, target: str | None = None) -> str:
    """The thread reply that says what DBSS did (`target`: where, when the bot serves several)."""
    instance_label = code(outcome.instance_id) + _in(target)
    match outcome:
        case Accepted(request_id=rid):
            return (
                f":arrows_counterclockwise: DBSS accepted the reboot of {instance_label}. "
                f"DBSS request ID {code(rid or 'none')}."
            )
        case Rejected(error=err):
            return (
                f":x: DBSS refused the reboot of {instance_label}: {code(err.error_code or 'no code')} "
                f"{escape(err.error_msg)} (HTTP {err.status_code}, request ID {code(err.request_id or 'none')}).\n"
                f"{_hint(outcome)}"
            )
        case NotSent(detail=detail):
            return (
                f":x: The reboot of {instance_label} was not sent: {escape(detail)}. Nothing was rebooted; you can "
                "request it again."
            )
        case OutcomeUnknown(detail=detail):
            return (
                f":warning: *Outcome unknown* for {instance_label}: {escape(detail)}. DBSS may or may not have "
                "started the reboot, and the bot will not retry it. Check the instance's status and task in the "
                "DBSS console (Instances list): task `rebooting` means it started. Request a new reboot only once "
                "the instance shows ACTIVE with task NO_TASK and you are sure it is needed."
            )


# --- follow-up -------------------------------------------------------------------------------------------


def _state(instance: Instance | None) -> str:
    return f"*{escape(instance.status)}* / task *{escape(instance.task)}*" if instance else "unknown"


def progress_text(followup: FollowUp, progress: Progress) -> str:
    note = f" ({escape(progress.note)})" if progress.note else ""
    return (
        f":hourglass_flowing_sand: Following {code(followup.instance_id)}{_in(followup.target)}: "
        f"{_state(progress.instance)} after "
        f"{duration(progress.elapsed)}{note}. This message updates until the reboot is over."
    )


def finished_text(followup: FollowUp, ending: Ending) -> str:
    """The thread reply that closes a follow-up; anything but healthy is an alert to the requester."""
    iid = code(followup.instance_id) + _in(followup.target)
    match ending.kind:
        case "healthy" if not ending.seen_busy:
            return (
                f":large_green_circle: {iid} is back to *ACTIVE* after {duration(ending.elapsed)}. It was never seen "
                "rebooting: DBSS may have done it between two polls, or not begun it. If that matters, check the "
                "instance's uptime in the DBSS console."
            )
        case "healthy":
            return f":large_green_circle: {iid} is back to *ACTIVE* after {duration(ending.elapsed)}."
        case "unhealthy":
            return (
                f":rotating_light: {mention(followup.requester)} the reboot of {iid} ended in "
                f"{_state(ending.instance)} after {duration(ending.elapsed)}, not ACTIVE. Check the instance in the "
                "DBSS console."
            )
        case "timeout":
            seen = ("last seen " if ending.stale else "") + _state(ending.instance)
            return (
                f":rotating_light: {mention(followup.requester)} {iid} is still not done after "
                f"{duration(ending.elapsed)} ({seen}). The bot has stopped following it; check the DBSS console."
            )
        case "gone":
            return (
                f":rotating_light: {mention(followup.requester)} {iid} is no longer in the DBSS instance list "
                f"({duration(ending.elapsed)} after the reboot). Check the DBSS console."
            )


def outcome_line(outcome: Outcome, decision: Confirmed) -> str:
    """The card's line once DBSS has answered."""
    who = _who(decision)
    match outcome:
        case Accepted(request_id=rid):
            return (
                f":arrows_counterclockwise: Rebooting: DBSS accepted (request ID {code(rid or 'none')}), {who}. "
                "Progress in the thread."
            )
        case Rejected(error=err):
            return (
                f":x: Not rebooted: DBSS refused {code(err.error_code or 'no code')} (HTTP {err.status_code}), {who}. "
                "Details in the thread."
            )
        case NotSent():
            return f":x: Not rebooted: the request never reached DBSS, {who}. Details in the thread."
        case OutcomeUnknown():
            return (
                f":warning: Outcome unknown: DBSS may or may not have started the reboot, {who}. Check the DBSS "
                "console; details in the thread."
            )


def ending_line(followup: FollowUp, ending: Ending) -> str:
    """The card's last line: how the reboot ended."""
    after = duration(ending.elapsed)
    match ending.kind:
        case "healthy" if not ending.seen_busy:
            return f":white_check_mark: *ACTIVE* after {after}; DBSS accepted the reboot, never seen in progress."
        case "healthy":
            return f":white_check_mark: Rebooted: back to *ACTIVE* after {after}."
        case "unhealthy":
            done = "Rebooted, but ended" if ending.seen_busy else "Never seen rebooting; idle and"
            return f":rotating_light: {done} {_state(ending.instance)} after {after}, not ACTIVE."
        case "timeout":
            seen = ("last seen " if ending.stale else "") + _state(ending.instance)
            return f":rotating_light: Not done after {after} ({seen}); no longer followed."
        case "gone":
            return f":rotating_light: The instance left the DBSS instance list {after} after the reboot."


def interrupted_line(interrupted: Interrupted) -> str:
    if interrupted.not_called:
        return ":x: Not rebooted: the bot restarted before calling DBSS. Run the command again if it is still needed."
    if interrupted.unknown:
        return ":warning: Outcome unknown: the bot stopped while waiting for DBSS. Check the DBSS console."
    return f":information_source: DBSS answered *{escape(interrupted.entry.outcome or '?')}*; see the thread."


def progress_final_text(followup: FollowUp, ending: Ending) -> str:
    return f":checkered_flag: Followed {code(followup.instance_id)} for {duration(ending.elapsed)}: {ending.kind}."


# --- status, list, history, picker ------------------------------------------------------------------------


def _last_reboot_line(last: AuditEntry | None, links: Links) -> str:
    if last is None:
        return "No reboot by this bot on record."
    return (
        f"Last reboot by this bot: {when(last.at)} by {mention(last.user_id or '')}, {escape(last.outcome or '?')} "
        f"({links.thread(last.channel, last.thread_ts)})."
    )


def status_text(instance: Instance, last: AuditEntry | None, links: Links) -> str:
    region = region_of(instance) or instance.region or "unknown"
    return "\n".join(
        [
            f"*{escape(instance.name) or '(no name)'}* {code(instance.id)}",
            f"Status *{escape(instance.status)}*, task *{escape(instance.task)}*, version "
            f"{escape(instance.version or 'unknown')}, region {escape(region)}.",
            _last_reboot_line(last, links),
        ]
    )


def list_text(instances: list[Instance], *, page: int, project_id: str) -> str:
    pages = max(1, -(-len(instances) // LIST_PAGE_SIZE))
    page = min(max(page, 1), pages)
    shown = instances[(page - 1) * LIST_PAGE_SIZE : page * LIST_PAGE_SIZE]
    regions = sorted({r for i in instances if (r := region_of(i))})
    where = f"{', '.join(regions)}" if regions else f"project {code(project_id)}"
    lines = [f"*DBSS audit instances in {where}* ({len(instances)}, page {page} of {pages})"]
    lines += [
        f"• {escape(i.name) or '(no name)'} {code(i.id)}: {escape(i.status)} / {escape(i.task)}"
        + (f" · {region}" if (region := region_of(i)) else "")
        + ("" if i.rebootable else " :no_entry_sign:")
        for i in shown
    ]
    if not instances:
        lines.append("No instances are visible with the bot's credentials.")
    if page < pages:
        lines.append(f"Next: `/dbss-reboot list {page + 1}`")
    return "\n".join(lines) + unreadable_note(instances)


def history_text(entries: list[AuditEntry], outcomes: dict[str, str], links: Links, instance_id: str | None) -> str:
    scope = f" of {code(instance_id)}" if instance_id else ""
    if not entries:
        return f"No reboots{scope} on record."
    lines = [f"*Latest reboots{scope}*"]
    for e in entries:
        after = outcomes.get(e.correlation_id or "")
        result = escape(e.outcome or "?") + (f", then {escape(after)}" if after else "")
        lines.append(
            f"• {when(e.at)} {code(e.instance_id or '?')}{f' in {escape(e.region)}' if e.region else ''} "
            f"by {mention(e.user_id or '')}: {result} "
            f"({links.thread(e.channel, e.thread_ts)})"
        )
    return "\n".join(lines)


THREAD_BLOCK_PREFIX = "dbss_reboot_picker:"


NONE_VISIBLE = "No DBSS audit instances are visible with the bot's credentials."


def _option(i: Instance) -> dict[str, Any]:
    region = region_of(i)  # first: a long name must not cut it off (two instances may share a name)
    return {
        "text": _plain((f"{region} · " if region else "") + f"{i.name or i.id} · {i.status}/{i.task}", 75),
        "value": i.id,
    }


def instance_select(instances: list[Instance], action_id: str) -> dict[str, Any]:
    """A static select while the list fits Slack's 100 options; past that a type-ahead (external) select, whose
    options the bot answers as the person types (`matching_options`)."""
    placeholder = _plain("Choose an instance", 150)
    if len(instances) > PICKER_LIMIT:
        placeholder = _plain(f"Type a name or ID ({len(instances)} instances)", 150)
        return {"type": "external_select", "action_id": action_id, "placeholder": placeholder, "min_query_length": 0}
    return {
        "type": "static_select",
        "action_id": action_id,
        "placeholder": placeholder,
        "options": [_option(i) for i in instances],
    }


def matching_options(instances: list[Instance], query: str) -> list[dict[str, Any]]:
    """Options for a type-ahead: exact name or ID first, then names or IDs starting with the query, then the
    rest that contain it; at most Slack's 100."""
    q = " ".join(query.split()).lower()

    def rank(i: Instance) -> int | None:
        keys = (i.name.lower(), i.id.lower())
        if q in keys:
            return 0
        if any(k.startswith(q) for k in keys):
            return 1
        return 2 if any(q in k for k in keys) else None

    ranked = sorted((r, i.name, i.id, i) for i in instances if (r := rank(i)) is not None)
    return [_option(i) for *_, i in ranked[:PICKER_LIMIT]]


def picker(instances: list[Instance], *, prompt: str | None = None, thread_ts: str | None = None) -> Blocks:
    """A select menu of instances; picking one leads to the same card as typing its ID (in `thread_ts`'s
    thread when given: the block ID carries it)."""
    if not instances:
        return [_section(NONE_VISIBLE)]
    question = prompt or "Which DBSS audit instance should be rebooted? You will see a confirmation card first."
    if len(instances) > PICKER_LIMIT:
        question += f" There are {len(instances)}: type part of a name or ID in the menu."
    return [
        _section(question),
        {
            "type": "actions",
            "block_id": THREAD_BLOCK_PREFIX + thread_ts if thread_ts else "dbss_reboot_picker",
            "elements": [instance_select(instances, PICK_ACTION)],
        },
    ]


def interrupted_text(interrupted: Interrupted) -> str:
    """What a restarted bot tells a thread whose reboot outcome it never reported."""
    e = interrupted.entry
    iid = code(e.instance_id or "?")
    if interrupted.not_called:
        return (
            f":x: *Not rebooted*: the bot restarted before calling DBSS for {iid} (ref `{e.correlation_id}`). "
            f"Nothing was rebooted; run `/dbss-reboot {escape(e.instance_id or '<instance_id>')}` again if it is "
            "still needed."
        )
    if interrupted.unknown:
        return (
            f":warning: *Outcome unknown* for {iid}: the bot stopped while waiting for DBSS's answer to this reboot "
            f"(ref `{e.correlation_id}`). It will not retry. Check the instance's status and task in the DBSS console "
            "(task `rebooting` means it started); request a new reboot only once it shows ACTIVE with task NO_TASK "
            "and you are sure it is needed."
        )
    rid = f", DBSS request ID {code(e.dbss_request_id)}" if e.dbss_request_id else ""
    return (
        f":information_source: The bot restarted before it could post this: the reboot of {iid} was "
        f"*{escape(e.outcome or '?')}*{rid} (ref `{e.correlation_id}`, from the audit trail)."
    )


# --- shortcuts -------------------------------------------------------------------------------------------

MODAL_CALLBACK = "dbss_reboot_modal"
MODAL_INSTANCE, MODAL_CHANNEL, MODAL_REASON = "instance", "channel", "reason"


def no_such_id(instance_id: str, instances: list[Instance], *, single: bool) -> str:
    """Status of an ID that no list that answered holds (with the regions that could not be read, if any)."""
    where = "this project." if single else "any region this bot serves."
    return f":mag: No DBSS audit instance {code(instance_id)} in {where}" + unreadable_note(instances)


def name_unsure(name: str, found: Instance, unreadable: list[str]) -> str:
    return (
        f":mag: {code(found.id)} in {escape(region_of(found) or '?')} is named {code(name)}, but "
        f"{', '.join(code(label) for label in unreadable)} cannot be read right now, so another instance may have "
        f"that name there. Nothing was done: use the ID (`/dbss-reboot {escape(found.id)}`), or try again in a minute."
    )


def several_found(count: int) -> str:
    return f"That message names {count} DBSS instances. Which one should be rebooted? The card goes in its thread."


def no_menu_dbss_down(found: list[str], unavailable: str) -> str:
    """The message shortcut when DBSS cannot be read: no menu can be offered."""
    if not found:
        return f"{unavailable} I cannot offer a menu of instances; type `/dbss-reboot &lt;instance_id&gt;` instead."
    ids = ", ".join(code(i) for i in found[:10])
    return (
        f"{unavailable} That message names {len(found)} DBSS instances ({ids}), but I cannot offer a menu "
        "without the instance list. Type `/dbss-reboot &lt;instance_id&gt;` with the one to reboot."
    )


def none_found() -> str:
    return "I found no DBSS instance ID or known instance name in that message. Pick one; the card goes in its thread."


def modal(instances: list[Instance] | None, *, error: str | None = None) -> dict[str, Any]:
    """The global shortcut's modal: instance, channel (checked against the channel allow-list on submit), reason."""
    if instances is None or not instances:
        text = error or (
            NONE_VISIBLE if instances is not None else ":hourglass_flowing_sand: Reading the DBSS instances…"
        )
        return {
            "type": "modal",
            "callback_id": MODAL_CALLBACK,
            "title": _plain("Reboot DBSS instance", 24),
            "close": _plain("Close" if instances is not None or error else "Cancel", 24),
            "blocks": [_section(text)],
        }
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "title": _plain("Reboot DBSS instance", 24),
        "submit": _plain("Show card", 24),
        "close": _plain("Cancel", 24),
        "blocks": [
            {
                "type": "input",
                "block_id": MODAL_INSTANCE,
                "label": _plain("Instance", 2000),
                "element": instance_select(instances, MODAL_INSTANCE),
            },
            {
                "type": "input",
                "block_id": MODAL_CHANNEL,
                "label": _plain("Post the confirmation card in", 2000),
                "element": {
                    "type": "conversations_select",
                    "action_id": MODAL_CHANNEL,
                    "default_to_current_conversation": True,
                    # The submission then carries a response_url for the chosen channel: answers after the modal
                    # closes reach the person even where the bot is not a member.
                    "response_url_enabled": True,
                    "filter": {"include": ["public", "private"], "exclude_bot_users": True},
                },
            },
            {
                "type": "input",
                "block_id": MODAL_REASON,
                "optional": True,
                "label": _plain("Reason", 2000),
                "element": {"type": "plain_text_input", "action_id": MODAL_REASON, "max_length": 300},
            },
            _context("You confirm on the card, in the channel, like a typed `/dbss-reboot`."),
        ],
    }
