"""Who may read call content over HTTP: the web pages of the worker, translator and speaker.

Pages that show or take call content (the live page, /calls, /calls/speech, POST /transcribe,
and Faust's own /router/ and /table/ when CALLSTT_WEB_DEBUG_PAGES turns them on) need a
credential; /health, /metrics, /api and /models carry none and stay open, for probes and
Prometheus. Every other path needs it too: closed unless named open.

The credential is a bearer token from CALLSTT_WEB_TOKENS_FILE (one per line: several while
tokens rotate), compared in constant time. A line `<token> calls=<pattern>,...` makes a client
token of the gateway (streams/gateway/): it may stream and hear only the calls whose IDs match
a pattern (`shop-*`, fnmatch), and opens none of the pages that show every call. Programs send `Authorization: Bearer <token>` (a
reverse proxy that authenticates people can add that header itself); a browser signs in once
at /login and then carries a session cookie: `<expiry>.<HMAC-SHA256 of the expiry keyed by the
token>`, HttpOnly and SameSite=Strict, valid 12 hours or until its token leaves the file. It is
stateless, so any of several workers behind a load balancer accepts it, and the token never
appears in a URL (URLs end up in logs).

Without a tokens file, a process bound to a loopback address makes a token in
CALLSTT_DATA_DIR/web-token (read by the user who runs it); on any other address it refuses to
start, unless CALLSTT_WEB_INSECURE says something in front of it authenticates.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from aiohttp import web

from callstt.streams.lifecycle import StartError
from callstt.streams.settings import Settings

log = logging.getLogger("callstt.web")

OPEN_PATHS = frozenset({"/health", "/metrics", "/api", "/models"})
LOGIN_PATH, LOGOUT_PATH = "/login", "/logout"
SESSION_COOKIE = "callstt_session"
SESSION_SECONDS = 12 * 3600
MIN_TOKEN_CHARS = 24  # `openssl rand -hex 32` gives 64
GENERATED_TOKEN_FILE = "web-token"


@dataclass(frozen=True)
class WebAccess:
    """The tokens that open the content pages (none: open to anyone, CALLSTT_WEB_INSECURE)."""

    tokens: tuple[str, ...]
    source: str  # where they come from, for the start line
    # the paths anyone may read; /metrics leaves them when it has a port of its own
    # (CALLSTT_METRICS_PORT), so a NetworkPolicy can give Prometheus that port and nothing else
    open_paths: frozenset[str] = OPEN_PATHS
    # the gateway's client tokens: token -> the call ID patterns it may use (never a page's credential)
    call_scopes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return not self.tokens and not self.call_scopes

    def client_token(self, offered: str) -> str | None:
        """The token (of either kind) equal to `offered`, compared in constant time; None: no token."""
        offered_digest = hashlib.sha256(offered.encode()).digest()
        matched = None
        for token in (*self.tokens, *self.call_scopes):
            if hmac.compare_digest(offered_digest, hashlib.sha256(token.encode()).digest()):
                matched = token
        return matched

    def session_token(self, cookie: str, now: float) -> str | None:
        """The token (of either kind) a session cookie was made with; None: none, or expired."""
        expiry_text, _, mac = cookie.partition(".")
        if not expiry_text.isdigit() or int(expiry_text) <= now:
            return None
        matched = None
        for token in (*self.tokens, *self.call_scopes):
            if hmac.compare_digest(mac.encode(), _session_mac(token, int(expiry_text)).encode()):
                matched = token
        return matched

    def may_use_call(self, token: str | None, call_id: str) -> bool:
        """Whether a client holding `token` may stream and hear `call_id` (open access: anyone)."""
        if self.open:
            return True
        if token is None:
            return False
        if token in self.call_scopes:
            return any(fnmatchcase(call_id, pattern) for pattern in self.call_scopes[token])
        return token in self.tokens

    def token_valid(self, offered: str) -> bool:
        """Constant time whatever the token: digests of equal length compared, every token tried."""
        offered_digest = hashlib.sha256(offered.encode()).digest()
        matched = False
        for token in self.tokens:
            matched |= hmac.compare_digest(offered_digest, hashlib.sha256(token.encode()).digest())
        return matched

    def session_for(self, token: str, now: float) -> str:
        expiry = int(now) + SESSION_SECONDS
        return f"{expiry}.{_session_mac(token, expiry)}"

    def session_valid(self, cookie: str, now: float) -> bool:
        expiry_text, _, mac = cookie.partition(".")
        if not expiry_text.isdigit() or int(expiry_text) <= now:
            return False
        matched = False
        for token in self.tokens:
            matched |= hmac.compare_digest(mac.encode(), _session_mac(token, int(expiry_text)).encode())
        return matched

    def allows(self, path: str, headers: Mapping[str, str], cookies: Mapping[str, str], now: float) -> bool:
        if self.open or path in self.open_paths:
            return True
        scheme, _, offered = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and offered.strip():
            return self.token_valid(offered.strip())
        cookie = cookies.get(SESSION_COOKIE)
        return cookie is not None and self.session_valid(cookie, now)


def _session_mac(token: str, expiry: int) -> str:
    return hmac.new(token.encode(), f"callstt-session:{expiry}".encode(), hashlib.sha256).hexdigest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, it is not only this machine


def web_access(settings: Settings) -> WebAccess:
    """The credential the process's pages require, from its settings (StartError: it must not
    start: a tokens file it cannot use, or a non-loopback address without a credential)."""
    open_paths = OPEN_PATHS - {"/metrics"} if settings.metrics_port else OPEN_PATHS
    if settings.web_tokens_file:
        tokens, scopes = read_token_lines(Path(settings.web_tokens_file))
        return WebAccess(tokens, settings.web_tokens_file, open_paths, scopes)
    if settings.web_insecure:
        log.warning("CALLSTT_WEB_INSECURE: the pages with call content on %s are open to anyone who reaches "
                    "them; only run so behind something that authenticates", settings.web_host)
        return WebAccess((), "none (CALLSTT_WEB_INSECURE)")
    if not is_loopback(settings.web_host):
        raise StartError(f"the web pages would serve call content on {settings.web_host} without a credential; set "
                         "CALLSTT_WEB_TOKENS_FILE to a file of tokens (or CALLSTT_WEB_INSECURE=true behind "
                         "something that authenticates)")
    path = Path(settings.data_dir) / GENERATED_TOKEN_FILE
    return WebAccess((generated_token(path),), str(path), open_paths)


def read_tokens(path: Path) -> tuple[str, ...]:
    """The file's tokens for every page and call (those without `calls=`)."""
    return read_token_lines(path)[0]


