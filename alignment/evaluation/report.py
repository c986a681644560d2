"""report.md and report.html from metrics.json: tables, plots, examples.

The HTML is one self-contained file: plots are PNGs embedded as base64, and every piece of
text that came from a prompt, a response, a model name or a path goes through
`html.escape`, because model outputs are untrusted and may contain markup. Plots use the
object-oriented matplotlib API (`Figure` + Agg canvas), so rendering never touches a GUI
backend or pyplot's global state.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Optional

from alignment.evaluation.bootstrap import Estimate
from alignment.evaluation.compare import ARM_METRICS

HEADLINE = [
    "gold", "retention", "heldout", "task", "prompt_pass", "constraint_pass", "reward", "win_rate", "lc_win_rate",
    "gold_win_rate", "length", "refusal_rate", "over_refusal_rate", "kl.k1_seq", "kl.k3_seq", "kl.k1_token", "kl.k3_token",
]
PAIR = {"win_rate", "lc_win_rate", "gold_win_rate"}
KL_KEY = "kl.k3_seq"
COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


def _est(d: Optional[dict]) -> Optional[Estimate]:
    return Estimate.from_dict(d) if d else None


def _fmt(e: Optional[Estimate], signed: bool = False) -> str:
    if e is None or not math.isfinite(e.value):
        return "–"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(e.value)} [{f.format(e.low)}, {f.format(e.high)}]"


def _candidates(m: dict) -> list[str]:
    return list(m["comparisons"])


def _mark(m: dict, cand: str, metric: str) -> str:
    comp = m["comparisons"][cand]
    if metric in comp["significant_regressions"]:
        return "▼"
    if metric in comp["significant_improvements"]:
        return "▲"
    return ""


def headline_rows(m: dict) -> list[list[str]]:
    """[metric, baseline, (candidate, candidate - baseline) per candidate], with ▲/▼ marks."""
    base = m["models"][m["baseline"]]["metrics"]
    rows = []
    for metric in HEADLINE:
        cells = [metric, "" if metric in PAIR else _fmt(_est(base.get(metric)))]
        present = metric in base
        for cand in _candidates(m):
            comp = m["comparisons"][cand]["metrics"]
            if metric in PAIR:
                e = _est(comp.get(metric))
                cells += [_fmt(e), _mark(m, cand, metric)]
                present |= e is not None
            else:
                e = _est(m["models"][cand]["metrics"].get(metric))
                d = _est(comp.get(f"{metric}.diff"))
                cells += [_fmt(e), (_fmt(d, signed=True) + " " + _mark(m, cand, f"{metric}.diff")).strip() if d else "–"]
                present |= e is not None
        if present:
            rows.append(cells)
    return rows


# ---------------------------------------------------------------- plots


def _figure(width: float = 7.0, height: float = 3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _model_point(m: dict, name: str, metric: str) -> Optional[Estimate]:
    return _est(m["models"][name]["metrics"].get(metric))


def plot_vs_kl(m: dict) -> Optional[str]:
    """Gold and reward of every model against its KL from the reference, with CIs."""
    names = [n for n in m["models"] if _model_point(m, n, KL_KEY)]
    panels = [k for k in ("gold", "reward") if any(_model_point(m, n, k) for n in names)]
    if not names or not panels:
        return None
    fig = _figure(4.2 * len(panels), 3.6)
    for j, metric in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        for i, name in enumerate(names):
            x, y = _model_point(m, name, KL_KEY), _model_point(m, name, metric)
            if y is None:
                continue
            ax.errorbar([x.value], [y.value], xerr=[[x.value - x.low], [x.high - x.value]],
                        yerr=[[y.value - y.low], [y.high - y.value]], fmt="o", color=COLORS[i % len(COLORS)],
                        capsize=3, label=name)
        ax.set_xlabel("KL from reference (k3, nats per sequence)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs KL")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    return _png(fig)


def plot_lengths(m: dict) -> Optional[str]:
    import numpy as np

    lengths = {n: np.array(v, dtype=float) for n, v in m.get("lengths", {}).items()}
    if not lengths:
        return None
    top = max(float(v.max()) for v in lengths.values() if v.size) if lengths else 1.0
    bins = np.linspace(0, max(top, 1.0) + 1, 25)
    fig = _figure(7, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, v) in enumerate(lengths.items()):
        ax.hist(v, bins=bins, histtype="step", linewidth=1.8, color=COLORS[i % len(COLORS)],
                label=f"{name} (mean {v.mean():.1f})")
    ax.set_xlabel("response length (words)")
    ax.set_ylabel("prompts")
    ax.set_title("Response lengths")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_category(m: dict, metric: str) -> Optional[str]:
    """Grouped bars with 95% CIs, one panel per grouping (set, category, constraint), one bar per model."""
    table = m["by_category"].get(metric)
    if not table:
        return None
    names = list(m["models"])
    panels: dict[str, list[str]] = {}
    for group in table:
        panels.setdefault(group.split("=", 1)[0], []).append(group)
    sizes = [len(g) for g in panels.values()]
    fig = _figure(min(16.0, max(6.0, 0.45 * sum(sizes) * max(1, len(names)) + 2.0 * len(panels))), 3.8)
    grid = fig.add_gridspec(1, len(panels), width_ratios=sizes)
    width = 0.8 / len(names)
    for p, (grouping, groups) in enumerate(panels.items()):
        ax = fig.add_subplot(grid[0, p])
        for i, name in enumerate(names):
            xs, ys, lo, hi = [], [], [], []
            for g, group in enumerate(groups):
                e = _est(table[group]["models"].get(name))
                if e is None:
                    continue
                xs.append(g + (i - (len(names) - 1) / 2) * width)
                ys.append(e.value)
                lo.append(e.value - e.low)
                hi.append(e.high - e.value)
            ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=2, color=COLORS[i % len(COLORS)], label=name)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([g.split("=", 1)[1] for g in groups], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{metric} by {grouping} (95% CI)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if p == 0:
            ax.set_ylabel(metric)
            ax.legend(fontsize=8)
    return _png(fig)


def plot_overoptimisation(m: dict) -> Optional[str]:
    """Gold against proxy reward as KL grows (Gao et al. 2022), x = sqrt(KL).

    Proxy reward rising while gold flattens or falls is reward over-optimisation.
    """
    names = [n for n in m["models"] if _model_point(m, n, KL_KEY)]
    if len(names) < 3:
        return None
    pts = sorted(((math.sqrt(max(_model_point(m, n, KL_KEY).value, 0.0)), n) for n in names))
    fig = _figure(6.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    xs = [x for x, _ in pts]
    handles = []
    for metric, color, twin in (("gold", COLORS[2], False), ("reward", COLORS[3], True)):
        ys = [_model_point(m, n, metric) for _, n in pts]
        if any(y is None for y in ys):
            continue
        target = ax.twinx() if twin and handles else ax
        handles.append(target.errorbar(xs, [y.value for y in ys], yerr=[[y.value - y.low for y in ys], [y.high - y.value for y in ys]],
                                       fmt="o-", color=color, capsize=3, label=f"{metric} ({'gold' if metric == 'gold' else 'proxy'})"))
        target.set_ylabel(metric, color=color)
    if not handles:
        return None
    for x, n in pts:
        ax.annotate(n, (x, ax.get_ylim()[0]), fontsize=7, rotation=30, xytext=(0, 4), textcoords="offset points")
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("sqrt(KL from reference)")
    ax.set_title("Reward over-optimisation: gold vs proxy reward")
    ax.grid(alpha=0.3)
    return _png(fig)


# ---------------------------------------------------------------- markdown


def _gate_summary(comp: dict, markdown: bool) -> str:
    gates = comp["gates"]
    if not gates:
        return "no gates"
    status = "PASS" if comp["passed"] else "FAIL"
    counts = {s: sum(g["status"] == s for g in gates) for s in ("fail", "skipped")}
    detail = f"{counts['fail']} of {len(gates)} failed" + (f", {counts['skipped']} skipped" if counts["skipped"] else "")
    label = f"**{status}**" if markdown else f'<span class="{status.lower()}">{status}</span>'
    return f"{label} ({detail})"


def arms_rows(m: dict) -> list[list[str]]:
    """The pipeline's per-arm summary: gold, held-out gold, retention, reward, KL."""
    return [[name] + [_fmt(_est(row.get(k))) for k in ARM_METRICS] for name, row in m.get("arms", {}).items()]


