"""The labeling web app: Gradio Blocks on the label store, behind the store's own sign-in.

    app = FastAPI()
    mount(app, LabelService.open(db_url), "/")     # or: rlhf label serve --db ...

Sign-in. `mount` adds `<path>auth/login` (a small HTML form), `auth/logout` and `auth/token`
(JSON, for API clients) and hands Gradio an `auth_dependency` that accepts the session cookie
or an `Authorization: Bearer <token>` header. Sessions live in the database (hashed), so they
survive a server restart and work across several app processes behind one proxy. Without a
valid session every Gradio route (page config, queue, API) answers 401: unauthenticated
requests get nothing. On top of that, every event handler looks the user up again and checks
the role (admin handlers refuse labelers), because a client can call any handler directly.

Labelers see only their own item, progress and the campaign guidelines. Admins also get the
Admin tab: users, campaigns (created from an uploaded file), progress, speed, agreement,
gold accuracy, position bias, plots and export.

API (gradio_client, with `headers={"Authorization": "Bearer <token>"}`; see docs/labeling.md):
`/campaigns`, `/next_item`, `/submit`, `/skip_item`, `/undo`, `/my_progress`, and for admins
`/admin_*`. The UI's own events are private (not callable from gradio_client).
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from alignment.errors import UserError
from ui import admin_views, plots, render, review
from ui.candidates import read_candidates
from ui.service import Assignment, LabelService, UserInfo

CONCURRENCY = 64  # events served at once; SQLite writes still queue, reads and rendering overlap
# The one upload is an admin's candidates file: about 0.5 kB per prompt with K=4 short responses
# (the quickstart's), about 10 kB with four 500-token ones, so 64 MB holds a campaign of several
# thousand such prompts. Bigger campaigns come from `rlhf label create-campaign`, which uploads nothing.
MAX_UPLOAD = "64mb"
RANK_SLOTS = 8  # ranking buttons A..H (typing letters works for any K)
ALL_CAMPAIGNS = "(all campaigns)"  # the audit log's filter for every entry, campaign or not


# ------------------------------------------------------------------ authorization


def _current_user(svc: LabelService, request: gr.Request | None, admin: bool = False) -> UserInfo:
    """The signed-in, active user of this request, re-read from the store on every event."""
    name = getattr(request, "username", None) if request is not None else None
    user = svc.get_user_by_name(name) if name else None
    if user is None or not user.active:
        raise gr.Error("Not signed in.", title="Sign in")
    if admin and not user.is_admin:
        raise gr.Error("Admins only.", title="Not allowed")
    return user


def _user_errors(fn):
    """Show a UserError (bad input, expired item...) as the message of a Gradio error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            raise gr.Error(str(err), print_exception=False) from None

    return wrapper


