"""Row-level defects: bad responses, damaged text, and personal data.

Each detector looks at one row and says what is wrong and in which field. The same
detectors serve the report (`rlhf data inspect`) and the filters (`rlhf data clean`), so
what the report counts is exactly what a filter would remove.

- Responses: empty; trivial (no letter or digit, or a filler like "ok"); refusal-only (a
  short answer that is nothing but "I'm sorry, I can't..."); echo (the response repeats
  the instruction).
- Encoding: mojibake, i.e. UTF-8 decoded as Windows-1252 or Latin-1 ("cafÃ©"), found and
  undone by `ftfy` (Speer 2019), plus the replacement character U+FFFD that no tool can
  undo; and C0 control characters other than tab and newlines.
- PII: e-mail addresses, phone numbers, card numbers that pass the Luhn check, and
  API-key-like tokens. Findings carry a masked excerpt, never the value itself, so that the
  report does not spread what it warns about.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from difflib import SequenceMatcher

import ftfy

from alignment.data.rows import Kind
from alignment.data.texts import normalize, row_text, text_fields, words

RESPONSE_DEFECTS = ("empty", "trivial", "refusal", "echo")
ENCODING_DEFECTS = ("mojibake", "control_chars")
PII_KINDS = ("email", "phone", "card", "api_key")
ALL_DEFECTS = RESPONSE_DEFECTS + ENCODING_DEFECTS + tuple(f"pii_{k}" for k in PII_KINDS)


@dataclass(frozen=True)
class Finding:
    kind: str
    """One of ALL_DEFECTS."""
    field: str
    """Where in the row: 'completion', 'messages[2].content', 'chosen', ..."""
    detail: str = ""
    """A short, masked explanation for the report and the manifest."""
    against: str = ""
    """What the row was compared with, when that matters: the evaluation set of a contamination."""


# --- responses -----------------------------------------------------------------------------

FILLERS = frozenset(
    {"ok", "okay", "k", "sure", "n a", "na", "null", "nan", "undefined", "todo", "tbd", "test", "asdf", "lorem ipsum", "xxx"}
)
_REFUSAL = re.compile(
    r"^(?:i'?m sorry|i am sorry|sorry|unfortunately|as an ai|i'?m afraid)?[ ,.!]*"
    r"(?:but )?(?:i|as an ai[^,.]*,? i)\s*(?:can ?not|can'?t|won'?t|will not|am unable to|'?m unable to|am not able to|"
    r"must decline|do not feel comfortable|don'?t feel comfortable)\b"
)
REFUSAL_MAX_WORDS = 30


def is_trivial(text: str) -> bool:
    """No letter or digit at all, or nothing but a filler word."""
    tokens = words(text)
    return not tokens or " ".join(tokens) in FILLERS


def is_refusal(text: str) -> bool:
    """A short response that is only a refusal (long answers that start politely are not)."""
    norm = normalize(text).replace("\u2019", "'")
    return len(norm.split()) <= REFUSAL_MAX_WORDS and bool(_REFUSAL.match(norm))


def echo_similarity(instruction: str, response: str) -> float:
    """Word-level similarity in [0, 1] of response and instruction (1 = the same words in order).

    0.0 when it is certainly below 0.5: lengths too different, or too few words in common
    (SequenceMatcher's quick_ratio bound, counted here before the matcher indexes the words).
    """
    a, b = words(instruction), words(response)
    if not a or not b:
        return 0.0
    if not 0.6 <= len(b) / len(a) <= 1.67:  # a much shorter or longer response cannot be an echo
        return 0.0
    common = sum((Counter(a) & Counter(b)).values())  # matched words are at most the shared multiset
    if 2.0 * common / (len(a) + len(b)) < 0.5:
        return 0.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def response_defects(instruction: str, field: str, response: str, echo_threshold: float = 0.9) -> list[Finding]:
    if not response.strip():
        return [Finding("empty", field, "no text")]
    if is_trivial(response):
        return [Finding("trivial", field, repr(response[:20]))]
    out = []
    if is_refusal(response):
        out.append(Finding("refusal", field, repr(response[:40])))
    similarity = echo_similarity(instruction, response)
    if similarity >= echo_threshold:
        out.append(Finding("echo", field, f"{similarity:.2f} similar to the instruction"))
    return out


# --- encoding ------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def has_mojibake(text: str) -> bool:
    """Text that ftfy would re-decode, or that holds U+FFFD (bytes already lost)."""
    if text.isascii():
        return False
    return "\ufffd" in text or ftfy.fix_encoding(text) != text


def has_control_chars(text: str) -> bool:
    return bool(_CONTROL.search(text))


def repair_encoding(text: str) -> str:
    """Undo mojibake with ftfy and delete control characters; U+FFFD cannot be undone and stays."""
    if not text.isascii():
        text = ftfy.fix_encoding(text)
    return _CONTROL.sub("", text)


def encoding_defects(field: str, text: str) -> list[Finding]:
    out = []
    if has_mojibake(text):
        out.append(Finding("mojibake", field, "unrecoverable U+FFFD" if "\ufffd" in text else "ftfy re-decodes it"))
    if has_control_chars(text):
        out.append(Finding("control_chars", field, f"{len(_CONTROL.findall(text))} control characters"))
    return out


# --- PII -----------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?\d{2,4}){2,4}"  # international, with a '+'
    r"|(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"  # North American, with separators
    r")(?![\w-])"
)
_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{20,}(?![\w-])")
_KEY_PREFIX = re.compile(r"sk-|AKIA[0-9A-Z]{16}$|gh[pousr]_|xox[abprs]-|AIza|hf_|glpat-")
_DIGIT = re.compile(r"\d")
_LOWER, _UPPER = re.compile(r"[a-z]"), re.compile(r"[A-Z]")


def is_api_key_like(token: str) -> bool:
    """A known secret prefix (sk-, AKIA, ghp_, xoxb-, AIza, hf_, glpat-), or 32+ characters mixing
    digits, lower and upper case: the shape of a random secret, not of a word or a hex digest."""
    if _KEY_PREFIX.match(token):
        return True
    return len(token) >= 32 and all(p.search(token) for p in (_DIGIT, _LOWER, _UPPER))


REDACTION = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]", "api_key": "[API_KEY]"}


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mask(value: str) -> str:
    return value[:2] + "***" + value[-2:] if len(value) > 6 else "***"


def pii_spans(text: str, kinds: tuple[str, ...] = PII_KINDS) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every PII-looking span, non-overlapping, in text order.

    Cards are matched before phones and keys, so that a 16-digit card number is not also
    reported as a phone number.
    """
    spans: list[tuple[int, int, str]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _ in spans)

    if _DIGIT.search(text):
        if "card" in kinds:
            for m in _CARD.finditer(text):
                digits = re.sub(r"\D", "", m.group())
                if 13 <= len(digits) <= 19 and luhn_valid(digits):
                    spans.append((m.start(), m.end(), "card"))
        if "phone" in kinds:
            for m in _PHONE.finditer(text):
                n_digits = sum(ch.isdigit() for ch in m.group())
                if 10 <= n_digits <= 15 and free(m.start(), m.end()):
                    spans.append((m.start(), m.end(), "phone"))
    if "email" in kinds and "@" in text:
        spans += [(m.start(), m.end(), "email") for m in _EMAIL.finditer(text) if free(m.start(), m.end())]
    if "api_key" in kinds:
        spans += [
            (m.start(), m.end(), "api_key")
            for m in _TOKEN.finditer(text)
            if is_api_key_like(m.group()) and free(m.start(), m.end())
        ]
    return sorted(spans)


def pii_defects(field: str, text: str, kinds: tuple[str, ...] = PII_KINDS) -> list[Finding]:
    return [Finding(f"pii_{kind}", field, _mask(text[a:b])) for a, b, kind in pii_spans(text, kinds)]


def redact_pii(text: str, kinds: tuple[str, ...] = PII_KINDS) -> str:
    """Replace each PII span by a placeholder such as [EMAIL]."""
    for a, b, kind in reversed(pii_spans(text, kinds)):
        text = text[:a] + REDACTION[kind] + text[b:]
    return text


# --- a whole row ---------------------------------------------------------------------------


def best_responses(row: dict, kind: Kind) -> list[tuple[str, str, str]]:
    """(instruction, field, response) for the responses that should be good.

    A bad rejected or low-ranked response is what a comparison is for, so comparisons are
    judged by their chosen (top-ranked) response only.
    """
    text = row_text(row, kind)
    best = {"preference": "chosen", "ranking": f"responses[{row['ranking'][0]}]" if kind == "ranking" else ""}
    return [(text.instruction, f, r) for f, r in text.responses if kind not in best or f == best[kind]]


def row_response_defects(row: dict, kind: Kind, echo_threshold: float = 0.9) -> list[Finding]:
    return [f for args in best_responses(row, kind) for f in response_defects(*args, echo_threshold=echo_threshold)]


def row_defects(row: dict, kind: Kind, echo_threshold: float = 0.9) -> list[Finding]:
    """Every defect of one row: response checks on the responses, text checks on every field."""
    out = row_response_defects(row, kind, echo_threshold)
    for field, value in text_fields(row, kind):
        out += encoding_defects(field, value)
        out += pii_defects(field, value)
    return out
