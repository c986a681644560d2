"""Sign-in: a login form, sessions kept in the label store, and Gradio's `auth_dependency`.

Routes (under the app's path prefix, e.g. "/" or "/labels/"):
- GET/POST `auth/login`: the form; a successful POST sets an HttpOnly, SameSite=Lax cookie
  (Secure when served over https) and redirects to the app.
- GET `auth/logout`: ends the session.
- POST `auth/token`: `{"username", "password"}` -> `{"token"}` for API clients, who then send
  `Authorization: Bearer <token>`.
- GET `healthz`: `{"ok": true}` for load balancers and the test harness (no data).

Everything else under the prefix needs a valid session, checked in one place (`SessionGate`,
in front of every route, Gradio's own included): a browser that opens the app's page without
one is redirected to the form, and any other request gets a 401 before it reaches a route, so
that Gradio's heartbeat, cancel, reset, OpenAPI schema and upload routes answer nobody
anonymous. Uploads (`gradio_api/upload`) are for admins only: the one file the app takes is an
admin's candidates file; a labeler gets a 403. Gradio's keyword-argument API
(`gradio_api/call/v2/<name>`), which this app does not document and which answers a 500 to a
body it cannot map, is refused with a 403 to everyone.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from ui.render import esc
from ui.service import LabelService

COOKIE = "rlhf_session"
SESSION_TTL_S = 12 * 3600
SCOPE_USER = "rlhf.user"  # where SessionGate leaves the signed-in user for the auth dependency
UPLOAD_ROUTES = ("gradio_api/upload",)  # relative to the prefix; admins only
# Gradio's keyword-argument API (POST call/v2/<name>) answers a 500 to any body it cannot map
# (`{"data": [...]}`, an unknown name); this app's API is gradio_client's (docs/labeling.md).
REFUSED_PREFIXES = ("gradio_api/call/v2/",)


def session_token(request: HTTPConnection) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.cookies.get(COOKIE)


def dependency(svc: LabelService):
    """Gradio's auth_dependency: the signed-in user's name, or None (-> 401)."""

    async def signed_in_user(request: Request) -> str | None:
        user = request.scope.get(SCOPE_USER)  # already looked up by SessionGate for this request
        if user is None:
            user = await run_in_threadpool(svc.session_user, session_token(request))
        return user.name if user else None

    return signed_in_user


def _login_page(action: str, next_url: str, error: str = "") -> str:
    message = f'<p class="error" id="login-error">{esc(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · labeling</title>
<style>
 body {{ font-family: system-ui, sans-serif; background: #f6f7f9; display: flex; justify-content: center; padding-top: 12vh; }}
 form {{ background: white; padding: 28px 32px; border-radius: 10px; box-shadow: 0 2px 12px #0002; width: 320px; }}
 h1 {{ font-size: 20px; margin: 0 0 16px; }}
 label {{ display: block; font-size: 13px; margin: 12px 0 4px; color: #444; }}
 input {{ width: 100%; box-sizing: border-box; padding: 8px; font-size: 15px; border: 1px solid #bbb; border-radius: 6px; }}
 button {{ margin-top: 18px; width: 100%; padding: 9px; font-size: 15px; border: 0; border-radius: 6px; background: #f97316; color: white; cursor: pointer; }}
 .error {{ color: #b91c1c; font-size: 14px; }}
</style></head>
<body><form method="post" action="{esc(action)}">
<h1>Labeling: sign in</h1>{message}
<label for="username">User name</label><input id="username" name="username" autocomplete="username" autofocus required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{esc(next_url)}">
<button type="submit" id="login-button">Sign in</button>
</form></body></html>"""


