"""Load: 500 concurrent clients for a bounded time through a group of three local members, each
with a rate limit, while one member is killed. Expectations: no member admits more calls than its
bucket allows (burst + rate × time); every call is answered (a result or a clear JSON-RPC
error: none lost, none hanging); the gateway's memory stays bounded."""
import asyncio
import os
import signal
import time

import httpx2

from hangar_proc import notes_server, stateless_headers, wait_for
from test_gateway import metric, start, wait_tools  # noqa: F401 (start is a fixture)

CLIENTS = 500
CALLS_PER_CLIENT = 8
LOAD_SECONDS = 20  # the time bound; the count bound usually ends it first
RATE_PER_MINUTE = 1200
BURST = 40
LIMIT = f"tools:\n  rateLimit: {{requestsPerMinute: {RATE_PER_MINUTE}, burst: {BURST}}}\n"
CALL = {
    "jsonrpc": "2.0",
    "method": "tools/call",
    "params": {
        "name": "notes__word_count",
        "arguments": {"text": "one two three"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}},
    },
}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


async def client(http, url: str, index: int, deadline: float, outcomes: dict):
    for i in range(CALLS_PER_CLIENT):
        if time.monotonic() > deadline:
            return
        body = {**CALL, "id": index * 100 + i}
        outcomes["sent"] = outcomes.get("sent", 0) + 1
        try:
            r = await http.post(url, json=body, headers={**stateless_headers(body), "accept": "application/json, text/event-stream"})
            answer = r.json()
        except Exception as e:  # noqa: BLE001 (a lost call is what this test looks for)
            outcomes.setdefault("lost", []).append(repr(e))
            continue
        if answer.get("result", {}).get("structuredContent") == {"result": 3}:
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        elif answer.get("error", {}).get("code") == -32029:
            outcomes["rate_limited"] = outcomes.get("rate_limited", 0) + 1
        else:
            outcomes.setdefault("other", []).append(answer)


def test_500_clients_through_a_rate_limited_group_while_a_member_dies(start):
    group = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata: {name: notes}\n"
        "spec:\n  selector: {matchLabels: {app: notes}}\n  strategy: RoundRobin\n"
        "  failover: {maxRetries: 2, retryDelay: 50ms}\n"
    )
    files = {f"{m}.yaml": notes_server(f"notes-{m}", "{app: notes}", LIMIT) for m in "abc"}
    h = start({**files, "group.yaml": group})
    born = time.monotonic()
    wait_tools(h.url, {"notes__word_count"})
    wait_for(lambda: len(h.children("notes.py")) == 3)
    rss_before = rss_kib(h.proc.pid)

    async def load():
        outcomes, peak = {}, rss_before
        limits = httpx2.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx2.AsyncClient(limits=limits, timeout=60) as http:
            deadline = time.monotonic() + LOAD_SECONDS
            tasks = [asyncio.create_task(client(http, h.url, i, deadline, outcomes)) for i in range(CLIENTS)]
            await asyncio.sleep(1.0)
            os.kill(h.children("notes.py")[0], signal.SIGKILL)
            while not all(t.done() for t in tasks):
                peak = max(peak, rss_kib(h.proc.pid))
                await asyncio.sleep(0.2)
            await asyncio.gather(*tasks)
        return outcomes, peak

    outcomes, peak = asyncio.run(load())
    lifetime = time.monotonic() - born
    # Clients stop at the deadline: count what was sent, not what was planned.
    sent = outcomes.get("sent", 0)
    answered = outcomes.get("ok", 0) + outcomes.get("rate_limited", 0) + len(outcomes.get("other", []))
    print(f"load: {outcomes.get('ok', 0)} ok, {outcomes.get('rate_limited', 0)} rate limited, "
          f"{len(outcomes.get('other', []))} other, {len(outcomes.get('lost', []))} lost of {sent}; "
          f"RSS {rss_before} KiB before, {peak} KiB peak")
    assert outcomes.get("lost", []) == [], outcomes["lost"][:3]
    assert outcomes.get("other", []) == [], outcomes["other"][:3]
    assert answered == sent, "every call that was sent was answered"
    assert sent >= CLIENTS, f"every client sent at least one call ({sent} sent)"
    assert outcomes.get("ok", 0) > 0 and outcomes.get("rate_limited", 0) > 0, outcomes
    # No member admitted more than its bucket: burst + rate × time it existed (with 1 call slack).
    allowed = BURST + RATE_PER_MINUTE * lifetime / 60 + 1
    per_member = {m: int(metric(h, "hangar_calls_total", f'outcome="ok",server="{m}",tool="word_count"')) for m in ("notes-a", "notes-b", "notes-c")}
    assert sum(per_member.values()) == outcomes["ok"], (per_member, outcomes["ok"])
    for member, ok in per_member.items():
        assert ok <= allowed, f"{member} admitted {ok} calls; its bucket allows {allowed:.0f}"
    assert peak - rss_before < 128 * 1024, f"RSS grew from {rss_before} KiB to {peak} KiB"
    assert h.proc.poll() is None
