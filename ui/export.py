"""Export judgments as the reward stage's input rows (docs/contracts.md, "Data rows").

Pairwise campaigns give preference rows:
    {"prompt", "chosen", "rejected", "label": "preference", "labeler" | "labelers", ...}
Ranking campaigns give ranking rows:
    {"prompt", "responses", "ranking" (indices into responses, best first; partial allowed), ...}
Every other key is metadata the reward stage carries through: "campaign", "item_id", the
item's "metadata", the policies and checkpoints of the responses, and per judgment
"judgment_id", "rationale", "time_spent_s", the shown position of the chosen response, and
who judged: "labeler_kind" ("human", "simulated" or "ai") and an AI judge's "confidence".

Aggregation:
- "all" (default): one row per judgment, so every individual vote reaches the reward model
  (repeated pairs weigh by how many labelers judged them).
- "majority": one row per item. Pairwise: the candidate with strictly the most votes wins,
  "agreement" is its share of the votes and "labelers" lists everyone who voted; an item
  whose top votes are drawn gives no row. Ranking: candidates ordered by mean Borda score
  (unranked candidates share the remaining scores), "agreement" is the labelers' pairwise
  agreement on that item's candidate pairs.

Every row says whether its item was a gold item ("is_gold") and what kind of judgment it
comes from ("judgment_kind": "label" for a labeler's vote, "adjudication" for a lead's final
label). An adjudicated item is exported as its adjudication under "majority" (the votes
still listed in "labelers"); under "all" its votes are written as usual and the
adjudication as one more row, so that a consumer can prefer it.

Ties and "both bad" are not preferences, so by default they are left out of pair rows. With
include_ties they are written as rows whose "label" is "tie" or "both_bad" (chosen/rejected
then hold the two responses in import order); the reward stage must filter or use them by
that field.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from alignment.errors import UserError
from ui.agreement import _ranking_units, pairwise_agreement

FORMATS = ("jsonl", "parquet", "datasets")


def build_rows(campaign: str, mode: str, judgments: list[dict], items: dict, prompts: dict, cands: dict,
               aggregation: str = "all", include_ties: bool = False,
               adjudications: dict[int, dict] | None = None) -> list[dict]:
    """Export rows for the kept judgments, and for adjudicated items (`adjudications`: item
    id -> the current adjudication, see LabelService._adjudications)."""
    adjudications = adjudications or {}
    by_item: dict[int, list[dict]] = defaultdict(list)
    for j in judgments:
        by_item[j["item_id"]].append(j)
    rows = []
    for item_id in sorted(set(by_item) | set(adjudications)):
        item = items[item_id]
        prompt = prompts[item.prompt_id]
        base = {"prompt": json.loads(prompt.prompt_json)}
        extra = {"campaign": campaign, "item_id": item_id, "metadata": json.loads(prompt.metadata_json),
                 "is_gold": bool(item.is_gold)}
        ids = json.loads(item.candidate_ids_json)
        js = by_item.get(item_id, [])
        adj = adjudications.get(item_id)
        if adj is not None:
            voters = {"labelers": sorted(j["user"] for j in js), "votes": len(js)}
            if aggregation == "all":
                rows += _vote_rows(mode, base, extra, ids, js, cands, include_ties)
            rows += _adjudication_rows(mode, base, {**extra, **voters}, ids, adj, cands, include_ties)
        elif js:
            rows += _vote_rows(mode, base, extra, ids, js, cands, include_ties, aggregation)
    return rows


def _vote_rows(mode, base, extra, ids, js, cands, include_ties, aggregation="all") -> list[dict]:
    if mode == "pairwise":
        return _pair_rows(base, extra, ids, js, cands, aggregation, include_ties)
    return _ranking_rows(base, extra, ids, js, cands, aggregation)


def _adjudication_rows(mode, base, extra, ids, adj, cands, include_ties) -> list[dict]:
    """The lead's final label as one row, in the shape of a vote's row."""
    meta = {**extra, "labeler": adj["user"], "judgment_kind": "adjudication", "adjudication_id": adj["id"],
            "rationale": adj["rationale"]}
    if mode != "pairwise":
        index = {c: i for i, c in enumerate(ids)}
        return [{**base, "responses": [cands[c].text for c in ids], "ranking": [index[c] for c in adj["ranking"]],
                 **meta, "policies": [cands[c].policy for c in ids], "checkpoints": [cands[c].checkpoint for c in ids]}]
    if adj["winner"] is not None:
        w, l = cands[adj["winner"]], cands[adj["loser"]]
        return [{**_pair(base, w, l, "preference"), **meta, **_source("chosen", w), **_source("rejected", l)}]
    if include_ties:
        first, second = cands[ids[0]], cands[ids[1]]
        return [{**_pair(base, first, second, adj["label"]), **meta, **_source("chosen", first),
                 **_source("rejected", second)}]
    return []


def _source(prefix: str, c) -> dict:
    return {f"{prefix}_policy": c.policy, f"{prefix}_checkpoint": c.checkpoint}


def _pair(base: dict, chosen, rejected, label: str) -> dict:
    return {**base, "chosen": chosen.text, "rejected": rejected.text, "label": label}


def _pair_rows(base, extra, ids, js, cands, aggregation, include_ties) -> list[dict]:
    first, second = cands[ids[0]], cands[ids[1]]
    if aggregation == "all":
        out = []
        for j in js:
            if j["winner"] is not None:
                w, l = cands[j["winner"]], cands[j["loser"]]
                row = _pair(base, w, l, "preference")
                pos = "A" if j["shown"][0] == j["winner"] else "B"
            elif include_ties:
                w, l, pos = first, second, None
                row = _pair(base, w, l, j["choice"])
            else:
                continue
            out.append({**row, "labeler": j["user"], "labeler_kind": j.get("kind", "human"), **extra,
                        "judgment_kind": "label", "judgment_id": j["id"], "confidence": j.get("confidence"),
                        "chosen_position": pos,
                        "rationale": j["rationale"], "time_spent_s": j["time_spent_s"],
                        **_source("chosen", w), **_source("rejected", l)})
        return out
    votes = Counter(f"c{j['winner']}" if j["winner"] is not None else j["choice"] for j in js)
    (top, n_top), *rest = votes.most_common() + [(None, 0)]
    if rest and rest[0][1] == n_top:
        return []  # no strict majority
    meta = {"labelers": sorted(j["user"] for j in js), "agreement": n_top / len(js), "votes": len(js), **extra,
            "judgment_kind": "label"}
    if top.startswith("c"):
        winner = int(top[1:])
        w, l = cands[winner], cands[ids[1] if ids[0] == winner else ids[0]]
        return [{**_pair(base, w, l, "preference"), **meta, **_source("chosen", w), **_source("rejected", l)}]
    if include_ties:
        return [{**_pair(base, first, second, top), **meta, **_source("chosen", first), **_source("rejected", second)}]
    return []


def _ranking_rows(base, extra, ids, js, cands, aggregation) -> list[dict]:
    index = {c: i for i, c in enumerate(ids)}
    common = {**base, "responses": [cands[c].text for c in ids]}
    sources = {"policies": [cands[c].policy for c in ids], "checkpoints": [cands[c].checkpoint for c in ids]}
    if aggregation == "all":
        return [{**common, "ranking": [index[c] for c in j["ranking"]], "labeler": j["user"],
                 "labeler_kind": j.get("kind", "human"), **extra, "judgment_kind": "label", "judgment_id": j["id"], "rationale": j["rationale"], "time_spent_s": j["time_spent_s"], **sources}
                for j in js]
    k = len(ids)
    score: dict[int, float] = defaultdict(float)
    for j in js:
        ranked = j["ranking"]
        for pos, c in enumerate(ranked):
            score[c] += k - 1 - pos
        rest = [c for c in ids if c not in ranked]
        for c in rest:  # unranked share the scores left: mean of 0 .. len(rest)-1
            score[c] += (len(rest) - 1) / 2
    order = sorted(ids, key=lambda c: (-score[c], index[c]))
    units = defaultdict(dict)
    for j in js:
        for pair, label in _ranking_units(j).items():
            units[pair][j["user"]] = label
    agreement, _ = pairwise_agreement(units)
    return [{**common, "ranking": [index[c] for c in order], "labelers": sorted(j["user"] for j in js),
             "agreement": agreement, "votes": len(js), **extra, "judgment_kind": "label", **sources}]


def write_rows(rows: list[dict], path: Path, format: str | None = None) -> None:
    """Write with alignment.data.files.write_rows (atomic); the format follows the suffix
    (.jsonl, .parquet, none: a `datasets` folder) and must agree with `format` if given."""
    from alignment.data.files import write_rows as write

    if not rows:
        raise UserError("nothing to export: no judgments left after the filters")
    suffix_format = {".jsonl": "jsonl", ".parquet": "parquet", "": "datasets"}.get(path.suffix)
    if suffix_format is None or (format is not None and format != suffix_format):
        raise UserError(f"export path {path}: use a .jsonl or .parquet file, or a folder name without a suffix "
                        f"for a datasets folder{f' (asked for {format})' if format else ''}")
    if suffix_format != "jsonl":
        # Parquet cannot store a struct without fields: an empty metadata object becomes null.
        # Columns are the union of the rows' keys (an adjudication's row has no time spent, a
        # vote's no adjudication id): a key a row lacks is null there.
        keys = list(dict.fromkeys(k for row in rows for k in row))
        rows = [{k: (None if row.get(k) == {} else row.get(k)) for k in keys} for row in rows]
    try:
        write(rows, path)
    except (TypeError, ValueError, NotImplementedError) as err:  # pyarrow cannot type mixed columns
        raise UserError(f"cannot write {path} as {suffix_format}: {err}; export as .jsonl instead") from err