def _inline_errors(n_outputs: int, message_at: int = 0):
    """Show a UserError in the handler's own message box and leave every other output as it
    was. A raised gr.Error would mark every output of the event as failed: tables, dropdowns
    and password boxes would be replaced by red "Error" pills until the next refresh."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as err:
                out: list[Any] = [gr.skip()] * n_outputs
                out[message_at] = f"⚠ {err}"
                return out

        return wrapper

    return decorate


# ------------------------------------------------------------------ client-side pieces

RESTORE_JS = """(aid) => {
  window.__rlhfShownAt = Date.now();
  return [rlhfDrafts.get(aid, 'rationale'), rlhfDrafts.get(aid, 'rank'), rlhfDrafts.get(aid, 'skip')];
}"""
ELAPSED_JS = """(...a) => { a[a.length - 1] = (Date.now() - (window.__rlhfShownAt || Date.now())) / 1000; return a; }"""
RANK_ADD_JS = """(r, aid) => {
  const parts = (r || '').toUpperCase().split(/[^A-Z]+/).filter(Boolean);
  if (!parts.includes('%s')) parts.push('%s');
  const v = parts.join(' > '); rlhfDrafts.save(aid, 'rank', v); return v;
}"""
RANK_BACK_JS = """(r, aid) => {
  const parts = (r || '').toUpperCase().split(/[^A-Z]+/).filter(Boolean); parts.pop();
  const v = parts.join(' > '); rlhfDrafts.save(aid, 'rank', v); return v;
}"""


def _save_draft_js(field: str) -> str:
    return f"(aid, v) => {{ rlhfDrafts.save(aid, '{field}', v); }}"


# ------------------------------------------------------------------ the app


def mount(fastapi_app, service: LabelService, path: str = "/", *, root_path: str | None = None,
          concurrency: int = CONCURRENCY):
    """Mount the app with its sign-in routes on `fastapi_app` at `path`; returns the app.

    Behind a reverse proxy that serves the app under a prefix it strips, pass that prefix as
    `root_path` (or run uvicorn with --root-path) so that links and redirects carry it.
    """
    from ui import auth

    prefix = "/" + path.strip("/") + "/" if path.strip("/") else "/"
    auth.add_routes(fastapi_app, service, prefix)
    blocks = build_app(service, concurrency=concurrency)
    return gr.mount_gradio_app(
        fastapi_app, blocks, prefix.rstrip("/") or "/", auth_dependency=auth.dependency(service),
        head=render.HEAD, footer_links=[], run_history=False, root_path=root_path,
        show_error=True, max_file_size=MAX_UPLOAD, ssr_mode=False, enable_monitoring=False,
    )


def build_app(service: LabelService, concurrency: int = CONCURRENCY) -> gr.Blocks:
    """The Blocks app. Serve it with `mount` (which adds sign-in); on its own it refuses every
    event, since no request carries a user."""
    svc = service

    def user_of(request, admin=False) -> UserInfo:
        return _current_user(svc, request, admin)

    # ---------------------------------------------------------- labeler views
    #
    # An event that shows an item returns the item's own outputs (`item_outputs` below): its
    # HTML, the guidelines, the cleared boxes, the hidden ids, the progress and a `layout`
    # string ("pairwise", "ranking:<K responses>", or "" when no item is shown). Which
    # buttons are visible follows from the layout alone. The clicks that move from item to
    # item return only these outputs, and the buttons follow in a second event that runs
    # only when the layout string changes (`apply_layout`, on the layout box's change): a
    # click from one pairwise item to the next updates no button at all. Gradio builds a new
    # component and its config for every `gr.update` (even `gr.skip()`) it returns, which was
    # most of a submit's server time. Page loads and campaign switches return the layout in
    # the same response, so that the first item and its buttons appear together.

    def layout_of(a: Assignment | None) -> str:
        if a is None:
            return ""
        return "pairwise" if a.mode != "ranking" else f"ranking:{len(a.responses)}"

    def layout_updates(layout: str) -> list:
        """Visibility of the start button, the pairwise row, the ranking column and each
        ranking letter. Layout "start": an admin who holds nothing and has not asked to label."""
        kind, _, count = layout.partition(":")
        ranking = kind == "ranking"
        k = int(count) if ranking and count.isdigit() else 0
        return [gr.update(visible=layout == "start"), gr.update(visible=layout == "pairwise"),
                gr.update(visible=ranking), *[gr.update(visible=ranking and i < k) for i in range(RANK_SLOTS)]]

    def view(user: UserInfo, campaign: str | None, a: Assignment | None, note: str = "",
             cid: int | None = None, waiting: bool = False) -> list:
        """The item outputs: item, guidelines, rank, rationale, skip reason, aid, token, progress, layout.
        `waiting`: no item because the user has not asked for one yet (admins)."""
        if not campaign:
            msg = "No open campaign yet. Ask an admin to create one." if not user.is_admin else \
                "No open campaign yet: create one in the Admin tab."
            return [render.render_message(msg), "", "", "", "", "", "", "", ""]
        cid = svc.campaign_id(campaign) if cid is None else cid
        camp = svc.get_campaign(cid)
        progress = render.render_progress(svc.user_progress(user.id, cid))
        if note:
            progress += f'<div class="rlhf-note" id="rlhf-note">{render.esc(note)}</div>'
        guidelines = render.render_guidelines(camp["guidelines"])
        if a is None and waiting:
            minutes = camp["assignment_ttl_s"] / 60
            return [render.render_message(
                "You hold no item. Press Start labeling to take one: it is then kept for you, and from "
                f"other labelers, for up to {minutes:.0f} minutes or until you answer, skip or release it."),
                guidelines, "", "", "", "", "", progress, "start"]
        if a is None:
            paused = svc.pause_reason(user.id, cid)
            message = f"No new items for you here: {paused}." if paused else "Nothing left for you in this campaign. Thank you!"
            return [render.render_message(message), guidelines, "", "", "", "", "", progress, ""]
        return [render.render_item(a), guidelines, "", "", "", str(a.id), a.token, progress, layout_of(a)]

    def with_layout(values: list) -> list:
        """Item outputs followed by the layout components' updates (`full_outputs`)."""
        return values + layout_updates(values[-1])

    def show(campaign: str | None, request: gr.Request, note: str = "", user: UserInfo | None = None,
             take: bool = True) -> list:
        """The user's item in the campaign. `take=False` shows only an item they already hold:
        an admin who opens the page to look must not keep an item from the labelers."""
        user = user or user_of(request)
        cid = svc.campaign_id(campaign) if campaign else None
        if not campaign:
            return view(user, campaign, None, note, cid)
        a = svc.next_assignment(user.id, cid) if take else svc.current_assignment(user.id, cid)
        return view(user, campaign, a, note, cid, waiting=a is None and not take)

    def _aid(aid: str) -> int:
        if not (aid or "").strip().isdigit():
            raise UserError("no item on screen to act on")
        return int(aid)

    def act(campaign, request, action) -> list:
        """Run a labeler action, then show the next item; a refused action (e.g. the item
        expired and went to someone else) is reported, and the next item shown anyway."""
        user = user_of(request)
        try:
            note = action(user)
        except UserError as err:
            gr.Warning(str(err))
            note = str(err)
        return show(campaign, request, note, user)

    def make_choice_handler(choice: str):
        def submit_choice(campaign: str, aid: str, token: str, rationale: str, elapsed: float,
                          request: gr.Request) -> list:
            def action(user):
                jid = svc.submit_judgment(_aid(aid), user.id, choice=choice, rationale=rationale or "",
                                          time_spent_s=_seconds(elapsed), client_token=token or None)
                return f"Saved ✓ judgment {jid} ({choice})"
            return act(campaign, request, action)

        submit_choice.__name__ = f"submit_{choice}"
        return _user_errors(submit_choice)

    @_user_errors
    def submit_ranking(campaign: str, aid: str, token: str, rank: str, rationale: str, layout_now: str,
                       elapsed: float, request: gr.Request) -> list:
        def action(user):
            letters = [x.upper() for x in re.findall(r"[A-Za-z]", rank or "")]
            jid = svc.submit_judgment(_aid(aid), user.id, ranking=letters, rationale=rationale or "",
                                      time_spent_s=_seconds(elapsed), client_token=token or None)
            return f"Saved ✓ judgment {jid} ({ranking_note(letters, layout_now)})"
        return act(campaign, request, action)

    @_user_errors
    def skip_item(campaign: str, aid: str, reason: str, request: gr.Request) -> list:
        def action(user):
            svc.skip(_aid(aid), user.id, reason or "")
            return "Skipped (U undoes it)"
        return act(campaign, request, action)

    @_user_errors
    def undo(campaign: str, request: gr.Request) -> list:
        user = user_of(request)
        if not campaign:
            raise UserError("choose a campaign first")
        cid = svc.campaign_id(campaign)
        try:
            a = svc.undo_last(user.id, cid)
        except UserError as err:
            gr.Warning(str(err))
            return show(campaign, request, str(err), user)
        if a is None:
            gr.Warning("Nothing to undo.")
            return show(campaign, request, "Nothing to undo", user)
        return view(user, campaign, a, "Undone: this item is open again", cid)

    @_user_errors
    def on_load(request: gr.Request) -> list:
        user = user_of(request)
        names = [c["name"] for c in svc.campaigns_for(user.id)]
        wanted = request.query_params.get("campaign") if request is not None else None
        value = wanted if wanted in names else (names[0] if names else None)
        who = (f'<div id="rlhf-who">Signed in as <b>{render.esc(user.name)}</b> ({render.esc(user.role)})</div>')
        return [who, gr.update(choices=names, value=value), gr.update(visible=user.is_admin)]

    @_user_errors
    def load_item(campaign: str, request: gr.Request) -> list:
        """A page load or a campaign switch: labelers get their item; admins only see one they
        already hold, until they press Start labeling."""
        user = user_of(request)
        return with_layout(show(campaign, request, user=user, take=not user.is_admin))

    @_user_errors
    def start_labeling(campaign: str, request: gr.Request) -> list:
        return with_layout(show(campaign, request))

    @_user_errors
    def apply_layout(layout: str, request: gr.Request) -> list:
        user_of(request)  # like every handler: a client can call it directly
        return layout_updates(layout or "")

    # ---------------------------------------------------------- admin views

    def campaign_names() -> list[str]:
        return [c["name"] for c in svc.list_campaigns()]

    def users_table() -> list[list]:
        return [[u.id, u.name, u.role, "yes" if u.simulated else "", "yes" if u.active else "no"] for u in svc.list_users()]

    def campaigns_table() -> list[list]:
        rows = []
        for c in svc.list_campaigns():
            p = svc.progress(c["id"])
            rows.append([c["id"], c["name"], c["mode"], c["overlap"], c["status"], p["items"], p["gold_items"],
                         p["judgments"], f"{100 * p['fraction_done']:.0f}%"])
        return rows

    def status_of(campaign: str | None) -> Any:
        """The status control shows the campaign's current status: Set status changes nothing
        unless the admin picks the other one."""
        if not campaign:
            return gr.update(value=None)
        return gr.update(value=svc.get_campaign(svc.campaign_id(campaign))["status"])

    def audit_filter_choices() -> list[str]:
        return [ALL_CAMPAIGNS] + campaign_names()

    @_user_errors
    def admin_overview(label_campaign: str | None, request: gr.Request) -> list:
        """Opening the Admin tab: its campaign starts as the one the Label tab shows (else the
        newest), so that the two dropdowns never disagree on which campaign is in front."""
        user_of(request, admin=True)
        names = campaign_names()
        value = label_campaign if label_campaign in names else (names[-1] if names else None)
        return [gr.update(choices=names, value=value), users_table(), campaigns_table(), status_of(value),
                gr.update(choices=audit_filter_choices())]

    @_user_errors
    def admin_stats(campaign: str, request: gr.Request) -> list:
        """The dashboard: cards, the per-labeler table and the plots. Before any campaign
        exists it says so instead of failing."""
        user_of(request, admin=True)
        if not campaign:
            return [admin_views.empty_dashboard("No campaign yet: create one under Campaigns."), [], None]
        cid = svc.campaign_id(campaign)
        progress, quality = svc.progress(cid), svc.agreement(cid)
        return [admin_views.summary_cards(progress, quality),
                admin_views.labeler_rows(progress, quality, svc.paused_labelers(cid)),
                plots.quality_figure(progress, quality)]

    @_user_errors
    def admin_campaign_changed(campaign: str, request: gr.Request) -> list:
        """Everything that shows the selected campaign follows it."""
        return (admin_stats(campaign, request) + [status_of(campaign)] + access_of(campaign)
                + [admin_review(campaign, request), admin_held(campaign, request)])

    @_inline_errors(3)
    def admin_create_user(name: str, password: str, role: str, request: gr.Request) -> list:
        admin = user_of(request, admin=True)
        svc.create_user(name, password, role=role or "labeler", actor_id=admin.id)
        return [f"Created {role or 'labeler'} {name!r}.", users_table(), ""]

    @_inline_errors(2)
    def admin_set_password(name: str, password: str, request: gr.Request) -> list:
        admin = user_of(request, admin=True)
        user = svc.get_user_by_name((name or "").strip())
        if user is None:
            raise UserError(f"no user named {name!r}")
        svc.set_password(user.id, password, actor_id=admin.id)
        return [f"Password of {user.name!r} changed.", ""]

    def admin_deactivate_user(name: str, request: gr.Request) -> list:
        return admin_set_user_active(name, False, request)

    def admin_reactivate_user(name: str, request: gr.Request) -> list:
        return admin_set_user_active(name, True, request)

    @_inline_errors(2)
    def admin_set_user_active(name: str, active: bool, request: gr.Request) -> list:
        admin = user_of(request, admin=True)
        user = svc.get_user_by_name((name or "").strip())
        if user is None:
            raise UserError(f"no user named {name!r}")
        if user.id == admin.id and not active:
            raise UserError("you cannot deactivate yourself")
        svc.set_user_active(user.id, bool(active), actor_id=admin.id)
        return [f"{'Reactivated' if active else 'Deactivated'} {user.name!r}.", users_table()]

    @_inline_errors(3)
    def admin_create_campaign(file: Optional[str], gold_file: Optional[str], name: str, mode: str, overlap: float,
                              pairs: Optional[float], ttl_min: float, guidelines: str, request: gr.Request) -> list:
        """Create a campaign from the uploaded candidates file (and, optionally, a gold file of
        its own). Errors name each upload by its own file name, with 1-based lines."""
        admin = user_of(request, admin=True)
        if not file:
            raise UserError("upload a candidates file (.jsonl, .json or .parquet)")
        names = (_upload_name(file), _upload_name(gold_file) if gold_file else "gold")
        rows = read_candidates(file, name=names[0])
        gold = read_candidates(gold_file, name=names[1]) if gold_file else []
        cid = svc.create_campaign(name, mode=mode, overlap=int(overlap or 1), guidelines=guidelines or "",
                                  items=rows, gold=gold, pairs_per_prompt=int(pairs) if pairs else None,
                                  assignment_ttl_s=float(ttl_min or 30) * 60, created_by=admin.id, sources=names)
        p = svc.progress(cid)
        return [f"Created campaign {name.strip()!r}: {p['items']} items, {p['gold_items']} gold.", campaigns_table(),
                gr.update(choices=campaign_names(), value=name.strip())]

    @_inline_errors(2)
    def admin_set_campaign_status(campaign: str, status: str, request: gr.Request) -> list:
        admin = user_of(request, admin=True)
        if not campaign:
            raise UserError("choose a campaign")
        if status not in ("open", "closed"):
            raise UserError("choose open or closed")
        cid = svc.campaign_id(campaign)
        if svc.get_campaign(cid)["status"] == status:
            return [f"Campaign {campaign!r} is already {status}.", campaigns_table()]
        svc.set_campaign_status(cid, status, actor_id=admin.id)
        return [f"Campaign {campaign!r} is now {status}.", campaigns_table()]

    @_inline_errors(2)
    def admin_export(campaign: str, fmt: str, aggregation: str, min_gold: str, include_simulated: bool,
                     include_ties: bool, include_gold: bool, include_ai: bool, request: gr.Request) -> list:
        admin = user_of(request, admin=True)
        if not campaign:
            raise UserError("choose a campaign")
        cid = svc.campaign_id(campaign)
        out = _export_dir()
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", campaign) or "labels"
        target = out / (stem if fmt == "datasets" else f"{stem}.{fmt}")
        try:
            threshold = float(min_gold) if str(min_gold or "").strip() else None
        except ValueError:
            raise UserError(f"minimum gold accuracy must be a number from 0 to 1, got {min_gold!r}") from None
        n = svc.export(cid, target, format=fmt, aggregation=aggregation, min_gold_accuracy=threshold,
                       include_simulated=bool(include_simulated), include_ties=bool(include_ties),
                       include_gold=bool(include_gold), include_ai=bool(include_ai), actor_id=admin.id)
        if fmt == "datasets":
            target = Path(shutil.make_archive(str(target), "zip", root_dir=target))
        return [f"Exported {n} rows ({aggregation}).", str(target)]

    @_user_errors
    def admin_audit(which: str, request: gr.Request) -> list[list]:
        """Every entry (sign-ins and user changes included) unless one campaign is chosen."""
        user_of(request, admin=True)
        cid = svc.campaign_id(which) if which and which != ALL_CAMPAIGNS else None
        return admin_views.audit_rows(svc.audit_log(cid, limit=500))

    @_user_errors
    def admin_held(campaign: str, request: gr.Request) -> list[list]:
        user_of(request, admin=True)
        return admin_views.held_rows(svc.held_assignments(svc.campaign_id(campaign) if campaign else None), svc.clock())

    @_inline_errors(2)
    def admin_release(assignment: str, campaign: str, request: gr.Request) -> list:
        admin = user_of(request, admin=True)
        if not str(assignment or "").strip().isdigit():
            raise UserError("give the number of the assignment to release (first column of the table)")
        svc.release_assignment(int(assignment), actor_id=admin.id)
        return [f"Released assignment {int(assignment)}: its item goes to the next labeler.",
                admin_held(campaign, request)]

    @_user_errors
    def admin_review(campaign: str, request: gr.Request) -> str:
        user_of(request, admin=True)
        if not campaign:
            return admin_views.empty_dashboard("No campaign yet.")
        return admin_views.review_cases_html(svc.review_items(svc.campaign_id(campaign)))

    def _review_item(item: str, campaign: str) -> tuple[int, str]:
        if not campaign:
            raise UserError("choose a campaign")
        if not str(item or "").strip().isdigit():
            raise UserError("give the item number shown in the list (Item N)")
        return int(item), svc.get_campaign(svc.campaign_id(campaign))["mode"]

    @_inline_errors(2)
    def admin_adjudicate(item: str, final: str, why: str, campaign: str, request: gr.Request) -> list:
        admin = user_of(request, admin=True)
        item_id, mode = _review_item(item, campaign)
        svc.adjudicate(item_id, admin.id, review.parse_final_label(final, mode), rationale=why or "")
        return [f"Item {item_id}: final label {final.strip()!r} stored; the export prefers it.",
                admin_review(campaign, request)]

    @_inline_errors(2)
    def admin_send_back(item: str, campaign: str, request: gr.Request) -> list:
        admin = user_of(request, admin=True)
        item_id, _ = _review_item(item, campaign)
        n = svc.send_back(item_id, actor_id=admin.id)
        return [f"Item {item_id} sent back: it now asks for {n} labels.", admin_review(campaign, request)]

    def access_of(campaign: str | None) -> list:
        if not campaign:
            return ["", ""]
        cid = svc.campaign_id(campaign)
        threshold = svc.get_campaign(cid)["min_gold_accuracy"]
        return [", ".join(svc.campaign_labelers(cid)), "" if threshold is None else str(threshold)]

    @_inline_errors(3)
    def admin_set_access(campaign: str, names: str, threshold: str, request: gr.Request) -> list:
        """Restrict the campaign to named labelers (empty: everyone) and set the gold-accuracy
        threshold below which a labeler is paused (empty: none)."""
        admin = user_of(request, admin=True)
        if not campaign:
            raise UserError("choose a campaign")
        cid = svc.campaign_id(campaign)
        try:
            value = float(threshold) if str(threshold or "").strip() else None
        except ValueError:
            raise UserError(f"minimum gold accuracy must be a number from 0 to 1, got {threshold!r}") from None
        allowed = svc.set_campaign_labelers(cid, re.split(r"[,\n]", names or ""), actor_id=admin.id)
        svc.set_min_gold_accuracy(cid, value, actor_id=admin.id)
        who = ", ".join(allowed) if allowed else "every labeler"
        pause = f"paused below {100 * value:.0f}% gold accuracy" if value is not None else "no gold pause"
        return [f"Campaign {campaign!r}: open to {who}; {pause}.", *access_of(campaign)]

    # ---------------------------------------------------------- API for gradio_client

    def _campaign(name: str) -> int:
        return svc.campaign_id(name)

    @_user_errors
    def api_campaigns(request: gr.Request = None) -> list:
        """Open campaigns you may label: id, name, mode, overlap, guidelines."""
        user = user_of(request)
        return svc.campaigns_for(user.id)

    @_user_errors
    def api_next_item(campaign: str, request: gr.Request = None) -> Optional[dict]:
        """Your current or next item in the campaign (None when nothing is left for you)."""
        user = user_of(request)
        a = svc.next_assignment(user.id, _campaign(campaign))
        if a is None:
            return None
        return {"id": a.id, "mode": a.mode, "prompt": a.prompt, "labels": a.labels, "responses": a.responses,
                "token": a.token, "expires_at": a.expires_at}

    @_user_errors
    def api_submit(assignment_id: int, choice: Optional[str] = None, ranking: Optional[list[str]] = None,
                   rationale: str = "", time_spent_s: Optional[float] = None, client_token: Optional[str] = None,
                   request: gr.Request = None) -> dict:
        """Judge your item: choice A/B/tie/both_bad, or ranking (shown letters, best first)."""
        user = user_of(request)
        jid = svc.submit_judgment(int(assignment_id), user.id, choice=choice or None, ranking=ranking or None,
                                  rationale=rationale or "", time_spent_s=time_spent_s, client_token=client_token)
        return {"judgment_id": jid}

    @_user_errors
    def api_skip_item(assignment_id: int, reason: str = "", request: gr.Request = None) -> dict:
        """Skip your item (it is not served to you again)."""
        user = user_of(request)
        svc.skip(int(assignment_id), user.id, reason or "")
        return {"skipped": int(assignment_id)}

    @_user_errors
    def api_undo(campaign: str, request: gr.Request = None) -> Optional[dict]:
        """Undo your last judgment or skip; returns the reopened item."""
        user = user_of(request)
        a = svc.undo_last(user.id, _campaign(campaign))
        return None if a is None else {"id": a.id, "labels": a.labels, "responses": a.responses, "token": a.token}

    @_user_errors
    def api_my_progress(campaign: str, request: gr.Request = None) -> dict:
        """Your own counts in the campaign."""
        user = user_of(request)
        return svc.user_progress(user.id, _campaign(campaign))

    @_user_errors
    def admin_api_users(request: gr.Request = None) -> list:
        user_of(request, admin=True)
        return [u.__dict__ for u in svc.list_users()]

    @_user_errors
    def admin_api_create_user(name: str, password: str, role: str = "labeler", request: gr.Request = None) -> dict:
        admin = user_of(request, admin=True)
        return {"user_id": svc.create_user(name, password, role=role, actor_id=admin.id)}

    @_user_errors
    def admin_api_set_user_active(name: str, active: bool, request: gr.Request = None) -> dict:
        admin = user_of(request, admin=True)
        user = svc.get_user_by_name(name)
        if user is None:
            raise UserError(f"no user named {name!r}")
        svc.set_user_active(user.id, bool(active), actor_id=admin.id)
        return {"user": name, "active": bool(active)}

    @_user_errors
    def admin_api_campaigns(request: gr.Request = None) -> list:
        user_of(request, admin=True)
        return svc.list_campaigns()

    @_user_errors
    def admin_api_create_campaign(name: str, items: list[dict], mode: str = "pairwise", overlap: int = 1,
                                  guidelines: str = "", gold: Optional[list[dict]] = None,
                                  pairs_per_prompt: Optional[int] = None, assignment_ttl_s: float = 1800.0,
                                  request: gr.Request = None) -> dict:
        admin = user_of(request, admin=True)
        cid = svc.create_campaign(name, mode=mode, overlap=int(overlap), guidelines=guidelines, items=items,
                                  gold=gold or [], pairs_per_prompt=pairs_per_prompt,
                                  assignment_ttl_s=assignment_ttl_s, created_by=admin.id)
        return {"campaign_id": cid}

    @_user_errors
    def admin_api_set_campaign_status(campaign: str, status: str, request: gr.Request = None) -> dict:
        admin = user_of(request, admin=True)
        svc.set_campaign_status(_campaign(campaign), status, actor_id=admin.id)
        return {"campaign": campaign, "status": status}

    @_user_errors
    def admin_api_progress(campaign: str, request: gr.Request = None) -> dict:
        user_of(request, admin=True)
        return svc.progress(_campaign(campaign))

    @_user_errors
    def admin_api_agreement(campaign: str, request: gr.Request = None) -> dict:
        user_of(request, admin=True)
        return svc.agreement(_campaign(campaign))

    @_user_errors
    def admin_api_export(campaign: str, aggregation: str = "all", min_gold_accuracy: Optional[float] = None,
                         include_simulated: bool = True, include_ties: bool = False, include_ai: bool = True,
                         request: gr.Request = None) -> list:
        """The export rows themselves (JSONL rows as a list)."""
        admin = user_of(request, admin=True)
        from alignment.data.files import read_rows

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "labels.jsonl"
            svc.export(_campaign(campaign), path, aggregation=aggregation, min_gold_accuracy=min_gold_accuracy,
                       include_simulated=include_simulated, include_ties=include_ties, include_ai=include_ai,
                       actor_id=admin.id)
            return read_rows(path)

    @_user_errors
    def admin_api_audit_log(campaign: Optional[str] = None, limit: int = 200, request: gr.Request = None) -> list:
        user_of(request, admin=True)
        return svc.audit_log(_campaign(campaign) if campaign else None, limit=int(limit))

    # ---------------------------------------------------------- layout

    private = {"api_visibility": "private"}
    # delete_cache: Gradio's copies of uploads and downloads (labels) are removed after a day.
    with gr.Blocks(title="Labeling · rlhf-toolkit", delete_cache=(3600, 86400)) as blocks:
        with gr.Row(equal_height=True):
            who = gr.HTML(elem_id="rlhf-who-box")
            campaign = gr.Dropdown(label="Campaign", choices=[], interactive=True, scale=2, elem_id="rlhf-campaign")
            gr.Button("Sign out", link="auth/logout", size="sm", scale=0, elem_id="rlhf-logout")
        with gr.Tabs():
            with gr.Tab("Label", id="label", elem_id="rlhf-label-tab"):
                with gr.Accordion("Guidelines", open=True):
                    guidelines = gr.HTML(elem_id="rlhf-guidelines")
                item = gr.HTML(elem_id="rlhf-item-box")
                start_button = gr.Button("Start labeling", variant="primary", visible=False, elem_id="rlhf-start")
                rationale = gr.Textbox(label="Rationale (optional)  [R]", lines=2, elem_id="rlhf-rationale")
                skip_reason = gr.Textbox(label="Skip reason (optional)", elem_id="rlhf-skip-reason")
                gr.HTML(render.KEYS_HELP)
                # The answer bar: fixed at the bottom of the window (render.STYLE), so that no
                # response, however long, pushes the answer controls out of reach.
                with gr.Column(elem_id="rlhf-answer-bar"):
                    with gr.Row(visible=False, elem_id="rlhf-pairwise", elem_classes="rlhf-bar-row") as pair_row:
                        choice_buttons = {
                            "A": gr.Button("A better [1]", elem_id="rlhf-choice-A", variant="primary", min_width=60),
                            "B": gr.Button("B better [2]", elem_id="rlhf-choice-B", variant="primary", min_width=60),
                            "tie": gr.Button("Tie [3]", elem_id="rlhf-choice-tie", min_width=60),
                            "both_bad": gr.Button("Both bad [4]", elem_id="rlhf-choice-both_bad", min_width=60),
                        }
                    with gr.Column(visible=False, elem_id="rlhf-ranking") as rank_col:
                        rank = gr.Textbox(show_label=False, container=False, elem_id="rlhf-rank",
                                          placeholder="Your ranking, best first: click or press the letters. "
                                                      "Responses you leave out stay unranked.")
                        with gr.Row(elem_classes="rlhf-bar-row"):
                            rank_buttons = [gr.Button(chr(65 + i), elem_id=f"rlhf-rank-{chr(65 + i)}", size="sm",
                                                      visible=False, min_width=36) for i in range(RANK_SLOTS)]
                            rank_back = gr.Button("⌫ remove last", elem_id="rlhf-rank-back", size="sm", min_width=60)
                            rank_submit = gr.Button("Submit ranking [Enter]", elem_id="rlhf-rank-submit",
                                                    variant="primary", size="sm", min_width=60)
                    with gr.Row(elem_classes="rlhf-bar-row"):
                        skip_button = gr.Button("Skip [S]", elem_id="rlhf-skip", size="sm", min_width=60)
                        undo_button = gr.Button("Undo last [U]", elem_id="rlhf-undo", size="sm", min_width=60)
                        raw_button = gr.Button("Raw / rendered [M]", elem_id="rlhf-raw-toggle", size="sm", min_width=60)
                        stack_button = gr.Button("Stack [L]", elem_id="rlhf-stack-toggle", size="sm", min_width=60)
                    progress = gr.HTML(elem_id="rlhf-progress-box")
                aid = gr.Textbox(visible="hidden", elem_id="rlhf-aid")
                token = gr.Textbox(visible="hidden", elem_id="rlhf-token")
                layout = gr.Textbox(visible="hidden", elem_id="rlhf-layout")
                elapsed = gr.Number(visible="hidden", elem_id="rlhf-elapsed")

            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                with gr.Row():
                    adm_campaign = gr.Dropdown(label="Campaign", choices=[], interactive=True, elem_id="rlhf-admin-campaign")
                    adm_refresh = gr.Button("Refresh", elem_id="rlhf-admin-refresh", scale=0)
                with gr.Tabs():
                    with gr.Tab("Dashboard", id="dashboard"):
                        cards = gr.HTML(elem_id="rlhf-admin-cards")
                        labelers = gr.Dataframe(headers=admin_views.LABELER_HEADERS, interactive=False,
                                                label="Labelers", elem_id="rlhf-admin-labelers")
                        plot = gr.Plot(label="Per labeler", elem_id="rlhf-admin-plot")
                    with gr.Tab("Review", id="review"):
                        gr.Markdown("Items where labelers disagree, and gold items someone failed, with every "
                                    "vote and rationale. Responses are numbered in the file's order (each labeler "
                                    "saw them in a random order as A, B, ...). A final label is stored as an "
                                    "adjudication: it leaves agreement alone and the export prefers it.")
                        review_refresh = gr.Button("Refresh", elem_id="rlhf-admin-review-refresh", scale=0)
                        review_html = gr.HTML(elem_id="rlhf-admin-review")
                        with gr.Row():
                            r_item = gr.Textbox(label="Item", elem_id="rlhf-review-item")
                            r_final = gr.Textbox(label="Final label: 1, 2, tie, both bad; ranking: 3 > 1 > 2",
                                                 elem_id="rlhf-review-final")
                            r_why = gr.Textbox(label="Why (kept with the label)", elem_id="rlhf-review-why")
                        with gr.Row():
                            r_adjudicate = gr.Button("Store final label", variant="primary",
                                                     elem_id="rlhf-review-adjudicate")
                            r_send_back = gr.Button("Send back for one more label", elem_id="rlhf-review-send-back")
                        r_msg = gr.Textbox(label="Result", interactive=False, elem_id="rlhf-review-msg")
                    with gr.Tab("Held items", id="held"):
                        gr.Markdown("Items someone holds without having answered. Releasing one hands it to the "
                                    "next labeler now instead of at its expiry; its holder does not get it back.")
                        held_df = gr.Dataframe(headers=admin_views.HELD_HEADERS, interactive=False,
                                               elem_id="rlhf-admin-held")
                        with gr.Row():
                            held_refresh = gr.Button("Refresh", elem_id="rlhf-admin-held-refresh", scale=0)
                            release_id = gr.Textbox(label="Assignment to release", elem_id="rlhf-admin-release-id")
                            release_btn = gr.Button("Release", elem_id="rlhf-admin-release", scale=0)
                        held_msg = gr.Textbox(label="Result", interactive=False, elem_id="rlhf-admin-held-msg")
                    with gr.Tab("Campaigns", id="campaigns"):
                        campaigns_df = gr.Dataframe(
                            headers=["id", "name", "mode", "overlap", "status", "items", "gold", "judgments", "done"],
                            interactive=False, elem_id="rlhf-admin-campaigns")
                        with gr.Row():
                            c_status = gr.Radio(["open", "closed"], value=None, elem_id="rlhf-admin-status-choice",
                                                label="Status of the selected campaign (closed: no new items)")
                            c_status_btn = gr.Button("Set status", elem_id="rlhf-admin-status", scale=0)
                        with gr.Row():
                            c_allowed = gr.Textbox(label="Only these labelers (names, comma-separated; empty: everyone)",
                                                   elem_id="rlhf-admin-allowed")
                            c_threshold = gr.Textbox(label="Pause a labeler below this gold accuracy (0 to 1; empty: "
                                                           "never; after 3 gold answers)", elem_id="rlhf-admin-threshold")
                            c_access_btn = gr.Button("Save access", elem_id="rlhf-admin-access", scale=0)
                        with gr.Row():
                            c_name = gr.Textbox(label="New campaign name", elem_id="rlhf-new-campaign-name")
                            c_mode = gr.Radio(["pairwise", "ranking"], value="pairwise", label="Mode")
                            c_overlap = gr.Number(1, precision=0, minimum=1, label="Labelers per item (overlap)",
                                                  elem_id="rlhf-new-campaign-overlap")
                            c_pairs = gr.Number(0, precision=0, minimum=0, label="Pairs per prompt (pairwise, K>2; 0: all)")
                            c_ttl = gr.Number(30, label="Assignment expiry (minutes)")
                        c_guidelines = gr.Textbox(label="Guidelines shown to labelers", lines=3,
                                                  elem_id="rlhf-new-campaign-guidelines")
                        with gr.Row():
                            c_file = gr.File(label="Candidates: rows {prompt, responses, metadata, gold?} "
                                                   "(.jsonl, .json or .parquet)",
                                             file_types=[".jsonl", ".json", ".parquet"], type="filepath",
                                             elem_id="rlhf-new-campaign-file")
                            c_gold_file = gr.File(label="Gold items (optional): the same rows, each with 'gold'",
                                                  file_types=[".jsonl", ".json", ".parquet"], type="filepath",
                                                  elem_id="rlhf-new-campaign-gold")
                        c_create = gr.Button("Create campaign", variant="primary", elem_id="rlhf-admin-create")
                        c_msg = gr.Textbox(label="Result", interactive=False, elem_id="rlhf-admin-campaign-msg")
                    with gr.Tab("Users", id="users"):
                        users_df = gr.Dataframe(headers=["id", "name", "role", "simulated", "active"],
                                                interactive=False, elem_id="rlhf-admin-users")
                        with gr.Row():
                            u_name = gr.Textbox(label="User name", elem_id="rlhf-new-user-name")
                            u_password = gr.Textbox(label="Password", type="password", elem_id="rlhf-new-user-password")
                            u_role = gr.Radio(["labeler", "admin"], value="labeler", label="Role")
                        with gr.Row():
                            u_create = gr.Button("Create user", variant="primary", elem_id="rlhf-admin-create-user")
                            u_password_btn = gr.Button("Set password", elem_id="rlhf-admin-set-password")
                            u_deactivate = gr.Button("Deactivate user", elem_id="rlhf-admin-deactivate")
                            u_reactivate = gr.Button("Reactivate user", elem_id="rlhf-admin-reactivate")
                        u_msg = gr.Textbox(label="Result", interactive=False, elem_id="rlhf-admin-user-msg")
                    with gr.Tab("Export", id="export"):
                        with gr.Row():
                            e_format = gr.Radio(["jsonl", "parquet", "datasets"], value="jsonl", label="Format")
                            e_agg = gr.Radio(["all", "majority"], value="all", label="Aggregation",
                                             info="all: every judgment is a row; majority: one row per item")
                            e_min_gold = gr.Textbox("", label="Minimum gold accuracy, 0 to 1 (empty: no filter)",
                                                    elem_id="rlhf-admin-min-gold")
                        with gr.Row():
                            e_sim = gr.Checkbox(True, label="Include simulated annotators")
                            e_ties = gr.Checkbox(False, label="Include ties / both bad (label field)")
                            e_gold = gr.Checkbox(False, label="Include gold items")
                            e_ai = gr.Checkbox(True, label="Include AI annotators")
                        e_button = gr.Button("Export", variant="primary", elem_id="rlhf-admin-export")
                        e_msg = gr.Textbox(label="Result", interactive=False, elem_id="rlhf-admin-export-msg")
                        e_file = gr.File(label="Download", interactive=False, elem_id="rlhf-admin-export-file")
                    with gr.Tab("Audit log", id="audit"):
                        with gr.Row():
                            audit_which = gr.Dropdown([ALL_CAMPAIGNS], value=ALL_CAMPAIGNS, label="Show",
                                                      interactive=True, elem_id="rlhf-admin-audit-which")
                            audit_refresh = gr.Button("Refresh", elem_id="rlhf-admin-audit-refresh", scale=0)
                        audit_df = gr.Dataframe(headers=admin_views.AUDIT_HEADERS, interactive=False,
                                                elem_id="rlhf-admin-audit", wrap=True)

        # ---------------------------------------------------------- events
        # The API endpoints first: they get their names; the private UI events, named after
        # their handlers too, would otherwise take them and push these to "skip_item_1".
        for fn in (api_campaigns, api_next_item, api_submit, api_skip_item, api_undo, api_my_progress):
            gr.api(fn, api_name=fn.__name__.removeprefix("api_"))
        for fn in (admin_api_users, admin_api_create_user, admin_api_set_user_active, admin_api_campaigns,
                   admin_api_create_campaign, admin_api_set_campaign_status, admin_api_progress,
                   admin_api_agreement, admin_api_export, admin_api_audit_log):
            gr.api(fn, api_name=fn.__name__.replace("admin_api_", "admin_"))
        item_outputs = [item, guidelines, rank, rationale, skip_reason, aid, token, progress, layout]
        layout_outputs = [start_button, pair_row, rank_col, *rank_buttons]
        full_outputs = item_outputs + layout_outputs
        view_outputs = item_outputs  # what a click that moves to the next item updates
        drafts = [rationale, rank, skip_reason]

        def then_restore(dep):
            dep.then(None, [aid], drafts, js=RESTORE_JS, **private)

        blocks.load(on_load, None, [who, campaign, admin_tab], **private).then(
            load_item, [campaign], full_outputs, **private
        ).then(None, [aid], drafts, js=RESTORE_JS, **private)
        then_restore(campaign.input(load_item, [campaign], full_outputs, **private))
        then_restore(start_button.click(start_labeling, [campaign], full_outputs, trigger_mode="once", **private))
        layout.change(apply_layout, [layout], layout_outputs, show_progress="hidden", **private)
        # The clicks return plain strings only (`view`): Gradio's per-output postprocessing
        # (str() of a string, in a worker thread, once per output) is skipped for them.
        clicks = {"trigger_mode": "once", "show_progress": "minimal", "postprocess": False, **private}
        for choice, button in choice_buttons.items():
            then_restore(button.click(make_choice_handler(choice), [campaign, aid, token, rationale, elapsed],
                                      view_outputs, js=ELAPSED_JS, **clicks))
        then_restore(rank_submit.click(submit_ranking, [campaign, aid, token, rank, rationale, layout, elapsed],
                                       view_outputs, js=ELAPSED_JS, **clicks))
        then_restore(skip_button.click(skip_item, [campaign, aid, skip_reason], view_outputs, **clicks))
        then_restore(undo_button.click(undo, [campaign], view_outputs, **clicks))
        raw_button.click(None, None, None, js="() => rlhfToggle('rlhf-raw-mode')", **private)
        stack_button.click(None, None, None, js="() => rlhfToggle('rlhf-stacked')", **private)
        for i, button in enumerate(rank_buttons):
            letter = chr(65 + i)
            button.click(None, [rank, aid], [rank], js=RANK_ADD_JS % (letter, letter), **private)
        rank_back.click(None, [rank, aid], [rank], js=RANK_BACK_JS, **private)
        rank.input(None, [aid, rank], None, js=_save_draft_js("rank"), **private)
        rationale.input(None, [aid, rationale], None, js=_save_draft_js("rationale"), **private)
        skip_reason.input(None, [aid, skip_reason], None, js=_save_draft_js("skip"), **private)

        stats_outputs = [cards, labelers, plot]
        admin_tab.select(admin_overview, [campaign], [adm_campaign, users_df, campaigns_df, c_status, audit_which],
                         **private).then(
            admin_audit, [audit_which], [audit_df], **private).then(
            admin_campaign_changed, [adm_campaign],
            stats_outputs + [c_status, c_allowed, c_threshold, review_html, held_df], **private)
        adm_refresh.click(admin_campaign_changed, [adm_campaign],
                          stats_outputs + [c_status, c_allowed, c_threshold, review_html, held_df], **private)
        adm_campaign.input(admin_campaign_changed, [adm_campaign],
                           stats_outputs + [c_status, c_allowed, c_threshold, review_html, held_df], **private)
        c_access_btn.click(admin_set_access, [adm_campaign, c_allowed, c_threshold], [c_msg, c_allowed, c_threshold],
                           **private)
        review_refresh.click(admin_review, [adm_campaign], [review_html], **private)
        r_adjudicate.click(admin_adjudicate, [r_item, r_final, r_why, adm_campaign], [r_msg, review_html],
                           trigger_mode="once", **private)
        r_send_back.click(admin_send_back, [r_item, adm_campaign], [r_msg, review_html], trigger_mode="once",
                          **private)
        c_create.click(admin_create_campaign,
                       [c_file, c_gold_file, c_name, c_mode, c_overlap, c_pairs, c_ttl, c_guidelines],
                       [c_msg, campaigns_df, adm_campaign], trigger_mode="once", **private)
        c_status_btn.click(admin_set_campaign_status, [adm_campaign, c_status], [c_msg, campaigns_df], **private)
        u_create.click(admin_create_user, [u_name, u_password, u_role], [u_msg, users_df, u_password],
                       trigger_mode="once", **private)
        u_password_btn.click(admin_set_password, [u_name, u_password], [u_msg, u_password], **private)
        u_deactivate.click(admin_deactivate_user, [u_name], [u_msg, users_df], **private)
        u_reactivate.click(admin_reactivate_user, [u_name], [u_msg, users_df], **private)
        e_button.click(admin_export, [adm_campaign, e_format, e_agg, e_min_gold, e_sim, e_ties, e_gold, e_ai],
                       [e_msg, e_file], trigger_mode="once", **private)
        audit_refresh.click(admin_audit, [audit_which], [audit_df], **private)
        audit_which.input(admin_audit, [audit_which], [audit_df], **private)
        held_refresh.click(admin_held, [adm_campaign], [held_df], **private)
        release_btn.click(admin_release, [release_id, adm_campaign], [held_msg, held_df], **private)


    # Gradio's queue runs one event at a time unless told otherwise; the thread pool must be at
    # least as large, since handlers are synchronous (set before queue(), which reads it).
    blocks.max_threads = max(40, concurrency + 8)
    blocks.queue(default_concurrency_limit=concurrency, max_size=None)
    _no_per_event_analytics(blocks)
    return blocks


