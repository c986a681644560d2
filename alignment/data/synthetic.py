"""Clean generated instruction data, and known defects injected into it at known rates.

A data-quality check is only as good as its measured precision and recall, and those need
ground truth. `clean_sft_rows` makes varied, defect-free SFT rows (a generated vocabulary,
several task categories, some legitimate accented text so that encoding checks meet
non-ASCII text that is *not* damaged); `inject_defects` then damages a known subset and
returns, for every output row, the set of defect kinds it carries. The tests, the 100k-row
benchmark and the data-quality experiment all use it; users can use it to check their own
filters the same way.
"""

from __future__ import annotations

import copy
import random
from typing import Optional

from alignment.data.rows import sft_messages

CATEGORIES = ("explain", "summarize", "rewrite", "list", "compare", "plan")
_TEMPLATES = {
    "explain": "Explain in plain words how {a} relates to {b} when {c} {d}.",
    "summarize": "Summarize the following note about {a} and {b}: {text}",
    "rewrite": "Rewrite this sentence so that it sounds friendlier: {text}",
    "list": "List three ways to {a} a {b} without {c}.",
    "compare": "Compare {a} with {b} and say which suits {c} better.",
    "plan": "Draft a short plan to {a} the {b} before the {c} {d}.",
}
_ACCENTED = ("café", "naïve", "résumé", "déjà vu", "São Paulo", "Zürich", "piñata", "fiancée", "— as noted —")
_CONSONANTS, _VOWELS = "bcdfghjklmnprstvwz", "aeiou"

# Injectable kinds; each is a key of `rates` in inject_defects and a kind the report names.
INJECTABLE = (
    "exact_duplicate", "near_duplicate", "empty", "echo", "mojibake", "control_chars",
    "pii_email", "pii_phone", "pii_card", "pii_api_key", "contaminated",
)


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    vocab: set[str] = set()
    while len(vocab) < size:
        syllables = rng.randint(2, 4)
        vocab.add("".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables)))
    return sorted(vocab)


def _sentence(rng: random.Random, vocab: list[str], n: int) -> str:
    text = " ".join(rng.choice(vocab) for _ in range(n))
    return text[0].upper() + text[1:] + "."


