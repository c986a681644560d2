"""Hand-checked cases for each detector, the contamination index, and near-duplicate detection."""

from __future__ import annotations

import pytest

from alignment.data.contamination import ContaminationIndex, EvalPrompt
from alignment.data.dedup import ExactDeduper, NearDeduper, shingles
from alignment.data.defects import (
    echo_similarity,
    has_control_chars,
    has_mojibake,
    is_refusal,
    is_trivial,
    luhn_valid,
    pii_spans,
    redact_pii,
    repair_encoding,
    row_defects,
)
from alignment.data.texts import map_text_fields, row_text, text_fields


def kinds(text: str) -> list[str]:
    return [k for _, _, k in pii_spans(text)]


def test_luhn_by_hand():
    # 79927398713 is the textbook example: doubled digits 1,8,9,4,7 -> 2,16->7,18->9,8,14->5; sum 70
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_pii_kinds_and_what_is_not_pii():
    assert kinds("write to ana.12@example.com today") == ["email"]
    assert kinds("call +1 (555) 123-4567 or 555-123-4567 or +44 20 7946 0958") == ["phone"] * 3
    assert kinds("card 4111 1111 1111 1111 please") == ["card"]  # a card, not also a phone number
    assert kinds("card 4111 1111 1111 1112 please") == []  # fails Luhn
    assert kinds("key sk-abcdefghijklmnopqrstuvwx12 and AKIAIOSFODNN7EXAMPLE") == ["api_key", "api_key"]
    # ordinary numbers, dates, sums, hex digests and long identifiers are not PII
    assert kinds("Add 100 and 200, then 2024-01-15, order 12345, Add 9 and 6.") == []
    assert kinds("commit da39a3ee5e6b4b0d3255bfef95601890afd80709 of some_long_function_name_here") == []


def test_redaction_replaces_each_span():
    text = "mail ana@example.com or call 555-123-4567."
    assert redact_pii(text) == "mail [EMAIL] or call [PHONE]."
    assert redact_pii(redact_pii(text)) == redact_pii(text)  # idempotent: placeholders are not PII


def test_mojibake_is_found_and_repaired_but_clean_accents_are_left_alone():
    damaged = "The café was naïve".encode("utf-8").decode("cp1252")
    assert damaged == "The cafÃ© was naÃ¯ve"
    assert has_mojibake(damaged) and repair_encoding(damaged) == "The café was naïve"
    for clean in ("The café was naïve", "São Paulo — déjà vu", "plain ascii"):
        assert not has_mojibake(clean) and repair_encoding(clean) == clean
    assert has_mojibake("lost \ufffd byte")  # U+FFFD: found, though nothing can undo it
    assert has_control_chars("bell\x07") and not has_control_chars("tab\tand\nnewline\r\n")
    assert repair_encoding("a\x00b\x1bc") == "abc"


def test_response_checks():
    assert is_trivial("...") and is_trivial(" OK! ") and not is_trivial("15 end") and not is_trivial("no")
    assert is_refusal("I'm sorry, but I can't help with that.")
    assert is_refusal("As an AI language model, I cannot provide that.")
    assert not is_refusal("I cannot stress enough how " + "very " * 40 + "important sleep is.")  # too long
    assert not is_refusal("Sorry for the wait: the answer is 42.")
    assert echo_similarity("Reverse the words: a b c", "Reverse the words: a b c") == 1.0
    assert echo_similarity("Reverse the words: apple kiwi plum", "plum kiwi apple") == 0.0  # length ratio too small
    # difflib ratio on words: 2 * matches / total = 2*5 / (6+6)
    assert echo_similarity("one two three four five six", "one two three four five seven") == pytest.approx(10 / 12)


def test_row_defects_name_the_field_and_skip_rejected_responses():
    row = {"messages": [{"role": "user", "content": "Hi ana@example.com"}, {"role": "assistant", "content": ""}]}
    found = {(f.kind, f.field) for f in row_defects(row, "sft")}
    assert found == {("empty", "messages[1].content"), ("pii_email", "messages[0].content")}
    pair = {"prompt": "Say hi", "chosen": "Hi there!", "rejected": ""}
    assert row_defects(pair, "preference") == []  # an empty rejected answer is what the pair teaches against
    ranking = {"prompt": "Say hi", "responses": ["", "Hello!"], "ranking": [1, 0]}
    assert row_defects(ranking, "ranking") == []


def test_text_views_and_rewrites_cover_every_format():
    sft = {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], "completion": "C"}
    assert row_text(sft, "sft").instruction == "U" and row_text(sft, "sft").responses == [("completion", "C")]
    assert [f for f, _ in text_fields(sft, "sft")] == ["prompt[0].content", "prompt[1].content", "completion"]
    new, changed = map_text_fields(sft, "sft", str.lower)
    assert new["completion"] == "c" and sft["completion"] == "C"  # the original is untouched
    assert changed == ["prompt[0].content", "prompt[1].content", "completion"]
    ranking = {"prompt": "p", "responses": ["a", "B"], "ranking": [0, 1]}
    assert map_text_fields(ranking, "ranking", str.upper)[1] == ["prompt", "responses[0]"]


