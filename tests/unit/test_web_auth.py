"""Who may read call content over HTTP (streams/web_auth.py): tokens, sessions, the start rules."""

from __future__ import annotations

import stat

import pytest

from callstt.streams.lifecycle import StartError
from callstt.streams.settings import Settings
from callstt.streams.web_auth import (SESSION_COOKIE, SESSION_SECONDS, WebAccess, generated_token, is_loopback,
                                      local_path, web_access)

TOKEN, OTHER = "a" * 32, "b" * 40
ACCESS = WebAccess((TOKEN, OTHER), "test")
NOW = 1_800_000_000.0


def test_a_bearer_token_opens_content_pages_and_probes_need_none():
    bearer = {"Authorization": f"Bearer {OTHER}"}
    assert ACCESS.allows("/calls", bearer, {}, NOW)  # any token of the file: rotation
    assert ACCESS.allows("/calls", {"Authorization": f"bearer  {TOKEN} "}, {}, NOW)
    for refused in ({}, {"Authorization": "Bearer " + "a" * 31}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        assert not ACCESS.allows("/calls", refused, {}, NOW), refused
    for path in ("/health", "/metrics", "/api", "/models"):
        assert ACCESS.allows(path, {}, {}, NOW)
    assert not ACCESS.allows("/table/", {}, {}, NOW) and not ACCESS.allows("/anything", {}, {}, NOW)
    assert WebAccess((), "insecure").allows("/calls", {}, {}, NOW)  # CALLSTT_WEB_INSECURE


def test_a_session_cookie_lasts_its_hours_names_no_token_and_ends_with_its_token():
    cookie = ACCESS.session_for(TOKEN, NOW)
    assert TOKEN not in cookie
    assert ACCESS.allows("/calls/live", {}, {SESSION_COOKIE: cookie}, NOW + SESSION_SECONDS - 1)
    assert not ACCESS.allows("/calls/live", {}, {SESSION_COOKIE: cookie}, NOW + SESSION_SECONDS)  # expired
    expiry, mac = cookie.split(".")
    assert not ACCESS.session_valid(f"{int(expiry) + 3600}.{mac}", NOW)  # a longer life is not for the taking
    assert not ACCESS.session_valid(f"{expiry}.{mac[:-1]}x", NOW) and not ACCESS.session_valid("junk", NOW)
    assert not WebAccess((OTHER,), "rotated").session_valid(cookie, NOW)  # its token left the file


def test_after_sign_in_only_a_path_of_this_site():
    assert local_path("/calls/live?call=x") == "/calls/live?call=x"
    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example", ""):
        assert local_path(elsewhere) == "/calls/live"


def test_loopback_addresses():
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "10.0.0.5", "worker.example"))


def test_the_start_rules(tmp_path):
    def settings(**values) -> Settings:
        return Settings.from_env({"CALLSTT_DATA_DIR": str(tmp_path / "data"), **values})

    # Loopback without a file: a token made once, readable by its owner only, and kept.
    made = web_access(settings())
    token_file = tmp_path / "data" / "web-token"
    assert len(made.tokens[0]) >= 32 and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert web_access(settings()).tokens == made.tokens == (generated_token(token_file),)
    # Any other address: refused without a credential, unless said insecure.
    with pytest.raises(StartError, match="without a credential.*CALLSTT_WEB_TOKENS_FILE"):
        web_access(settings(CALLSTT_WEB_HOST="0.0.0.0"))
    assert web_access(settings(CALLSTT_WEB_HOST="0.0.0.0", CALLSTT_WEB_INSECURE="true")).open
    # A tokens file: comments and blank lines skipped; short tokens, an empty or missing file refused.
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# rotated on Monday\n{TOKEN}\n\n{OTHER}\n")
    assert web_access(settings(CALLSTT_WEB_HOST="0.0.0.0", CALLSTT_WEB_TOKENS_FILE=str(tokens))).tokens == (TOKEN, OTHER)
    for text, message in (("short\n", "shorter than 24"), ("# none\n", "holds no token")):
        tokens.write_text(text)
        with pytest.raises(StartError, match=message):
            web_access(settings(CALLSTT_WEB_TOKENS_FILE=str(tokens)))
    with pytest.raises(StartError, match="cannot be read"):
        web_access(settings(CALLSTT_WEB_TOKENS_FILE=str(tmp_path / "missing")))


def test_with_a_metrics_port_of_its_own_the_web_ports_metrics_need_the_token(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    access = web_access(Settings(web_tokens_file=str(tokens), metrics_port=9464))
    assert not access.allows("/metrics", {}, {}, NOW) and access.allows("/health", {}, {}, NOW)
    assert access.allows("/metrics", {"Authorization": f"Bearer {TOKEN}"}, {}, NOW)
    assert web_access(Settings(web_tokens_file=str(tokens))).allows("/metrics", {}, {}, NOW)
