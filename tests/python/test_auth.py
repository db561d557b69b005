"""`hangar run` as an OAuth 2.1 protected resource, against a real OpenID provider (npm
oidc-provider, client-credentials grant with resource indicators, JWT access tokens) and the
official Python SDK client: the 401 and its metadata, the SDK's own OAuth flow, hostile tokens,
per-caller tool lists and buckets, key rotation, and credentials toward a remote server."""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import jwt
from mcp.shared.exceptions import MCPError
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from mcp import Client
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client

from conftest import REPO
from hangar_proc import EVERYTHING, PYTHON, Hangar, notes_server, stateless_headers, wait_for
from test_gateway import free_port, start  # noqa: F401 - start is a fixture

OIDC = REPO / "tests" / "oidc"
NODE = REPO / "tests" / "conformance" / "node_modules" / ".bin" / "node"  # Node 22 (npm `node`)
GUARDED = REPO / "tests" / "python" / "servers" / "guarded.py"
CLIENTS = {
    "agent-ops": "ops-secret-0123456789",
    "agent-readers": "readers-secret-0123456789",
    "agent-noscope": "noscope-secret-0123456789",
}


class SigningKey:
    """An RSA key as the provider publishes it (kid, RS256) and as the test signs with it."""

    def __init__(self, kid: str):
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = json.loads(RSAAlgorithm.to_jwk(self.private)) | {"kid": kid, "use": "sig", "alg": "RS256"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict, **header) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid, **header})


