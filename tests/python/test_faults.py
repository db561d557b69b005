"""Faults at the backends, each with its expectation: a backend killed mid-call fails that call
at once (not after a timeout) and is restarted; a hung backend fails the call at its callTimeout
and keeps serving; a backend that speaks garbage (stdio or HTTP) is unavailable, named in the
error, while Hangar and the other servers carry on."""
import asyncio
import http.server
import json
import os
import socket
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from mcp import Client

from hangar_proc import PYTHON, notes_server, stateless_headers, wait_for
from test_gateway import call, mcp_error, metric, start, wait_tools  # noqa: F401 (start is a fixture)

SERVERS = Path(__file__).parent / "servers"


def slow_server(log: Path, extra: str = "") -> str:
    return (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: slow}\n"
        "spec:\n  mode: container\n  image: x\n  transport: stdio\n"
        f"  command: [\"{PYTHON}\", \"{SERVERS / 'slow.py'}\"]\n"
        f"  env: [{{name: SLOW_LOG, value: \"{log}\"}}]\n" + extra
    )


def test_a_backend_killed_mid_call_fails_that_call_at_once_and_is_restarted(start, tmp_path):
    log = tmp_path / "slow.log"
    h = start({"slow.yaml": slow_server(log)})
    wait_tools(h.url, {"slow__sleep"})
    (victim,) = wait_for(lambda: h.children("slow.py"))

    def kill_once_the_call_runs():
        wait_for(lambda: log.exists() and "started" in log.read_text(), timeout=30)
        os.kill(victim, signal.SIGKILL)

    async def killed_mid_call():
        async with Client(h.url) as c:
            threading.Thread(target=kill_once_the_call_runs, daemon=True).start()
            started = time.monotonic()
            try:
                await c.call_tool("slow__sleep", {"seconds": 30})
            except Exception as e:  # noqa: BLE001 (the SDK may wrap the MCP error)
                return time.monotonic() - started, repr(e)
            return time.monotonic() - started, "no error"

    took, error = asyncio.run(killed_mid_call())
    assert took < 10, f"the call waited {took:.1f}s for a dead server"
    assert "exited during the call" in error, error
    # The supervisor restarts it; the next call works.
    wait_for(lambda: (p := h.children("slow.py")) and p != [victim], timeout=20)
    result = wait_for(lambda: asyncio.run(call(h.url, "slow__sleep", {"seconds": 0.01})), timeout=20)
    assert "slept" in result.content[0].text


def test_a_hung_backend_fails_the_call_at_its_call_timeout_and_keeps_serving(start, tmp_path):
    h = start({"slow.yaml": slow_server(tmp_path / "slow.log", "  callTimeout: 1500ms\n")})
    wait_tools(h.url, {"slow__sleep"})
    started = time.monotonic()
    error = mcp_error(call(h.url, "slow__sleep", {"seconds": 3600}))
    took = time.monotonic() - started
    assert 1.4 < took < 10, took
    assert "1.5s" in str(error) or "1500ms" in str(error) or "timed out" in str(error), str(error)
    result = asyncio.run(call(h.url, "slow__sleep", {"seconds": 0.01}))
    assert "slept" in result.content[0].text, "the hung call did not wedge the server"


class HtmlHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_backends_speaking_garbage_are_unavailable_while_the_rest_serves(start):
    html = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HtmlHandler)
    threading.Thread(target=html.serve_forever, daemon=True).start()
    try:
        garbage_stdio = (
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: garbage}\n"
            "spec:\n  mode: container\n  image: x\n  transport: stdio\n  startupTimeout: 2s\n"
            f"  command: [\"{PYTHON}\", \"{SERVERS / 'garbage.py'}\"]\n"
        )
        garbage_http = (
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: html}\n"
            f"spec:\n  mode: remote\n  endpoint: http://127.0.0.1:{html.server_address[1]}/mcp\n  startupTimeout: 2s\n"
        )
        h = start({"garbage.yaml": garbage_stdio, "html.yaml": garbage_http, "notes.yaml": notes_server("notes")})
        listed = wait_tools(h.url, {"notes__word_count"})
        assert not any(n.startswith(("garbage__", "html__")) for n in listed)
        for server in ("garbage", "html"):
            error = mcp_error(call(h.url, f"{server}__anything", {}))
            assert server in str(error), str(error)
            unavailable = ('Degraded', 'Dead')
            assert wait_for(lambda: any(metric(h, "hangar_server_state", f'server="{server}",state="{st}"') == 1 for st in unavailable), timeout=30)
        result = asyncio.run(call(h.url, "notes__word_count", {"text": "still fine"}))
        assert result.structured_content == {"result": 2}
        assert h.proc.poll() is None, "hangar is still running"
    finally:
        html.shutdown()


