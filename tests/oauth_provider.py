"""A fake Hugging Face sign-in for tests: an OpenID Connect provider on loopback that stands in
for huggingface.co, and the browser's side of the login dance (`sign_in`, `sign_out`).

Gradio turns on the real OAuth routes (/login/huggingface, /login/callback, /logout, run by
authlib) only inside a Space, and reads its OAuth settings from the environment when gradio is
imported. So the app under test runs as a subprocess with `provider.env()` in its environment:

    with FakeHuggingFace() as provider:
        start the app with {**os.environ, **provider.env()}
        cookie = sign_in(app_url, provider, "alice")
        Client(app_url, headers={"Cookie": f"session={cookie}"}).predict(api_name="/whoami")

Everything is real except the identity provider: authlib fetches the discovery document, trades
the code for tokens with the client secret, and checks the RS256 signature, issuer, audience,
expiry and nonce of the id_token against a key pair made when the provider starts.

The app's session cookie is carried by hand: Gradio marks it `Secure`, and a cookie jar (httpx's,
a browser's) never sends a Secure cookie over plain http.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

logger = logging.getLogger(__name__)

SESSION_COOKIE = "session"  # the name Starlette's SessionMiddleware gives it in Gradio
ID_TOKEN_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "nonce",
                   "name", "preferred_username", "profile", "picture"]  # fmt: skip
MAX_HOPS = 10  # the dance takes 4 requests; authlib's retry on a lost state adds a few


@dataclass(frozen=True)
class _Grant:
    """What an authorization code stands for until the app trades it for tokens."""

    username: str
    client_id: str
    redirect_uri: str
    nonce: str | None


class FakeHuggingFace:
    """An OpenID Connect provider on 127.0.0.1 that signs in whoever `sign_in_as` names.

    Use it as a context manager (or call `start` and `stop`); `url` is set once it listens.
    Set `access_token_lifetime_s` below zero to hand out tokens that have already expired.
    """

    space_id = "ftapp-tests/demo"
    client_id = "ftapp-tests-client-id"
    client_secret = "ftapp-tests-client-secret"
    scopes = "openid profile"

    def __init__(self, sign_in_as: str = "alice", access_token_lifetime_s: int = 3600) -> None:
        self.sign_in_as = sign_in_as
        self.access_token_lifetime_s = access_token_lifetime_s
        self.url = ""
        self.token_requests = 0  # how many codes the app traded: proof the dance reached here
        self._key = RSAKey.generate_key(
            2048,
            parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"},
            private=True,
        )
        self._grants: dict[str, _Grant] = {}
        self._access_tokens: dict[str, str] = {}  # access token -> username
        self._lock = threading.Lock()  # the server answers each request in its own thread
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeHuggingFace:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _ProviderHandler)
        server.daemon_threads = True
        server.provider = self  # type: ignore[attr-defined]
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, name="fake-huggingface", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHuggingFace:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """What a Space sets for an app with `hf_oauth: true`, pointing at this provider.

        SYSTEM=spaces is what makes Gradio believe it runs in a Space (gradio.utils.get_space);
        SPACE_HOST is left out on purpose, or Gradio would build an https:// redirect URI.
        """
        return {
            "SYSTEM": "spaces",
            "SPACE_ID": self.space_id,
            "OAUTH_CLIENT_ID": self.client_id,
            "OAUTH_CLIENT_SECRET": self.client_secret,
            "OAUTH_SCOPES": self.scopes,
            "OPENID_PROVIDER_URL": self.url,
        }

    # -- what the endpoints know ------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/oauth/authorize",
            "token_endpoint": f"{self.url}/oauth/token",
            "userinfo_endpoint": f"{self.url}/oauth/userinfo",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ID_TOKEN_CLAIMS,
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.as_dict(private=False)]}

    def profile(self, username: str) -> dict[str, str]:
        """The profile claims of a user; the URLs point here so that nothing names hf.co."""
        return {
            "sub": hashlib.sha256(username.encode()).hexdigest()[:24],
            "name": username.title(),
            "preferred_username": username,
            "profile": f"{self.url}/{username}",
            "picture": f"{self.url}/avatars/{username}.png",
        }

    def authorize(self, params: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
        """Sign `sign_in_as` in at once: a redirect URL carrying a fresh code, or an error."""
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != self.client_id:
            return 400, {"error": "invalid_client", "error_description": "unknown client_id"}
        if params.get("response_type") != "code" or not redirect_uri:
            return 400, {"error": "invalid_request", "error_description": "need code flow"}
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(
                self.sign_in_as, self.client_id, redirect_uri, params.get("nonce")
            )
        reply = {"code": code}
        if "state" in params:
            reply["state"] = params["state"]
        return 302, _add_query(redirect_uri, reply)

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict]:
        """Trade a code for an access token and a signed id_token (RFC 6749 section 4.1.3)."""
        client_id, client_secret = _basic_credentials(authorization) or (
            form.get("client_id"),
            form.get("client_secret"),
        )
        if client_id != self.client_id or client_secret != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)  # a code works once
            self.token_requests += 1
        if grant is None or grant.client_id != client_id:
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if form.get("redirect_uri", grant.redirect_uri) != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        access_token = "hf_oauth_" + secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[access_token] = grant.username
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 3600,
            **({"nonce": grant.nonce} if grant.nonce else {}),
            **self.profile(grant.username),
        }
        id_token = jwt.encode({"alg": "RS256", "kid": self._key.kid}, claims, self._key)
        return 200, {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": self.access_token_lifetime_s,
            "scope": self.scopes,
            "id_token": id_token,
        }

    def userinfo(self, authorization: str | None) -> tuple[int, dict]:
        scheme, _, access_token = (authorization or "").partition(" ")
        with self._lock:
            username = self._access_tokens.get(access_token)
        if scheme.lower() != "bearer" or username is None:
            return 401, {"error": "invalid_token"}
        return 200, self.profile(username)


class _ProviderHandler(BaseHTTPRequestHandler):
    """Routes HTTP requests to the FakeHuggingFace that owns the server."""

    server_version = "FakeHuggingFace/1"

    @property
    def provider(self) -> FakeHuggingFace:
        return self.server.provider  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/.well-known/openid-configuration":
            self._send_json(200, self.provider.discovery())
        elif url.path == "/jwks":
            self._send_json(200, self.provider.jwks())
        elif url.path == "/oauth/authorize":
            status, reply = self.provider.authorize(params)
            if isinstance(reply, str):
                self.send_response(status)
                self.send_header("Location", reply)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._send_json(status, reply)
        elif url.path == "/oauth/userinfo":
            self._send_json(*self.provider.userinfo(self.headers.get("Authorization")))
        else:
            self._send_json(404, {"error": "not_found"})

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        path = urllib.parse.urlsplit(self.path).path
        if path == "/oauth/token":
            self._send_json(*self.provider.token(form, self.headers.get("Authorization")))
        elif path == "/oauth/userinfo":
            self._send_json(*self.provider.userinfo(self.headers.get("Authorization")))
        else:
            self._send_json(404, {"error": "not_found"})

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        logger.debug("fake huggingface: " + format, *args)


# -- the browser's side ----------------------------------------------------------------------


def sign_in(app_url: str, provider: FakeHuggingFace, username: str, timeout: float = 30) -> str:
    """Sign `username` in to the app the way a browser does, and return its session cookie.

    Follows each redirect by hand: app /login/huggingface -> provider /oauth/authorize ->
    app /login/callback -> app /. Raises AssertionError saying where the dance went wrong.
    """
    provider.sign_in_as = username
    cookie, trail, response = _follow(app_url, "/login/huggingface", None, timeout)
    if response.status_code != 200 or _path(str(response.url)) != "/":
        raise AssertionError(
            f"sign-in as {username!r} did not end on the app's page:\n{_describe(trail)}"
        )
    signed_in = (read_session(cookie) or {}).get("oauth_info", {}).get("userinfo", {})
    if cookie is None or signed_in.get("preferred_username") != username:
        raise AssertionError(
            f"sign-in as {username!r} left no such user in the session cookie "
            f"(provider traded {provider.token_requests} codes so far):\n{_describe(trail)}"
        )
    return cookie


def sign_out(app_url: str, session_cookie: str | None, timeout: float = 30) -> str | None:
    """Visit the app's /logout; the session cookie the browser holds afterwards (None: deleted)."""
    cookie, trail, response = _follow(app_url, "/logout", session_cookie, timeout)
    if response.status_code != 200:
        raise AssertionError(f"sign-out did not end on the app's page:\n{_describe(trail)}")
    return cookie


