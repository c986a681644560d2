"""A real `rlhf label serve` process on 127.0.0.1 for the app tests, and API sign-in helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`python -m alignment.cli label serve` in a subprocess; always stopped by the fixture."""

    def __init__(self, db_url: str, log_path: Path, port: int | None = None):
        self.db_url, self.log_path = db_url, log_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> "LiveServer":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alignment.cli", "label", "serve", "--db", self.db_url,
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing; what was committed must survive."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def api_token(base_url: str, name: str, password: str) -> str:
    r = httpx.post(base_url + "auth/token", json={"username": name, "password": password}, timeout=60)
    r.raise_for_status()
    return r.json()["token"]


def api_client(base_url: str, token: str):
    from gradio_client import Client

    return Client(base_url, headers={"Authorization": f"Bearer {token}"}, verbose=False)
