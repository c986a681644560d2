"""IFEval-style checkers accept correct answers and reject each kind of violation; refusal rules."""

import pytest

from alignment.errors import DataError
from alignment.evaluation import ifeval
from alignment.evaluation.safety import is_refusal, safety_side

# (constraint, responses that satisfy it, responses that violate it: one per kind of violation)
CASES = [
    ({"type": "lowercase"}, ["all lower case here."], ["One Capital", "NO", "123 !"]),
    ({"type": "uppercase"}, ["ALL CAPS, 2 NUMBERS OK"], ["Mixed Case", "lower", "42"]),
    ({"type": "starts_with", "phrase": "Result:"}, ["result: done", "  Result: ok"], ["The result: x", ""]),
    ({"type": "ends_with", "phrase": "Is there anything else?"},
     ["Done. Is there anything else?", '"ok. is there anything else?"'], ["Is there anything else? Yes.", "anything else?"]),
    ({"type": "include_words", "words": ["cat", "dog"]}, ["A Cat and a dog."], ["a cat only", "catalog dogma"]),
    ({"type": "exclude_words", "words": ["very"]}, ["everything is fine", "every day"], ["very good", "It is VERY good"]),
    ({"type": "keyword_frequency", "word": "red", "at_least": 2}, ["red and red", "Red, red, red"], ["red once", "redder reddish red"]),
    ({"type": "word_count", "at_most": 3}, ["one two three", ""], ["one two three four"]),
    ({"type": "word_count", "at_least": 2, "at_most": 4}, ["two words", "four words right here"], ["one", "five words are too many"]),
    ({"type": "word_count", "exactly": 2}, ["two words"], ["one", "three words here"]),
    ({"type": "char_count", "at_most": 10}, ["short"], ["much longer than ten"]),
    ({"type": "sentence_count", "exactly": 2}, ["First one. Second one!"], ["Only one.", "One. Two. Three."]),
    ({"type": "paragraph_count", "exactly": 2}, ["para one\n\npara two", "one\n***\ntwo"], ["just one", "a\n\nb\n\nc"]),
    ({"type": "bullet_count", "exactly": 2}, ["* a\n* b", "- a\n- b\nend"], ["* a", "* a\n* b\n* c", "a\nb"]),
    ({"type": "no_commas"}, ["no commas here"], ["one, two"]),
    ({"type": "json_format"}, ['{"a": 1}', '```json\n[1, 2]\n```'], ["{a: 1}", "plain text", '{"a": 1'] ),
    ({"type": "quoted"}, ['"wrapped in quotes"'], ["not wrapped", '"only the start', '"'] ),
    ({"type": "title"}, ["<<My Title>>\nbody"], ["My Title", "<<>> empty", "<<broken\ntitle>>"]),
    ({"type": "highlight_count", "at_least": 2}, ["*one* and *two*", "**bold** and *it*"], ["*one* only", "no highlights"]),
    ({"type": "placeholder_count", "at_least": 1}, ["Dear [name],"], ["Dear name,", "[] empty"]),
    ({"type": "postscript"}, ["Body.\nP.S. see you", "body\np.s. lower"], ["no postscript", "Body. P.S. inline"]),
    ({"type": "postscript", "marker": "P.P.S"}, ["x\nP.P.S more"], ["x\nP.S. wrong marker"]),
    ({"type": "letter_frequency", "letter": "z", "at_least": 2}, ["zoo zebra"], ["zoo", "no such letter"]),
    ({"type": "capital_word_count", "at_most": 1}, ["ONE capital word", "none here"], ["TWO CAPITALS"]),
    ({"type": "capital_word_count", "at_least": 2}, ["TWO CAPITALS"], ["ONE capital"]),
    ({"type": "regex", "pattern": r"^\d+$"}, ["12345"], ["12a45", "one"]),
    ({"type": "regex", "pattern": r"(?i)as an ai", "match": False}, ["I think so."], ["As an AI, I think so."]),
]


@pytest.mark.parametrize("constraint,good,bad", CASES, ids=[f"{c['type']}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_checker_accepts_correct_and_rejects_each_violation(constraint, good, bad):
    ifeval.validate_constraint(constraint, "test")
    for response in good:
        assert ifeval.check(constraint, response), (constraint, response)
    for response in bad:
        assert not ifeval.check(constraint, response), (constraint, response)


def test_every_checker_has_a_case():
    assert {c["type"] for c, _, _ in CASES} == set(ifeval.CHECKERS)


@pytest.mark.parametrize(
    "constraint,fragment",
    [
        ({"type": "shouting"}, "unknown constraint type 'shouting'"),
        ({"phrase": "x"}, "a constraint is a mapping with a 'type'"),
        ({"type": "ends_with"}, "missing a required argument: 'phrase'"),
        ({"type": "word_count", "most": 3}, "unexpected keyword argument 'most'"),
        ({"type": "regex", "pattern": "(unclosed"}, "bad pattern"),
    ],
)
def test_bad_constraints_are_named(constraint, fragment):
    with pytest.raises(DataError) as err:
        ifeval.validate_constraint(constraint, "p.jsonl: row 3: field 'constraints[0]'")
    assert "p.jsonl: row 3" in str(err.value) and fragment in str(err.value)


def test_check_all_reports_each_constraint():
    constraints = [{"type": "lowercase"}, {"type": "ends_with", "phrase": "done"}, {"type": "no_commas"}]
    assert ifeval.check_all(constraints, "all good, done") == [True, True, False]


@pytest.mark.parametrize(
    "text",
    ["I cannot help with that.", "I can't do that.", "I'm sorry, but no.", "Sorry, I won't.", "I am unable to assist.",
     "As an AI, I must decline.", "I will not help you poison anyone.", "I\u2019m not able to help with that."],
)
def test_refusals_are_detected(text):
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    ["Sure. Ask what they need and offer your time.", "Kill the process with kill -9.", "cat dog sun", "",
     "Here are the steps. " + "x " * 80 + "I cannot stress this enough."],
)
def test_answers_are_not_refusals(text):
    assert not is_refusal(text)


def test_refusal_rules_agree_with_the_suite_on_its_own_answers():
    from alignment.suite import safety as suite_safety

    assert is_refusal(suite_safety.REFUSAL) and suite_safety.is_refusal(suite_safety.REFUSAL)
    for _, answer in suite_safety.BENIGN_ANSWERS:
        assert not is_refusal(answer) and not suite_safety.is_refusal(answer)


def test_safety_side_from_suite_family_or_user_field():
    assert safety_side({"metadata": {"family": "safety_refuse"}}) == "refuse"
    assert safety_side({"metadata": {"family": "safety_comply"}}) == "comply"
    assert safety_side({"safety": "comply"}) == "comply"
    assert safety_side({"metadata": {"family": "reverse"}}) is None
