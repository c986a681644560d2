"""What an admin reads: the dashboard's cards and per-labeler table, held items, the audit log.

Pure functions from the store's dictionaries to HTML (escaped: names and campaign names are
user input) or to table rows, so that each view can be checked without a browser.
"""

from __future__ import annotations

import time
from typing import Any

from ui.render import content_block, esc, render_prompt

LABELER_HEADERS = ["labeler", "judgments", "skips", "median s", "per hour", "total min", "agreement",
                   "gold acc.", "gold n", "A rate / top-A rate", "bias z", "status"]
HELD_HEADERS = ["assignment", "labeler", "campaign", "item", "held (min)", "expires in (min)"]
AUDIT_HEADERS = ["time", "user", "action", "campaign", "detail"]
# |z| above this is flagged: a 0.5 share of A wins is this many standard errors away.
BIAS_Z_FLAG = 3.0


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _num(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _card(title: str, value: str, note: str, warn: bool = False) -> str:
    cls = "rlhf-card rlhf-warn" if warn else "rlhf-card"
    return (f'<div class="{cls}"><div class="rlhf-card-title">{esc(title)}</div>'
            f'<div class="rlhf-card-value">{esc(value)}</div><div class="rlhf-card-note">{esc(note)}</div></div>')


def summary_cards(progress: dict, quality: dict) -> str:
    """Progress, agreement, Krippendorff's alpha, position bias (with its z) and gold accuracy."""
    pb = quality["position_bias"]
    if quality["mode"] == "pairwise":
        z = pb.get("a_rate_z")
        bias = _card("position bias: A wins", _pct(pb.get("a_rate")),
                     f"z = {_num(z, 1)} against 0.5 over {pb.get('A', 0) + pb.get('B', 0)} decisive votes",
                     warn=z is not None and abs(z) > BIAS_Z_FLAG)
    else:
        bias = _card("position bias: A ranked first", _pct(pb.get("top_a_rate")),
                     f"unbiased: {_pct(pb.get('expected_rate'))}")
    alpha = quality["krippendorff_alpha"]
    cards = [
        _card("progress", _pct(progress["fraction_done"]),
              f"{progress['judgments']} of {progress['target_judgments']} judgments · "
              f"{progress['complete_items']} of {progress['items']} items complete · {progress['status']}"),
        _card("held now", str(progress["active_assignments"]), f"{progress['skips']} skips"),
        _card("agreement", _pct(quality["pairwise_agreement"]),
              f"pairs of labelers who agree, over {quality['units_with_overlap']} shared units"),
        _card("Krippendorff's α", _num(alpha), "1 perfect · 0 chance level", warn=alpha is not None and alpha < 0.2),
        bias,
        _card("gold accuracy", _pct(quality["gold_accuracy"]),
              f"{quality['gold_judgments']} gold answers on {progress['gold_items']} gold items"),
        ai_cards(quality),
    ]
    return f'<div class="rlhf-cards" id="rlhf-dashboard-cards">{"".join(cards)}</div>'


AI_HEADERS = ["AI annotator", "judgments", "agrees with humans", "human pairs", "agrees with simulated",
              "simulated pairs", "gold acc.", "gold n", "ties", "mean confidence"]


def ai_rows(quality: dict) -> list[list]:
    """One row per AI annotator: its agreement with the human and the simulated labelers on
    shared items, and with the gold items (ui.agreement.ai_agreement)."""
    return [[name, a["judgments"], _round(a["agreement_human"]), a["pairs_human"], _round(a["agreement_simulated"]),
             a["pairs_simulated"], _round(a["gold_accuracy"]), a["gold_judgments"], a["ties"], _round(a["mean_confidence"])]
            for name, a in sorted(quality.get("ai", {}).items())]


def ai_cards(quality: dict) -> str:
    """A card per AI annotator, so that its agreement is in front of the admin with the rest."""
    cards = []
    for name, a in sorted(quality.get("ai", {}).items()):
        cards.append(_card(f"AI {name}", _pct(a["agreement_human"] if a["pairs_human"] else a["agreement_simulated"]),
                           f"agrees with humans {_pct(a['agreement_human'])} ({a['pairs_human']} pairs), "
                           f"simulated {_pct(a['agreement_simulated'])} ({a['pairs_simulated']}), "
                           f"gold {_pct(a['gold_accuracy'])} ({a['gold_judgments']})"))
    return "".join(cards)


def empty_dashboard(message: str) -> str:
    return f'<div class="rlhf-cards" id="rlhf-dashboard-cards"><div class="rlhf-card">{esc(message)}</div></div>'


def labeler_rows(progress: dict, quality: dict, paused: dict[str, str] | None = None) -> list[list]:
    """One row per labeler: volume, speed, agreement, gold accuracy, position bias and its z."""
    paused = paused or {}
    rows = []
    for name in sorted(set(progress["labelers"]) | set(quality["labelers"])):
        s, q = progress["labelers"].get(name, {}), quality["labelers"].get(name, {})
        rows.append([name, s.get("judgments", 0), s.get("skips", 0), s.get("median_s"), s.get("per_hour"),
                     round(s.get("total_s", 0) / 60, 1), _round(q.get("agreement")), _round(q.get("gold_accuracy")),
                     q.get("gold_judgments", 0), _round(q.get("a_rate", q.get("top_a_rate"))),
                     _round(q.get("a_rate_z"), 2), paused.get(name, "")])
    return rows


def held_rows(held: list[dict], now: float) -> list[list]:
    return [[h["assignment"], h["user"], h["campaign"], h["item"], round((now - h["since"]) / 60, 1),
             round((h["expires_at"] - now) / 60, 1)] for h in held]


def _detail_text(detail: dict[str, Any]) -> str:
    """`key: value` pairs joined by ` · `, for a reader: no braces, no quotes."""
    parts = []
    for key, value in detail.items():
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return " · ".join(parts)


def audit_rows(entries: list[dict]) -> list[list]:
    """The audit log as a reader wants it: local time, the user's name, the action, the
    campaign's name and the details as text. Entries without a campaign (sign-ins, user
    changes) show "–"."""
    out = []
    for e in entries:
        out.append([time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])),
                    e["user"] if e["user"] is not None else ("–" if e["user_id"] is None else f"#{e['user_id']}"),
                    e["action"].replace("_", " "), e["campaign"] or "–", _detail_text(e["detail"])])
    return out


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def review_cases_html(cases: list[dict]) -> str:
    """The review list: per item the prompt, the numbered responses, every vote with its
    rationale, the gold answer and the current adjudication. Rationales and names are
    escaped; prompts and responses shown as the labelers saw them (sanitised markdown or raw)."""
    if not cases:
        return '<div class="rlhf-message" id="rlhf-review-empty">No disagreements and no failed gold items.</div>'
    out = []
    for case in cases:
        responses = "".join(
            f'<div class="rlhf-response"><div class="rlhf-label">Response {i}</div>{content_block(text)}</div>'
            for i, text in enumerate(case["responses"], 1))
        votes = "".join(
            f"<tr><td>{esc(v['user'])}</td><td>{esc(v['answer'])}</td>"
            + (f"<td>{'right' if v['correct'] == 1 else 'wrong'}</td>" if case["is_gold"] else "")
            + f"<td>{esc(v['rationale'] or '–')}</td></tr>"
            for v in case["votes"])
        head = "<tr><th>labeler</th><th>answer</th>" + ("<th>gold</th>" if case["is_gold"] else "") + "<th>rationale</th></tr>"
        notes = []
        if case["expected"]:
            notes.append(f"Gold answer: <b>{esc(case['expected'])}</b>")
        if case["extra_overlap"]:
            notes.append(f"Sent back: {case['extra_overlap']} more label(s) asked for")
        adj = case["adjudication"]
        if adj:
            notes.append(f"Final label by {esc(adj['user'])}: <b>{esc(adj['answer'])}</b>"
                         f" · {esc(adj['rationale'] or 'no rationale')}")
        out.append(
            f'<div class="rlhf-case" id="rlhf-case-{int(case["item_id"])}" data-item="{int(case["item_id"])}">'
            f'<div class="rlhf-label">Item {int(case["item_id"])} · {esc(case["reason"])}</div>'
            f'<div class="rlhf-prompt">{render_prompt(case["prompt"])}</div>'
            f'<div class="rlhf-responses">{responses}</div>'
            f'<table>{head}{votes}</table><div>{" · ".join(notes)}</div></div>')
    return "".join(out)
