"""Regression evaluation: did anything get worse between a baseline and a candidate?

- `rlhf eval` (alignment/commands/eval.py) compares checkpoints and exits non-zero when a
  gate fails;
- `evaluate_arms(recipe)` / `run_eval_stage(recipe)` evaluate every arm of a run for the
  pipeline;
- `evaluate_models(...)` is the engine both call.

Modules, one concept each: `bootstrap` (paired CIs), `win_rate` (raw and length-controlled),
`ifeval` (verifiable constraints), `safety` (refusal detection), `kl` (k1/k3 from a
reference), `generation_cache`, `prompts`, `scoring`, `compare` (statistics of a
comparison), `gates`, `report`, `runner`, `arms`.
"""

from importlib import import_module

_EXPORTS = {
    "evaluate_arms": "alignment.evaluation.arms",
    "run_eval_stage": "alignment.evaluation.arms",
    "EvalSettings": "alignment.evaluation.runner",
    "evaluate_models": "alignment.evaluation.runner",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Lazy exports: the statistics and gates modules load without torch."""
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'alignment.evaluation' has no attribute {name!r}")
