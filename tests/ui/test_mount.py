"""`mount` into an existing FastAPI app under a sub-path, as behind a reverse proxy."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ui.app import mount


def test_mount_under_a_path_with_its_own_sign_in(svc):
    svc.create_user("ann", "pw")
    app = FastAPI()

    @app.get("/other")
    def other():
        return {"mine": True}

    mount(app, svc, "/labels")
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/other").json() == {"mine": True}  # the host app keeps its routes
        r = client.get("/labels/?campaign=x")
        assert r.status_code == 303
        assert r.headers["location"] == "/labels/auth/login?next=%2Flabels%2F%3Fcampaign%3Dx"
        assert client.get("/labels/config").status_code == 401
        form = client.get(r.headers["location"])
        assert 'action="/labels/auth/login"' in form.text and 'value="/labels/?campaign=x"' in form.text
        ok = client.post("/labels/auth/login", data={"username": "ann", "password": "pw", "next": "/labels/?campaign=x"})
        assert ok.status_code == 303 and ok.headers["location"] == "/labels/?campaign=x"
        assert "path=/labels/" in ok.headers["set-cookie"].lower()
        assert client.get("/labels/config").status_code == 200
        evil = client.post("/labels/auth/login", data={"username": "ann", "password": "pw", "next": "https://evil.example/"})
        assert evil.headers["location"] == "/labels/"  # no open redirect
