"""Hugging Face sign-in, for real but offline: a minimal Gradio app with a LoginButton runs as a
subprocess that believes it is in a Space, signs users in through tests/oauth_provider.py's fake
provider, and tells each caller who they are. Proves the fake provider, the browser-side dance,
and the way a handler reads the signed-in user from gr.Request.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client

from ftapp.processes import free_port
from tests.oauth_provider import FakeHuggingFace, read_session, sign_in, sign_out

START_TIMEOUT_S = 120.0

# The app under test. `hf_username` is the server-side reading that ftapp's handlers can use:
# the session Gradio's SessionMiddleware decoded from the `session` cookie of the HTTP request
# that carried the call (/gradio_api/queue/join for the browser and gradio_client alike).
APP = '''
import sys
import time

import gradio as gr


def hf_username(request: gr.Request | None) -> str | None:
    """The signed-in Hugging Face username, or None (not signed in, or the sign-in expired)."""
    http_request = getattr(request, "request", None)
    session = http_request.scope.get("session") if http_request is not None else None
    info = (session or {}).get("oauth_info") or {}
    expires_at = info.get("expires_at")
    if expires_at is not None and expires_at < time.time():
        return None
    return (info.get("userinfo") or {}).get("preferred_username")


def whoami(request: gr.Request) -> str:
    return hf_username(request) or "anonymous"


def whoami_profile(profile: gr.OAuthProfile | None) -> str:
    return profile.username if profile is not None else "anonymous"


def request_username(request: gr.Request) -> str:
    return str(request.username)


with gr.Blocks() as demo:
    gr.LoginButton()
    answer = gr.Textbox(label="You are")
    gr.Button("Who am I?").click(whoami, None, answer, api_name="whoami")
    gr.Button("Profile").click(whoami_profile, None, answer, api_name="whoami_profile")
    gr.Button("request.username").click(request_username, None, answer, api_name="request_username")

demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
'''


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeHuggingFace]:
    with FakeHuggingFace() as fake:
        yield fake


@pytest.fixture(scope="module")
def app_url(provider: FakeHuggingFace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("oauth-app")
    script = folder / "app.py"
    script.write_text(APP, encoding="utf-8")
    env = {
        **os.environ,
        **provider.env(),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(folder / "gradio"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SPACE_HOST", None)  # it would make Gradio send an https:// redirect URI
    port = free_port()
    log_path = folder / "app.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(script), str(port)],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"the app exited with code {process.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"the app did not answer {url} in {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}"
            )
        time.sleep(0.25)


def _tail(log_path: Path) -> str:
    return log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def ask(app_url: str, cookie: str | None, api_name: str = "/whoami") -> str:
    """Call an endpoint the way a script does, sending the session cookie if there is one."""
    headers = {"Cookie": f"session={cookie}"} if cookie else None
    client = Client(app_url, headers=headers, verbose=False)
    try:
        return client.predict(api_name=api_name)
    finally:
        client.close()


def test_the_app_uses_the_real_oauth_routes_pointed_at_the_fake(app_url, provider):
    # Outside a Space, Gradio's /login/huggingface would redirect to its own mocked callback.
    with urllib.request.urlopen(provider.url + "/.well-known/openid-configuration") as response:
        assert json.load(response)["issuer"] == provider.url
    request = urllib.request.Request(app_url + "login/huggingface")
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(request)
    assert redirect.value.code == 302
    assert redirect.value.headers["Location"].startswith(provider.url + "/oauth/authorize?")
    assert "redirect_uri=http%3A%2F%2F127.0.0.1" in redirect.value.headers["Location"]


def test_sign_in_as_alice_then_bob(app_url, provider):
    traded = provider.token_requests
    alice = sign_in(app_url, provider, "alice")
    bob = sign_in(app_url, provider, "bob")

    assert provider.token_requests == traded + 2
    assert ask(app_url, alice) == "alice"
    assert ask(app_url, bob) == "bob"
    assert ask(app_url, alice, "/whoami_profile") == "alice"
    assert ask(app_url, bob, "/whoami_profile") == "bob"
    # The token and the id_token's claims, as authlib checked and stored them.
    info = read_session(alice)["oauth_info"]
    assert info["access_token"].startswith("hf_oauth_")
    assert info["scope"] == "openid profile"
    assert info["userinfo"]["name"] == "Alice"
    assert info["userinfo"]["aud"] == provider.client_id


def test_request_username_is_not_the_oauth_user(app_url, provider):
    # gr.Request.username is for launch(auth=...), not for Hugging Face sign-in.
    alice = sign_in(app_url, provider, "alice")
    assert ask(app_url, alice, "/request_username") == "None"


def test_no_cookie_is_anonymous(app_url):
    assert ask(app_url, None) == "anonymous"
    assert ask(app_url, None, "/whoami_profile") == "anonymous"


def test_sign_out_forgets_the_user(app_url, provider):
    alice = sign_in(app_url, provider, "alice")
    after = sign_out(app_url, alice)

    assert after is None  # the session held only the sign-in, so the browser deletes the cookie
    assert ask(app_url, after) == "anonymous"
    assert ask(app_url, after, "/whoami_profile") == "anonymous"


def test_sign_out_does_not_revoke_a_copied_cookie(app_url, provider):
    # The session lives in the signed cookie itself: /logout tells the browser to drop it, but a
    # copy kept elsewhere stays valid until oauth_info's expires_at (or the cookie's 14 days).
    alice = sign_in(app_url, provider, "alice")
    sign_out(app_url, alice)
    assert ask(app_url, alice) == "alice"


@pytest.mark.parametrize("kind", ["garbage", "forged"])
def test_a_bad_session_cookie_is_anonymous(app_url, provider, kind):
    if kind == "garbage":
        cookie = "not-a-session-cookie"
    else:  # alice's cookie with her name changed: the signature no longer matches
        alice = sign_in(app_url, provider, "alice")
        payload, signature = alice.split(".", 1)
        data = read_session(alice)
        data["oauth_info"]["userinfo"]["preferred_username"] = "mallory"
        payload = base64.b64encode(json.dumps(data).encode()).decode()
        cookie = f"{payload}.{signature}"
        assert read_session(cookie)["oauth_info"]["userinfo"]["preferred_username"] == "mallory"

    assert ask(app_url, cookie) == "anonymous"
    assert ask(app_url, cookie, "/whoami_profile") == "anonymous"


def test_an_expired_sign_in_is_anonymous(app_url, provider):
    provider.access_token_lifetime_s = -60  # authlib sets expires_at a minute in the past
    try:
        expired = sign_in(app_url, provider, "carol")
    finally:
        provider.access_token_lifetime_s = 3600
    assert read_session(expired)["oauth_info"]["expires_at"] < time.time()

    assert ask(app_url, expired) == "anonymous"
    assert ask(app_url, expired, "/whoami_profile") == "anonymous"


def test_a_failed_dance_says_where(app_url, provider):
    # A wrong client secret: the app's callback cannot trade the code and answers an error.
    provider.client_secret = "not-the-apps-secret"
    try:
        with pytest.raises(AssertionError, match=r"/login/callback\?.* -> 500"):
            sign_in(app_url, provider, "alice")
    finally:
        del provider.client_secret  # back to the class's, which the app knows


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
