"""A kill at a known point, so that a resume can be checked bit for bit against a run that was not killed.

`RLHF_EXIT_AFTER_CHECKPOINT=<stage>` makes the process exit with status 137, as after SIGKILL
(no clean-up, no completion marker, buffered output flushed only so that its log is readable),
right after that stage has written its first checkpoint. A real kill lands anywhere; this one
lands where a resume has something to resume from, every time, which is what the determinism
test needs (tests/alignment/test_determinism.py). Unset, it does nothing.
"""

from __future__ import annotations

import os
import sys

ENV = "RLHF_EXIT_AFTER_CHECKPOINT"
KILLED = 137  # 128 + SIGKILL, what a shell reports for `kill -9`


def checkpoint_written(stage: str) -> None:
    """Called by a stage right after it saved a checkpoint; exits when RLHF_EXIT_AFTER_CHECKPOINT names it."""
    if os.environ.get(ENV) == stage:
        print(f"{stage}: {ENV}={stage}: exiting after the first checkpoint, as a kill would", flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(KILLED)


def trainer_callback(stage: str):
    """The same hook as a transformers TrainerCallback, for the stages that train through a Trainer."""
    from transformers import TrainerCallback

    class _ExitAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            checkpoint_written(stage)

    return _ExitAfterCheckpoint()
