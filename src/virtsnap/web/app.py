"""The ASGI application of `virtsnap serve`: its routes, the checks every request passes (Host, access token,
and for actions Origin and a per-session CSRF token), and the job runner that makes one API call at a time."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import virtsnap
from virtsnap import progress

from . import model

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
SECURITY_HEADERS = {
    # Only our own files run; nothing may frame the page (clickjacking a revert button).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_JOBS = 200


class Settings:
    """What one server was started with. `hosts` None means any Host header (--allow-remote)."""

    def __init__(self, token: str, readonly: bool, hosts: frozenset[str] | None) -> None:
        self.token = token
        self.readonly = readonly
        self.hosts = hosts
        self.key = secrets.token_bytes(32)  # signs session ids into CSRF tokens; never leaves the process
        # Cookies are not separated by port: name them after this server so two servers on one host never clash.
        tag = hashlib.sha256(token.encode()).hexdigest()[:10]
        self.token_cookie = f"virtsnap-{tag}"
        self.session_cookie = f"virtsnap-{tag}-session"

    def csrf_for(self, session: str) -> str:
        return hmac.new(self.key, session.encode(), hashlib.sha256).hexdigest()

    def host_allowed(self, host: str) -> bool:
        if self.hosts is None:
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self.hosts


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _refuse(request: Request, message: str) -> Response:
    """403 as JSON for the page's own calls, as text for a browser that navigated here."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message, "code": 403}, status_code=403)
    return PlainTextResponse(f"403 Forbidden: {message}\n", status_code=403)


class Guard(BaseHTTPMiddleware):
    """Every request: an expected Host and the access token (query, cookie or `Authorization: token`).
    Every action: also an Origin equal to this server's, and the session's CSRF token in X-CSRF-Token."""

    def __init__(self, app: Any, settings: Settings) -> None:
        super().__init__(app)
        self.settings = settings

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await self._check(request, call_next)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _check(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        s = self.settings
        host = request.headers.get("host", "")
        if not s.host_allowed(host):
            return _refuse(request, f"unexpected Host header {host!r}")
        query_token = request.query_params.get("token")
        authorization = request.headers.get("authorization", "")
        header_token = authorization[6:] if authorization.lower().startswith("token ") else None
        if not (_same(query_token, s.token) or _same(header_token, s.token)
                or _same(request.cookies.get(s.token_cookie), s.token)):
            return _refuse(request, "a valid access token is required (open the URL `virtsnap serve` printed)")
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("origin")
            if origin != f"http://{host}":
                return _refuse(request, f"cross-site request refused (Origin {origin!r})")
            session = request.cookies.get(s.session_cookie)
            if session is None or not _same(request.headers.get("x-csrf-token"), s.csrf_for(session)):
                return _refuse(request, "cross-site request refused (missing or wrong CSRF token)")
        if query_token is not None and request.method in SAFE_METHODS:
            # The token URL: keep the token in a cookie and take it out of the address bar and history.
            clean = request.url.remove_query_params("token")
            response: Response = RedirectResponse(str(clean), status_code=303)
            self._cookies(request, response)
            return response
        response = await call_next(request)
        if request.cookies.get(s.session_cookie) is None:
            self._cookies(request, response)
        return response

    def _cookies(self, request: Request, response: Response) -> None:
        s = self.settings
        response.set_cookie(s.token_cookie, s.token, httponly=True, samesite="strict")
        if request.cookies.get(s.session_cookie) is None:
            response.set_cookie(s.session_cookie, secrets.token_urlsafe(24), httponly=True, samesite="strict")


Outcome = tuple[str, Any]  # an action's result line and its structured result (or None)


class Job:
    __slots__ = ("code", "id", "label", "message", "progress", "result", "state")

    def __init__(self, job_id: str, label: str) -> None:
        self.id = job_id
        self.label = label
        self.state = "running"
        self.message = ""
        self.code = 0
        self.progress: tuple[str, int, int] | None = None
        self.result: Any = None  # structured outcome, e.g. a prune plan

    def as_json(self) -> dict[str, Any]:
        shown = None if self.progress is None else dict(zip(("what", "done", "total"), self.progress, strict=True))
        return {"id": self.id, "label": self.label, "state": self.state, "message": self.message,
                "code": self.code, "progress": shown, "result": self.result}


class Runner:
    """One connection, one API call at a time (queries and actions alike); actions run as background jobs
    whose state and progress the page polls."""

    def __init__(self, conn: virtsnap.virConnect) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)

    def query(self, fn: Callable[[virtsnap.virConnect], Any]) -> Any:
        with self.lock:
            return fn(self.conn)

    def start(self, label: str, fn: Callable[[virtsnap.virConnect], Outcome]) -> Job:
        job = Job(f"{next(self._ids)}-{secrets.token_hex(4)}", label)
        self.jobs[job.id] = job
        for old in list(self.jobs)[:-MAX_JOBS]:
            del self.jobs[old]
        threading.Thread(target=self._run, args=(job, fn), daemon=True, name=f"job {job.id}").start()
        return job

    def _run(self, job: Job, fn: Callable[[virtsnap.virConnect], Outcome]) -> None:
        def note(what: str, done: int, total: int) -> None:
            job.progress = (what, done, total)

        try:
            with self.lock, progress.reporting(note):
                job.message, job.result = fn(self.conn)
            job.state = "done"
        except virtsnap.libvirtError as exc:
            job.message, job.code, job.state = exc.get_error_message(), exc.get_error_code(), "failed"
        except Exception as exc:  # the page must always learn that its job ended
            job.message, job.code, job.state = f"internal error: {exc}", 1, "failed"