def read_token_lines(path: Path) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The file's tokens: those for every page and call, and the gateway's client tokens with the
    call ID patterns each may use (`<token> calls=<pattern>,<pattern>`)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise StartError(f"the web tokens file {path} cannot be read ({error.strerror or error}); "
                         "check CALLSTT_WEB_TOKENS_FILE") from error
    tokens: list[str] = []
    scopes: dict[str, tuple[str, ...]] = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        token, *options = line.split()
        if len(token) < MIN_TOKEN_CHARS:
            raise StartError(f"a token in {path} is shorter than {MIN_TOKEN_CHARS} characters; make one with "
                             "`openssl rand -hex 32`")
        patterns = [option.removeprefix("calls=") for option in options]
        if any(not option.startswith("calls=") for option in options) or not all(patterns):
            raise StartError(f"a line of {path} has {' '.join(options)!r} after its token: only "
                             "calls=<pattern>,... (the call IDs a gateway client may use) may follow it")
        if options:
            scopes[token] = tuple(part for pattern in patterns for part in pattern.split(",") if part)
        else:
            tokens.append(token)
    if not tokens and not scopes:
        raise StartError(f"the web tokens file {path} holds no token (one per line)")
    return tuple(tokens), scopes


def generated_token(path: Path) -> str:
    """This machine's token in `path`, made (readable by its owner only) when missing; processes
    starting together agree on one, since only the first link wins."""
    try:
        return read_tokens(path)[0]
    except StartError:
        if path.exists():
            raise
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as written:
            written.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process of this machine made it first: its token it is
        finally:
            draft.unlink()
    except OSError as error:
        raise StartError(f"the web token {path} cannot be written ({error.strerror or error}); set "
                         "CALLSTT_DATA_DIR to a folder this user may write, or CALLSTT_WEB_TOKENS_FILE") from error
    return read_tokens(path)[0]


