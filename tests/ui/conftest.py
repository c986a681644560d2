"""Shared fixtures for the label store and app tests."""

from __future__ import annotations

import pytest

from ui.service import LabelService


class Clock:
    """A settable clock, so that expiry can be tested without sleeping."""

    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def pair_rows(n: int, k: int = 2, prefix: str = "p") -> list[dict]:
    return [
        {"prompt": f"{prefix}{i}", "responses": [f"{prefix}{i}-r{j}" for j in range(k)], "metadata": {"i": i}}
        for i in range(n)
    ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(tmp_path, clock):
    service = LabelService.open(f"sqlite:///{tmp_path / 'labels.db'}", clock=clock)
    yield service
    service.close()
