"""How many intra-op threads torch uses on a CPU: chosen, not left to torch's default of one per core.

Measured on 2-core machines (docs/policy_optimization.md, "Threads"):

- With other processes running (load 3-5), two torch threads ran 5-10x *slower* than one in
  generation: each matmul waits for its slowest thread, and a thread that shares its core with
  another process is slow by a whole scheduler slice.
- A tiny model (the quickstart's 1M-parameter Llama) gains nothing from a second thread even
  on an idle machine: its matmuls are too small to split.

So the policy leaves one core to everything else and never runs more threads than cores:
one thread for a model below `THREADS_PAY_FROM` parameters, else one per core the process
may use minus one (at least one). On a 2-core machine that is one thread, always; on a
16-core one, 15. `OMP_NUM_THREADS` or `RLHF_THREADS` in the environment override it (the
number is then the user's choice and is used as given).
"""

from __future__ import annotations

import os

import torch

THREADS_PAY_FROM = 20_000_000
"""Parameters below which a second thread never paid (the 1M quickstart model: 0.9-1.0x)."""

OVERRIDES = ("RLHF_THREADS", "OMP_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chosen_threads(n_params: int, cores: int | None = None) -> int:
    """The policy above, for a model of `n_params` parameters."""
    if n_params < THREADS_PAY_FROM:
        return 1
    return max(1, (cores or usable_cores()) - 1)


def user_threads() -> int | None:
    """The thread count the environment fixes, if it does."""
    for name in OVERRIDES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def settle_threads(model: torch.nn.Module) -> int:
    """Set torch's intra-op threads for work on `model` (a no-op on the GPU path's count); returns it."""
    n = user_threads() or chosen_threads(sum(p.numel() for p in model.parameters()))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