def _no_per_event_analytics(blocks: gr.Blocks) -> None:
    """Stop Gradio's queue from summarising its traffic after every event.

    For its /monitoring page the queue keeps the last 10,000 events and, after each one,
    builds a pandas DataFrame of all of them to recompute percentiles: tens of milliseconds
    per click once a campaign has run a while, growing with the traffic. The app serves no
    monitoring page (mount() turns it off); keep a short history and never summarise it.
    """
    queue = getattr(blocks, "_queue", None)
    if queue is not None and hasattr(queue, "ANAYLTICS_CACHE_FREQUENCY") and hasattr(queue, "ANALYTICS_MAX_EVENTS"):
        queue.ANAYLTICS_CACHE_FREQUENCY = 2**62
        queue.ANALYTICS_MAX_EVENTS = 256


def _export_dir(keep_s: float = 3600) -> Path:
    """A fresh folder for one download; folders of earlier downloads older than `keep_s` go
    (Gradio serves its own copy of the file, and exports hold labels: don't let them pile up)."""
    root = Path(tempfile.gettempdir()) / "rlhf-label-exports"
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        try:
            if time.time() - old.stat().st_mtime > keep_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=root))


def ranking_note(letters: list[str], layout: str) -> str:
    """What a stored ranking says, as the labeler sees it: "C > A; B unranked". Left-out
    responses stay unranked (not ranked last); the note says so, as the docs do."""
    _, _, count = (layout or "").partition(":")
    k = int(count) if count.isdigit() else 0
    left_out = [chr(65 + i) for i in range(k) if chr(65 + i) not in letters]
    shown = " > ".join(letters)
    return f"{shown}; {', '.join(left_out)} unranked" if left_out else shown


def _upload_name(path: str) -> str:
    """The name the admin's file had: Gradio keeps it as the last part of its temporary copy."""
    return Path(path).name


def _seconds(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if 0 <= v < 7 * 24 * 3600 else None


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
