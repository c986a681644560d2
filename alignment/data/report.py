"""The data quality report: report.json for machines, report.html for people, findings.jsonl for rows.

Every figure is broken down by source and by task category, because a 2% defect rate overall
is often 30% in one source or one family. report.html embeds its plots (length histograms,
category and defect bars), so it can be mailed or attached to a run as one file.
findings.jsonl lists every flagged row with its findings; report.json keeps counts and a few
examples per kind, plus every contaminated row by name (those are few and each one matters).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from alignment.data.inspection import Inspection
from alignment.run_dir import write_json_atomic

# Kinds in the order the report lists them.
FINDING_ORDER = (
    "exact_duplicate", "near_duplicate", "contaminated", "empty", "trivial", "refusal", "echo",
    "mojibake", "control_chars", "pii_email", "pii_phone", "pii_card", "pii_api_key", "truncated",
    "identical_pair", "tie",
)
_LENGTH_NAMES = ("instruction", "response", "total")


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"count": 0}
    p = np.percentile(values, [50, 90, 99])
    return {
        "count": int(len(values)), "mean": round(float(values.mean()), 2), "min": int(values.min()),
        "p50": round(float(p[0]), 2), "p90": round(float(p[1]), 2), "p99": round(float(p[2]), 2), "max": int(values.max()),
    }


def entropy_bits(counts: list[int]) -> float:
    """Shannon entropy (bits) of the distribution the counts define."""
    total = sum(counts)
    return abs(-sum(c / total * math.log2(c / total) for c in counts if c)) if total else 0.0


def _balance(groups: list[str]) -> dict:
    counts = Counter(groups)
    n = len(groups)
    h = entropy_bits(list(counts.values()))
    return {
        "counts": {k: {"rows": v, "share": round(v / n, 4)} for k, v in counts.most_common()},
        "entropy_bits": round(h, 4),
        "normalized_entropy": round(h / math.log2(len(counts)), 4) if len(counts) > 1 else 1.0,
    }


def _finding(f) -> dict:
    return {"kind": f.kind, "field": f.field, "detail": f.detail, **({"against": f.against} if f.against else {})}


def summarize(inspection: Inspection, examples: int = 5) -> dict:
    """The report.json section for one inspected dataset."""
    n = inspection.n_rows
    names = [s["name"] for s in inspection.sources]
    row_source = [names[s] for s in inspection.source_index]
    cats = inspection.categories
    lengths = inspection.lengths
    tokens: dict[str, Any] = {"tokenizer": inspection.tokenizer, "max_length": inspection.max_length}
    for j, what in enumerate(_LENGTH_NAMES):
        tokens[what] = _stats(lengths[:, j])
    truncated = lengths[:, 2] > inspection.max_length
    tokens["truncated"] = {"rows": int(truncated.sum()), "rate": round(float(truncated.mean()), 4)}
    for axis, labels in (("by_source", row_source), ("by_category", cats)):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            groups[label].append(i)
        tokens[axis] = {
            label: {
                **{what: _stats(lengths[idx, j]) for j, what in enumerate(_LENGTH_NAMES)},
                "truncated": int(truncated[idx].sum()),
            }
            for label, idx in ((k, np.asarray(v)) for k, v in groups.items())
        }

    findings: dict[str, dict] = {}
    for pos, flagged in sorted(inspection.flagged.items()):
        for kind in dict.fromkeys(f.kind for f in flagged.findings):  # a row counts once per kind
            entry = findings.setdefault(kind, {"rows": 0, "by_source": Counter(), "by_category": Counter(), "examples": []})
            entry["rows"] += 1
            entry["by_source"][row_source[pos]] += 1
            entry["by_category"][cats[pos]] += 1
            if len(entry["examples"]) < examples:
                mine = [f for f in flagged.findings if f.kind == kind]
                entry["examples"].append({**flagged.as_dict(), "findings": [_finding(f) for f in mine]})
    ordered = {k: findings[k] for k in FINDING_ORDER if k in findings} | {
        k: v for k, v in findings.items() if k not in FINDING_ORDER
    }
    for entry in ordered.values():
        entry["rate"] = round(entry["rows"] / n, 4)
        entry["by_source"] = dict(entry["by_source"].most_common())
        entry["by_category"] = dict(entry["by_category"].most_common())

    contaminated = [
        {**inspection.flagged[pos].as_dict(), "findings": [_finding(f) for f in inspection.flagged[pos].findings if f.kind == "contaminated"]}
        for pos in inspection.rows_with("contaminated")
    ]
    section = {
        "kind": inspection.kind,
        "rows": n,
        "sources": inspection.sources,
        "seconds": round(inspection.seconds, 2),
        "rows_per_second": round(n / inspection.seconds, 1) if inspection.seconds else None,
        "tokens": tokens,
        "balance": {"by_source": _balance(row_source), "by_category": _balance(cats)},
        "findings": {k: {key: v[key] for key in ("rows", "rate", "by_source", "by_category", "examples")} for k, v in ordered.items()},
        "contamination": {
            "settings": inspection.settings.get("contamination"),
            "rows_by_eval_set": dict(Counter(f.against for pos in inspection.rows_with("contaminated")
                                             for f in inspection.flagged[pos].findings if f.kind == "contaminated").most_common()),
            "rows": contaminated,
        },
        "settings": inspection.settings,
    }
    if inspection.preference is not None:
        section["preference"] = inspection.preference
    return section


# --- plots ---------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(inspection: Inspection, section: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["name"] for s in inspection.sources]
    out = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for j, (ax, what) in enumerate(zip(axes, _LENGTH_NAMES)):
        values = inspection.lengths[:, j]
        bins = np.linspace(0, max(int(values.max()), 1) + 1, 40)
        for s, name in enumerate(names):
            ax.hist(values[inspection.source_index == s], bins=bins, histtype="step", linewidth=1.5, label=name)
        if what == "total":
            ax.axvline(inspection.max_length, color="red", linestyle="--", label="max_length")
        ax.set_title(f"{what} tokens")
        ax.set_xlabel("tokens")
    axes[0].set_ylabel("rows")
    axes[-1].legend(fontsize=8)
    out.append(("Token lengths by source", _png(fig)))

    cats = list(section["balance"]["by_category"]["counts"])[:30]
    if cats:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(cats) + 1.2))
        left = np.zeros(len(cats))
        row_cats = np.asarray(inspection.categories)
        for s, name in enumerate(names):
            mask = inspection.source_index == s
            counts = np.array([np.sum(row_cats[mask] == c) for c in cats], dtype=float)
            ax.barh(cats, counts, left=left, label=name)
            left += counts
        ax.invert_yaxis()
        ax.set_xlabel("rows")
        ax.legend(fontsize=8)
        out.append(("Rows per category (stacked by source)", _png(fig)))

    kinds = list(section["findings"])
    if kinds:
        fig, ax = plt.subplots(figsize=(9, 0.3 * len(kinds) * max(1, len(names) // 2) + 1.2))
        height = 0.8 / len(names)
        per_source_rows = {s["name"]: s["rows"] for s in inspection.sources}
        for s, name in enumerate(names):
            rates = [section["findings"][k]["by_source"].get(name, 0) / max(per_source_rows[name], 1) for k in kinds]
            ax.barh(np.arange(len(kinds)) + s * height, rates, height=height, label=name)
        ax.set_yticks(np.arange(len(kinds)) + 0.4 - height / 2, kinds)
        ax.invert_yaxis()
        ax.set_xlabel("share of the source's rows")
        ax.legend(fontsize=8)
        out.append(("Findings by source", _png(fig)))
    return out


# --- writing -------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}code{background:#f6f6f6}
.bad{color:#b00}"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _section_html(title: str, section: dict, plots: list[tuple[str, str]]) -> str:
    parts = [f"<h2>{html.escape(title)}: {section['rows']} {section['kind']} rows</h2>"]
    parts.append(_table(["source", "path", "rows"], [[s["name"], s["path"], s["rows"]] for s in section["sources"]]))
    tok = section["tokens"]
    parts.append(f"<h3>Token lengths ({html.escape(str(tok['tokenizer']))}, max_length {tok['max_length']})</h3>")
    parts.append(
        _table(
            ["", "mean", "p50", "p90", "p99", "max"],
            [[w, *(tok[w].get(k, "") for k in ("mean", "p50", "p90", "p99", "max"))] for w in _LENGTH_NAMES],
        )
    )
    parts.append(f"<p>Rows that would be truncated: <b>{tok['truncated']['rows']}</b> ({tok['truncated']['rate']:.2%})</p>")
    parts.append("<h3>Findings</h3>")
    if section["findings"]:
        parts.append(
            _table(
                ["finding", "rows", "rate", "by source", "by category (top 5)"],
                [
                    [k, v["rows"], f"{v['rate']:.2%}", ", ".join(f"{s}: {c}" for s, c in v["by_source"].items()),
                     ", ".join(f"{s}: {c}" for s, c in list(v["by_category"].items())[:5])]
                    for k, v in section["findings"].items()
                ],
            )
        )
    else:
        parts.append("<p>No findings.</p>")
    for name, balance in section["balance"].items():
        parts.append(
            f"<h3>Balance {name.replace('_', ' ')} (entropy {balance['entropy_bits']} bits, "
            f"normalized {balance['normalized_entropy']})</h3>"
        )
        parts.append(_table(["", "rows", "share"], [[k, v["rows"], f"{v['share']:.2%}"] for k, v in balance["counts"].items()]))
    if "preference" in section:
        pref = section["preference"]
        rate = pref["chosen_longer_rate"]
        parts.append("<h3>Comparisons</h3>")
        parts.append(
            _table(
                ["pairs", "ties", "identical pairs", "chosen is longer"],
                [[pref["pairs"], pref["ties"], pref["identical_pairs"], "n/a" if rate is None else f"{rate:.1%}"]],
            )
        )
        if pref["annotators"]:
            parts.append(_table(["annotator", "rows"], [[k, v] for k, v in pref["annotators"].items()]))
    contaminated = section["contamination"]["rows"]
    checked = (section["contamination"]["settings"] or {}).get("eval_prompts", 0)
    parts.append(f"<h3>Contamination: {len(contaminated)} rows overlap one of {checked} evaluation prompts</h3>")
    by_set = section["contamination"]["rows_by_eval_set"]
    if by_set:
        parts.append(_table(["evaluation set", "training rows overlapping it"], [[k, v] for k, v in by_set.items()]))
    if contaminated:
        parts.append(
            _table(
                ["source", "row", "id", "overlaps"],
                [[c["source"], c["row"], c.get("id", ""), "; ".join(f["detail"] for f in c["findings"])] for c in contaminated[:200]],
            )
        )
    for caption, png in plots:
        parts.append(f"<h3>{html.escape(caption)}</h3><img alt='{html.escape(caption)}' src='data:image/png;base64,{png}'>")
    return "\n".join(parts)


def write_report(
    report: dict, inspections: Optional[dict[str, Inspection]], out_dir: str | Path, extra_html: str = "", plots: bool = True
) -> tuple[Path, Path]:
    """Write report.json, report.html and findings.jsonl into `out_dir`; returns the two report paths.

    Without `inspections` (re-mixing an earlier clean), the HTML is rebuilt from report.json
    alone, without plots, and findings.jsonl is left as it was.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    write_json_atomic(json_path, report)
    if inspections is not None:
        with open(out / "findings.jsonl.tmp", "w", encoding="utf-8") as f:
            for group, inspection in inspections.items():
                for _, flagged in sorted(inspection.flagged.items()):
                    f.write(json.dumps({"dataset": group, **flagged.as_dict()}, ensure_ascii=False) + "\n")
        (out / "findings.jsonl.tmp").replace(out / "findings.jsonl")
    body = [f"<h1>Data report{': ' + html.escape(report['recipe']) if report.get('recipe') else ''}</h1>"]
    for group, section in report.get("datasets", {}).items():
        inspection = (inspections or {}).get(group)
        drawn = _plots(inspection, section) if plots and inspection is not None else []
        body.append(_section_html(group, section, drawn))
    body.append(extra_html)
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>Data report</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(html_path)
    return json_path, html_path


