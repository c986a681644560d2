"""Authorization: every admin action refused to labelers and to anonymous callers, through
the live server's API and, in process, for every event handler the UI registers."""

from __future__ import annotations

import inspect

import gradio as gr
import httpx
import pytest
from gradio_client.exceptions import AppError, AuthenticationError

from tests.ui.conftest import pair_rows
from tests.ui.live import api_client, api_token
from ui.app import build_app

# Every admin endpoint with arguments that would succeed for an admin.
ADMIN_CALLS = {
    "/admin_users": {},
    "/admin_create_user": {"name": "authz-mallory", "password": "x"},
    "/admin_set_user_active": {"name": "admin", "active": False},
    "/admin_campaigns": {},
    "/admin_create_campaign": {"name": "authz-evil", "items": pair_rows(1)},
    "/admin_set_campaign_status": {"campaign": "authz-c", "status": "closed"},
    "/admin_progress": {"campaign": "authz-c"},
    "/admin_agreement": {"campaign": "authz-c"},
    "/admin_export": {"campaign": "authz-c"},
    "/admin_audit_log": {},
}
LABELER_CALLS = {
    "/campaigns": {},
    "/next_item": {"campaign": "authz-c"},
    "/submit": {"assignment_id": 1, "choice": "A"},
    "/skip_item": {"assignment_id": 1},
    "/undo": {"campaign": "authz-c"},
    "/my_progress": {"campaign": "authz-c"},
}


@pytest.fixture(scope="module")
def labeler(server):
    server.svc.create_user("authz-lab", "lab-password")
    server.svc.create_campaign("authz-c", items=pair_rows(2), overlap=1)
    return api_client(server.url, api_token(server.url, "authz-lab", "lab-password"))


def test_every_admin_endpoint_refuses_a_labeler(server, labeler, admin_client):
    public = {name for name in labeler.view_api(print_info=False, return_format="dict")["named_endpoints"]}
    assert public == set(ADMIN_CALLS) | set(LABELER_CALLS), "a new endpoint needs an authorization test"
    for api_name, kwargs in ADMIN_CALLS.items():
        with pytest.raises(AppError, match="Admins only"):
            labeler.predict(**kwargs, api_name=api_name)
    # nothing happened
    assert server.svc.get_user_by_name("authz-mallory") is None
    assert server.svc.get_user_by_name("admin").active
    assert "authz-evil" not in [c["name"] for c in server.svc.list_campaigns()]
    assert server.svc.get_campaign(server.svc.campaign_id("authz-c"))["status"] == "open"
    # and the admin can do them (the calls above were refused for the role, not the arguments)
    assert admin_client.predict(campaign="authz-c", api_name="/admin_progress")["items"] == 2


def test_a_labeler_cannot_act_on_another_labelers_item(server, labeler):
    server.svc.create_user("authz-other", "other-password")
    other = api_client(server.url, api_token(server.url, "authz-other", "other-password"))
    mine = labeler.predict(campaign="authz-c", api_name="/next_item")
    with pytest.raises(AppError, match="not assigned to this user"):
        other.predict(assignment_id=mine["id"], choice="A", api_name="/submit")
    with pytest.raises(AppError, match="not assigned to this user"):
        other.predict(assignment_id=mine["id"], api_name="/skip_item")


def test_anonymous_requests_get_nothing(server):
    with pytest.raises(AuthenticationError):
        api_client(server.url, "not-a-session-token")
    with httpx.Client(base_url=server.url, follow_redirects=False) as http:
        assert http.get("/").status_code == 303  # to the sign-in form
        for path in ("/config", "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/queue/data?session_hash=x",
                     "/gradio_api/file=/etc/hostname"):
            assert http.get(path).status_code == 401, path
        for api_name, kwargs in {**ADMIN_CALLS, **LABELER_CALLS}.items():
            r = http.post(f"/gradio_api/call{api_name}", json={"data": list(kwargs.values())})
            assert r.status_code == 401, api_name
        r = http.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"})
        assert r.status_code == 401
        r = http.post("/gradio_api/upload", files={"files": ("a.txt", b"x")})
        assert r.status_code == 401


def _handlers(blocks: gr.Blocks):
    for block_fn in blocks.fns.values():
        if block_fn.fn is not None:
            yield block_fn.name, block_fn.fn


def _call(fn, username):
    request = gr.Request(username=username)
    kwargs = {}
    for name, param in inspect.signature(fn).parameters.items():
        kwargs[name] = request if name == "request" else (None if param.default is inspect.Parameter.empty else param.default)
    return fn(**kwargs)


def test_every_event_handler_checks_the_user_server_side(svc):
    """A client can call any registered handler directly (private or not), so each one must
    refuse anonymous callers, and each admin one must refuse labelers, before doing anything."""
    svc.create_user("lab", None, simulated=True)
    svc.create_user("boss", None, role="admin", simulated=True)
    blocks = build_app(svc)
    handlers = list(_handlers(blocks))
    assert len(handlers) > 25
    admin_handlers = [(n, f) for n, f in handlers if n.startswith("admin")]
    assert len(admin_handlers) >= 18
    for name, fn in handlers:
        for anonymous in (None, "nobody"):
            with pytest.raises(gr.Error, match="Not signed in"):
                _call(fn, anonymous)
    for name, fn in admin_handlers:
        with pytest.raises(gr.Error, match="Admins only"):
            _call(fn, "lab")
    # deactivated users are refused even with a session that Gradio still accepts
    svc.set_user_active(svc.user_id("boss"), False)
    for name, fn in admin_handlers:
        with pytest.raises(gr.Error, match="Not signed in"):
            _call(fn, "boss")
