"""Gates: parsing with clear errors, judging on CI bounds, and the verdict."""

from pathlib import Path

import pytest
import yaml

from alignment.errors import UserError
from alignment.evaluation import compare
from alignment.evaluation.bootstrap import Estimate
from alignment.evaluation.gates import evaluate_gates, load_gates, parse_gates, verdict

KNOWN = compare.known_metrics(compare.metric_specs())
DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "gates" / "default.yaml"


def gate(**kw):
    return parse_gates([{"comparison": ">=", "threshold": 0.0, **kw}], "g.yaml", KNOWN)[0]


def test_default_gates_file_parses_and_names_known_metrics():
    gates = load_gates(DEFAULT, KNOWN)
    assert {g.metric for g in gates} >= {"gold.diff", "lc_win_rate", "kl.k3_seq"}


def test_unknown_metric_is_an_error_naming_file_gate_and_known_names(tmp_path):
    path = tmp_path / "gates.yaml"
    path.write_text(yaml.safe_dump({"gates": [{"metric": "gold.diff", "comparison": ">=", "threshold": -0.1},
                                              {"metric": "gold_score", "comparison": ">=", "threshold": 0.5}]}))
    with pytest.raises(UserError) as err:
        load_gates(path, KNOWN)
    message = str(err.value)
    assert str(path) in message and "gate 2" in message and "unknown metric 'gold_score'" in message
    assert "lc_win_rate" in message  # the list of names that do exist


@pytest.mark.parametrize(
    "item,fragment",
    [
        ({"metric": "gold", "comparison": "=>", "threshold": 1}, "comparison must be one of"),
        ({"metric": "gold", "comparison": ">="}, "missing 'threshold'"),
        ({"metric": "gold", "comparison": ">=", "threshold": "high"}, "threshold must be a number"),
        ({"metric": "gold", "comparison": ">=", "threshold": 1, "confidance": True}, "unknown key 'confidance'"),
        ({"metric": "gold", "comparison": ">=", "threshold": 1, "bound": "middle"}, "bound must be one of"),
        ({"metric": "gold", "comparison": ">=", "threshold": 1, "optional": "yes"}, "optional must be true or false"),
    ],
)
def test_malformed_gates_are_named(item, fragment):
    with pytest.raises(UserError) as err:
        parse_gates([item], "g.yaml", KNOWN)
    assert "g.yaml: gate 1" in str(err.value) and fragment in str(err.value)


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(UserError, match="gates file not found"):
        load_gates(tmp_path / "nope.yaml", KNOWN)
    bad = tmp_path / "bad.yaml"
    bad.write_text("gates: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_gates(bad, KNOWN)


def test_confidence_judges_on_the_pessimistic_bound():
    est = {"gold.diff": Estimate(0.01, -0.03, 0.05, 100)}
    lenient = gate(metric="gold.diff", threshold=-0.02)
    strict = gate(metric="gold.diff", threshold=-0.02, confidence=True)
    [a, b] = evaluate_gates([lenient, strict], est)
    assert (a.status, a.observed) == ("pass", 0.01)
    assert (b.status, b.observed) == ("fail", -0.03)
    assert "lower -0.0300 >= -0.02 is false" in b.evidence
    upper = parse_gates([{"metric": "kl.k3_seq", "comparison": "<=", "threshold": 0.04, "confidence": True}], "g", KNOWN)[0]
    [c] = evaluate_gates([upper], {"kl.k3_seq": Estimate(0.01, -0.03, 0.05, 10)})
    assert (c.status, c.observed) == ("fail", 0.05)
    explicit = gate(metric="gold.diff", threshold=0.04, bound="upper")
    assert evaluate_gates([explicit], est)[0].status == "pass"


def test_unmeasured_metric_fails_unless_optional_and_all_skipped_is_no_pass():
    required = gate(metric="lc_win_rate", threshold=0.45)
    optional = gate(metric="lc_win_rate", threshold=0.45, optional=True)
    results = evaluate_gates([required, optional], {}, {"lc_win_rate": "no reward model given (--reward)"})
    assert [r.status for r in results] == ["fail", "skipped"]
    assert "no reward model given" in results[0].evidence
    assert not verdict(results)
    assert not verdict(results[1:])  # every gate skipped: no evidence either way
    assert verdict([])  # no gates at all: nothing to fail
    passing = evaluate_gates([gate(metric="gold", threshold=0.1)], {"gold": Estimate(0.5, 0.4, 0.6, 10)})
    assert verdict(passing + results[1:])