def test_exact_and_near_duplicates():
    exact = ExactDeduper()
    assert exact.check("a", "x") is None and exact.check("b", "x") == "a" and exact.check("c", "y") is None
    assert shingles("A b, c!", 2) == {b"a b", b"b c"} and shingles("one", 3) == {b"one"}
    base = " ".join(f"w{i}" for i in range(60))
    near = NearDeduper(threshold=0.8, num_perm=128, ngram=3)
    assert near.check(0, base) is None
    # one word changed in 60: 3 of 58 shingles differ, Jaccard 55/61 = 0.90
    match = near.check(1, base.replace("w30", "zz"))
    assert match is not None and match[0] == 0 and match[1] == pytest.approx(55 / 61, abs=0.1)
    assert near.check(2, " ".join(f"v{i}" for i in range(60))) is None  # unrelated
    # a duplicate is not indexed: a third copy still points at the first row, not the second
    assert near.check(3, base)[0] == 0


def _prompts(*texts: str) -> list[EvalPrompt]:
    return [EvalPrompt("ev", i, t) for i, t in enumerate(texts)]


def test_contamination_counts_overlap_per_prompt():
    long = "Write a haiku about the quiet harbour at dawn with three gulls and a red boat"
    index = ContaminationIndex(_prompts(long, "Add 9 and 6."), n=4, min_overlap=0.8, min_df=1)
    hit = index.find("Here: " + long + ". Thanks!")
    assert [(h.prompt.index, h.overlap) for h in hit] == [(0, 1.0)]
    assert index.find("Write a haiku about the quiet harbour at noon") == []  # 6 of 13 4-grams
    # short prompts match only whole instructions
    assert [h.prompt.index for h in index.find("add 9 and 6", ["Add 9 and 6!"])] == [1]
    assert index.find("Add 9 and 61.", ["Add 9 and 61."]) == []


def test_contamination_ignores_template_wording():
    template = "Answer in one word and end your answer with the word stop"
    prompts = _prompts(*[f"{template} item{i} thing{i}" for i in range(50)])
    index = ContaminationIndex(prompts, n=4, min_overlap=0.5, template_fraction=0.02, min_df=3)
    # sharing all the wording but none of the content is not contamination
    assert index.find(f"{template} other words") == []
    assert [h.prompt.index for h in index.find(f"{template} item7 thing7")] == [7]


def test_injected_duplicates_can_replace_good_rows_instead_of_adding_rows():
    from alignment.data.synthetic import clean_sft_rows, inject_defects
    from alignment.data.texts import content_key

    clean = clean_sft_rows(400, seed=2)
    rates = {"exact_duplicate": 0.1, "near_duplicate": 0.1, "empty": 0.1, "echo": 0.1}
    grown, _ = inject_defects(clean, rates, seed=1)
    dirty, truth = inject_defects(clean, rates, seed=1, keep_size=True)
    assert len(grown) == 480 and len(dirty) == len(truth) == 400
    assert {k: sum(k in t for t in truth) for k in rates} == {k: 40 for k in rates}
    # the good rows that make way are undamaged ones; every duplicate's original is still there
    keys = [content_key(r, "sft") for r in dirty]
    originals = {content_key(r, "sft") for r, t in zip(dirty, truth) if not t}
    assert sum(t == set() for t in truth) == 400 - 160 and all(
        keys.index(k) < i for i, (k, t) in enumerate(zip(keys, truth)) if "exact_duplicate" in t
    )
    assert all(k in originals for k, t in zip(keys, truth) if "exact_duplicate" in t)


def test_token_lengths_equal_whole_text_counts_and_survive_a_template_whose_prompt_is_no_prefix(tmp_path):
    from transformers import AutoTokenizer

    from alignment.data.lengths import TokenCounter
    from alignment.data.synthetic import clean_sft_rows

    try:
        from tests.alignment import data_fixtures as fx
    except ImportError:
        import data_fixtures as fx
    tok = AutoTokenizer.from_pretrained(fx.make_tokenizer(tmp_path / "tok"))
    rows = clean_sft_rows(60, seed=4) + [{"prompt": "Say hi.", "completion": ""}]
    prefs = [{"prompt": "Pick one.", "chosen": "The first option, clearly.", "rejected": "No."}]

    def whole(messages, generation):
        return len(tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation),
                       add_special_tokens=False)["input_ids"])

    def expected(row, kind):
        text = row_text(row, kind)
        fulls = [whole(text.prompt_messages + [{"role": "assistant", "content": r}], False) for _, r in text.responses]
        return whole(text.prompt_messages, True), max(fulls)

    other = tok.chat_template.replace("{{ '<|assistant|>\\n' }}{%- endif -%}", "{{ '<|assistant|>\\n\\n' }}{%- endif -%}")
    assert other != tok.chat_template
    for template in (tok.chat_template, other):
        tok.chat_template = template  # the second one's generation prompt has an extra newline: not a prefix
        assert tok.apply_chat_template([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], tokenize=False).startswith(
            tok.apply_chat_template([{"role": "user", "content": "a"}], tokenize=False, add_generation_prompt=True)) == (template != other)
        counter = TokenCounter(tok, max_length=64)
        for batch, kind in ((rows, "sft"), (prefs, "preference")):
            got = [(n.instruction, n.total) for n in counter.count(batch, kind)]
            assert got == [expected(r, kind) for r in batch]
