"""Tool search through `hangar run` (`--tool-search off|on|auto`) with the official Python SDK
client and the official TypeScript clients: what tools/list shows in each mode, search_tools and
call_tool, clear errors for bad arguments, results limited to what the caller may call (two
OAuth callers with different rules), and a search on one replica followed by a call on another
without a session."""
import asyncio
import json
import subprocess
import urllib.request

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from conftest import REPO
from hangar_proc import PYTHON, Hangar, everything_server, hangar_bin, notes_server, wait_for
from test_auth import EVERYTHING_FOR_CALLERS, bearer_client, protected, provider  # noqa: F401 - fixtures
from test_gateway import mcp_error, start  # noqa: F401 - start is a fixture

NODE = REPO / "tests" / "conformance" / "node_modules" / ".bin" / "node"
TS_SEARCH = REPO / "tests" / "conformance" / "search-client.mjs"
SERVERS = {"everything.yaml": everything_server(), "notes.yaml": notes_server("notes")}
SURFACE = ["search_tools", "call_tool"]


def search_flags(mode: str, max_tools: int = 5) -> list[str]:
    return ["--tool-search", mode, "--tool-search-max-tools", str(max_tools), "--tool-search-pinned", "notes__add_*"]


async def listed(url: str, mode: str = "auto", client: Client | None = None) -> list[str]:
    async with (client or Client(url, mode=mode)) as c:
        return [t.name for t in (await c.list_tools()).tools]


def servers_ready(h: Hangar) -> bool:
    return 'hangar_server_state{server="notes",state="Ready"} 1' in metrics_text(h) and \
        'hangar_server_state{server="everything",state="Ready"} 1' in metrics_text(h)


def metrics_text(h: Hangar) -> str:
    return urllib.request.urlopen(h.base + "/metrics", timeout=5).read().decode()


async def search(c, query: str, **extra):
    result = await c.call_tool("search_tools", {"query": query, **extra})
    return result


@pytest.mark.parametrize("client_mode", ["legacy", "auto"])
def test_search_on_lists_the_search_tools_and_pinned_ones_and_finds_and_calls(start, client_mode):
    h = start(SERVERS, flags=search_flags("on"))
    wait_for(lambda: servers_ready(h), timeout=60)

    async def run():
        async with Client(h.url, mode=client_mode) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            found = await search(c, "add two numbers together")
            nothing = await search(c, "book a flight to Lisbon")
            via_call_tool = await c.call_tool("call_tool", {"name": "everything__get-sum", "arguments": {"a": 2, "b": 40}})
            direct = await c.call_tool("everything__echo", {"message": "still callable by name"})
            return names, found, nothing, via_call_tool, direct

    names, found, nothing, via_call_tool, direct = asyncio.run(run())
    assert names == SURFACE + ["notes__add_note"], names
    tools = found.structured_content["tools"]
    assert tools[0]["name"] == "everything__get-sum", tools
    # Full definitions: no second call needed to know how to call it.
    assert tools[0]["inputSchema"]["properties"].keys() >= {"a", "b"} and tools[0]["description"], tools[0]
    assert all(isinstance(t["score"], float) for t in tools)
    assert nothing.structured_content == {"tools": []} and not nothing.is_error
    assert not via_call_tool.is_error and "42" in via_call_tool.content[0].text, via_call_tool
    assert direct.content[0].text.endswith("still callable by name")
    text = metrics_text(h)
    assert 'hangar_tool_search_queries_total{outcome="found"} 1' in text
    assert 'hangar_tool_search_queries_total{outcome="empty"} 1' in text
    assert "hangar_tool_search_duration_seconds_count 2" in text


def test_the_surface_stays_while_servers_come_and_the_index_follows_them(start):
    h = start({"everything.yaml": everything_server()}, flags=search_flags("on"))
    wait_for(lambda: 'hangar_server_state{server="everything",state="Ready"} 1' in metrics_text(h), timeout=60)

    async def look():
        async with Client(h.url) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            found = await search(c, "count the words of a text")
            return names, [t["name"] for t in found.structured_content["tools"]]

    before, found_before = asyncio.run(look())
    assert before == SURFACE and "notes__word_count" not in found_before, (before, found_before)
    (h.folder / "notes.yaml").write_text(notes_server("notes"))
    wait_for(lambda: servers_ready(h), timeout=60)
    after, found_after = wait_for(lambda: (r := asyncio.run(look()))[1][:1] == ["notes__word_count"] and r, timeout=30)
    # The pinned notes__add_* now exists and is listed; the search tools are where they were.
    assert after == SURFACE + ["notes__add_note"], after