def test_the_body_limit_is_configurable_and_answered_with_a_json_rpc_error(tmp_path):
    from hangar_proc import Hangar
    from test_gateway import post

    (tmp_path / "notes.yaml").write_text(notes_server("notes"))
    h = Hangar(tmp_path, args=["run", str(tmp_path), "--max-body-bytes", "2000"])
    try:
        small = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}
        status, _, body = post(h.url, small)
        assert status == 200 and "result" in body, body
        status, _, body = post(h.url, {**small, "params": {**small["params"], "pad": "x" * 3000}})
        assert status == 413 and body["error"]["code"] == -32600, body
        assert "2000 byte limit" in body["error"]["message"], body
    finally:
        h.stop()


def test_sigterm_drains_a_call_in_flight_before_exiting(start, tmp_path):
    log = tmp_path / "slow.log"
    h = start({"slow.yaml": slow_server(log)}, env={"HANGAR_API_KEY": "a-secret-nobody-else-sees"})
    wait_tools(h.url, {"slow__sleep"})

    # One stateless (2026-07-28) request on one connection, as a load balancer would forward it.
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "slow__sleep", "arguments": {"seconds": 3},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}
    request = urllib.request.Request(h.url, data=json.dumps(body).encode(), method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "slow__sleep"})

    def post():
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.read().decode()

    async def call_then_terminate():
        task = asyncio.create_task(asyncio.to_thread(post))
        await asyncio.to_thread(wait_for, lambda: log.exists() and "started" in log.read_text())
        h.proc.send_signal(signal.SIGTERM)
        return await task

    answer = asyncio.run(call_then_terminate())
    assert "slept 3.0s" in answer, "the call in flight was answered, not cut off: " + answer
    assert h.proc.wait(timeout=30) == 0, "then Hangar exits cleanly"
    assert "finished" in log.read_text()
    text = (h.folder / "hangar.log").read_text()
    assert "draining calls in flight" in text, text[-2000:]


def test_sigterm_ends_the_streams_that_are_no_call_instead_of_waiting_out_the_drain(start):
    """The operator's event stream (`GET /api/v1/events`) and a session's standalone GET stream
    never end by themselves. A stop ends both (their clients reconnect, to another replica) and
    Hangar exits at once, rather than holding a rollout for its whole 20 s drain."""
    from test_transparent import initialize
    key = "a-secret-nobody-else-sees"
    h = start({"notes.yaml": notes_server("notes")}, env={"HANGAR_API_KEY": key})
    wait_tools(h.url, {"notes__add_note"})
    session = initialize(h.url, "2025-11-25")
    streams = {
        "events": urllib.request.Request(h.base + "/api/v1/events", headers={"authorization": f"Bearer {key}"}),
        "session": urllib.request.Request(h.url, headers={"accept": "text/event-stream", "mcp-session-id": session,
                                                          "mcp-protocol-version": "2025-11-25"}),
    }
    ended: dict[str, float] = {}

    def follow(name: str, request):
        with urllib.request.urlopen(request, timeout=60) as r:
            assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
            opened.release()
            while r.read1(4096):
                pass
        ended[name] = time.monotonic()

    opened = threading.Semaphore(0)
    threads = [threading.Thread(target=follow, args=item, daemon=True) for item in streams.items()]
    for thread in threads:
        thread.start()
    for _ in streams:
        assert opened.acquire(timeout=30), "both streams opened"
    stopped = time.monotonic()
    h.proc.send_signal(signal.SIGTERM)
    assert h.proc.wait(timeout=60) == 0
    exited = time.monotonic() - stopped
    for thread in threads:
        thread.join(timeout=10)
    assert set(ended) == {"events", "session"}, f"both streams ended: {ended}"
    # The drain's bound is 20 s; streams that held it would keep Hangar that long.
    assert exited < 10, f"Hangar took {exited:.1f}s to exit with two idle streams open"
    assert "calls still in flight" not in (h.folder / "hangar.log").read_text()