def text_summary(report: dict, out_dir: Optional[Path] = None) -> str:
    """The few lines `rlhf data inspect` prints."""
    lines = []
    for group, section in report["datasets"].items():
        tok = section["tokens"]
        lines.append(
            f"{group}: {section['rows']} {section['kind']} rows from {len(section['sources'])} source(s) "
            f"in {section['seconds']}s ({section['rows_per_second']} rows/s)"
        )
        lines.append(
            f"  tokens (total): mean {tok['total'].get('mean')}, p99 {tok['total'].get('p99')}, max {tok['total'].get('max')}; "
            f"truncated at {tok['max_length']}: {tok['truncated']['rows']}"
        )
        cat = section["balance"]["by_category"]
        lines.append(f"  categories: {len(cat['counts'])}, normalized entropy {cat['normalized_entropy']}")
        for kind, v in section["findings"].items():
            lines.append(f"  {kind:<16} {v['rows']:>7} rows ({v['rate']:.2%})")
        if "preference" in section:
            pref = section["preference"]
            rate = pref["chosen_longer_rate"]
            lines.append(
                f"  pairs {pref['pairs']}, ties {pref['ties']}, identical {pref['identical_pairs']}, "
                f"chosen longer {'n/a' if rate is None else f'{rate:.1%}'}, annotators {len(pref['annotators'])}"
            )
    if out_dir is not None:
        lines.append(f"report: {Path(out_dir) / 'report.html'} (and report.json, findings.jsonl)")
    return "\n".join(lines)