def test_search_off_changes_nothing_and_auto_searches_only_large_catalogues(start):
    off = start(SERVERS)
    small = start(SERVERS, flags=search_flags("auto", max_tools=100))
    large = start(SERVERS, flags=search_flags("auto", max_tools=5))
    for h in (off, small, large):
        wait_for(lambda h=h: servers_ready(h), timeout=60)
    off_names = asyncio.run(listed(off.url))
    assert "search_tools" not in off_names and "everything__echo" in off_names and "notes__add_note" in off_names
    # auto under the limit: the whole catalogue, as off.
    assert asyncio.run(listed(small.url)) == off_names
    # auto over it: the search surface.
    assert asyncio.run(listed(large.url)) == SURFACE + ["notes__add_note"]

    async def search_when_off():
        async with Client(off.url) as c:
            return await c.call_tool("search_tools", {"query": "echo"})

    error = mcp_error(search_when_off())
    assert "search_tools" in str(error), error


def test_a_domains_own_words_reach_the_ranker_and_bad_ones_are_refused_at_start(start, tmp_path):
    h = start(SERVERS, flags=search_flags("on") + ["--tool-search-synonyms", "tally=count;jot=note"])
    wait_for(lambda: servers_ready(h), timeout=60)

    async def run():
        async with Client(h.url) as c:
            return [[t["name"] for t in (await search(c, q)).structured_content["tools"]]
                    for q in ("tally the words in a text", "jot this down")]

    tally, jot = asyncio.run(run())
    assert tally[0] == "notes__word_count" and jot[0] == "notes__add_note", (tally, jot)
    bad = subprocess.run([hangar_bin(), "run", str(tmp_path), "--listen", "127.0.0.1:0", "--tool-search", "on",
                          "--tool-search-synonyms", "tally"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--tool-search-synonyms" in bad.stderr and "word=other,words" in bad.stderr, bad.stderr


def test_bad_arguments_get_tool_errors_that_name_the_argument(start):
    h = start(SERVERS, flags=search_flags("on"))
    wait_for(lambda: servers_ready(h), timeout=60)

    async def run():
        async with Client(h.url) as c:
            return [
                await c.call_tool("search_tools", {"query": "  "}),
                await c.call_tool("search_tools", {"query": "echo", "limit": 0}),
                await c.call_tool("search_tools", {"query": "echo", "limit": 51}),
                await c.call_tool("call_tool", {"name": "nowhere__nothing"}),
                await c.call_tool("call_tool", {"arguments": {}}),
                await c.call_tool("call_tool", {"name": "everything__echo", "arguments": "not an object"}),
            ]

    results = asyncio.run(run())
    assert all(r.is_error for r in results), results
    texts = [r.content[0].text for r in results]
    assert texts[0].startswith("arguments.query:"), texts
    assert texts[1].startswith("arguments.limit:") and texts[2].startswith("arguments.limit:"), texts
    assert texts[3].startswith("arguments.name:") and "nowhere__nothing" in texts[3], texts
    assert texts[4].startswith("arguments.name:") and texts[5].startswith("arguments.arguments:"), texts
    assert 'hangar_tool_search_queries_total{outcome="invalid"} 3' in metrics_text(h)


def test_an_unprefixed_servers_tool_named_like_a_search_tool_keeps_its_prefix(start, tmp_path):
    server = tmp_path / "clash.py"
    server.write_text(
        "from mcp.server import MCPServer\n"
        "app = MCPServer('clash')\n"
        "@app.tool()\n"
        "def search_tools(query: str) -> str:\n"
        "    return 'the server own search: ' + query\n"
        "app.run('stdio')\n")
    manifest = f"""\
apiVersion: mcp-hangar.io/v1alpha1
kind: MCPServer
metadata: {{name: clash}}
spec:
  mode: container
  image: python:3.11-slim
  transport: stdio
  unprefixed: true
  command: ["{PYTHON}", "{server}"]
"""
    h = start({"clash.yaml": manifest}, flags=["--tool-search", "auto", "--tool-search-max-tools", "10"])
    wait_for(lambda: 'hangar_server_state{server="clash",state="Ready"} 1' in metrics_text(h), timeout=60)

    async def run():
        async with Client(h.url) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            own = await c.call_tool("clash__search_tools", {"query": "x"})
            ours = await c.call_tool("search_tools", {"query": "search"})
            return names, own, ours

    names, own, ours = asyncio.run(run())
    assert names == ["clash__search_tools"], names
    assert own.content[0].text == "the server own search: x"
    assert [t["name"] for t in ours.structured_content["tools"]] == ["clash__search_tools"]


def test_two_callers_find_only_what_they_may_call(protected, provider):
    """ops may call echo, get-sum and get-tiny-image; readers echo only: a reader's search never
    shows get-sum, not even scored, and calling it through call_tool is refused."""
    h = protected({"everything.yaml": EVERYTHING_FOR_CALLERS}, more=search_flags("on"))
    ops, readers = provider.token("agent-ops", h.url), provider.token("agent-readers", h.url)
    wait_for(lambda: 'hangar_server_state{server="everything",state="Ready"} 1' in metrics_text(h), timeout=60)

    async def session(token: str, mode: str):
        async with bearer_client(h.url, token, mode) as c:
            names = [t.name for t in (await c.list_tools()).tools]
            sums = await c.call_tool("search_tools", {"query": "add two numbers", "limit": 50})
            anything = [await c.call_tool("search_tools", {"query": q, "limit": 50})
                        for q in ("get a tiny image", "echo a message back")]
            try:
                called = await c.call_tool("call_tool", {"name": "everything__get-sum", "arguments": {"a": 1, "b": 2}})
            except MCPError as refused:  # as a direct call of a denied tool is
                called = refused
            return names, sums, anything, called

    for mode in ("legacy", "2026-07-28"):
        ops_names, ops_sums, ops_any, ops_called = asyncio.run(session(ops, mode))
        r_names, r_sums, r_any, r_called = asyncio.run(session(readers, mode))
        assert ops_names == r_names == SURFACE, (ops_names, r_names)
        assert ops_sums.structured_content["tools"][0]["name"] == "everything__get-sum"
        assert not ops_called.is_error and "3" in ops_called.content[0].text
        assert r_sums.structured_content["tools"] == [], r_sums.structured_content
        ops_found = [[t["name"] for t in r.structured_content["tools"]] for r in ops_any]
        r_found = [[t["name"] for t in r.structured_content["tools"]] for r in r_any]
        assert ops_found[0][0] == "everything__get-tiny-image" and ops_found[1][0] == "everything__echo", ops_found
        assert r_found == [[], ["everything__echo"]], r_found
        # Refused as a direct call would be: the policy's reason, naming the rule.
        assert isinstance(r_called, MCPError) and "callers[1].allowList" in str(r_called), r_called


def test_search_on_one_replica_and_call_on_another_without_a_session(start):
    """Two `hangar run` replicas of one set of manifests; a stateless (2026-07-28) client searches
    on one and calls what it found on the other."""
    first = start(SERVERS, flags=search_flags("on"))
    second = start(SERVERS, flags=search_flags("on"))
    for h in (first, second):
        wait_for(lambda h=h: servers_ready(h), timeout=60)

    async def run():
        async with Client(first.url, mode="2026-07-28") as a:
            found = await a.call_tool("search_tools", {"query": "count the words of a text"})
        name = found.structured_content["tools"][0]["name"]
        async with Client(second.url, mode="2026-07-28") as b:
            called = await b.call_tool("call_tool", {"name": name, "arguments": {"text": "one two three"}})
        return name, called

    name, called = asyncio.run(run())
    assert name == "notes__word_count"
    assert not called.is_error and "3" in called.content[0].text, called


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_typescript_clients_search_and_call(start, mode):
    h = start(SERVERS, flags=search_flags(mode))
    wait_for(lambda: servers_ready(h), timeout=60)
    out = subprocess.run([str(NODE), str(TS_SEARCH), h.url, "echo back a message", json.dumps({"message": "from ts"})],
                         capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert out.returncode == 0 and len(lines) == 2, (out.stdout, out.stderr[-2000:])
    for line in lines:
        assert line["tools"] == SURFACE + ["notes__add_note"], line
        assert line["found"][0] == "everything__echo", line
        assert line["call"]["content"][0]["text"].endswith("from ts"), line


def test_typescript_clients_see_everything_when_search_is_off(start):
    h = start(SERVERS)
    wait_for(lambda: servers_ready(h), timeout=60)
    out = subprocess.run([str(NODE), str(TS_SEARCH), h.url, "echo", "{}"], capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    # search_tools is not a tool when search is off: each client's call of it fails, naming it.
    assert len(lines) == 2 and all("search_tools" in line.get("error", "") for line in lines), out.stdout