def test_stdio_servers_do_not_inherit_hangars_secrets(start, tmp_path):
    probe = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: probe}\n"
        "spec:\n  mode: container\n  image: x\n  transport: stdio\n"
        f"  command: [\"{PYTHON}\", \"-c\", \"import os, sys; sys.stderr.write('ENV ' + ' '.join(sorted(k for k in os.environ if k.startswith('HANGAR_'))) + ' END\\\\n'); sys.stderr.flush(); import time; time.sleep(60)\"]\n"
        "  env: [{name: HANGAR_EXPLICIT, value: given}]\n"
    )
    h = start({"probe.yaml": probe}, env={"HANGAR_API_KEY": "k" * 24, "HANGAR_SESSION_KEY": "s" * 32})
    line = wait_for(lambda: next((l for l in (h.folder / "hangar.log").read_text().splitlines() if "ENV " in l), None))
    assert "HANGAR_API_KEY" not in line and "HANGAR_SESSION_KEY" not in line, line
    assert "HANGAR_EXPLICIT" in line, "what the manifest gives explicitly is passed: " + line


def test_a_stopped_child_gets_a_bounded_queue_then_is_killed_and_restarted(start):
    import httpx2
    tools = ("callTimeout: 3s\nhealthCheck: {interval: 1s, timeout: 1s, failureThreshold: 2}\n"
             "circuitBreaker: {failureThreshold: 5, resetTimeout: 1s}\n")
    h = start({"notes.yaml": notes_server("notes", tools=tools)})
    wait_tools(h.url, {"notes__word_count"})
    (child,) = wait_for(lambda: h.children("notes.py"))
    starts = metric(h, "hangar_server_starts", 'server="notes"')
    os.kill(child, signal.SIGSTOP)
    text = "word " * 800  # 4 KB per request: the pipe fills after a few, then the queue
    body = {"jsonrpc": "2.0", "method": "tools/call", "params": {
        "name": "notes__word_count", "arguments": {"text": text},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}
    headers = {**stateless_headers(body), "accept": "application/json, text/event-stream"}

    async def flood():
        limits = httpx2.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx2.AsyncClient(limits=limits, timeout=30) as http:
            answers = await asyncio.gather(*(http.post(h.url, json={**body, "id": i}, headers=headers) for i in range(400)))
            return [a.json() for a in answers]

    rss_before = rss_kib(h.proc.pid)
    answers = asyncio.run(flood())
    refused = [a for a in answers if "is not reading its input" in json.dumps(a)]
    assert len(answers) == 400 and refused, "calls past the queue are refused at once, not queued without end"
    assert rss_kib(h.proc.pid) - rss_before < 64 * 1024
    # The health checks fail twice: the stopped process is killed and a fresh one started.
    wait_for(lambda: metric(h, "hangar_server_starts", 'server="notes"') > starts, timeout=30)
    wait_for(lambda: (p := h.children("notes.py")) and child not in p, timeout=30)

    def answered():
        try:
            return asyncio.run(call(h.url, "notes__word_count", {"text": "a b"})).structured_content["result"]
        except BaseException:  # noqa: BLE001 (the breaker half-opens after its reset timeout)
            return None

    assert wait_for(answered, timeout=30) == 2


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def test_slow_calls_of_one_client_do_not_open_the_breaker_for_all(start, tmp_path):
    """Calls that run past callTimeout because of their own arguments are not the server's
    failure: the breaker (threshold 2) stays closed and other callers are served."""
    log = tmp_path / "slow.log"
    extra = "  callTimeout: 1s\n  circuitBreaker: {failureThreshold: 2, resetTimeout: 60s}\n"
    h = start({"slow.yaml": slow_server(log, extra)})
    wait_tools(h.url, {"slow__sleep"})
    for _ in range(3):
        err = mcp_error(call(h.url, "slow__sleep", {"seconds": 5}))
        assert "no answer within" in str(err), str(err)
    assert metric(h, "hangar_breaker_state", 'server="slow"') == 0
    r = asyncio.run(call(h.url, "slow__sleep", {"seconds": 0.01}))
    assert r.content[0].text == "slept 0.01s", "another caller is still served"


def test_no_credential_in_a_servers_url_reaches_a_client_or_the_log(start):
    """An endpoint with `user:pass@` and `?token=`: the client hears "server X unavailable", and
    neither the answer nor the log carries either secret."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    endpoint = f"http://alice:pa55-SECRET-word@127.0.0.1:{port}/mcp?token=TOKEN-SECRET-42"
    h = start({"remote.yaml": (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: remote}\n"
        f"spec:\n  mode: remote\n  endpoint: \"{endpoint}\"\n  startupTimeout: 1s\n"
    ), "notes.yaml": notes_server("notes")})
    wait_tools(h.url, {"notes__word_count"})
    err = mcp_error(call(h.url, "remote__anything", {}))
    text = f"{err} {getattr(err, 'error', '')}"
    assert "remote" in text and "SECRET" not in text, text
    time.sleep(0.5)
    log = (h.folder / "hangar.log").read_text()
    assert "SECRET" not in log, [line for line in log.splitlines() if "SECRET" in line][:5]


def test_a_stdio_server_gets_a_pods_environment_and_dies_with_hangar(start, tmp_path):
    """Only PATH, HOME, LANG (and a few like them) and the manifest's env reach a local server;
    a server that ignores the end of its stdin dies even when Hangar is SIGKILLed."""
    probe = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: probe}\n"
        "spec:\n  mode: container\n  image: x\n  transport: stdio\n"
        f"  command: [\"{PYTHON}\", \"-c\", \"import os, sys, time; sys.stderr.write('ENV ' + ' '.join(sorted(os.environ)) + ' END\\\\n'); sys.stderr.flush(); time.sleep(600)\"]\n"
        "  env: [{name: GIVEN, value: by-the-manifest}]\n"
    )
    h = start({"probe.yaml": probe}, env={"AWS_SECRET_ACCESS_KEY": "a" * 40, "GITHUB_TOKEN": "ghp_x"})
    line = wait_for(lambda: next((l for l in (h.folder / "hangar.log").read_text().splitlines() if "ENV " in l), None))
    names = set(line.split("ENV ", 1)[1].split(" END")[0].split())
    assert "AWS_SECRET_ACCESS_KEY" not in names and "GITHUB_TOKEN" not in names, line
    assert {"PATH", "GIVEN"} <= names, line
    assert names <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "GIVEN", "LC_CTYPE"}, line
    (child,) = wait_for(lambda: h.children("ENV"))
    h.proc.kill()
    h.proc.wait()

    def gone():
        try:
            with open(f"/proc/{child}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie is gone too
        except FileNotFoundError:
            return True

    wait_for(gone, timeout=10)


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024


def test_large_requests_and_answers_at_once_keep_core_under_the_charts_memory_limit(start):
    """16 requests of ~4 MiB (180,000 values each) and 6 answers of ~14 MiB at once — 3 of a few
    values (relayed), 3 of 400,000 content items (over a million values: refused by shape, unparsed) — while another client's
    small calls are answered: core's peak RSS stays under the chart's 512 Mi limit."""
    from concurrent.futures import ThreadPoolExecutor
    big = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: big}\n"
        "spec:\n  mode: container\n  image: x\n  transport: stdio\n  callTimeout: 120s\n"
        f"  command: [\"{PYTHON}\", \"{SERVERS / 'big.py'}\"]\n"
    )
    h = start({"big.yaml": big, "notes.yaml": notes_server("notes")})
    wait_tools(h.url, {"big__text", "notes__word_count"})
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}

    def post(tool: str, arguments: dict) -> tuple[int, bytes]:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": tool, "arguments": arguments, "_meta": meta}}).encode()
        request = urllib.request.Request(h.url, data=body, headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            **stateless_headers(json.loads(body))})
        try:
            with urllib.request.urlopen(request, timeout=180) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    pad = ["x" * 20] * 180_000
    before = peak_rss_mib(h.proc.pid)
    with ThreadPoolExecutor(22) as pool:
        requests = [pool.submit(post, "big__text", {"size": 10, "pad": pad}) for _ in range(16)]
        refused = [pool.submit(post, "big__numbers", {"count": 400_000}) for _ in range(3)]
        relayed = [pool.submit(post, "big__text", {"size": 7_000_000}) for _ in range(3)]
        small = [post("notes__word_count", {"text": "a b c"}) for _ in range(5)]
        results = [f.result() for f in requests + refused + relayed]
    peak = peak_rss_mib(h.proc.pid)
    print(f"core's peak RSS {before:.0f} MiB before, {peak:.0f} MiB after")
    assert all(status == 200 and b'"result":3' in body.replace(b" ", b"") for status, body in small), small
    for status, body in results[16:19]:
        assert b"JSON values" in body, body[:300]
    relayed_sizes = [len(body) for _, body in results[19:]]
    assert any(size > 7_000_000 for size in relayed_sizes), relayed_sizes
    assert peak < 512, f"core's peak RSS {peak:.0f} MiB"
    assert h.proc.poll() is None
