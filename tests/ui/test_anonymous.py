"""Nothing of `rlhf label serve` answers an anonymous caller but the sign-in form.

The routes are read from FastAPI's router (Gradio's own included), not listed by hand, so a
route that a Gradio upgrade adds is covered the day it appears. Each is called the way a
stranger would: no cookie, no token, path parameters filled with junk.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from tests.ui.live import api_token
from ui.app import mount

# What an anonymous caller may get a 2xx from: the sign-in form itself, and the load balancer's
# health check (no data; the test harness waits on it). The form has no static assets of its own
# (its CSS is inline). POST auth/login and auth/token answer 2xx/303 only to a right password.
ANONYMOUS_OK = {("GET", "/auth/login"), ("GET", "/healthz")}


def app_routes(routes, prefix: str = ""):
    """(method, path) of every HTTP route reachable from these routes, through mounts and included routers."""
    for route in routes:
        if isinstance(route, Mount):
            yield from app_routes(route.routes, prefix + route.path)
        elif hasattr(route, "effective_route_contexts"):  # FastAPI >= 0.120: an included APIRouter
            for context in route.effective_route_contexts():
                for method in getattr(context.original_route, "methods", None) or ():
                    yield method, prefix + context.path
        else:
            for method in getattr(route, "methods", None) or ():
                yield method, prefix + route.path


def filled(path: str) -> str:
    """A concrete path: every {param} or {param:path} replaced by junk."""
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    from ui.service import LabelService

    svc = LabelService.open(f"sqlite:///{tmp_path_factory.mktemp('routes') / 'labels.db'}")
    app = FastAPI()
    mount(app, svc, "/")
    found = sorted(set(app_routes(app.routes)))
    svc.close()
    return found


def test_the_router_walk_finds_gradios_own_routes(routes):
    paths = {path for _, path in routes}
    for expected in ("/gradio_api/heartbeat/{session_hash}", "/gradio_api/cancel", "/gradio_api/reset",
                     "/openapi.json", "/gradio_api/startup-events", "/gradio_api/upload", "/gradio_api/call/v2/{api_name}",
                     "/auth/login", "/config"):
        assert expected in paths, expected
    assert len(routes) > 60


def test_no_anonymous_request_gets_an_answer(server, routes):
    answered = []
    with httpx.Client(base_url=server.url.rstrip("/"), follow_redirects=False, timeout=10) as http:
        for method, path in routes:
            if method == "HEAD" and ("GET", path) in routes:
                continue
            r = http.request(method, filled(path), json={} if method in ("POST", "PUT", "PATCH", "DELETE") else None)
            ok = r.status_code < 300 or (r.status_code < 400 and method != "GET")
            if ok and (method, path) not in ANONYMOUS_OK:
                answered.append(f"{method} {path} -> {r.status_code}")
            elif (method, path) not in ANONYMOUS_OK:
                assert r.status_code in (401, 303, 405), f"{method} {path} -> {r.status_code}"
                if r.status_code == 303:
                    assert r.headers["location"].startswith("/auth/login"), (path, r.headers["location"])
    assert not answered, answered


def test_heartbeat_is_refused_not_held_open(server):
    with httpx.Client(base_url=server.url, timeout=5) as http:
        assert http.get("gradio_api/heartbeat/anything").status_code == 401
        assert http.post("gradio_api/cancel", json={"session_hash": "x", "fn_index": 0, "event_id": "x"}).status_code == 401
        assert http.post("gradio_api/reset", json={"session_hash": "x", "fn_index": 0, "event_id": "x"}).status_code == 401


def test_uploads_are_for_admins_only_and_sized_for_a_candidates_file(server):
    from ui.app import MAX_UPLOAD

    server.svc.create_user("anon-test-lab", "lab-password")
    lab = {"Authorization": f"Bearer {api_token(server.url, 'anon-test-lab', 'lab-password')}"}
    admin = {"Authorization": f"Bearer {api_token(server.url, 'admin', 'admin-password')}"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("gradio_api/upload", files={"files": ("c.jsonl", b"{}\n")}, headers=lab)
        assert r.status_code == 403 and r.json() == {"detail": "Admins only."}
        assert http.post("gradio_api/upload", files={"files": ("c.jsonl", b"{}\n")}, headers=admin).status_code == 200
        assert MAX_UPLOAD == "64mb"
        too_big = http.post("gradio_api/upload", files={"files": ("c.jsonl", b"x" * (65 * 2**20))}, headers=admin)
        assert too_big.status_code >= 400


def test_a_labeler_on_the_v2_call_route_gets_a_clean_refusal(server):
    server.svc.create_user("anon-test-lab2", "lab-password")
    lab = {"Authorization": f"Bearer {api_token(server.url, 'anon-test-lab2', 'lab-password')}"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("gradio_api/call/v2/campaigns", json={"data": []}, headers=lab)
        assert r.status_code == 403, r.text
        assert r.json() == {"detail": "Not served by this app; use gradio_client (see docs/labeling.md)."}
        assert http.post("gradio_api/call/v2/campaigns", json={}).status_code == 401  # anonymous: not even that