def read_session(session_cookie: str | None) -> dict[str, Any] | None:
    """The data in a Starlette session cookie, read without checking its signature.

    The cookie is `base64(json).timestamp.signature`: signed, not encrypted, so a test (or
    anyone holding the cookie) can read it. None if it is not such a cookie.
    """
    if not session_cookie:
        return None
    payload = session_cookie.split(".", 1)[0]
    try:
        return json.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return None


def _follow(
    app_url: str, path: str, cookie: str | None, timeout: float
) -> tuple[str | None, list[str], httpx.Response]:
    """GET app_url + path and follow redirects, sending and updating the app's session cookie."""
    app_origin = _origin(app_url)
    url = urllib.parse.urljoin(app_url, path)
    trail: list[str] = []
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for _ in range(MAX_HOPS):
            to_app = _origin(url) == app_origin
            headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"} if to_app and cookie else {}
            response = client.get(url, headers=headers)
            if to_app:
                cookie = _updated_cookie(response, cookie)
            location = response.headers.get("location")
            if response.status_code not in (301, 302, 303, 307, 308) or not location:
                trail.append(f"GET {url} -> {response.status_code} {response.text[:300]!r}")
                return cookie, trail, response
            trail.append(f"GET {url} -> {response.status_code} {location}")
            url = urllib.parse.urljoin(url, location)
    raise AssertionError(f"more than {MAX_HOPS} redirects:\n{_describe(trail)}")


def _updated_cookie(response: httpx.Response, cookie: str | None) -> str | None:
    """What a browser holds after `response`: a new session value, None if deleted, else as is."""
    for header in response.headers.get_list("set-cookie"):
        jar = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        morsel = jar.get(SESSION_COOKIE)
        if morsel is None:
            continue
        expires = morsel["expires"]
        expired = morsel["max-age"] == "0" or (
            bool(expires) and parsedate_to_datetime(expires).timestamp() < time.time()
        )
        cookie = None if expired or morsel.value in ("", "null") else morsel.value
    return cookie


def _add_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""  # not credentials at all: refused as an unknown client
    return urllib.parse.unquote(user), urllib.parse.unquote(password)


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path or "/"


def _describe(trail: list[str]) -> str:
    return "\n".join(f"  {step}" for step in trail) or "  (no request made)"
