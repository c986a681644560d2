"""Resumable PPO state: `ppo/checkpoints/iter-NNNNN/`, complete only when `state.json` is in it.

`accelerator.save_state` writes the actor and critic weights (with `ppo.critic=shared`, the
value head's inside the actor's), the optimiser state and every process's RNG states
(Python, NumPy, torch, CUDA), plus the objects registered with
`accelerator.register_for_checkpointing` (the KL controller and the loop counters). The
`state.json` marker is written last by the main process: a folder without it is a
checkpoint that was being written when the run died, and is ignored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from alignment.run_dir import write_json_atomic

STATE_FILE = "state.json"


class LoopState:
    """Counters that say where the loop is; saved with the checkpoint."""

    def __init__(self) -> None:
        self.iteration = 0
        self.episodes = 0
        self.wall_s = 0.0

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "episodes": self.episodes, "wall_s": self.wall_s}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.episodes = int(state["episodes"])
        self.wall_s = float(state.get("wall_s", 0.0))


def checkpoint_dir(stage_dir: Path, iteration: int) -> Path:
    return Path(stage_dir) / "checkpoints" / f"iter-{iteration:06d}"


def save_checkpoint(accelerator, stage_dir: Path, state: LoopState, extra: dict, keep: int = 2) -> Path:
    path = checkpoint_dir(stage_dir, state.iteration)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(path / STATE_FILE, {**state.state_dict(), **extra})
        for old in complete_checkpoints(stage_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def complete_checkpoints(stage_dir: Path) -> list[Path]:
    root = Path(stage_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("iter-*") if (p / STATE_FILE).is_file())


def latest_checkpoint(stage_dir: Path) -> Optional[Path]:
    done = complete_checkpoints(stage_dir)
    return done[-1] if done else None


def read_state(path: Path) -> dict:
    return json.loads((Path(path) / STATE_FILE).read_text())
