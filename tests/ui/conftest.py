"""Shared fixtures for the label store and app tests."""

from __future__ import annotations

import os

import pytest

from ui.service import LabelService

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under Playwright, one per test module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


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


ADMIN = ("admin", "admin-password")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One live server for the API, authorization, concurrency and browser tests. Each test
    makes its own campaign and users in the same database (the store is shared by design)."""
    from tests.ui.live import LiveServer

    root = tmp_path_factory.mktemp("server")
    db_url = f"sqlite:///{root / 'labels.db'}"
    service = LabelService.open(db_url)
    service.create_user(*ADMIN, role="admin")
    live = LiveServer(db_url, root / "server.log").start()
    live.svc = service
    try:
        yield live
    finally:
        live.stop()
        service.close()


@pytest.fixture(scope="session")
def admin_client(server):
    from tests.ui.live import api_client, api_token

    return api_client(server.url, api_token(server.url, *ADMIN))
