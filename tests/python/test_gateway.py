"""`hangar run` driven by the official MCP Python SDK (2.x) as the client, with real servers
behind it: the npm reference server (2025-11-25 handshake) and a Python SDK server (2026-07-28)."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from hangar_proc import EVERYTHING, NOTES, PYTHON, Hangar, everything_server, notes_server, stateless_headers, wait_for


@pytest.fixture
def start(tmp_path):
    started = []

    def _start(files: dict[str, str], env: dict | None = None, folder=None, flags: list[str] | None = None,
               listen: str = "127.0.0.1:0") -> Hangar:
        """`hangar run` on a folder of these files, with extra `flags`."""
        folder = folder or tmp_path / f"run{len(started)}"
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        h = Hangar(folder, env, args=["run", str(folder), *(flags or [])], listen=listen)
        started.append(h)
        return h

    yield _start
    for h in started:
        if h.proc.poll() is None:
            h.stop()


async def tool_names(url: str, mode: str = "auto") -> list[str]:
    async with Client(url, mode=mode) as c:
        return [t.name for t in (await c.list_tools()).tools]


def mcp_error(coro) -> MCPError:
    """Runs coro expecting an MCPError (the SDK may wrap it in an exception group)."""
    try:
        asyncio.run(coro)
    except MCPError as e:
        return e
    except BaseExceptionGroup as group:
        match, _ = group.split(MCPError)
        while match is not None and isinstance(match, BaseExceptionGroup):
            match = match.exceptions[0]
        if match is not None:
            return match
        raise
    raise AssertionError("expected an MCP error")


def names(url: str, mode: str = "auto") -> list[str]:
    return asyncio.run(tool_names(url, mode))


def wait_tools(url: str, expected: set[str]) -> list[str]:
    return wait_for(lambda: (n := names(url)) and expected <= set(n) and n)


async def call(url: str, tool: str, args: dict, mode: str = "auto"):
    async with Client(url, mode=mode) as c:
        return await c.call_tool(tool, args)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_lists_and_calls_tools_of_both_generations(start, mode):
    h = start({"everything.yaml": everything_server(), "notes.yaml": notes_server("notes")})
    wait_tools(h.url, {"everything__echo", "notes__word_count"})

    async def session():
        async with Client(h.url, mode=mode) as c:
            expected_version = "2026-07-28" if mode == "auto" else "2025-11-25"
            assert c.protocol_version == expected_version
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert "everything__get-sum" in tools and "notes__add_note" in tools
            assert tools["notes__word_count"].input_schema["required"] == ["text"], "schemas pass through"
            echo = await c.call_tool("everything__echo", {"message": "via hangar"})
            assert echo.content[0].text == "Echo: via hangar"
            count = await c.call_tool("notes__word_count", {"text": "one two three"})
            assert count.structured_content == {"result": 3}
            total = await c.call_tool("everything__get-sum", {"a": 20, "b": 22})
            assert "42" in total.content[0].text
            missing = await c.call_tool("notes__no_such_tool", {})
            assert missing.is_error, "a tool error of the server comes back as the server's result"

    asyncio.run(session())
    # The everything server asks for roots 350 ms after its handshake, outside any call: Hangar
    # answers it (no roots) instead of refusing, so the server logs no failure.
    time.sleep(1)
    log = (h.folder / "hangar.log").read_text()
    assert "Failed to request roots" not in log and "not exactly one client call" not in log, log[-2000:]


def test_allow_and_deny_lists_hide_tools_and_refuse_calls_clearly(start):
    h = start({"everything.yaml": everything_server(tools="tools:\n  allowList: [echo, get-*]\n  denyList: [get-env]\n")})
    listed = wait_tools(h.url, {"everything__echo"})
    assert "everything__get-sum" in listed
    assert "everything__get-env" not in listed, "denyList wins over a matching allowList glob"
    assert "everything__get-tiny-image" in listed
    assert not any(n.startswith("everything__toggle") for n in listed), "not in the allowList"
    for mode in ["auto", "legacy"]:
        refused = mcp_error(call(h.url, "everything__get-env", {}, mode))
        assert refused.code == -32003
        assert 'denied on server "everything" by spec.tools.denyList' in str(refused)


def test_rate_limit_admits_exactly_the_burst(start):
    h = start({"notes.yaml": notes_server("notes", tools="tools:\n  rateLimit: {requestsPerMinute: 5}\n")})
    wait_tools(h.url, {"notes__word_count"})

    async def burst():
        ok, limited = 0, 0
        async with Client(h.url) as c:
            for _ in range(8):
                try:
                    await c.call_tool("notes__word_count", {"text": "a b"})
                    ok += 1
                except MCPError as e:
                    assert e.code == -32029 and "rate limit" in str(e)
                    limited += 1
        return ok, limited

    assert asyncio.run(burst()) == (5, 3)


def test_group_fails_over_when_a_member_is_killed(start):
    group = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata: {name: notes}\n"
        "spec:\n  selector: {matchLabels: {app: notes}}\n  strategy: RoundRobin\n"
        "  failover: {maxRetries: 2, retryDelay: 50ms}\n"
    )
    h = start({
        "a.yaml": notes_server("notes-a", "{app: notes}"),
        "b.yaml": notes_server("notes-b", "{app: notes}"),
        "group.yaml": group,
    })
    listed = wait_tools(h.url, {"notes__word_count"})
    assert not any(n.startswith("notes-a__") for n in listed), "members are reached through their group"
    hidden = mcp_error(call(h.url, "notes-a__word_count", {"text": "a"}))
    assert "is a member of group \"notes\"" in str(hidden), "and only through it: " + str(hidden)
    # Both members serving before one is killed (on a busy machine one may still be starting;
    # the calls before the kill would all go to the other, and the kill would leave none).
    for member in ("notes-a", "notes-b"):
        wait_for(lambda: metric(h, "hangar_server_state", f'server="{member}",state="Ready"') == 1, timeout=60)

    async def calls():
        failures, done = [], 0
        async with Client(h.url) as c:
            for i in range(40):  # bounded
                if i == 10:
                    victim = h.children("notes.py")[0]
                    os.kill(victim, signal.SIGKILL)
                try:
                    r = await c.call_tool("notes__word_count", {"text": "x y z"})
                    assert r.structured_content == {"result": 3}, r
                    done += 1
                except MCPError as e:
                    failures.append(f"call {i}: {e}")
        return failures, done

    failures, done = asyncio.run(calls())
    assert failures == [] and done == 40, (failures, (h.folder / "hangar.log").read_text()[-3000:])
    # The killed member is restarted by its supervisor.
    wait_for(lambda: len(h.children("notes.py")) == 2, timeout=20)


def parse_body(text: bytes, content_type: str) -> dict:
    if not text:
        return {}
    if content_type.startswith("text/event-stream"):
        data = [line[5:].strip() for line in text.decode().splitlines() if line.startswith("data:") and line[5:].strip()]
        return json.loads(data[-1])
    return json.loads(text)


def post(url: str, body, headers: dict | None = None) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream",
        **stateless_headers(body), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), parse_body(r.read(), r.headers.get("content-type", ""))
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), parse_body(e.read(), e.headers.get("content-type", ""))


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}


def test_bad_requests_get_clear_json_rpc_errors(start):
    h = start({})
    status, _, body = post(h.url, b"{not json")
    assert status == 400 and body["error"]["code"] == -32700
    status, _, body = post(h.url, [LIST], {"mcp-protocol-version": "2025-06-18"})
    assert status == 400 and "batches" in body["error"]["message"]
    status, _, body = post(h.url, LIST)
    assert status == 400 and "Mcp-Session-Id" in body["error"]["message"]
    status, _, body = post(h.url, LIST, {"mcp-session-id": "forged.abc"})
    assert status == 404 and body["error"]["code"] == -32004
    modern = {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "1999-01-01"}}}
    status, _, body = post(h.url, modern)
    assert body["error"]["code"] == -32022 and "2026-07-28" in body["error"]["data"]["supported"]
    status, headers, body = post(h.url, INIT)
    assert body["result"]["protocolVersion"] == "2025-06-18"
    session = {"mcp-session-id": headers["mcp-session-id"]}
    status, _, body = post(h.url, {"jsonrpc": "2.0", "id": 4, "method": "no/such", "params": {}}, session)
    assert body["error"]["code"] == -32601
    status, _, body = post(h.url, {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {}}, session)
    assert body["error"]["code"] == -32602 and "params.name" in body["error"]["message"]
    status, _, _ = post(h.url, b"{" + b" " * (5 << 20) + b"}")
    assert status == 413, "bodies over the 4 MiB limit are refused"
    assert h.proc.poll() is None, "the gateway is still up"


def test_a_session_opened_on_one_replica_is_served_by_another(start, tmp_path):
    env = {"HANGAR_SESSION_KEY": "shared-secret-for-the-test"}
    a = start({}, env)
    b = start({}, env)
    other = start({})
    _, headers, _ = post(a.url, INIT)
    session = {"mcp-session-id": headers["mcp-session-id"]}
    status, _, body = post(b.url, LIST, session)
    assert status == 200 and body["result"] == {"tools": []}
    status, _, _ = post(other.url, LIST, session)
    assert status == 404, "a core with another key refuses it"


def test_edits_to_the_folder_apply_live(start, tmp_path):
    h = start({"notes.yaml": notes_server("notes")})
    wait_tools(h.url, {"notes__word_count"})
    (h.folder / "everything.yaml").write_text(everything_server())
    wait_tools(h.url, {"everything__echo", "notes__word_count"})
    (h.folder / "notes.yaml").unlink()
    wait_for(lambda: not any(n.startswith("notes__") for n in names(h.url)))
    (h.folder / "broken.yaml").write_text("apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: broken}\nspec: {mode: remote}\n")
    line = f"{h.folder / 'broken.yaml'}:1: MCPServer broken: spec.endpoint: required when mode is remote"
    wait_for(lambda: line in (h.folder / "hangar.log").read_text())
    assert "everything__echo" in names(h.url), "a broken manifest does not take the others down"
    time.sleep(2)  # reads of the folder by Hangar itself must not re-apply it (and log it again)
    log = (h.folder / "hangar.log").read_text()
    assert log.count(line) == 1, f"printed once, as `hangar validate` prints it:\n{log[-3000:]}"
    assert "\x1b[" not in log, "a log written to a file has no colour escapes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_remote_streamable_http_server_is_served(start):
    port = free_port()
    server = subprocess.Popen([str(PYTHON), str(NOTES), "--http", str(port)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        manifest = (
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: remote-notes}\n"
            f"spec: {{mode: remote, endpoint: 'http://127.0.0.1:{port}/mcp'}}\n"
        )
        h = start({"remote.yaml": manifest})
        wait_tools(h.url, {"remote-notes__add_note"})
        r = asyncio.run(call(h.url, "remote-notes__add_note", {"text": "kept remotely"}, "legacy"))
        assert r.content[0].text == "1 notes"
    finally:
        server.kill()
        server.wait()


def test_metrics_count_calls_by_outcome(start):
    h = start({"everything.yaml": everything_server(tools="tools:\n  allowList: [echo]\n")})
    wait_tools(h.url, {"everything__echo"})
    asyncio.run(call(h.url, "everything__echo", {"message": "m"}))
    assert mcp_error(call(h.url, "everything__get-sum", {"a": 1, "b": 2})).code == -32003
    text = urllib.request.urlopen(h.base + "/metrics", timeout=5).read().decode()
    assert 'hangar_calls_total{outcome="ok",server="everything",tool="echo"} 1' in text
    assert 'hangar_calls_total{outcome="denied",server="everything",tool="get-sum"} 1' in text
    assert "hangar_call_duration_seconds_bucket" in text

    async def invented():
        async with Client(h.url) as c:
            for i in range(100):  # tool names a client made up must not become labels
                try:
                    await c.call_tool(f"everything__made-up-{i}", {})
                except MCPError:
                    pass

    asyncio.run(invented())
    text = urllib.request.urlopen(h.base + "/metrics", timeout=5).read().decode()
    assert "made-up" not in text
    assert 'hangar_calls_total{outcome="denied",server="everything",tool="(unlisted)"} 100' in text


def metric(h: Hangar, name: str, labels: str) -> float:
    text = urllib.request.urlopen(h.base + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return 0.0


def test_an_on_demand_server_starts_once_for_concurrent_first_calls_and_stops_when_idle(start):
    tools = "replicas: 0\nidleTTL: 2s\nstartupTimeout: 30s\n"
    h = start({"notes.yaml": notes_server("notes", tools=tools)})
    wait_tools(h.url, {"notes__word_count"})
    # Started once to learn its tools, then stopped: Cold, no process.
    wait_for(lambda: metric(h, "hangar_server_state", 'server="notes",state="Cold"') == 1)
    wait_for(lambda: not h.children("notes.py"))
    starts = metric(h, "hangar_server_starts", 'server="notes"')

    async def first_calls():
        async def one(i):
            r = await call(h.url, "notes__word_count", {"text": "w " * i})
            return r.structured_content["result"]
        return await asyncio.gather(*(one(i) for i in range(1, 21)))

    assert asyncio.run(first_calls()) == list(range(1, 21))
    assert metric(h, "hangar_server_starts", 'server="notes"') == starts + 1, "20 concurrent first calls start one process"
    assert len(h.children("notes.py")) == 1
    # Back to Cold after idleTTL without calls.
    wait_for(lambda: metric(h, "hangar_server_state", 'server="notes",state="Cold"') == 1, timeout=15)
    wait_for(lambda: not h.children("notes.py"), timeout=5)


def test_an_on_demand_server_slower_to_start_than_its_idle_ttl_is_not_stopped_while_starting(start):
    # Each start takes 3 s; idleTTL is 1 s. Idle time must count from the end of the last call
    # (or from becoming ready), never during a start or the first tool listing.
    slow = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: slow}\n"
        "spec:\n  mode: container\n  image: x\n  transport: stdio\n  replicas: 0\n  idleTTL: 1s\n"
        "  startupTimeout: 60s\n  healthCheck: {enabled: false}\n"
        f"  command: [\"{PYTHON}\", \"-c\", \"import runpy, sys, time; time.sleep(3); sys.argv = ['{NOTES}']; runpy.run_path('{NOTES}', run_name='__main__')\"]\n"
    )
    h = start({"slow.yaml": slow})
    wait_for(lambda: "slow__word_count" in names(h.url), timeout=90)
    wait_for(lambda: metric(h, "hangar_server_state", 'server="slow",state="Cold"') == 1, timeout=30)
    starts = metric(h, "hangar_server_starts", 'server="slow"')
    assert starts == 1, "one start to learn the tools, not a stop in the middle and another"
    # A call wakes it: it waits out the slow start and is answered.
    r = asyncio.run(call(h.url, "slow__word_count", {"text": "a b c d"}))
    assert r.structured_content["result"] == 4
    assert metric(h, "hangar_server_starts", 'server="slow"') == starts + 1
    assert "slow__word_count" in names(h.url), "the tools stay listed across idle stops"
    assert metric(h, "hangar_server_state", 'server="slow",state="Dead"') == 0
    wait_for(lambda: metric(h, "hangar_server_state", 'server="slow",state="Cold"') == 1, timeout=30)
    wait_for(lambda: not h.children("runpy"), timeout=10)


def test_a_server_that_never_becomes_ready_fails_the_held_call_after_its_startup_timeout(start):
    silent = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: silent}\n"
        "spec:\n  mode: container\n  image: x\n  transport: stdio\n  startupTimeout: 2s\n"
        f"  command: [\"{PYTHON}\", \"-c\", \"import time; time.sleep(120)\"]\n"
    )
    h = start({"silent.yaml": silent})
    began = time.monotonic()
    error = mcp_error(call(h.url, "silent__anything", {}))
    assert error.code == -32001
    assert "did not become ready within spec.startupTimeout (2s)" in str(error), str(error)
    assert time.monotonic() - began < 20, "held by the startup timeout, not the 60 s call timeout"
    wait_for(lambda: metric(h, "hangar_server_state", 'server="silent",state="Dead"') == 1)


def test_the_circuit_breaker_opens_after_the_threshold_and_half_opens_after_the_reset_timeout(start):
    port = free_port()
    manifest = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: flaky}\n"
        f"spec:\n  mode: remote\n  endpoint: 'http://127.0.0.1:{port}/mcp'\n"
        "  circuitBreaker: {failureThreshold: 2, resetTimeout: 1s}\n  healthCheck: {enabled: false}\n"
    )
    h = start({"flaky.yaml": manifest})
    for _ in range(2):  # nothing listens on the port: two failures
        assert mcp_error(call(h.url, "flaky__add_note", {"text": "x"}, "legacy")).code == -32001
    opened = mcp_error(call(h.url, "flaky__add_note", {"text": "x"}, "legacy"))
    assert "circuit breaker of server \"flaky\" is open after 2 failed calls" in str(opened), str(opened)
    wait_for(lambda: metric(h, "hangar_breaker_state", 'server="flaky"') == 1, timeout=5)
    server = subprocess.Popen([str(PYTHON), str(NOTES), "--http", str(port)], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        time.sleep(1.1)  # the reset timeout: the next call is the half-open trial
        r = asyncio.run(call(h.url, "flaky__add_note", {"text": "back"}, "legacy"))
        assert r.content[0].text == "1 notes"
        wait_for(lambda: metric(h, "hangar_breaker_state", 'server="flaky"') == 0, timeout=5)
    finally:
        server.kill()
        server.wait()


def test_a_handshake_session_stays_on_one_group_member(start):
    group = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata: {name: notes}\n"
        "spec:\n  selector: {matchLabels: {app: notes}}\n  strategy: RoundRobin\n"
    )
    h = start({"a.yaml": notes_server("notes-a", "{app: notes}"), "b.yaml": notes_server("notes-b", "{app: notes}"), "g.yaml": group})
    wait_tools(h.url, {"notes__add_note"})
    wait_for(lambda: metric(h, "hangar_server_state", 'server="notes-a",state="Ready"') == 1 and metric(h, "hangar_server_state", 'server="notes-b",state="Ready"') == 1)

    async def session(tag):
        async with Client(h.url, mode="legacy") as c:
            for i in range(4):
                await c.call_tool("notes__add_note", {"text": f"{tag}-{i}"})
            listed = await c.call_tool("notes__list_notes", {})
            return listed.structured_content["result"].splitlines()

    notes = asyncio.run(session("s1"))
    # Each member keeps its own notes in memory: all four in one list means one member served them.
    assert [n for n in notes if n.startswith("s1-")] == ["s1-0", "s1-1", "s1-2", "s1-3"]

    async def stateless():
        async with Client(h.url) as c:  # 2026-07-28: no session, calls go round robin
            for i in range(4):
                await c.call_tool("notes__add_note", {"text": f"m-{i}"})
            return (await c.call_tool("notes__list_notes", {})).structured_content["result"].splitlines()

    assert len([n for n in asyncio.run(stateless()) if n.startswith("m-")]) == 2, "round robin spread the notes"


def test_handshake_clients_hear_that_the_tool_list_changed(start):
    h = start({"notes.yaml": notes_server("notes")})
    wait_tools(h.url, {"notes__word_count"})

    async def listen():
        changed = asyncio.Event()

        async def handler(message):
            if "ToolListChanged" in type(message).__name__ or "tools/list_changed" in repr(message):
                changed.set()

        async with Client(h.url, mode="legacy", message_handler=handler) as c:
            await c.list_tools()
            await asyncio.sleep(0.5)  # the GET stream opens after the handshake
            (h.folder / "everything.yaml").write_text(everything_server())
            await asyncio.wait_for(changed.wait(), timeout=20)  # raises if no notification came

    asyncio.run(listen())
    wait_tools(h.url, {"everything__echo", "notes__word_count"})


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_progress_of_a_routed_call_reaches_the_client(start, mode):
    h = start({"everything.yaml": everything_server()})
    wait_tools(h.url, {"everything__trigger-long-running-operation"})
    seen = []

    async def run():
        async def on_progress(progress, total, message):
            seen.append((progress, total))

        async with Client(h.url, mode=mode) as c:
            return await c.call_tool("everything__trigger-long-running-operation", {"duration": 1, "steps": 4}, progress_callback=on_progress)

    result = asyncio.run(run())
    assert "completed" in result.content[0].text.lower(), result
    assert [p for p, _ in seen] == [1, 2, 3, 4] and all(t == 4 for _, t in seen), seen


def test_a_cancelled_call_is_cancelled_at_the_server(start, tmp_path):
    log = tmp_path / "slow.log"
    slow = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: slow}\n"
        "spec:\n  mode: container\n  image: x\n  transport: stdio\n"
        f"  command: [\"{PYTHON}\", \"{Path(__file__).parent / 'servers' / 'slow.py'}\"]\n"
        f"  env: [{{name: SLOW_LOG, value: \"{log}\"}}]\n"
    )
    h = start({"slow.yaml": slow})
    wait_tools(h.url, {"slow__sleep"})

    async def run(mode):
        async with Client(h.url, mode=mode) as c:
            with anyio.move_on_after(1.0):
                await c.call_tool("slow__sleep", {"seconds": 30})
            return await c.call_tool("slow__sleep", {"seconds": 0.01})

    for mode, count in [("legacy", 1), ("auto", 2)]:
        assert asyncio.run(run(mode)).content[0].text == "slept 0.01s"
        wait_for(lambda: log.read_text().count("cancelled") == count, timeout=10)


def test_a_configmap_discovery_source_in_the_folder_becomes_servers(start):
    providers = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: definitions}\ndata:\n  providers.yaml: |\n"
        "    calc:\n      mode: container\n      image: x\n      transport: stdio\n"
        f"      command: [\"{PYTHON}\", \"{NOTES}\"]\n"
    )
    source = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata: {name: defs}\n"
        "spec:\n  type: ConfigMap\n  configMapRef: {name: definitions}\n"
        "  providerTemplate:\n    spec:\n      tools: {allowList: [word_count]}\n"
    )
    h = start({"configmap.yaml": providers, "source.yaml": source})
    listed = wait_tools(h.url, {"defs-calc__word_count"})
    assert [n for n in listed if n.startswith("defs-calc__")] == ["defs-calc__word_count"], "the template's allowList applies"


def test_stopping_hangar_stops_its_servers(start):
    h = start({"notes.yaml": notes_server("notes")})
    wait_for(lambda: h.children("notes.py"))
    children = h.children("notes.py")
    h.stop()
    for pid in children:
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower(), timeout=10)


def test_failing_health_checks_degrade_then_kill_and_recovery_makes_ready(start):
    tools = "healthCheck: {interval: 300ms, timeout: 300ms, failureThreshold: 3}\n"
    h = start({"notes.yaml": notes_server("notes", tools=tools)})
    wait_for(lambda: metric(h, "hangar_server_state", 'server="notes",state="Ready"') == 1)
    (pid,) = h.children("notes.py")
    os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing
    try:
        wait_for(lambda: metric(h, "hangar_server_state", 'server="notes",state="Degraded"') == 1, timeout=10)
        wait_for(lambda: metric(h, "hangar_server_state", 'server="notes",state="Dead"') == 1, timeout=10)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # already killed: a local process that stops answering is restarted
    wait_for(lambda: metric(h, "hangar_server_state", 'server="notes",state="Ready"') == 1, timeout=20)
    assert h.children("notes.py") != [pid], "the hung process was replaced"


def test_backend_sessions_open_on_first_use_and_close_with_the_clients_session(start, tmp_path):
    port = free_port()
    everything = subprocess.Popen(
        ["node", str(EVERYTHING), "streamableHttp"], env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        manifest = (
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: everything}\n"
            f"spec: {{mode: remote, endpoint: 'http://127.0.0.1:{port}/mcp', healthCheck: {{enabled: false}}}}\n"
        )
        key = "replicas-share-this"
        a = start({"e.yaml": manifest}, {"HANGAR_SESSION_KEY": key})
        b = start({"e.yaml": manifest}, {"HANGAR_SESSION_KEY": key})
        for h in (a, b):
            wait_tools(h.url, {"everything__echo"})
        held = lambda h: metric(h, "hangar_backend_sessions", 'server="everything"')  # noqa: E731
        _, headers, _ = post(a.url, INIT)
        session = headers["mcp-session-id"]
        # A nonce, expiry, subject tag and signature: the same small size however many servers there are.
        assert len(session) == 64 and session.count(".") == 1, session
        assert held(a) == 0, "initialize opens nothing at the backends"
        echo = lambda text: {"jsonrpc": "2.0", "id": 3, "method": "tools/call",  # noqa: E731
                             "params": {"name": "everything__echo", "arguments": {"message": text}}}
        for text in ("one", "two"):
            status, _, body = post(a.url, echo(text), {"mcp-session-id": session})
            assert status == 200 and body["result"]["content"][0]["text"] == f"Echo: {text}", body
        assert held(a) == 1, "opened by the first call, reused by the second"
        # Another replica with the key serves the same session, with a backend session of its own.
        status, _, body = post(b.url, echo("on b"), {"mcp-session-id": session})
        assert status == 200 and body["result"]["content"][0]["text"] == "Echo: on b", body
        assert held(b) == 1
        # The client ends its session: the backend session goes, and the id is refused from then on.
        ended = urllib.request.Request(a.url, method="DELETE", headers={"mcp-session-id": session})
        with urllib.request.urlopen(ended, timeout=10) as r:
            assert r.status == 200
        assert held(a) == 0
        status, _, body = post(a.url, echo("again"), {"mcp-session-id": session})
        assert status == 404 and "ended" in body["error"]["message"], body
        forged = session[:-4] + ("AAAA" if not session.endswith("AAAA") else "BBBB")
        status, _, _ = post(b.url, echo("forged"), {"mcp-session-id": forged})
        assert status == 404
    finally:
        everything.kill()
        everything.wait()


class RawSessions:
    """Handshake-era requests on one kept-alive connection: (status, Mcp-Session-Id)."""

    HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    LIST = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})

    def __init__(self, base: str):
        import http.client
        host, port = base.removeprefix("http://").rsplit(":", 1)
        self.connect = lambda: http.client.HTTPConnection(host, int(port), timeout=10)
        self.conn = self.connect()

    def request(self, method: str, session: str | None = None, body: str | None = None):
        extra = {"Mcp-Session-Id": session} if session else {}
        self.conn.request(method, "/mcp", body=body, headers={**self.HEADERS, **extra})
        r = self.conn.getresponse()
        if method == "GET" and r.status == 200:  # an open event stream: only its status counts
            r.close()
            self.conn.close()
            self.conn = self.connect()
        else:
            r.read()
        return r.status, r.getheader("mcp-session-id")

    def new_session(self) -> str:
        status, session = self.request("POST", body=self.INITIALIZE)
        assert status == 200, status
        return session


def test_an_ended_session_stays_ended_however_many_sessions_end_after_it(start):
    """Without OAuth: a session ended by DELETE is refused (404) on POST, GET and DELETE even
    after 10,050 other sessions ended on the same core (it came back after 10,000 before)."""
    h = start({"notes.yaml": notes_server("notes")})
    raw = RawSessions(h.base)
    first = raw.new_session()
    assert raw.request("DELETE", first)[0] == 200
    began, ended = time.monotonic(), 0
    while ended < 10_050 and time.monotonic() - began < 300:
        assert raw.request("DELETE", raw.new_session())[0] == 200
        ended += 1
    print(f"{ended} sessions ended in {time.monotonic() - began:.1f}s")
    assert ended == 10_050, ended
    for method, body in (("POST", RawSessions.LIST), ("GET", None), ("DELETE", None)):
        assert raw.request(method, first, body)[0] == 404, f"{method} on the ended session"


def test_a_session_id_expires_after_its_lifetime(start):
    h = start({"notes.yaml": notes_server("notes")}, flags=["--session-lifetime", "2s"])
    raw = RawSessions(h.base)
    live = raw.new_session()
    assert raw.request("POST", live, RawSessions.LIST)[0] == 200
    time.sleep(3)
    for method, body in (("POST", RawSessions.LIST), ("GET", None), ("DELETE", None)):
        assert raw.request(method, live, body)[0] == 404, f"{method} with an expired id"
