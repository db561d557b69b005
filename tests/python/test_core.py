"""`hangar core` (driven through its admin API, as the operator does) and `hangar bridge`."""
import asyncio
import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from hangar_proc import NOTES, PYTHON, Hangar, wait_for
from test_gateway import free_port, post

KEY = "test-admin-key-0123456789"


def admin(h: Hangar, method: str, path: str, body=None, key: str | None = KEY):
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(h.base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


@pytest.fixture
def core(tmp_path):
    h = Hangar(tmp_path, {"HANGAR_API_KEY": KEY}, ["core"])
    yield h
    h.stop()


@pytest.fixture
def notes_http():
    port = free_port()
    p = subprocess.Popen([str(PYTHON), str(NOTES), "--http", str(port)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wait_for(lambda: __import__("socket").socket().connect_ex(("127.0.0.1", port)) == 0)
    yield f"http://127.0.0.1:{port}/mcp"
    p.kill()
    p.wait()


def test_admin_api_needs_the_key(core, tmp_path):
    assert admin(core, "GET", "/api/v1/servers", key=None)[0] == 401
    status, body = admin(core, "GET", "/api/v1/servers", key="wrong")
    assert status == 401 and body["error"] == "wrong API key"
    assert admin(core, "GET", "/api/v1/servers") == (200, {"servers": []})
    (tmp_path / "keyless").mkdir()
    keyless = Hangar(tmp_path / "keyless", {"HANGAR_API_KEY": ""}, ["core"])
    try:
        status, body = admin(keyless, "GET", "/api/v1/servers")
        assert status == 401 and "no API key is configured" in body["error"]
    finally:
        keyless.stop()


def test_bad_registrations_name_the_field(core):
    status, body = admin(core, "PUT", "/api/v1/servers/team/s", {"spec": {"mode": "remote", "replicas": "two"}})
    assert status == 400 and body["error"].startswith("spec.replicas: invalid type"), body
    status, body = admin(core, "PUT", "/api/v1/servers/team/s", b"{nope")
    assert status == 400
    status, body = admin(core, "PUT", "/api/v1/servers/team/s", {"spec": {"mode": "container", "image": "x"}})
    assert status == 400 and body["error"].startswith("endpoint: required"), body
    # A strategy plugin that is not loaded does not refuse the group: round robin serves it, and
    # the answer says why the plugin does not (the operator's PluginResolved condition).
    status, body = admin(core, "PUT", "/api/v1/groups/team/g", {"spec": {"selector": {}, "strategy": "Fastest"}, "members": []})
    assert status == 200 and body["plugin"]["resolved"] is False, body
    assert body["plugin"]["reason"] == "PluginNotFound" and 'no plugin named "Fastest"' in body["plugin"]["message"], body
    # Endpoints are http:// or https:// URLs; the refusal never repeats the URL (it may hold a secret).
    for endpoint, said in [("file:///etc/passwd", 'scheme "file"'), ("gopher://127.0.0.1:70/", 'scheme "gopher"'),
                           ("not a url ?token=s3cret", "not a URL")]:
        status, body = admin(core, "PUT", "/api/v1/servers/team/s", {"spec": {"mode": "remote", "endpoint": endpoint}})
        assert status == 400 and body["error"].startswith("spec.endpoint: ") and said in body["error"], body
        assert "s3cret" not in body["error"] and "passwd" not in body["error"], body
    # A cluster server's pods, as the operator reads them from EndpointSlices: URLs too.
    status, body = admin(core, "PUT", "/api/v1/servers/team/s", {"spec": {"mode": "container", "image": "x"},
                                                                 "endpoint": "http://s.team.svc:8080/mcp",
                                                                 "pods": ["http://10.0.0.1:8080/mcp", "ftp://10.0.0.2/"]})
    assert status == 400 and body["error"].startswith("pods[1]: scheme \"ftp\""), body


def test_registered_servers_are_served_reported_and_removed(core, notes_http):
    events = urllib.request.urlopen(
        urllib.request.Request(core.base + "/api/v1/events", headers={"authorization": f"Bearer {KEY}"}), timeout=20
    )
    status, _ = admin(core, "PUT", "/api/v1/servers/team/notes", {"spec": {"mode": "remote", "endpoint": notes_http, "tools": {"allowList": ["word_count"]}, "healthCheck": {"interval": "1s"}}})
    assert status == 200

    async def names():
        async with Client(core.url) as c:
            return [t.name for t in (await c.list_tools()).tools]

    assert wait_for(lambda: asyncio.run(names()) == ["notes__word_count"])
    servers = wait_for(lambda: (s := admin(core, "GET", "/api/v1/servers")[1]["servers"]) and s[0]["state"] == "Ready" and s)
    assert servers[0]["toolsCount"] == 4 and servers[0]["name"] == "notes"
    # The operator turns this into status.lastHealthCheck.
    checked = wait_for(lambda: admin(core, "GET", "/api/v1/servers")[1]["servers"][0]["secondsSinceHealthCheck"] is not None)
    assert checked and admin(core, "GET", "/api/v1/servers")[1]["servers"][0]["secondsSinceHealthCheck"] <= 3
    line = b""
    while not line.startswith(b"data:"):
        line = events.readline()
    event = json.loads(line[5:])
    assert event["type"] == "state" and event["server"] == "notes" and event["state"] in ("Initializing", "Ready"), event
    status, _ = admin(core, "PUT", "/api/v1/groups/team/all-notes", {"spec": {"selector": {}, "strategy": "Failover"}, "members": ["notes"]})
    assert status == 200
    groups = admin(core, "GET", "/api/v1/groups")[1]["groups"]
    assert groups[0]["healthyMembers"] == 1 and groups[0]["state"] == "Ready"
    assert admin(core, "DELETE", "/api/v1/groups/team/all-notes")[0] == 204
    assert admin(core, "DELETE", "/api/v1/servers/team/notes")[0] == 204
    assert admin(core, "DELETE", "/api/v1/servers/team/notes")[0] == 404
    assert asyncio.run(names()) == []


def test_openapi_description_is_served(core):
    doc = json.loads(urllib.request.urlopen(core.base + "/api/v1/openapi.json", timeout=5).read())
    assert doc["openapi"].startswith("3.") and "/api/v1/servers/{namespace}/{name}" in doc["paths"]


def test_bridge_serves_one_stdio_server_under_its_own_tool_names(tmp_path):
    h = Hangar(tmp_path, None, ["bridge", "--", str(PYTHON), str(NOTES)])
    try:
        async def session(mode):
            async with Client(h.url, mode=mode) as c:
                tools = sorted(t.name for t in (await c.list_tools()).tools)
                r = await c.call_tool("word_count", {"text": "bridged over http"})
                return tools, r.structured_content

        for mode in ["auto", "legacy"]:
            tools, result = wait_for(lambda: (r := asyncio.run(session(mode))) and r[0] and r)
            assert tools == ["add_note", "clear_notes", "list_notes", "word_count"]
            assert result == {"result": 3}
    finally:
        h.stop()


def test_the_bridge_enforces_the_servers_own_tool_lists(tmp_path):
    h = Hangar(tmp_path, None, ["bridge", "--allow", "*_note*", "--deny", "add_note", "--", str(PYTHON), str(NOTES)])
    try:
        assert h.url.startswith("http://127.0.0.1:"), "loopback unless told otherwise"

        async def session():
            async with Client(h.url) as c:
                tools = sorted(t.name for t in (await c.list_tools()).tools)
                try:
                    await c.call_tool("add_note", {"text": "x"})
                    refused = None
                except MCPError as e:
                    refused = str(e)
                return tools, refused

        tools, refused = wait_for(lambda: (r := asyncio.run(session())) and r[0] and r)
        assert tools == ["clear_notes", "list_notes"], "the allow list, minus the deny list"
        assert refused and "denyList" in refused, refused
    finally:
        h.stop()


def test_an_unchanged_registration_leaves_the_running_server_alone(core, notes_http):
    """The operator registers every server on every reconcile: that must not restart the
    backend or reset its idle time (on-demand servers would never go idle), only a change may."""
    spec = {"mode": "remote", "endpoint": notes_http, "healthCheck": {"enabled": False}}
    assert admin(core, "PUT", "/api/v1/servers/team/notes", {"spec": spec})[0] == 200
    # Idle time counts from becoming ready (the supervisor notes that within a tick): a second
    # of it seen means that moment has passed.
    first = wait_for(lambda: (s := admin(core, "GET", "/api/v1/servers")[1]["servers"]) and s[0]["state"] == "Ready"
                     and s[0]["idleSeconds"] >= 1 and s[0])
    time.sleep(2.2)
    assert admin(core, "PUT", "/api/v1/servers/team/notes", {"spec": spec})[0] == 200
    (again,) = admin(core, "GET", "/api/v1/servers")[1]["servers"]
    assert again["state"] == "Ready" and again["idleSeconds"] >= first["idleSeconds"] + 2, (first, again)
    changed = {**spec, "tools": {"allowList": ["word_count"]}}
    assert admin(core, "PUT", "/api/v1/servers/team/notes", {"spec": changed})[0] == 200
    (replaced,) = admin(core, "GET", "/api/v1/servers")[1]["servers"]
    assert replaced["idleSeconds"] < 2, "a changed registration replaces the server"
    assert admin(core, "DELETE", "/api/v1/servers/team/notes")[0] == 204


def test_a_remote_server_unreachable_at_registration_recovers_when_it_comes_up(core):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/mcp"
    spec = {"mode": "remote", "endpoint": endpoint, "startupTimeout": "1s", "healthCheck": {"interval": "1s"}}
    assert admin(core, "PUT", "/api/v1/servers/team/late", {"spec": spec})[0] == 200
    assert wait_for(lambda: admin(core, "GET", "/api/v1/servers")[1]["servers"][0]["state"] == "Dead")
    p = subprocess.Popen([str(PYTHON), str(NOTES), "--http", str(port)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        (server,) = wait_for(lambda: (s := admin(core, "GET", "/api/v1/servers")[1]["servers"]) and s[0]["state"] == "Ready" and s[0]["toolsCount"] == 4 and s)
        assert "word_count" in server["tools"]
    finally:
        p.kill()
        p.wait()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def test_admin_bodies_are_read_only_after_the_key_and_only_up_to_a_cap(core):
    import http.client
    from urllib.parse import urlparse

    url = urlparse(core.base)
    before = rss_kib(core.proc.pid)
    # 1 GiB announced, no key: refused from the headers alone, before any of the body is read.
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("PUT", "/api/v1/servers/team/big")
    conn.putheader("content-type", "application/json")
    conn.putheader("content-length", str(1 << 30))
    conn.endheaders()
    try:
        conn.send(b"x" * (1 << 20))  # the server may close before reading this
    except OSError:
        pass
    response = conn.getresponse()
    assert response.status == 401
    conn.close()
    # With the key, the body is read up to 1 MiB and no further.
    status, body = admin(core, "PUT", "/api/v1/servers/team/big", b"{" + b" " * (2 << 20) + b"}")
    assert status == 413 and "larger than" in body["error"], body
    assert rss_kib(core.proc.pid) - before < 32 * 1024, "no oversized body was held in memory"


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])


def test_mcp_bodies_are_counted_before_they_are_parsed(core):
    """A 4 MiB body of small objects would take a gigabyte or more once parsed (a map per
    object); its values are counted on the text first and it is refused, whoever sends it."""
    from concurrent.futures import ThreadPoolExecutor

    objects = b",".join([b'{"k":0}'] * 500_000)
    body = (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x__y","arguments":{"a":['
            + objects + b"]}}}")
    assert len(body) < 4 << 20
    before = rss_kib(core.proc.pid)

    def send(_):
        req = urllib.request.Request(core.url, data=body, method="POST", headers={
            "content-type": "application/json", "accept": "application/json, text/event-stream"})
        try:
            urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        return 200, {}

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    for status, answer in answers:
        assert status == 413 and "at most 262144 values and 16384 objects" in answer["error"]["message"], answer
    grown = peak_rss_kib(core.proc.pid) - before
    print(f"peak RSS grew {grown // 1024} MiB for 8 concurrent 4 MiB bodies of 500,000 objects")
    assert grown < 100 * 1024, f"peak RSS grew {grown} KiB"
    # A request of ordinary size is parsed and answered as before.
    status, _, _ = post(core.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}})
    assert status == 200


def test_a_short_api_key_is_refused_at_start(tmp_path):
    from hangar_proc import hangar_bin
    out = subprocess.run([hangar_bin(), "core", "--listen", "127.0.0.1:0"], env={"HANGAR_API_KEY": "x"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "HANGAR_API_KEY: the API key has 1 bytes; use at least 16" in out.stderr, out.stderr


def healthz_on_a_new_connection(host: str, port: str, source: str = "127.0.0.1") -> str:
    """The start of the answer to GET /healthz on a connection of its own, from `source`."""
    import socket
    with socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        return s.recv(4096).decode()


def test_connections_are_capped_and_idle_ones_closed(tmp_path):
    import socket
    h = Hangar(tmp_path, {"HANGAR_API_KEY": KEY},
               ["core", "--max-connections", "8", "--max-connections-per-peer", "8", "--header-timeout", "2s"])
    try:
        host, port = h.base.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(8)]
        time.sleep(0.3)
        # The ninth gets a clear refusal, not a hang.
        answer = healthz_on_a_new_connection(host, port)
        assert answer.startswith("HTTP/1.1 503") and "too many open connections" in answer, answer
        # Idle connections (no request headers) are closed after the header timeout...
        for s in held:
            s.settimeout(10)
            assert s.recv(1) == b"", "closed by Hangar"
            s.close()
        # ...which frees room for new clients.
        assert admin(h, "GET", "/api/v1/servers")[0] == 200
    finally:
        h.stop()


def test_one_client_address_cannot_hold_every_connection(tmp_path):
    """Half the cap per peer address by default: 127.0.0.1 holding its 4 of 8, a fifth from it is
    refused while another address (127.0.0.2) is still served."""
    import socket
    h = Hangar(tmp_path, {"HANGAR_API_KEY": KEY}, ["core", "--max-connections", "8", "--header-timeout", "5s"])
    try:
        host, port = h.base.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(4)]
        time.sleep(0.3)
        assert healthz_on_a_new_connection(host, port).startswith("HTTP/1.1 503")
        other = healthz_on_a_new_connection(host, port, source="127.0.0.2")
        assert other.startswith("HTTP/1.1 200"), "another client is served"
        for s in held:
            s.close()
    finally:
        h.stop()


def test_the_unauthenticated_surface_can_be_closed(tmp_path):
    h = Hangar(tmp_path, {"HANGAR_API_KEY": KEY}, ["core", "--closed-surface"])
    try:
        for path in ("/metrics", "/api/v1/openapi.json"):
            try:
                urllib.request.urlopen(h.base + path, timeout=5)
                raise AssertionError(f"{path} answered")
            except urllib.error.HTTPError as e:
                assert e.code == 404, (path, e.code)
        assert urllib.request.urlopen(h.base + "/healthz", timeout=5).status == 200
        assert admin(h, "GET", "/api/v1/servers")[0] == 200, "the admin API (with its key) still serves"
    finally:
        h.stop()


def test_a_session_stays_on_the_pod_that_opened_it_and_moves_when_the_pod_leaves(core, tmp_path):
    """The operator registers a container server's ready pods (its Service's EndpointSlices): each
    handshake session stays on one pod (behind the Service's address a new connection may land on
    a pod that does not know the session), sessions spread over the pods, and the sessions of a pod
    that leaves continue on one that remains. Two notes servers stand for two pods: each keeps its
    notes in memory, so one list holding all of a session's notes means one pod served it."""
    pods = []
    for _ in range(2):
        port = free_port()
        pods.append((subprocess.Popen([str(PYTHON), str(NOTES), "--http", str(port)], stderr=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL), f"http://127.0.0.1:{port}/mcp"))
    try:
        for p, url in pods:
            wait_for(lambda: __import__("socket").socket().connect_ex(("127.0.0.1", int(url.split(":")[2].split("/")[0]))) == 0)
        urls = [url for _, url in pods]
        register = lambda pod_urls: admin(core, "PUT", "/api/v1/servers/team/notes", {  # noqa: E731
            "spec": {"mode": "container", "image": "notes:1"}, "endpoint": "http://notes.team.svc:8080/mcp", "pods": pod_urls})
        assert register(urls)[0] == 200
        assert wait_for(lambda: admin(core, "GET", "/api/v1/servers")[1]["servers"][0]["toolsCount"] == 4)
        assert admin(core, "GET", "/api/v1/servers")[1]["servers"][0]["addresses"] == urls

        async def session(tag: str, client: Client, n: int) -> list[str]:
            for i in range(n):
                await client.call_tool("notes__add_note", {"text": f"{tag}-{i}"})
            listed = (await client.call_tool("notes__list_notes", {})).structured_content["result"].splitlines()
            return [note for note in listed if note.startswith(f"{tag}-")]

        async def run():
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(Client(core.url, mode="legacy")) for _ in range(4)]
                first = [await session(f"s{i}", c, 3) for i, c in enumerate(clients)]
                # The first pod leaves: the sessions it held continue on the other.
                assert register(urls[1:])[0] == 200
                after = [await session(f"t{i}", c, 3) for i, c in enumerate(clients)]
                return first, after

        first, after = asyncio.run(run())
        assert all(len(notes) == 3 for notes in first), f"each session stayed on one pod: {first}"
        assert all(len(notes) == 3 for notes in after), f"and on the remaining one after the first left: {after}"
        assert admin(core, "GET", "/api/v1/servers")[1]["servers"][0]["addresses"] == urls[1:]
        # Both pods had sessions: the four clients' notes are not all on the remaining pod.
        async def listed_on_remaining():
            async with Client(core.url, mode="legacy") as c:
                return (await c.call_tool("notes__list_notes", {})).structured_content["result"].splitlines()
        remaining = asyncio.run(listed_on_remaining())
        on_second = {n.split("-")[0] for n in remaining if n.startswith("s")}
        assert 0 < len(on_second) < 4, f"the first sessions spread over both pods: {remaining}"
    finally:
        for p, _ in pods:
            p.kill()
            p.wait()