def _error(exc: virtsnap.libvirtError) -> JSONResponse:
    return JSONResponse({"error": exc.get_error_message(), "code": exc.get_error_code()}, status_code=400)


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if value is None:
        raise model.invalid(f"missing '{name}'")
    return value


Handler = Callable[[Request], Awaitable[Response]]
Action = Callable[[virtsnap.virConnect, dict[str, Any]], Outcome]


def create_app(conn: virtsnap.virConnect, token: str, readonly: bool = False,
               hosts: frozenset[str] | None = LOOPBACK_NAMES) -> Starlette:
    """The application over an open connection. `readonly`: no action routes answer, the page offers none."""
    settings = Settings(token, readonly, hosts)
    runner = Runner(conn)

    def api(fn: Callable[[Request, virtsnap.virConnect], Any]) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(await run_in_threadpool(runner.query, lambda c: fn(request, c)))
            except virtsnap.libvirtError as exc:
                return _error(exc)
        return endpoint

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def session(request: Request) -> Response:
        sid = request.cookies.get(settings.session_cookie)
        return JSONResponse({"readonly": settings.readonly, "uri": conn.getURI(),
                             "csrf": settings.csrf_for(sid) if sid else None})

    def preview(request: Request, c: virtsnap.virConnect) -> Any:
        what = request.query_params.get("what")
        fn = {"revert": model.revert_preview, "delete": model.delete_preview}.get(what or "")
        if fn is None:
            raise model.invalid("'what' must be revert or delete")
        return fn(c, _param(request, "domain"), _param(request, "snapshot"))

    def plain(fn: Callable[[virtsnap.virConnect, str, str, dict[str, Any]], str]) -> Action:
        return lambda c, f: (fn(c, f["domain"], f["snapshot"], f), None)

    actions: dict[str, Action] = {
        "create": lambda c, f: (model.create(c, f["domain"], f), None),
        "revert": plain(model.revert),
        "delete": plain(model.delete),
        "describe": plain(model.edit_description),
        "protect": plain(model.protect),
        "prune": lambda c, f: model.prune(c, f["domain"], f),
    }

    async def action(request: Request) -> Response:
        if settings.readonly:
            return JSONResponse({"error": "read-only server: no actions", "code": 403}, status_code=403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "actions take a JSON body", "code": 8}, status_code=415)
        try:
            form = await request.json()
            if not isinstance(form, dict):
                raise model.invalid("the body must be a JSON object")
            name = form.get("action")
            if name not in actions:
                raise model.invalid(f"unknown action {name!r}")
            for key in ("domain",) if name in ("create", "prune") else ("domain", "snapshot"):
                if not isinstance(form.get(key), str):
                    raise model.invalid(f"'{key}' must be a string")
        except ValueError as exc:  # not JSON at all
            return _error(model.invalid(f"the body is not JSON: {exc}"))
        except virtsnap.libvirtError as exc:
            return _error(exc)
        fn = actions[name]
        label = f"{name} {form.get('snapshot') or form.get('name') or ''}".strip()
        job = runner.start(label, lambda c: fn(c, form))
        return JSONResponse(job.as_json(), status_code=202)

    async def job(request: Request) -> Response:
        found = runner.jobs.get(request.query_params.get("id", ""))
        if found is None:
            return JSONResponse({"error": "no such job", "code": 8}, status_code=404)
        return JSONResponse(found.as_json())

    routes = [
        Route("/", index),
        Route("/api/session", session),
        Route("/api/domains", api(lambda r, c: model.list_domains(c))),
        Route("/api/tree", api(lambda r, c: model.tree(c, _param(r, "domain")))),
        Route("/api/fingerprint", api(lambda r, c: {"fingerprint": model.fingerprint(
            c, r.query_params.get("domain"))})),
        Route("/api/sizes", api(lambda r, c: model.sizes(c, _param(r, "domain")))),
        Route("/api/xml", api(lambda r, c: {"xml": model.snapshot_xml(c, _param(r, "domain"),
                                                                        _param(r, "snapshot"))})),
        Route("/api/preview", api(preview)),
        Route("/api/action", action, methods=["POST"]),
        Route("/api/job", job),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, settings=settings)])
