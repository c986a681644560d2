"""Comparisons as the reward model trains on them: loaded, checked, counted, tokenized.

Sources are preference files, ranking files (each ranking of K expands to its C(K,2) pairs
weighted 1/C(K,2), `alignment.data.rows.expand_ranking`) and the label store's export.

What happens to judgments that are not a strict preference (the store exports them with
`label: "tie"` or `label: "both_bad"`):
- `reward.ties: exclude` (default): they are dropped, and counted. A tie says nothing about
  which response is better, and "both bad" says both are below some bar, not which is
  lower; under the Bradley–Terry model neither orders the pair.
- `reward.ties: half`: both kinds enter the loss with target ½ (see reward/bradley_terry.py),
  which pulls the two rewards together. "Both bad" is treated as a tie on purpose: it carries
  no ordering, and its absolute information ("bad") has no place in a pairwise loss.

Rows that cannot be used are dropped and counted by reason, never silently lost: an empty
response or chosen identical to rejected (the check every stage that reads pairs shares,
`alignment.data.pairs`), or a conversation longer than `model.max_length` tokens (a truncated
response would be judged on text the labeler did not see). Held-out rows are split by
prompt, so that no prompt has pairs on both sides of the split.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from alignment.data.loading import load_rows
from alignment.data.pairs import PairDrops, pair_problem
from alignment.data.rows import to_preference_rows
from alignment.errors import DataError

NOT_PREFERENCES = ("tie", "both_bad")


@dataclass
class Comparisons:
    """Usable comparison rows plus an account of everything dropped."""

    rows: list[dict]
    dropped: Counter = field(default_factory=Counter)
    sources: list[str] = field(default_factory=list)
    pair_drops: PairDrops = field(default_factory=PairDrops)  # degenerate pairs, per file

    def report(self) -> str:
        if not self.dropped:
            return f"{len(self.rows)} comparisons, none dropped"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.dropped.most_common())
        return f"{len(self.rows)} comparisons; dropped {sum(self.dropped.values())}: {parts}"


def read_comparison_file(path: str) -> list[dict]:
    """Preference rows from a preference or ranking file (rankings expanded to weighted pairs)."""
    rows, kind = load_rows(path)
    if kind not in ("preference", "ranking"):
        raise DataError(f"{path}: expected preference rows (prompt, chosen, rejected) or ranking rows "
                        f"(prompt, responses, ranking), got {kind} rows")
    return [dict(r, source=str(path)) for r in to_preference_rows(rows, kind)]


def prepare(rows: Iterable[dict], ties: str = "exclude", use_margin: bool = True) -> Comparisons:
    """Check each preference row and give it a target, weight and margin (or count its drop)."""
    out, dropped = [], Counter()
    for row in rows:
        label = row.get("label") or "preference"
        if label in NOT_PREFERENCES:
            if ties == "exclude":
                dropped[f"{label} (reward.ties=exclude)"] += 1
                continue
            target, margin = 0.5, 0.0
        elif label == "preference":
            target, margin = 1.0, float(row.get("margin") or 0.0) if use_margin else 0.0
        else:
            dropped[f"unknown label {label!r}"] += 1
            continue
        problem = pair_problem(row)
        if problem is not None:
            dropped[problem] += 1
            continue
        weight = float(row.get("weight", 1.0) if row.get("weight") is not None else 1.0)
        if weight <= 0:
            dropped["weight <= 0"] += 1
            continue
        out.append({**row, "target": target, "margin": margin, "weight": weight})
    return Comparisons(out, dropped)


def prompt_key(prompt) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def split_by_prompt(rows: list[dict], eval_fraction: float, seed: int, origin: str = "",
                    account: str = "") -> tuple[list[dict], list[dict]]:
    """(train, eval): a prompt's rows all go to one side, chosen by a seeded hash of the prompt.

    `origin` (the files) and `account` (what was kept and dropped) go into the error, so that
    a file too small to split says which file and where its rows went.
    """
    if eval_fraction <= 0:
        return rows, []
    train, held = [], []
    for row in rows:
        digest = hashlib.sha256(f"{seed}\x1f{prompt_key(row['prompt'])}".encode()).digest()
        (held if int.from_bytes(digest[:8], "little") / 2**64 < eval_fraction else train).append(row)
    if not train or not held:
        where = f"{origin}: " if origin else ""
        kept = f" ({account})" if account else ""
        raise DataError(
            f"{where}cannot hold out {eval_fraction:.0%} of {len({prompt_key(r['prompt']) for r in rows})} prompts{kept} "
            "and keep both splits non-empty; add comparisons or lower reward.eval_fraction (0: hold out none)"
        )
    return train, held


def tokenize(comparisons: Comparisons, tokenizer, max_length: int | None, max_group: int = 16) -> list[dict]:
    """Training examples: all comparisons of one prompt in one example (InstructGPT).

    Each distinct (prompt, response) is encoded once and scored once per step, however many
    pairs and labelers it appears in: with K responses and all C(K,2) pairs judged by several
    labelers that is a fraction of the forward passes of one-pair-per-example training, and
    it is what Ouyang et al. (2022) did. An example is `{"input_ids": [seq...], "pairs":
    [[chosen_index, rejected_index]...], "margin", "weight", "target"}`; a prompt with more
    than `max_group` distinct responses is split over several examples. Over-long
    conversations are dropped (with their pairs) and counted.
    """
    from reward.encoding import encode_conversations  # torch only when pairs are tokenized, not to read them

    groups: dict[str, list[dict]] = {}
    for row in comparisons.rows:
        groups.setdefault(prompt_key(row["prompt"]), []).append(row)
    texts: dict[tuple[str, str], list[int]] = {}
    for key, rows in groups.items():
        responses = list(dict.fromkeys(t for r in rows for t in (r["chosen"], r["rejected"])))
        ids = encode_conversations(tokenizer, [rows[0]["prompt"]] * len(responses), responses)
        texts.update({(key, t): s for t, s in zip(responses, ids)})
    kept, examples = [], []
    for key, rows in groups.items():
        example = _new_example()
        index: dict[str, int] = {}
        for row in rows:
            c, r = texts[(key, row["chosen"])], texts[(key, row["rejected"])]
            if max_length and max(len(c), len(r)) > max_length:
                comparisons.dropped[f"longer than max_length={max_length} tokens"] += 1
                continue
            new = [t for t in (row["chosen"], row["rejected"]) if t not in index]
            if len(index) + len(new) > max_group:
                examples.append(example)
                example, index = _new_example(), {}
            for t in (row["chosen"], row["rejected"]):
                if t not in index:
                    index[t] = len(example["input_ids"])
                    example["input_ids"].append(texts[(key, t)])
            example["pairs"].append([index[row["chosen"]], index[row["rejected"]]])
            for field_ in ("margin", "weight", "target"):
                example[field_].append(row[field_])
            kept.append(row)
        if example["pairs"]:
            examples.append(example)
    comparisons.rows = kept
    return examples


def _new_example() -> dict:
    return {"input_ids": [], "pairs": [], "margin": [], "weight": [], "target": []}


def categories(row: dict, by: str | None = None) -> list[str]:
    """The categories a comparison counts in for per-category accuracy.

    `by` names a column (a top-level key, or `metadata.<key>`). Without it, suite rows count in
    their task family and in each of their constraint types; other rows in no category.
    """
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    if by:
        value = meta.get(by[len("metadata."):]) if by.startswith("metadata.") else row.get(by, meta.get(by))
        return [] if value is None else [f"{by}={value}"]
    out = []
    if "family" in meta:
        out.append(f"family={meta['family']}")
    for c in meta.get("constraints") or []:
        if isinstance(c, dict) and "type" in c:
            out.append(f"constraint={c['type']}")
    return out