def _md_cell(text: str, limit: int = 300) -> str:
    text = text if len(text) <= limit else text[:limit] + "…"
    return html.escape(text).replace("|", "\\|").replace("\n", "<br>") or "*(empty)*"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _headline_header(m: dict) -> list[str]:
    header = ["metric", f"baseline: {m['baseline']}"]
    for c in _candidates(m):
        header += [c, f"{c} − baseline"]
    return header


def render_markdown(m: dict) -> str:
    esc = html.escape
    out = [f"# {esc(m.get('title', 'Regression evaluation'))}", ""]
    out.append(f"- baseline: **{esc(m['baseline'])}** (`{esc(m['models'][m['baseline']]['path'])}`)")
    for c in _candidates(m):
        out.append(f"- candidate: **{esc(c)}** (`{esc(m['models'][c]['path'])}`)")
    out.append(f"- KL reference: `{esc(str(m.get('reference')))}`; reward model: `{esc(str(m.get('reward_model')))}`")
    sets = ", ".join(f"{esc(k)} ({v})" for k, v in m["prompts"]["sets"].items())
    out.append(f"- prompts: {m['prompts']['n']} in {sets}")
    s = m["settings"]
    out.append(f"- decoding: temperature {s['temperature']}, {s['max_new_tokens']} new tokens, seed {s['seed']}; "
               f"{s['bootstrap_samples']} paired bootstrap resamples (95% CIs)")
    if m.get("arms"):
        out += ["", "## Arms", "", "Mean [95% CI]; KL from the reference in nats per sequence.", "",
                _md_table(["arm", *ARM_METRICS], [[esc(c) for c in r] for r in arms_rows(m)])]
    out += ["", "## Verdict", ""]
    rows = []
    for c in _candidates(m):
        comp = m["comparisons"][c]
        rows.append([esc(c), _gate_summary(comp, markdown=True),
                     ", ".join(comp["significant_regressions"]) or "none",
                     ", ".join(comp["significant_improvements"]) or "none"])
    out += [_md_table(["candidate", "gates", "significant regressions", "significant improvements"], rows), ""]
    out += ["## Headline", "", "Mean [95% CI]; ▲/▼: the paired CI of the difference excludes zero "
            "(win rates: excludes 0.5) in the better/worse direction.", ""]
    out += [_md_table(_headline_header(m), [[esc(c) for c in r] for r in headline_rows(m)]), ""]
    for c in _candidates(m):
        comp = m["comparisons"][c]
        out += [f"## Gates: {esc(c)}", ""]
        if comp["gates"]:
            out.append(_md_table(["gate", "status", "evidence"],
                                 [[esc(g["gate"]), g["status"].upper(), g["evidence"]] for g in comp["gates"]]))
        else:
            out.append("No gates.")
        for w in comp["warnings"]:
            out += ["", f"> **Warning:** {esc(w)}"]
        out.append("")
    notes = list(m.get("notes", [])) + [n for model in m["models"].values() for n in model.get("notes", [])]
    if notes:
        out += ["## Notes", ""] + [f"- {esc(n)}" for n in notes] + [""]
    out += ["## Per category", ""]
    for metric, table in m["by_category"].items():
        header = ["group"] + [esc(n) for n in m["models"]] + [f"{esc(c)} − baseline" for c in _candidates(m)]
        rows = []
        for group, d in table.items():
            rows.append([esc(group)] + [_fmt(_est(d["models"].get(n))) for n in m["models"]]
                        + [_fmt(_est(d["diff"].get(c)), signed=True) for c in _candidates(m)])
        out += [f"### {esc(metric)}", "", _md_table(header, rows), ""]
    for c in _candidates(m):
        comp = m["comparisons"][c]
        for score, b in comp["length_buckets"].items():
            out += [f"## {esc(score)} within length buckets: {esc(c)} vs baseline", "",
                    f"Overall gain {b['overall_gain']:+.3f}; within-bucket gain "
                    f"{(b['within_bucket_gain'] if b['within_bucket_gain'] is not None else float('nan')):+.3f} "
                    "(Singhal et al. 2023: a gain that vanishes within buckets came from length).", ""]
            rows = [[f"{r['low']:.0f}–{r['high']:.0f}", str(r["n_baseline"]), str(r["n_candidate"]),
                     "–" if r["baseline"] is None else f"{r['baseline']:.3f}",
                     "–" if r["candidate"] is None else f"{r['candidate']:.3f}",
                     "–" if r["gain"] is None else f"{r['gain']:+.3f}"] for r in b["buckets"]]
            out += [_md_table(["words", "n baseline", "n candidate", "baseline", "candidate", "gain"], rows), ""]
        for kind in ("regressions", "improvements"):
            out += [f"## Biggest {kind}: {esc(c)}", ""]
            rows = [[_md_cell(e["prompt"]), _md_cell(e["baseline"]), _md_cell(e["candidate"]),
                     f"{e['baseline_score']:.2f} → {e['candidate_score']:.2f}"] for e in comp[kind]]
            out.append(_md_table(["prompt", "baseline", "candidate", "score"], rows) if rows else "None.")
            out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- html

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .pass{color:#1a7f37;font-weight:bold} .fail{color:#c62828;font-weight:bold}
.skipped{color:#777} .up{color:#1a7f37} .down{color:#c62828} .warn{background:#fff4e5;padding:.5em 1em;border-left:4px solid #f0a500}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:12px;max-width:420px}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.examples td{width:33%}
"""


def _h_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are inserted as given: callers escape text cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _h_mark(cell: str) -> str:
    cell = html.escape(cell)
    return cell.replace("▲", '<span class="up">▲</span>').replace("▼", '<span class="down">▼</span>')


def _img(b64: Optional[str], alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def render_html(m: dict) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(m.get('title', ''))}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>{esc(m.get('title', 'Regression evaluation'))}</h1>"]
    items = [f"baseline: <b>{esc(m['baseline'])}</b> <code>{esc(m['models'][m['baseline']]['path'])}</code>"]
    items += [f"candidate: <b>{esc(c)}</b> <code>{esc(m['models'][c]['path'])}</code>" for c in _candidates(m)]
    items.append(f"KL reference: <code>{esc(str(m.get('reference')))}</code>; reward model: <code>{esc(str(m.get('reward_model')))}</code>")
    items.append(f"prompts: {m['prompts']['n']} in " + ", ".join(f"{esc(k)} ({v})" for k, v in m["prompts"]["sets"].items()))
    s = m["settings"]
    items.append(f"decoding: temperature {s['temperature']}, {s['max_new_tokens']} new tokens, seed {s['seed']}; "
                 f"{s['bootstrap_samples']} paired bootstrap resamples (95% CIs)")
    parts.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")

    if m.get("arms"):
        parts.append("<h2>Arms</h2><p>Mean [95% CI]; KL from the reference in nats per sequence.</p>")
        parts.append(_h_table(["arm", *ARM_METRICS], [[esc(c) for c in r] for r in arms_rows(m)]))
    parts.append("<h2>Verdict</h2>")
    rows = []
    for c in _candidates(m):
        comp = m["comparisons"][c]
        rows.append([esc(c), _gate_summary(comp, markdown=False),
                     esc(", ".join(comp["significant_regressions"]) or "none"),
                     esc(", ".join(comp["significant_improvements"]) or "none")])
    parts.append(_h_table(["candidate", "gates", "significant regressions", "significant improvements"], rows))

    parts.append("<h2>Headline</h2><p>Mean [95% CI]. ▲/▼: the paired CI of the difference excludes zero "
                 "(win rates: 0.5) in the better/worse direction.</p>")
    parts.append(_h_table([esc(h) for h in _headline_header(m)], [[_h_mark(c) for c in r] for r in headline_rows(m)]))

    for c in _candidates(m):
        comp = m["comparisons"][c]
        parts.append(f"<h2>Gates: {esc(c)}</h2>")
        rows = [[esc(g["gate"]), f'<span class="{g["status"]}">{g["status"].upper()}</span>', esc(g["evidence"])]
                for g in comp["gates"]]
        parts.append(_h_table(["gate", "status", "evidence"], rows) if rows else "<p>No gates.</p>")
        parts += [f'<p class="warn">{esc(w)}</p>' for w in comp["warnings"]]
    notes = list(m.get("notes", [])) + [n for model in m["models"].values() for n in model.get("notes", [])]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")

    parts.append("<h2>Plots</h2>")
    parts.append(_img(plot_vs_kl(m), "gold and reward against KL"))
    parts.append(_img(plot_overoptimisation(m), "reward over-optimisation"))
    parts.append(_img(plot_lengths(m), "length histograms"))
    for metric in m["by_category"]:
        if metric != "length":  # its table is enough; the histogram shows lengths
            parts.append(_img(plot_category(m, metric), f"{metric} per category"))

    parts.append("<h2>Per category</h2>")
    for metric, table in m["by_category"].items():
        header = ["group"] + [esc(n) for n in m["models"]] + [f"{esc(c)} − baseline" for c in _candidates(m)]
        rows = [[esc(g)] + [_fmt(_est(d["models"].get(n))) for n in m["models"]]
                + [_fmt(_est(d["diff"].get(c)), signed=True) for c in _candidates(m)] for g, d in table.items()]
        parts.append(f"<h3>{esc(metric)}</h3>" + _h_table(header, rows))

    for c in _candidates(m):
        comp = m["comparisons"][c]
        for score, b in comp["length_buckets"].items():
            within = b["within_bucket_gain"]
            parts.append(f"<h3>{esc(score)} within length buckets: {esc(c)} vs baseline</h3>"
                         f"<p>Overall gain {b['overall_gain']:+.3f}; within-bucket gain "
                         f"{(within if within is not None else float('nan')):+.3f}.</p>")
            rows = [[f"{r['low']:.0f}–{r['high']:.0f}", str(r["n_baseline"]), str(r["n_candidate"]),
                     "–" if r["baseline"] is None else f"{r['baseline']:.3f}",
                     "–" if r["candidate"] is None else f"{r['candidate']:.3f}",
                     "–" if r["gain"] is None else f"{r['gain']:+.3f}"] for r in b["buckets"]]
            parts.append(_h_table(["words", "n baseline", "n candidate", "baseline", "candidate", "gain"], rows))
        parts.append(f"<h2>Biggest regressions and improvements: {esc(c)}</h2>")
        for kind in ("regressions", "improvements"):
            rows = [[f"<pre>{esc(e['prompt'])}</pre><small>{esc(e['set'])} / {esc(e['category'])}</small>",
                     f"<pre>{esc(e['baseline'])}</pre><small>score {e['baseline_score']:.2f}</small>",
                     f"<pre>{esc(e['candidate'])}</pre><small>score {e['candidate_score']:.2f}</small>"]
                    for e in comp[kind]]
            parts.append(f"<h3>{kind.capitalize()}</h3>")
            parts.append(_h_table(["prompt", f"baseline: {esc(m['baseline'])}", f"candidate: {esc(c)}"], rows, "examples")
                         if rows else "<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(metrics: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "report.md", out / "report.html"
    for path, text in ((md, render_markdown(metrics)), (page, render_html(metrics))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return md, page
