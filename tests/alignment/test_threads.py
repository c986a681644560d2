"""The CPU thread policy (alignment/threads.py): never more threads than cores, one for a tiny model."""

import torch

from alignment import threads
from alignment.models import load_policy
from tests.alignment.ppo_tiny import make_policy


def test_a_tiny_model_gets_one_thread_and_a_big_one_leaves_a_core_free():
    assert threads.chosen_threads(1_000_000, cores=16) == 1
    assert threads.chosen_threads(135_000_000, cores=2) == 1
    assert threads.chosen_threads(135_000_000, cores=16) == 15
    assert threads.chosen_threads(135_000_000, cores=1) == 1


def test_the_environment_overrides_the_policy(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("RLHF_THREADS", raising=False)
    assert threads.user_threads() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.user_threads() == 3
    monkeypatch.setenv("RLHF_THREADS", "2")  # the toolkit's own setting wins over OpenMP's
    assert threads.user_threads() == 2
    monkeypatch.setenv("RLHF_THREADS", "zero")
    assert threads.user_threads() == 3


def test_loading_a_model_on_cpu_settles_torch_threads(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("RLHF_THREADS", "2")
    try:
        torch.set_num_threads(1)
        load_policy(str(make_policy(tmp_path / "p")), device="cpu")
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("RLHF_THREADS")
        load_policy(str(tmp_path / "p"), device="cpu")
        assert torch.get_num_threads() == 1  # a tiny model: one thread, whatever the machine
    finally:
        torch.set_num_threads(before)
