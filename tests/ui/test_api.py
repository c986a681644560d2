"""The app's API through gradio_client against a live server: what labelers and admins do."""

from __future__ import annotations

import httpx
import pytest
from gradio_client.exceptions import AppError

from alignment.data.rows import validate_rows
from tests.ui.conftest import pair_rows
from tests.ui.live import api_client, api_token


@pytest.fixture(scope="module")
def labeler(server):
    server.svc.create_user("api-ann", "ann-password")
    return api_client(server.url, api_token(server.url, "api-ann", "ann-password"))


def test_labeler_flow_and_admin_export(server, labeler, admin_client):
    admin_client.predict(name="api-pairs", items=pair_rows(3), overlap=1, guidelines="be fair",
                         api_name="/admin_create_campaign")
    assert "api-pairs" in [c["name"] for c in labeler.predict(api_name="/campaigns")]

    item = labeler.predict(campaign="api-pairs", api_name="/next_item")
    assert item["labels"] == ["A", "B"] and item["prompt"] == "p0"
    assert "candidate_ids" not in item and "metadata" not in item  # blind: no model identity, no answer key
    # a double-clicked submit (same client token) makes one judgment
    j1 = labeler.predict(assignment_id=item["id"], choice="A", rationale="clearer", client_token=item["token"],
                         api_name="/submit")
    j2 = labeler.predict(assignment_id=item["id"], choice="A", rationale="clearer", client_token=item["token"],
                         api_name="/submit")
    assert j1 == j2

    second = labeler.predict(campaign="api-pairs", api_name="/next_item")
    labeler.predict(assignment_id=second["id"], reason="cannot tell", api_name="/skip_item")
    reopened = labeler.predict(campaign="api-pairs", api_name="/undo")
    assert reopened["id"] == second["id"]
    labeler.predict(assignment_id=second["id"], choice="tie", client_token=reopened["token"], api_name="/submit")
    third = labeler.predict(campaign="api-pairs", api_name="/next_item")
    labeler.predict(assignment_id=third["id"], choice="B", client_token=third["token"], api_name="/submit")
    assert labeler.predict(campaign="api-pairs", api_name="/next_item") is None
    assert labeler.predict(campaign="api-pairs", api_name="/my_progress")["judged"] == 3

    admin_client.predict(name="api-x", items=pair_rows(1), api_name="/admin_create_campaign")
    item = admin_client.predict(campaign="api-x", api_name="/next_item")  # admins may label too
    with pytest.raises(AppError, match="choice must be one of"):
        admin_client.predict(assignment_id=item["id"], choice="C", api_name="/submit")
    with pytest.raises(AppError, match="not assigned to this user"):
        labeler.predict(assignment_id=item["id"], choice="A", api_name="/submit")

    progress = admin_client.predict(campaign="api-pairs", api_name="/admin_progress")
    assert progress["judgments"] == 3 and progress["fraction_done"] == 1.0
    rows = admin_client.predict(campaign="api-pairs", api_name="/admin_export")
    assert validate_rows(rows, None, "api export") == "preference"
    assert len(rows) == 2 and {r["labeler"] for r in rows} == {"api-ann"}
    rows = admin_client.predict(campaign="api-pairs", include_ties=True, api_name="/admin_export")
    assert sorted(r["label"] for r in rows) == ["preference", "preference", "tie"]
    actions = [r["action"] for r in admin_client.predict(campaign="api-pairs", api_name="/admin_audit_log")]
    assert {"judge", "skip", "undo", "export", "create_campaign"} <= set(actions)


def test_ranking_through_the_api(server, labeler, admin_client):
    admin_client.predict(name="api-rank", items=pair_rows(1, k=4), mode="ranking", api_name="/admin_create_campaign")
    item = labeler.predict(campaign="api-rank", api_name="/next_item")
    assert item["mode"] == "ranking" and item["labels"] == ["A", "B", "C", "D"]
    labeler.predict(assignment_id=item["id"], ranking=["D", "B"], client_token=item["token"], api_name="/submit")
    (row,) = admin_client.predict(campaign="api-rank", api_name="/admin_export")
    validate_rows([row], "ranking", "api export")
    assert [row["responses"][i] for i in row["ranking"]] == [item["responses"][3], item["responses"][1]]


def test_admin_manages_users(server, admin_client):
    admin_client.predict(name="api-new", password="new-password", api_name="/admin_create_user")
    assert "api-new" in [u["name"] for u in admin_client.predict(api_name="/admin_users")]
    token = api_token(server.url, "api-new", "new-password")
    admin_client.predict(name="api-new", active=False, api_name="/admin_set_user_active")
    # deactivation ends the session at once and refuses new sign-ins
    assert httpx.get(server.url + "config", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    r = httpx.post(server.url + "auth/token", json={"username": "api-new", "password": "new-password"})
    assert r.status_code == 401


def test_browser_sign_in_sets_a_session_cookie(server):
    server.svc.create_user("api-cookie", "cookie-password")
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/").status_code == 303  # signed out: to the form
        bad = http.post("auth/login", data={"username": "api-cookie", "password": "wrong"})
        assert bad.status_code == 401 and "Wrong user name or password" in bad.text
        ok = http.post("auth/login", data={"username": "api-cookie", "password": "cookie-password"})
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert http.get("/config").status_code == 200
        assert http.get("auth/logout").status_code == 303
        assert http.get("/config").status_code == 401
