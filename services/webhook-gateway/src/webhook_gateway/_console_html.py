"""The admin console's HTML: plain server-rendered markup, every value escaped here.

No inline script or style (the page's Content-Security-Policy forbids both), so live
parts are marked with ``data-*`` attributes that ``static/console.js`` finds.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from syncplane_common import subjects
from syncplane_common.contracts import (
    BudgetsReply,
    CalendarChannelsReply,
    ConnectionsStatsReply,
    FitRunsReply,
    SyncSessionsReply,
    SyncSessionSummary,
)

from webhook_gateway._console_data import DeadLetterList, Failure, Section, WebhookCounts

TITLES = {
    "connections": "Connections",
    "budgets": "Rate budgets",
    "sessions": "Sync sessions",
    "failures": "Recent failures",
    "dead_letters": "Dead letters",
    "webhooks": "Webhooks",
    "fit_runs": "Google Fit runs",
    "channels": "Calendar channels",
}
STATUSES = ("active", "reauth_required", "revoked")


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def ago(when: datetime | None, now: datetime) -> str:
    """ "3 min ago" / "in 2 h" — what an operator reads faster than a timestamp."""
    if when is None:
        return "—"
    seconds = (when - now).total_seconds()
    span = abs(seconds)
    if span < 60:
        text = f"{span:.0f} s"
    elif span < 3600:
        text = f"{span / 60:.0f} min"
    elif span < 86400 * 2:
        text = f"{span / 3600:.1f} h"
    else:
        text = f"{span / 86400:.1f} d"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def stamp(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "—"
    iso = e(when.isoformat())
    return f'<time datetime="{iso}" title="{iso}">{e(ago(when, now))}</time>'


def table(head: Sequence[str], rows: Iterable[str], empty: str, tbody: str = "") -> str:
    body = "".join(rows)
    cols = "".join(f"<th>{e(h)}</th>" for h in head)
    if not body:
        body = f'<tr class="empty"><td colspan="{len(head)}">{e(empty)}</td></tr>'
    return f"<table><thead><tr>{cols}</tr></thead><tbody{tbody}>{body}</tbody></table>"


def csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(csrf)}">'


# -- sections ------------------------------------------------------------------------------


def _connections(data: ConnectionsStatsReply, _: datetime, __: str) -> str:
    counts: dict[tuple[str, str], int] = {(c.provider, c.status): c.count for c in data.counts}
    rows = []
    for provider in subjects.PROVIDERS:
        cells = "".join(f"<td>{counts.get((provider, s), 0)}</td>" for s in STATUSES)
        total = sum(counts.get((provider, s), 0) for s in STATUSES)
        rows.append(f"<tr><th>{e(provider)}</th>{cells}<td>{total}</td></tr>")
    return table(("provider", *STATUSES, "total"), rows, "no connections") + (
        f'<p class="note">{data.total} connections in all (token-service).</p>'
    )


def _budgets(data: BudgetsReply, now: datetime, _: str) -> str:
    if not data.enabled:
        return '<p class="note">Rate budgets are off (RATE_BUDGET_ENABLED=false).</p>'
    rows = []
    for w in data.windows:
        rows.append(
            f"<tr><th>{e(w.provider)}</th><td>{e(w.window)}</td>"
            f'<td><progress max="{w.limit}" value="{min(w.reserved, w.limit)}"></progress> '
            f"{w.reserved} / {w.limit}</td>"
            f"<td>{w.background} / {w.background_limit}</td>"
            f"<td>{stamp(w.ends_at, now)}</td></tr>"
        )
    return table(
        ("provider", "window", "used / limit", "background / share", "resets"),
        rows,
        "no windows configured",
    )


def session_row(s: SyncSessionSummary, now: datetime) -> str:
    pages = f"{s.pages_done}" + (f" / {s.pages_expected}" if s.pages_expected else "")
    # A finished session keeps the phase it was last in; only a running one's phase says much.
    running = s.finished_at is None and s.state not in ("completed", "cancelled")
    state = s.state + (f" ({s.phase})" if running and s.phase and s.phase != s.state else "")
    return (
        f'<tr id="session-{e(s.session_id)}" data-state="{e(s.state)}">'
        f'<td title="{e(s.session_id)}">{e(s.session_id[:8])}</td><td>{e(s.user_id)}</td>'
        f"<td>{e(s.provider)}</td><td>{e(s.kind)}</td>"
        f'<td data-field="state">{e(state)}</td><td data-field="pages">{e(pages)}</td>'
        f'<td data-field="fetched">{s.fetched}</td><td data-field="stored">{s.stored}</td>'
        f'<td data-field="failed">{s.failed}</td>'
        f'<td data-field="updated">{stamp(s.updated_at, now)}</td></tr>'
    )


SESSION_HEAD = (
    "session",
    "user",
    "provider",
    "kind",
    "state",
    "pages",
    "fetched",
    "stored",
    "failed",
    "updated",
)


def _sessions(data: SyncSessionsReply, now: datetime, _: str) -> str:
    rows = (session_row(s, now) for s in data.sessions)
    return table(SESSION_HEAD, rows, "no sessions yet", tbody=' id="sessions-body"')


def _failures(data: list[Failure], now: datetime, _: str) -> str:
    rows = []
    for f in data:
        ev = f.event
        raw = ev.get("error")
        error: dict[str, Any] = raw if isinstance(raw, dict) else {}
        when = _parse_time(ev.get("failed_at"))
        rows.append(
            f"<tr><td>{stamp(when, now)}</td><td>{e(ev.get('user_id'))}</td>"
            f"<td>{e(ev.get('provider'))}</td><td>{e(ev.get('kind'))}</td>"
            f"<td>{e(error.get('type'))}</td><td>{e(error.get('message'))}</td></tr>"
        )
    return table(("when", "user", "provider", "kind", "error", "message"), rows, "no failed syncs")


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _dead_letters(data: DeadLetterList, now: datetime, csrf: str) -> str:
    rows = []
    for letter in data.letters:
        error = letter.error
        when = _parse_time(letter.headers.get("Syncplane-Failed-At"))
        rows.append(
            f"<tr><td>{letter.sequence}</td><td>{e(letter.original_subject)}</td>"
            f"<td>{e(error.get('type') or error.get('code'))}</td>"
            f"<td>{e(error.get('message'))}</td><td>{stamp(when, now)}</td>"
            f'<td><form method="post" action="/admin/actions/replay" data-action>'
            f'{csrf_field(csrf)}<input type="hidden" name="sequence" value="{letter.sequence}">'
            f"<button>Replay</button></form></td></tr>"
        )
    replay_all = (
        f'<form method="post" action="/admin/actions/replay" data-action class="inline">'
        f'{csrf_field(csrf)}<input type="hidden" name="all" value="1">'
        f"<button>Replay all {data.total}</button></form>"
        if data.total
        else ""
    )
    shown = f" (the oldest {len(data.letters)} shown)" if data.total > len(data.letters) else ""
    return (
        f'<p class="note"><span data-count="dead-letters">{data.total}</span> dead letters'
        f"{shown}. {replay_all}</p>"
        + table(("seq", "subject", "error", "message", "failed", ""), rows, "the DLQ is empty")
    )


def _webhooks(data: WebhookCounts, _: datetime, __: str) -> str:
    outcomes = sorted({o for _, o in data.outcomes})
    providers = sorted({p for p, _ in data.outcomes} | {p for p, _ in data.rejections})
    rows = [
        f"<tr><th>{e(p)}</th>"
        + "".join(f"<td>{data.outcomes.get((p, o), 0):.0f}</td>" for o in outcomes)
        + "</tr>"
        for p in providers
    ]
    rejected = [
        f"<tr><th>{e(p)}</th><td>{e(r)}</td><td>{n:.0f}</td></tr>"
        for (p, r), n in sorted(data.rejections.items())
    ]
    return (
        table(("provider", *outcomes), rows, "no webhook deliveries yet")
        + "<h3>Rejected, by reason</h3>"
        + table(("provider", "reason", "count"), rejected, "none rejected")
        + '<p class="note">Counted by this gateway process since it started.</p>'
    )


def _fit_runs(data: FitRunsReply, now: datetime, _: str) -> str:
    rows = []
    for r in data.runs:
        duration = f"{r.duration_ms / 1000:.1f} s"
        errors = "; ".join(f"{x.user_id}: {x.code}" for x in r.errors[:3]) + (
            " …" if len(r.errors) > 3 else ""
        )
        rows.append(
            f"<tr><td>{stamp(r.started_at, now)}</td><td>{e(duration)}</td>"
            f"<td>{r.users_processed}</td><td>{r.successful}</td><td>{r.failed}</td>"
            f"<td>{r.tokens_refreshed}</td><td>{r.days_synced}</td><td>{r.sessions_synced}</td>"
            f"<td>{e(errors)}</td></tr>"
        )
    return table(
        (
            "started",
            "duration",
            "users",
            "ok",
            "failed",
            "refreshes",
            "days",
            "sessions",
            "errors",
        ),
        rows,
        "no runs yet",
    )


def _channels(data: CalendarChannelsReply, now: datetime, _: str) -> str:
    rows = []
    for c in data.channels:
        push = "on" if c.push_enabled else "off (polled)"
        soon = c.expires_at is not None and (c.expires_at - now).total_seconds() < 86400
        rows.append(
            f"<tr{' class=warn' if soon or not c.push_enabled else ''}>"
            f"<td>{e(c.user_id)}</td><td>{e(c.calendar_id)}</td><td>{e(c.channel_id)}</td>"
            f"<td>{stamp(c.expires_at, now)}</td><td>{e(push)}</td>"
            f"<td>{'on' if c.sync_enabled else 'off'}</td><td>{c.renew_failures}</td>"
            f"<td>{stamp(c.last_synced_at, now)}</td></tr>"
        )
    return table(
        ("user", "calendar", "channel", "expires", "push", "sync", "renew failures", "synced"),
        rows,
        "no calendars",
    )


RENDER = {
    "connections": _connections,
    "budgets": _budgets,
    "sessions": _sessions,
    "failures": _failures,
    "dead_letters": _dead_letters,
    "webhooks": _webhooks,
    "fit_runs": _fit_runs,
    "channels": _channels,
}


def section_body(section: Section, now: datetime, csrf: str) -> str:
    if not section.ok:
        return f'<p class="unavailable">Not available: {e(section.error)}</p>'
    body: str = RENDER[section.name](section.data, now, csrf)  # type: ignore[operator]
    return body


def section(section: Section, now: datetime, csrf: str) -> str:
    state = "ok" if section.ok else "unavailable"
    return (
        f'<section id="s-{e(section.name)}" data-section="{e(section.name)}" '
        f'data-state="{state}"><h2>{e(TITLES[section.name])}</h2>'
        f'<div class="body">{section_body(section, now, csrf)}</div></section>'
    )


# -- pages ---------------------------------------------------------------------------------


def _document(title: str, body: str, csrf: str = "") -> str:
    meta = f'<meta name="csrf" content="{e(csrf)}">' if csrf else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title>{meta}"
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/admin/static/console.css">'
        '<script src="/admin/static/console.js" defer></script>'
        f"</head><body>{body}</body></html>"
    )


def _actions(csrf: str) -> str:
    providers = "".join(f'<option value="{p}">{p}</option>' for p in subjects.PROVIDERS)
    token = csrf_field(csrf)
    return (
        '<section id="s-actions"><h2>Actions</h2><div class="actions">'
        f'<form method="post" action="/admin/actions/background-sync" data-action>{token}'
        '<label>Background sync <select name="sync_type"><option value="quick">quick '
        '(incremental)</option><option value="full">full (backfill)</option></select></label>'
        '<label>max users <input name="max_users" type="number" min="1" size="6"></label>'
        "<button>Run for all users</button></form>"
        f'<form method="post" action="/admin/actions/sync-user" data-action>{token}'
        '<label>User <input name="user_id" required size="16" autocomplete="off"></label>'
        f'<label>provider <select name="provider"><option value="">all connected</option>'
        f"{providers}</select></label><button>Sync now</button></form>"
        f'<form method="post" action="/admin/actions/strava-subscription" data-action>'
        f"{token}<button>Set up Strava push subscription</button></form>"
        '</div><p id="flash" role="status" aria-live="polite"></p></section>'
    )


def console_page(
    sections: dict[str, Section], now: datetime, csrf: str, admin: str, flash: str = ""
) -> str:
    header = (
        '<header><h1>syncplane console</h1><span class="who">signed in as '
        f"<b>{e(admin)}</b></span>"
        '<span id="live" class="live" data-state="connecting">live: connecting</span>'
        f'<form method="post" action="/admin/logout">{csrf_field(csrf)}'
        "<button>Sign out</button></form></header>"
    )
    order = (
        ("connections", "budgets"),
        ("sessions",),
        ("failures", "dead_letters"),
        ("webhooks", "fit_runs"),
        ("channels",),
    )
    grid = "".join(
        '<div class="row">' + "".join(section(sections[n], now, csrf) for n in row) + "</div>"
        for row in order
    )
    flash_html = f'<p class="flash">{e(flash)}</p>' if flash else ""
    return _document(
        "syncplane console", f"{header}<main>{flash_html}{_actions(csrf)}{grid}</main>", csrf
    )


def login_page(message: str = "") -> str:
    note = f'<p class="unavailable">{e(message)}</p>' if message else ""
    return _document(
        "syncplane console: sign in",
        '<main class="narrow"><h1>syncplane console</h1>'
        "<p>Paste an admin token (<code>syncplane token --user you --admin</code>).</p>"
        f'{note}<form method="post" action="/admin/login">'
        '<label>Admin token <textarea name="token" rows="4" cols="60" required '
        'autocomplete="off"></textarea></label><button>Sign in</button></form></main>',
    )


def forbidden_page(subject: str) -> str:
    return _document(
        "syncplane console: forbidden",
        '<main class="narrow"><h1>Forbidden</h1>'
        f"<p>The token of <b>{e(subject)}</b> has no admin scope.</p>"
        '<form method="post" action="/admin/logout"><button>Use another token</button>'
        "</form></main>",
    )


def result_page(ok: bool, message: str) -> str:
    """What an action answers a browser without JavaScript."""
    cls = "flash" if ok else "unavailable"
    return _document(
        "syncplane console",
        f'<main class="narrow"><p class="{cls}">{e(message)}</p>'
        '<p><a href="/admin">Back to the console</a></p></main>',
    )