class Provider:
    """tests/oidc/provider.mjs on a loopback port, with the given keys; restartable."""

    def __init__(self, folder: Path, key: SigningKey):
        self.folder, self.port = folder, free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.start(key)

    def start(self, key: SigningKey) -> None:
        self.key = key
        keys = self.folder / f"keys-{self.port}-{key.kid}.json"
        keys.write_text(json.dumps({"keys": [key.jwk]}))
        self.log = open(self.folder / f"provider-{self.port}.log", "a")
        self.proc = subprocess.Popen([str(NODE), str(OIDC / "provider.mjs"), str(self.port), str(keys)],
                                     cwd=OIDC, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"provider did not start: {line!r}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()

    def token(self, client: str, resource: str, scope: str = "mcp:tools") -> str:
        """An access token by the client-credentials grant, for `resource` (RFC 8707)."""
        body = f"grant_type=client_credentials&scope={scope}&resource={resource}".encode()
        basic = base64.b64encode(f"{client}:{CLIENTS[client]}".encode()).decode()
        request = urllib.request.Request(f"{self.issuer}/token", data=body, headers={
            "Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)["access_token"]


@pytest.fixture
def provider(tmp_path):
    p = Provider(tmp_path, SigningKey("key-1"))
    yield p
    if p.proc.poll() is None:
        p.stop()


EVERYTHING_FOR_CALLERS = f"""\
apiVersion: mcp-hangar.io/v1alpha1
kind: MCPServer
metadata: {{name: everything}}
spec:
  mode: container
  image: node:20-slim
  transport: stdio
  command: [node, "{EVERYTHING}", stdio]
  tools:
    allowList: [echo, get-sum, get-tiny-image]
    callers:
      - groups: [ops]
        rateLimit: {{requestsPerMinute: 1, burst: 3}}
      - groups: [readers]
        allowList: [echo]
        rateLimit: {{requestsPerMinute: 1, burst: 3}}
"""


@pytest.fixture
def protected(start, provider):
    """`hangar run` protected by the provider (serving the reference server with caller rules)."""

    def _start(files: dict[str, str] | None = None, env: dict | None = None, more: list[str] = ()) -> Hangar:
        """`more`: flags beside the OAuth ones."""
        port = free_port()
        flags = ["--auth-issuer", provider.issuer, "--auth-audience", f"http://127.0.0.1:{port}/mcp",
                 "--auth-required-scopes", "mcp:tools", *more]
        return start(files or {"everything.yaml": EVERYTHING_FOR_CALLERS}, env, flags=flags, listen=f"127.0.0.1:{port}")

    return _start


def bearer_client(url: str, token: str, mode: str = "auto") -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http), mode=mode)


async def list_and_call(client: Client, tool: str = "everything__echo") -> tuple[list[str], str]:
    async with client as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
        result = await c.call_tool(tool, {"message": "hi"})
        return names, result.content[0].text


def post(url: str, token: str | None, body: dict) -> tuple[int, dict, dict]:
    """A raw POST to /mcp: (status, headers, JSON body)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               **stateless_headers(body)}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = {"raw": text[:200].decode(errors="replace")}
        return e.code, dict(e.headers), parsed


STATELESS_ECHO = {
    "jsonrpc": "2.0", "id": 1, "method": "tools/call",
    "params": {"name": "everything__echo", "arguments": {"message": "forwarded?"},
               "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                         "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                         "io.modelcontextprotocol/clientCapabilities": {}}},
}


STATELESS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": STATELESS_ECHO["params"]["_meta"]}}


def wait_listed(h: Hangar, token: str, count: int) -> None:
    """Waits until `count` tools are listed to this token's caller (listing takes no tokens from
    the caller's bucket; a call would)."""
    wait_for(lambda: len(post(h.url, token, STATELESS_LIST)[2].get("result", {}).get("tools", [])) == count,
             timeout=60)


def calls_seen(h: Hangar) -> float:
    """Every tools/call the gateway handled, whatever its outcome (from /metrics)."""
    text = urllib.request.urlopen(h.base + "/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("hangar_calls_total{"))


def test_without_a_token_a_client_gets_401_and_the_resource_metadata(protected, provider):
    h = protected()
    status, headers, body = post(h.url, None, STATELESS_ECHO)
    assert status == 401, body
    challenge = headers["www-authenticate"]
    metadata_url = f"{h.base}/.well-known/oauth-protected-resource/mcp"
    assert challenge == f'Bearer scope="mcp:tools", resource_metadata="{metadata_url}"'
    with urllib.request.urlopen(metadata_url, timeout=10) as r:
        metadata = json.load(r)
    assert metadata["resource"] == h.url
    assert metadata["authorization_servers"] == [provider.issuer]
    assert metadata["scopes_supported"] == ["mcp:tools"]
    # The root form of RFC 9728 answers too.
    with urllib.request.urlopen(f"{h.base}/.well-known/oauth-protected-resource", timeout=10) as r:
        assert json.load(r) == metadata
    # GET and DELETE of /mcp are protected alike; /healthz and /metrics are not part of MCP.
    for method in ("GET", "DELETE"):
        request = urllib.request.Request(h.url, method=method, headers={"Mcp-Session-Id": "x"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401
    # The official SDK without credentials lists nothing: its connection fails (the SDK reports
    # the 401 as a generic error response).
    with pytest.raises(BaseException):
        asyncio.run(list_and_call(Client(h.url)))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_sdk_client_with_a_provider_token_lists_and_calls_tools(protected, provider, mode):
    h = protected()
    token = provider.token("agent-ops", h.url)
    wait_listed(h, token, 3)
    names, text = asyncio.run(list_and_call(bearer_client(h.url, token, mode)))
    assert names == ["everything__echo", "everything__get-sum", "everything__get-tiny-image"]
    assert text == "Echo: hi"


def test_the_sdk_runs_the_client_credentials_flow_from_the_401_alone(protected, provider):
    """The SDK reads the 401's resource_metadata, finds the provider, gets a token for Hangar's
    resource with its client credentials, and calls: Hangar untouched by any of it."""
    h = protected()

    class Memory:
        def __init__(self):
            self.tokens, self.client = None, None

        async def get_tokens(self):
            return self.tokens

        async def set_tokens(self, tokens):
            self.tokens = tokens

        async def get_client_info(self):
            return self.client

        async def set_client_info(self, info):
            self.client = info

    storage = Memory()
    oauth = ClientCredentialsOAuthProvider(server_url=h.url, storage=storage, client_id="agent-readers",
                                           client_secret=CLIENTS["agent-readers"], scope="mcp:tools",
                                           issuer=provider.issuer)
    wait_listed(h, provider.token("agent-readers", h.url), 1)
    client = Client(streamable_http_client(h.url, http_client=httpx2.AsyncClient(auth=oauth, timeout=30)))
    names, text = asyncio.run(list_and_call(client))
    assert names == ["everything__echo"] and text == "Echo: hi"
    claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
    assert claims["aud"] == h.url and claims["client_id"] == "agent-readers"


# What each hostile token is refused for (the error_description a client sees).
REASONS = {
    "expired": "has expired",
    "not yet valid": "not valid yet (nbf)",
    "another resource": "for another resource (aud)",
    "another issuer": "from another issuer (iss)",
    "unknown kid": "unknown kid",
    "same kid, other key": "signature does not verify",
    "alg none": "not a signed JWT with a supported algorithm",
    "HS256 with the public key": "HS256 is not allowed for its key",
    # Cut short, the signature is bad base64 or (at some lengths) a shorter, wrong signature.
    "truncated signature": ("not a well-formed JWT", "signature does not verify"),
    "bit-flipped signature": "signature does not verify",
    "a second provider's token": "unknown kid",
    "not a JWT": "not a signed JWT",
    "64 KiB token": "over 16384 bytes",
    "unknown crit": "critical header extensions (crit)",
    "empty sub": "sub is empty",
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with(secret: bytes, header: dict, claims: dict) -> str:
    """The key-confusion attack: an HMAC made with the public key (PyJWT rightly refuses to)."""
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signed}.{b64(hmac.new(secret, signed.encode(), hashlib.sha256).digest())}"


def test_hostile_tokens_are_refused_with_401_and_nothing_is_forwarded(protected, provider, tmp_path):
    h = protected()
    good = provider.token("agent-ops", h.url)
    wait_for(lambda: post(h.url, good, STATELESS_ECHO)[0] == 200, timeout=60)
    reached = calls_seen(h)
    now = int(time.time())
    claims = jwt.decode(good, options={"verify_signature": False})
    key = provider.key
    header, payload, signature = good.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    stranger = SigningKey("key-1")  # the same kid, another key
    second = Provider(tmp_path, SigningKey("key-2"))
    try:
        hostile = {
            "expired": key.sign(claims | {"exp": now - 600, "iat": now - 900}),
            "not yet valid": key.sign(claims | {"nbf": now + 600}),
            "another resource": key.sign(claims | {"aud": "http://127.0.0.1:1/mcp"}),
            "another issuer": key.sign(claims | {"iss": "http://127.0.0.1:2"}),
            "unknown kid": SigningKey("nobody-knows").sign(claims),
            "same kid, other key": stranger.sign(claims),
            "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": key.kid}),
            "HS256 with the public key": hs256_with(key.public_pem(), {"alg": "HS256", "kid": key.kid}, claims),
            "truncated signature": f"{header}.{payload}.{signature[:-20]}",
            "bit-flipped signature": f"{header}.{payload}.{flipped}",
            "a second provider's token": second.token("agent-ops", h.url),
            "not a JWT": "opaque-token-0123456789",
            "64 KiB token": key.sign(claims | {"padding": "x" * 65536}),
            "unknown crit": key.sign(claims, crit=["urn:example:must-understand"]),
            "empty sub": key.sign(claims | {"sub": ""}),
        }
        for name, token in hostile.items():
            status, headers, body = post(h.url, token, STATELESS_ECHO)
            assert status == 401, (name, status, body)
            assert headers["www-authenticate"].startswith('Bearer error="invalid_token"'), (name, headers)
            assert body["error"] == "invalid_token", (name, body)
            reasons = REASONS[name] if isinstance(REASONS[name], tuple) else (REASONS[name],)
            assert any(r in body["error_description"] for r in reasons), (name, body)
        # 1 MB of token never reaches the check: the listener refuses the header block (431), and
        # closes the connection, which a busy client may see while it is still sending.
        try:
            status = post(h.url, "x" * 1_000_000, STATELESS_ECHO)[0]
        except (urllib.error.URLError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            assert isinstance(reason, (BrokenPipeError, ConnectionResetError)), e
            status = "closed while sending"
        assert status in (401, 431, "closed while sending"), status
        # A genuine token without the required scope: 403 insufficient_scope.
        status, headers, body = post(h.url, provider.token("agent-noscope", h.url, scope="profile"), STATELESS_ECHO)
        assert status == 403 and 'error="insufficient_scope"' in headers["www-authenticate"], (status, headers, body)
    finally:
        second.stop()
    assert calls_seen(h) == reached, "a refused request reached the server"
    # The good token still works after all of that.
    assert post(h.url, good, STATELESS_ECHO)[0] == 200
    log = (h.folder / "hangar.log").read_text()
    assert good not in log


def test_two_callers_see_their_own_tools_and_have_their_own_buckets(protected, provider):
    h = protected()
    ops, readers = provider.token("agent-ops", h.url), provider.token("agent-readers", h.url)

    async def session(token: str):
        async with bearer_client(h.url, token) as c:
            names = sorted(t.name for t in (await c.list_tools()).tools)
            outcomes = []
            for tool in ["everything__echo"] * 4 + ["everything__get-sum"]:
                args = {"message": "x"} if tool.endswith("echo") else {"a": 1, "b": 2}
                try:
                    r = await c.call_tool(tool, args)
                    outcomes.append("error: " + r.content[0].text if r.is_error else "ok")
                except Exception as e:  # noqa: BLE001 - the refusal's text is what is asserted
                    outcomes.append(f"refused: {e}")
            return names, outcomes

    wait_listed(h, ops, 3)
    ops_names, ops_outcomes = asyncio.run(session(ops))
    reader_names, reader_outcomes = asyncio.run(session(readers))
    assert ops_names == ["everything__echo", "everything__get-sum", "everything__get-tiny-image"]
    assert reader_names == ["everything__echo"]
    assert ops_outcomes[:3] == ["ok", "ok", "ok"] and "rate" in ops_outcomes[3].lower(), ops_outcomes
    # Readers have a bucket of their own: ops exhausting theirs did not touch it.
    assert reader_outcomes[:3] == ["ok", "ok", "ok"] and "rate" in reader_outcomes[3].lower(), reader_outcomes
    # A tool the list hides is refused on tools/call too, naming the rule.
    assert "callers[1].allowList" in reader_outcomes[4], reader_outcomes


def test_key_rotation_at_the_provider_is_followed_without_a_restart(protected, provider):
    h = protected()
    first = provider.token("agent-ops", h.url)
    wait_for(lambda: post(h.url, first, STATELESS_ECHO)[0] == 200, timeout=60)
    provider.stop()
    provider.start(SigningKey("key-rotated"))
    rotated = provider.token("agent-ops", h.url)
    assert jwt.get_unverified_header(rotated)["kid"] == "key-rotated"
    # An unknown kid fetches the keys again at most every 5 s.
    status = wait_for(lambda: (s := post(h.url, rotated, STATELESS_ECHO)[0]) == 200 and s, timeout=30, interval=1)
    assert status == 200 and h.proc.poll() is None


def test_a_remote_servers_credentials_come_from_the_environment_and_are_never_shown(protected, provider, tmp_path):
    secret = "Bearer remote-credential-7f3a9c"
    guard_log = tmp_path / "guard.log"
    port = free_port()
    server = subprocess.Popen([str(PYTHON), str(GUARDED), str(port)], stderr=subprocess.DEVNULL,
                              env={**os.environ, "GUARD_EXPECT": secret, "GUARD_LOG": str(guard_log)})
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        manifest = (
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: guarded}\n"
            f"spec:\n  mode: remote\n  endpoint: 'http://127.0.0.1:{port}/mcp'\n"
            "  headers:\n    - name: Authorization\n      valueFrom: {secretKeyRef: {name: guarded-creds, key: token}}\n"
        )
        h = protected({"guarded.yaml": manifest}, env={"GUARDED_CREDS_TOKEN": secret})
        token = provider.token("agent-ops", h.url)

        async def call():
            async with bearer_client(h.url, token) as c:
                return (await c.call_tool("guarded__secret_word", {})).content[0].text

        assert wait_for(lambda: asyncio.run(call()), timeout=60) == "swordfish"
        seen = set(guard_log.read_text().splitlines())
        # The server saw its own credential only, never the client's token (no passthrough).
        assert seen == {secret}, seen
        with urllib.request.urlopen(f"{h.base}/metrics", timeout=10) as r:
            assert "remote-credential" not in r.read().decode()
        h.stop()
        assert "remote-credential" not in (h.folder / "hangar.log").read_text()
    finally:
        server.kill()
        server.wait()


def test_a_missing_credential_variable_is_named_and_the_server_not_served(protected, tmp_path):
    manifest = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: guarded}\n"
        "spec:\n  mode: remote\n  endpoint: 'http://127.0.0.1:9/mcp'\n"
        "  headers:\n    - name: Authorization\n      valueFrom: {secretKeyRef: {name: guarded-creds, key: token}}\n"
    )
    h = protected({"guarded.yaml": manifest})
    expected = ("spec.headers[0].valueFrom.secretKeyRef: `hangar run` reads Secret \"guarded-creds\" key \"token\" "
                "from the environment variable GUARDED_CREDS_TOKEN, which is not set")
    wait_for(lambda: expected in (h.folder / "hangar.log").read_text())


def test_caller_rules_govern_resources_prompts_and_completions_too(protected, provider):
    """A verified caller that no `callers` entry matches sees none of the server's resources,
    templates or prompts, and reading, getting or completing them is refused; a caller an entry
    matches uses them."""
    h = protected()
    ops = provider.token("agent-ops", h.url)
    claims = jwt.decode(ops, options={"verify_signature": False})
    stranger = provider.key.sign(claims | {"sub": "eve", "groups": ["elsewhere"]})
    wait_for(lambda: post(h.url, ops, STATELESS_ECHO)[0] == 200, timeout=60)

    async def offered(token: str):
        async with bearer_client(h.url, token) as c:
            resources = (await c.list_resources()).resources
            templates = (await c.list_resource_templates()).resource_templates
            prompts = (await c.list_prompts()).prompts
            return resources, templates, prompts

    resources, templates, prompts = asyncio.run(offered(ops))
    assert resources and templates and prompts, "the matched caller sees the server's offerings"
    uri, prompt = str(resources[0].uri), prompts[0].name
    assert asyncio.run(offered(stranger)) == ([], [], []), "the stranger sees none of them"

    async def use(token: str):
        outcomes = []
        async with bearer_client(h.url, token) as c:
            for attempt in (lambda: c.read_resource(uri), lambda: c.get_prompt(prompt, {})):
                try:
                    await attempt()
                    outcomes.append("answered")
                except MCPError as e:
                    outcomes.append(f"refused: {e}")
        return outcomes

    assert asyncio.run(use(ops))[0] == "answered"
    refused = asyncio.run(use(stranger))
    assert all(o.startswith("refused") for o in refused), refused
    # Completion and subscription, as raw stateless requests: refused too.
    meta = STATELESS_ECHO["params"]["_meta"]
    for method, params in (("completion/complete", {"ref": {"type": "ref/prompt", "name": prompt},
                                                    "argument": {"name": "x", "value": ""}}),
                           ("resources/subscribe", {"uri": uri})):
        _, _, answer = post(h.url, stranger, {"jsonrpc": "2.0", "id": 3, "method": method, "params": {**params, "_meta": meta}})
        assert "error" in answer and "result" not in answer, (method, answer)


def session_request(url: str, method: str, token: str | None, session: str | None = None,
                    body: dict | None = None) -> tuple[int, dict]:
    """A raw handshake-era request: (status, headers)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if session is not None:
        headers["Mcp-Session-Id"] = session
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            if method == "GET":  # an event stream: its status is all that counts here
                return r.status, dict(r.headers)
            r.read()
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}


def test_a_session_belongs_to_the_caller_it_was_issued_to(protected, provider):
    """bob, with his own valid token and alice's Mcp-Session-Id, gets 404 on POST, GET and DELETE,
    and alice's session still serves her; once she ends it, it is gone for her too."""
    h = protected()
    alice, bob = provider.token("agent-ops", h.url), provider.token("agent-readers", h.url)
    wait_for(lambda: post(h.url, alice, STATELESS_ECHO)[0] == 200, timeout=60)
    status, headers = session_request(h.url, "POST", alice, body=INITIALIZE)
    assert status == 200, status
    session = headers["mcp-session-id"]
    assert session_request(h.url, "POST", alice, session, LIST)[0] == 200
    for method, body in (("POST", LIST), ("GET", None), ("DELETE", None)):
        assert session_request(h.url, method, bob, session, body)[0] == 404, f"bob's {method} with alice's session"
    assert session_request(h.url, "POST", alice, session, LIST)[0] == 200, "bob's DELETE ended nothing"
    assert session_request(h.url, "DELETE", alice, session)[0] == 200
    for method, body in (("POST", LIST), ("GET", None), ("DELETE", None)):
        assert session_request(h.url, method, alice, session, body)[0] == 404, f"{method} on an ended session"


def test_a_call_parked_for_input_is_resumed_only_by_its_caller(protected, provider):
    """A 2026-07-28 call parked for its client's answer (`requestState`): bob's retry with alice's
    token-free state is answered as an unknown one and leaves the call parked; alice resumes it."""
    h = protected({"notes.yaml": notes_server("notes")})
    alice, bob = provider.token("agent-ops", h.url), provider.token("agent-readers", h.url)
    meta = STATELESS_ECHO["params"]["_meta"] | {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    call = lambda token, extra: post(h.url, token, {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "notes__clear_notes", "arguments": {}, "_meta": meta, **extra}})
    status, _, first = wait_for(lambda: (r := call(alice, {})) and r[0] == 200 and "result" in r[2] and r, timeout=60)
    result = first["result"]
    assert result.get("resultType") == "input_required", first
    state, (key, _) = result["requestState"], next(iter(result["inputRequests"].items()))
    answer = {"requestState": state, "inputResponses": {key: {"action": "accept", "content": {"confirm": True}}}}
    _, _, stolen = call(bob, answer)
    assert "unknown or expired" in json.dumps(stolen), stolen
    _, _, own = call(alice, answer)
    assert "result" in own and own["result"].get("resultType") != "input_required", own