def clean_sft_rows(n: int, seed: int = 0, fmt: str = "messages", vocab_size: int = 3000) -> list[dict]:
    """`n` defect-free SFT rows with a `category` column, each unlike every other."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, vocab_size)
    rows = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        slots = {k: rng.choice(vocab) for k in "abcd"}
        slots["text"] = _sentence(rng, vocab, rng.randint(8, 20))
        instruction = _TEMPLATES[category].format(**slots)
        response = " ".join(_sentence(rng, vocab, rng.randint(6, 14)) for _ in range(rng.randint(2, 4)))
        if rng.random() < 0.1:  # legitimate non-ASCII text, which encoding checks must leave alone
            response += f" See {rng.choice(_ACCENTED)}."
        if fmt == "messages":
            row = {"messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]}
        else:
            row = {"prompt": instruction, "completion": response}
        row["category"] = category
        row["id"] = f"clean-{seed}-{i}"
        rows.append(row)
    return rows


# --- the defects ---------------------------------------------------------------------------


def _get_response(row: dict) -> str:
    return sft_messages(row)[-1]["content"]


def _set_response(row: dict, text: str) -> None:
    if "messages" in row:
        row["messages"][-1]["content"] = text
    else:
        row["completion"] = text


def _instruction(row: dict) -> str:
    return [m["content"] for m in sft_messages(row) if m["role"] == "user"][-1]


def _pii(kind: str, rng: random.Random) -> str:
    if kind == "pii_email":
        return f"{rng.choice(['ana', 'li', 'omar', 'kim'])}.{rng.randint(10, 999)}@{rng.choice(['example.com', 'mail.org', 'corp.co.uk'])}"
    if kind == "pii_phone":
        return rng.choice(
            [
                f"+1 ({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
                f"{rng.randint(200, 999)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
                f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            ]
        )
    if kind == "pii_card":
        digits = [4] + [rng.randint(0, 9) for _ in range(14)]
        total = sum((d * 2 - 9 if d > 4 else d * 2) if i % 2 == 0 else d for i, d in enumerate(reversed(digits)))
        digits.append((10 - total % 10) % 10)  # Luhn check digit
        s = "".join(map(str, digits))
        return " ".join(s[i : i + 4] for i in range(0, 16, 4))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "sk-" + "".join(rng.choice(alphabet) for _ in range(40))


def _mojibake(text: str, rng: random.Random) -> str:
    """UTF-8 bytes read as Windows-1252: 'café' -> 'cafÃ©', the commonest damage on the web."""
    words = text.split(" ")
    at = rng.randrange(len(words))
    words.insert(at, rng.choice(["café", "naïve", "über", "fiancée", "—", "…"]))
    return " ".join(words).encode("utf-8").decode("cp1252", errors="ignore")


def _near_copy(row: dict, rng: random.Random) -> dict:
    """Same content, different surface: case, spacing and punctuation changed, one word repeated."""
    new = copy.deepcopy(row)
    response = _get_response(new)
    words = response.split(" ")
    at = rng.randrange(len(words))
    words.insert(at, words[at].lower())
    response = "  ".join(words).replace(".", " .", 1)
    _set_response(new, response.upper() if rng.random() < 0.3 else response)
    new["id"] = row.get("id", "row") + "-near"
    return new


def inject_defects(
    rows: list[dict],
    rates: dict[str, float],
    seed: int = 0,
    eval_prompts: Optional[list[str]] = None,
    keep_size: bool = False,
) -> tuple[list[dict], list[set[str]]]:
    """Damage SFT rows at the given rates; returns the rows and, per row, the kinds it carries.

    Rates are fractions of the clean input size. Each in-place defect (empty, echo, PII,
    encoding) hits its own disjoint subset of rows; duplicates and copied evaluation prompts
    are added as new rows placed after the row they copy, so that "the later one is the
    duplicate" holds. `contaminated` needs `eval_prompts`.

    `keep_size=True` makes the added rows *replace* good rows instead of lengthening the
    dataset: as many undamaged rows (never the original of a duplicate) are removed as were
    added, so the output has exactly the input's size. That is how defects arrive in real
    data (a scrape with duplicates has fewer distinct good rows, not more rows), and it keeps
    a dirty-vs-clean comparison from crediting the dirty set with extra training rows.
    """
    unknown = set(rates) - set(INJECTABLE)
    if unknown:
        raise ValueError(f"unknown defect kinds {sorted(unknown)}; injectable: {INJECTABLE}")
    rng = random.Random(seed)
    n = len(rows)
    rows = copy.deepcopy(rows)
    truth: list[set[str]] = [set() for _ in rows]
    free = list(range(n))
    rng.shuffle(free)

    def take(kind: str) -> list[int]:
        k = round(rates.get(kind, 0.0) * n)
        if k > len(free):
            raise ValueError(f"rates add up to more rows than the {n} given")
        return [free.pop() for _ in range(k)]

    for kind in ("empty", "echo", "mojibake", "control_chars", "pii_email", "pii_phone", "pii_card", "pii_api_key"):
        for i in take(kind):
            row, response = rows[i], _get_response(rows[i])
            if kind == "empty":
                _set_response(row, rng.choice(["", " ", "\n"]))
            elif kind == "echo":
                _set_response(row, _instruction(row))
            elif kind == "mojibake":
                _set_response(row, _mojibake(response, rng))
            elif kind == "control_chars":
                at = rng.randrange(len(response) + 1)
                _set_response(row, response[:at] + rng.choice(["\x00", "\x07", "\x1b", "\x0b"]) + response[at:])
            else:
                _set_response(row, f"{response} Reach me at {_pii(kind, rng)} for details.")
            truth[i].add(kind)

    # added rows: (sort key, row, kinds); key i+f with f in (0.5, 1) puts it after row i
    added: list[tuple[float, dict, set[str]]] = []
    for kind in ("exact_duplicate", "near_duplicate"):
        for i in take(kind):
            copy_ = copy.deepcopy(rows[i]) if kind == "exact_duplicate" else _near_copy(rows[i], rng)
            added.append((rng.uniform(i + 0.5, n), copy_, {kind}))
    k = round(rates.get("contaminated", 0.0) * n)
    answers = free[:] or list(range(n))  # undamaged rows lend their responses to leaked prompts
    if k:
        if not eval_prompts:
            raise ValueError("injecting 'contaminated' rows needs eval_prompts")
        for j in range(k):
            prompt = eval_prompts[rng.randrange(len(eval_prompts))] if k > len(eval_prompts) else eval_prompts[j]
            leaked = {"prompt": prompt, "completion": _get_response(rows[rng.choice(answers)]), "category": "leaked", "id": f"leak-{j}"}
            if "messages" in rows[0]:
                leaked = {"messages": sft_messages(leaked), "category": "leaked", "id": f"leak-{j}"}
            added.append((rng.uniform(0, n), leaked, {"contaminated"}))
    removed: set[int] = set()
    if keep_size:
        if len(added) > len(free):
            raise ValueError(f"keep_size: {len(added)} added rows but only {len(free)} undamaged rows to replace")
        removed = set(free[-len(added):]) if added else set()  # `free` is shuffled: a random subset
    keyed = [(float(i), row, kinds) for i, (row, kinds) in enumerate(zip(rows, truth)) if i not in removed] + added
    keyed.sort(key=lambda t: t[0])
    return [r for _, r, _ in keyed], [kinds for _, _, kinds in keyed]