def add_routes(app: FastAPI, svc: LabelService, prefix: str) -> None:
    """Add the sign-in routes and the redirect of signed-out page loads (before mounting Gradio,
    so that these routes win over the mounted app)."""
    login, logout, token_path = prefix + "auth/login", prefix + "auth/logout", prefix + "auth/token"
    pages = {prefix, prefix.rstrip("/") or "/"}

    def full(request: Request, path: str) -> str:
        return request.scope.get("root_path", "").rstrip("/") + path

    def secure(request: Request) -> bool:
        return request.headers.get("x-forwarded-proto", request.url.scheme) == "https"

    def safe_next(request: Request, value: str | None) -> str:
        """Where to go after signing in: only a page of this app (no open redirect)."""
        home = full(request, prefix)
        value = value or ""
        if value.startswith(home) and not value.startswith("//") and "\\" not in value and "://" not in value:
            return value
        return home

    @app.get(login, response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return HTMLResponse(_login_page(full(request, login), safe_next(request, request.query_params.get("next"))))

    @app.post(login, include_in_schema=False)
    async def login_submit(request: Request):
        form = await request.form()
        # scrypt and the session write run in the thread pool, not on the event loop
        next_url = safe_next(request, str(form.get("next", "")))
        user = await run_in_threadpool(svc.authenticate, str(form.get("username", "")), str(form.get("password", "")))
        if user is None:
            return HTMLResponse(_login_page(full(request, login), next_url, "Wrong user name or password."),
                                status_code=401)
        token = await run_in_threadpool(svc.create_session, user.id, SESSION_TTL_S)
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(COOKIE, token, max_age=SESSION_TTL_S, httponly=True, samesite="lax",
                            secure=secure(request), path=full(request, prefix))
        return response

    @app.get(logout, include_in_schema=False)
    async def logout_route(request: Request):
        await run_in_threadpool(svc.revoke_session, session_token(request))
        response = RedirectResponse(full(request, login), status_code=303)
        response.delete_cookie(COOKIE, path=full(request, prefix))
        return response

    @app.post(token_path, include_in_schema=False)
    async def token_route(request: Request):
        try:
            body = await request.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        user = await run_in_threadpool(svc.authenticate, str(body.get("username", "")), str(body.get("password", "")))
        if user is None:
            return JSONResponse({"error": "wrong user name or password"}, status_code=401)
        return {"token": await run_in_threadpool(svc.create_session, user.id, SESSION_TTL_S), "role": user.role}

    @app.get(prefix + "healthz", include_in_schema=False)
    def health():
        return {"ok": True}

    public = {login, logout, token_path, prefix + "healthz"}
    app.add_middleware(SessionGate, svc=svc, prefix=prefix, pages=pages, public=public, login=login,
                       uploads={prefix + r for r in UPLOAD_ROUTES}, refused=tuple(prefix + r for r in REFUSED_PREFIXES))


class SessionGate:
    """Every request under the app's prefix needs a session, except the sign-in routes.

    Signed out: a browser opening the app's page is sent to the login form (303), anything
    else gets a 401 (a websocket is closed), whatever route it names, Gradio's own included.
    Signed in: uploads are refused to non-admins (403), the call/v2 API to everyone (403); the
    user is left in the scope, so that
    the auth dependency does not look the session up a second time.

    A plain ASGI middleware, not Starlette's BaseHTTPMiddleware (`@app.middleware("http")`),
    which would wrap every request and response stream of the app in extra tasks and memory
    streams, a cost each click of every labeler paid twice (the queue join and its event stream).
    """

    def __init__(self, app, svc: LabelService, prefix: str, pages: set[str], public: set[str], login: str,
                 uploads: set[str], refused: tuple[str, ...]):
        self.app, self.svc, self.prefix, self.pages = app, svc, prefix, pages
        self.public, self.login, self.uploads, self.refused = public, login, uploads, refused

    async def __call__(self, scope, receive, send):
        path = self._path(scope) if scope["type"] in ("http", "websocket") else None
        if path is None or path in self.public or not (path.startswith(self.prefix) or path in self.pages):
            await self.app(scope, receive, send)  # lifespan, the sign-in routes, the host app's own routes
            return
        connection = HTTPConnection(scope)
        user = await run_in_threadpool(self.svc.session_user, session_token(connection))
        if user is None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            if scope.get("method") in ("GET", "HEAD") and path in self.pages:
                here = connection.url.path + (f"?{connection.url.query}" if connection.url.query else "")
                target = scope.get("root_path", "").rstrip("/") + self.login
                response = RedirectResponse(f"{target}?next={quote(here, safe='')}", status_code=303)
            else:
                response = JSONResponse({"detail": "Not signed in."}, status_code=401)
            await response(scope, receive, send)
            return
        if path.rstrip("/") in self.uploads and not user.is_admin:
            await JSONResponse({"detail": "Admins only."}, status_code=403)(scope, receive, send)
            return
        if path.startswith(self.refused):
            detail = "Not served by this app; use gradio_client (see docs/labeling.md)."
            await JSONResponse({"detail": detail}, status_code=403)(scope, receive, send)
            return
        scope[SCOPE_USER] = user
        await self.app(scope, receive, send)

    @staticmethod
    def _path(scope) -> str:
        """The request path as the app's routes see it (without a proxy's root_path)."""
        path, root = scope.get("path", ""), scope.get("root_path", "").rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            return path.removeprefix(root) or "/"
        return path
