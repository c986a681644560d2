"""Where training metrics go: `metrics.jsonl` always, TensorBoard when asked for.

One line per logged step, `{"step": ..., name: value, ...}`. The core names are shared by
PPO, DPO, GRPO and RLOO so that the evaluation and the plots compare methods directly:

    objective/score        mean score of the episodes (after normalisation, clip, EOS penalty)
    objective/kl           KL(policy || reference) per sequence, k1 estimator
    objective/kl_k3        the same with the k3 estimator
    eval/gold              mean gold score of greedy responses on held-out prompts
    eval/kl_k1, eval/kl_k3 KL per sequence on held-out prompts (sampled)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional


class MetricsLogger:
    """Appends metrics to `<folder>/metrics.jsonl` and, if enabled, to TensorBoard in `<folder>/tensorboard/`.

    Only the main process logs (`enabled=False` elsewhere), so a multi-process run writes
    one file. Appending keeps a resumed run's earlier lines.
    """

    def __init__(self, folder: str | Path, report_to: list[str] | tuple[str, ...] = ("tensorboard",), enabled: bool = True):
        self.folder = Path(folder)
        self.enabled = enabled
        self.writer = None
        if enabled and "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder / "tensorboard"))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (int, bool)) else v) for k, v in metrics.items()}
        with open(self.folder / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **clean}, default=str) + "\n")
        if self.writer is not None:
            for name, value in clean.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(name, value, step)

    def table(self, step: int, name: str, rows: list[dict]) -> None:
        """A table of rows (e.g. sample completions): `<name>.jsonl` lines and a TensorBoard text table."""
        if not self.enabled or not rows:
            return
        with open(self.folder / f"{name}.jsonl", "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({"step": step, **row}, ensure_ascii=False, default=str) + "\n")
        if self.writer is not None:
            cols = list(rows[0])
            cell = lambda v: (f"{v:.3f}" if isinstance(v, float) else str(v)).replace("|", "\\|").replace("\n", " ")
            lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(cell(row[c]) for c in cols) + " |" for row in rows]
            self.writer.add_text(name, "\n".join(lines), step)

    def truncate(self, after_step: int) -> None:
        """Drop lines past `after_step` (metrics and tables), so a resumed run does not log a step twice."""
        for path in self.folder.glob("*.jsonl"):
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= after_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# TRL's log names -> ours, so DPO/GRPO/RLOO lines read like PPO's. Per-token KL keeps its own
# name (TRL averages over tokens; our objective/kl is per sequence): the per-sequence KL of
# every method is the held-out eval/kl_k1 and eval/kl_k3.
TRL_NAMES = {
    "reward": "objective/score",
    "reward_std": "objective/score_std",
    "completions/mean_length": "response/length",
    "entropy": "policy/entropy",
    "loss": "loss/total",
    "learning_rate": "optim/learning_rate",
    "grad_norm": "optim/grad_norm",
    "rewards/margins": "dpo/margin",
    "rewards/accuracies": "dpo/accuracy",
    "rewards/chosen": "dpo/reward_chosen",
    "rewards/rejected": "dpo/reward_rejected",
}


def trainer_callback(logger: MetricsLogger, kl_estimator: Optional[str] = None):
    """A transformers TrainerCallback writing TRL's logs to our metrics.jsonl under our names.

    `kl_estimator` names what TRL's `kl` is for this trainer (GRPO: k3, RLOO: k1).
    """
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            out: dict[str, Any] = {}
            for key, value in logs.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                if key == "kl":
                    out[f"objective/kl_{kl_estimator}_per_token" if kl_estimator else "objective/kl_per_token"] = value
                elif key == "completions/clipped_ratio":
                    out["response/eos_rate"] = 1.0 - value
                else:
                    out[TRL_NAMES.get(key, f"trl/{key}")] = value
            logger.log(state.global_step, out)

    return _Callback()
