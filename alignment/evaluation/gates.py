"""Regression gates: a small YAML file of claims a candidate must satisfy to ship.

    gates:
      - metric: gold.diff          # candidate minus baseline
        comparison: ">="
        threshold: -0.02
        confidence: true           # judged on the 95% CI bound, not the point estimate
      - metric: lc_win_rate
        comparison: ">="
        threshold: 0.45
        confidence: true
        optional: true             # skipped (and said so) when no reward model is given
      - metric: kl.k3_seq
        comparison: "<="
        threshold: 10

`confidence: true` means the claim must hold for the whole 95% interval: a `>=` gate is
judged on the lower bound and a `<=` gate on the upper bound, so a noisy evaluation fails
rather than passes by luck ("gold must not drop by more than 0.02, with confidence").
`bound: lower|upper|value` picks the number explicitly. A gate whose metric was not
measured fails (it cannot be checked) unless it is `optional`. An unknown metric name is an
error before anything is generated, listing the names that exist.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from alignment.data.files import read_yaml
from alignment.errors import UserError
from alignment.evaluation.bootstrap import Estimate

COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
BOUNDS = ("value", "lower", "upper")
FIELDS = {"metric", "comparison", "threshold", "confidence", "bound", "optional", "name"}


@dataclass
class Gate:
    metric: str
    comparison: str
    threshold: float
    confidence: bool = False
    bound: Optional[str] = None
    optional: bool = False
    name: Optional[str] = None

    @property
    def judged_on(self) -> str:
        if self.bound:
            return self.bound
        if self.confidence:
            return "lower" if self.comparison in (">=", ">") else "upper"
        return "value"

    def describe(self) -> str:
        where = {"value": "", "lower": " (lower 95% bound)", "upper": " (upper 95% bound)"}[self.judged_on]
        return self.name or f"{self.metric}{where} {self.comparison} {self.threshold:g}"


@dataclass
class GateResult:
    gate: Gate
    status: str  # pass | fail | skipped
    observed: Optional[float]
    evidence: str

    def to_dict(self) -> dict:
        return {"gate": self.gate.describe(), **asdict(self.gate), "status": self.status, "observed": self.observed, "evidence": self.evidence}


def parse_gates(raw: object, source: str, known: dict[str, str]) -> list[Gate]:
    """Gates from parsed YAML (a list, or a mapping with a `gates` list)."""
    if isinstance(raw, dict) and "gates" in raw:
        raw = raw["gates"]
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise UserError(f"{source}: expected a list of gates (or `gates:` with a list), got {type(raw).__name__}")
    gates = []
    for i, item in enumerate(raw):
        where = f"{source}: gate {i + 1}"
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected a mapping with metric, comparison and threshold")
        unknown = set(item) - FIELDS
        if unknown:
            raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(FIELDS))})")
        for key in ("metric", "comparison", "threshold"):
            if key not in item:
                raise UserError(f"{where}: missing '{key}'")
        metric = item["metric"]
        if metric not in known:
            raise UserError(f"{where}: unknown metric {metric!r}; known metrics: {', '.join(known)}")
        if item["comparison"] not in COMPARISONS:
            raise UserError(f"{where}: comparison must be one of {', '.join(COMPARISONS)}, got {item['comparison']!r}")
        threshold = item["threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise UserError(f"{where}: threshold must be a number, got {threshold!r}")
        bound = item.get("bound")
        if bound is not None and bound not in BOUNDS:
            raise UserError(f"{where}: bound must be one of {', '.join(BOUNDS)}, got {bound!r}")
        for flag in ("confidence", "optional"):
            if flag in item and not isinstance(item[flag], bool):
                raise UserError(f"{where}: {flag} must be true or false, got {item[flag]!r}")
        gates.append(
            Gate(metric, item["comparison"], float(threshold), bool(item.get("confidence", False)), bound,
                 bool(item.get("optional", False)), item.get("name"))
        )
    return gates


def load_gates(path: str | Path, known: dict[str, str]) -> list[Gate]:
    return parse_gates(read_yaml(path, "gates file"), str(path), known)


def evaluate_gate(gate: Gate, metrics: dict[str, Estimate], missing_reason: str = "") -> GateResult:
    est = metrics.get(gate.metric)
    if est is None:
        why = missing_reason or "this metric was not measured in this evaluation"
        status = "skipped" if gate.optional else "fail"
        return GateResult(gate, status, None, f"not measured: {why}")
    observed = {"value": est.value, "lower": est.low, "upper": est.high}[gate.judged_on]
    ok = COMPARISONS[gate.comparison](observed, gate.threshold)
    evidence = (
        f"{gate.metric} = {est.value:.4f} [95% CI {est.low:.4f}, {est.high:.4f}] over {est.n} prompts; "
        f"{gate.judged_on} {observed:.4f} {gate.comparison} {gate.threshold:g} is {'true' if ok else 'false'}"
    )
    return GateResult(gate, "pass" if ok else "fail", observed, evidence)


def evaluate_gates(gates: list[Gate], metrics: dict[str, Estimate], missing: dict[str, str] | None = None) -> list[GateResult]:
    """Each gate judged against one candidate's metrics; `missing` explains absent metrics."""
    missing = missing or {}
    return [evaluate_gate(g, metrics, missing.get(base_metric(g.metric), "")) for g in gates]


def base_metric(name: str) -> str:
    """`gold.diff` -> `gold`, `kl.k1_seq.baseline` -> `kl.k1_seq`."""
    for suffix in (".diff", ".baseline"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def verdict(results: list[GateResult]) -> bool:
    """Passed: no gate failed, and at least one could be checked (all skipped is no evidence).

    With no gates at all there is nothing to fail.
    """
    if not results:
        return True
    return not any(r.status == "fail" for r in results) and any(r.status == "pass" for r in results)