def faust_web_options(settings: Settings) -> dict:
    """The Faust app settings that put every page behind `web_access` (Faust's debug pages off
    unless CALLSTT_WEB_DEBUG_PAGES)."""
    access = web_access(settings)
    log.info("web pages with call content need a token of %s", access.source)
    return {"web_application_options": {"middlewares": [middleware(access)]},
            "web_router_enabled": settings.web_debug_pages, "web_tables_enabled": settings.web_debug_pages}


# --- HTTP -------------------------------------------------------------------------------------

def middleware(access: WebAccess):
    """The aiohttp middleware in front of every page (Faust's included): sign-in, sign-out, and
    401 for a content page without the credential (a sign-in form for a browser)."""

    @web.middleware
    async def require_credential(request: web.Request, handler):
        if request.path == LOGIN_PATH:
            return await sign_in(access, request)
        if request.path == LOGOUT_PATH:
            return signed_out(request)
        if access.allows(request.path, request.headers, request.cookies, time.time()):
            return await handler(request)
        return refused(request)

    return require_credential


def refused(request: web.Request) -> web.Response:
    if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
        return login_form(request.path_qs, status=401)
    return web.json_response({"error": "this page shows call content: send `Authorization: Bearer <token>` (a token "
                                       f"of CALLSTT_WEB_TOKENS_FILE), or sign in at {LOGIN_PATH}"},
                             status=401, headers={"WWW-Authenticate": 'Bearer realm="callstt"'})


async def sign_in(access: WebAccess, request: web.Request) -> web.Response:
    if request.method != "POST":
        return login_form(local_path(request.query.get("next", "")))
    form = await request.post()
    token, after = str(form.get("token", "")).strip(), local_path(str(form.get("next", "")))
    if access.open:
        return redirect(after)
    if access.client_token(token) is None:
        log.warning("web sign-in refused from %s: wrong token", request.remote)
        return login_form(after, status=401, note="That token is not one of this service's.")
    response = redirect(after)
    response.set_cookie(SESSION_COOKIE, access.session_for(token, time.time()), max_age=SESSION_SECONDS,
                        path="/", httponly=True, samesite="Strict", secure=served_over_tls(request))
    return response


def signed_out(request: web.Request) -> web.Response:
    response = redirect(LOGIN_PATH)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def served_over_tls(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def local_path(wanted: str) -> str:
    """Where to go after signing in: a path of this site only (never another host's)."""
    if wanted.startswith("/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return "/calls/live"


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>callstt: sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto}}input{{width:100%;padding:.4rem}}
button{{margin-top:.8rem;padding:.4rem 1rem}}.note{{color:#b00}}</style></head>
<body><h1>Sign in</h1>
<p>These pages show call content. Give a token of this service (CALLSTT_WEB_TOKENS_FILE, or on this
machine the file web-token in CALLSTT_DATA_DIR).</p>
<p class="note">{note}</p>
<form method="post" action="{login}">
<input type="password" name="token" id="token" autocomplete="current-password" placeholder="token" autofocus>
<input type="hidden" name="next" value="{after}">
<button type="submit" id="sign-in">Sign in</button>
</form></body></html>
"""


def login_form(after: str, status: int = 200, note: str = "") -> web.Response:
    page = LOGIN_PAGE.format(note=html.escape(note), login=LOGIN_PATH, after=html.escape(local_path(after)))
    return web.Response(text=page, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store"})
