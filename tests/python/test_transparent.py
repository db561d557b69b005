"""Everything a server offers reaches the client through `hangar run`: prompts, resources,
completions, log messages and progress from HTTP servers, the servers' requests to the client
(sampling, elicitation) and its answers; names as the server gave them (`spec.unprefixed`) and
their clashes; DNS-rebinding protection. Clients: the official Python SDK and the official
TypeScript SDK (v1 and v2, both eras); servers: the conformance reference server (TypeScript SDK,
remote) and the npm reference server (stdio)."""
import asyncio
import json
import subprocess
import textwrap
import urllib.error
import urllib.request

import mcp.types as t
from mcp import Client
from mcp.shared.exceptions import MCPError

from hangar_proc import Hangar, everything_server, notes_server, stateless_headers, wait_for
from test_conformance import CONFORMANCE, NODE, reference  # noqa: F401 (the fixture)
from test_gateway import mcp_error, names


def remote(name: str, url: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: mcp-hangar.io/v1alpha1
        kind: MCPServer
        metadata: {{name: {name}}}
        spec: {{mode: remote, endpoint: "{url}"{extra}}}
        """)


def start(folder, files: dict[str, str]) -> Hangar:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return Hangar(folder)


def test_prompts_resources_and_completions_of_two_servers_reach_the_client(reference, tmp_path):  # noqa: F811
    h = start(tmp_path / "run", {"reference.yaml": remote("reference", reference), "everything.yaml": everything_server()})
    try:
        wait_for(lambda: {"reference__test_simple_text", "everything__echo"} <= set(names(h.url)), timeout=60)

        async def session():
            async with Client(h.url, mode="legacy") as c:
                prompts = [p.name for p in (await c.list_prompts()).prompts]
                resources = [r.uri for r in (await c.list_resources()).resources]
                templates = [r.uri_template for r in (await c.list_resource_templates()).resource_templates]
                prompt = await c.get_prompt("reference__test_prompt_with_arguments", {"arg1": "a", "arg2": "b"})
                text = await c.read_resource("test://static-text")
                templated = await c.read_resource("test://template/7/data")
                demo = await c.read_resource(resources[[r.startswith("demo://") for r in resources].index(True)])
                completion = await c.complete(t.PromptReference(type="ref/prompt", name="everything__completable-prompt"),
                                              {"name": "department", "value": "E"})
                await c.set_logging_level("info")
                return prompts, resources, templates, prompt, text, templated, demo, completion

        prompts, resources, templates, prompt, text, templated, demo, completion = asyncio.run(session())
        assert {"reference__test_simple_prompt", "everything__simple-prompt"} <= set(prompts), prompts
        # URIs stay as the servers gave them; each read went to the server that offers the URI.
        assert "test://static-text" in resources and any(r.startswith("demo://") for r in resources), resources
        assert "test://template/{id}/data" in templates, templates
        assert prompt.messages[0].content.text == "Prompt with arguments: arg1='a', arg2='b'"
        assert text.contents[0].text == "This is the content of the static text resource."
        assert json.loads(templated.contents[0].text)["id"] == "7"
        assert demo.contents, demo
        assert "Engineering" in completion.completion.values, completion
        # An unknown prompt names the way names are formed.
        e = mcp_error(_get_prompt(h.url, "nobody__nothing"))
        assert "nobody__nothing" in str(e) and "prompt" in str(e), e
        e = mcp_error(_read(h.url, "test://nowhere"))
        assert "not offered by any server" in str(e), e
    finally:
        h.stop()


async def _get_prompt(url, name):
    async with Client(url, mode="legacy") as c:
        await c.get_prompt(name)


async def _read(url, uri):
    async with Client(url, mode="legacy") as c:
        await c.read_resource(uri)


def test_servers_requests_reach_the_calling_client_and_its_answers_the_server(reference, tmp_path, request):  # noqa: F811
    dual = request.node.callspec.params["reference"] == "dual-server.mjs"
    h = start(tmp_path / "run", {"reference.yaml": remote("reference", reference, ", unprefixed: true")})
    try:
        wait_for(lambda: "test_sampling" in names(h.url), timeout=60)
        asked = []

        async def sampling(context, params):
            asked.append(params.messages[0].content.text)
            return t.CreateMessageResult(role="assistant", content=t.TextContent(type="text", text="from the client"),
                                         model="m")

        async def elicitation(context, params):
            asked.append(params.message)
            return t.ElicitResult(action="accept", content={"response": "yes"})

        logs, progress = [], []

        async def logging(params):
            logs.append(params.data)

        async def on_progress(p, total, message):
            progress.append(p)

        async def calls():
            async with Client(h.url, mode="legacy", sampling_callback=sampling, elicitation_callback=elicitation,
                              logging_callback=logging) as c:
                sampled = await c.call_tool("test_sampling", {"prompt": "a question"})
                elicited = await c.call_tool("test_elicitation", {"message": "confirm?"})
                logged = await c.call_tool("test_tool_with_logging", {})
                progressed = await c.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
                resumed = await c.call_tool("test_reconnection", {})
                return sampled, elicited, logged, progressed, resumed

        sampled, elicited, logged, progressed, resumed = asyncio.run(asyncio.wait_for(calls(), 120))
        assert sampled.content[0].text == "LLM response: from the client"
        assert elicited.content[0].text == 'User response: action=accept, content={"response":"yes"}'
        assert asked == ["a question", "confirm?"]
        assert logs == ["Tool execution started", "Tool processing data", "Tool execution completed"], logs
        assert progress == [0, 50, 100], progress
        assert not progressed.is_error
        # The server closed the answer's stream mid-call; Hangar resumed it with Last-Event-ID.
        assert resumed.content[0].text.startswith("Reconnection test completed successfully")

        async def without_capability(mode):
            async with Client(h.url, mode=mode) as c:
                try:
                    return (await c.call_tool("test_sampling", {"prompt": "q"})).content[0].text
                except MCPError as e:
                    return f"error {e.code}: {e}"

        # A client that cannot answer gets the server a clear error at once, not a 60 s hang.
        text = asyncio.run(asyncio.wait_for(without_capability("legacy"), 30))
        assert "did not declare the capability sampling/createMessage" in text, text
        text = asyncio.run(asyncio.wait_for(without_capability("auto"), 30))
        if dual:
            # A stateless server judges the client's own capabilities (passed on, not Hangar's):
            # it refuses to ask what the client cannot answer (-32021).
            assert text.startswith("error -32021") and "sampling" in text, text
        else:
            # (a stateless call that declared nothing gets no relay: the server hears so at once)
            assert "sampling/createMessage is not available here" in text, text

        # A 2026-07-28 client is asked through input_required results; its retry carries the answers.
        async def stateless():
            async with Client(h.url, mode="auto", sampling_callback=sampling, elicitation_callback=elicitation) as c:
                sampled = await c.call_tool("test_sampling", {"prompt": "stateless"})
                elicited = await c.call_tool("test_elicitation", {"message": "stateless?"})
                return sampled, elicited

        asked.clear()
        sampled, elicited = asyncio.run(asyncio.wait_for(stateless(), 60))
        assert sampled.content[0].text == "LLM response: from the client"
        assert elicited.content[0].text == 'User response: action=accept, content={"response":"yes"}'
        assert asked == ["stateless", "stateless?"]
        # None of it counted against the server.
        metrics = urllib.request.urlopen(f"{h.base}/metrics", timeout=10).read().decode()
        assert 'hangar_calls_total{outcome="ok",server="reference",tool="test_sampling"} 4' in metrics
        # (the dual server's -32021 is its answer, an error of that call; the server stays healthy)
        errors = [line for line in metrics.splitlines() if line.startswith('hangar_calls_total{outcome="error"')]
        assert errors == (['hangar_calls_total{outcome="error",server="reference",tool="test_sampling"} 1'] if dual
                          else []), errors
        assert 'hangar_breaker_state{server="reference"} 0' in metrics
    finally:
        h.stop()


def test_unprefixed_names_and_their_clashes(tmp_path):
    unprefixed = "tools: {allowList: [add_note, list_notes]}\nunprefixed: true\n"
    h = start(tmp_path / "run", {
        "a.yaml": notes_server("notes-a", tools=unprefixed),
        "b.yaml": notes_server("notes-b", tools=unprefixed),
        "everything.yaml": everything_server(tools="unprefixed: true\n"),
    })
    try:
        listed = wait_for(lambda: (n := names(h.url)) and {"echo", "notes-a__add_note", "notes-b__add_note"} <= set(n) and n,
                          timeout=60)
        # Both notes servers want add_note: neither shadows the other; each keeps its prefix.
        assert "add_note" not in listed and "list_notes" not in listed, listed
        e = mcp_error(_call(h.url, "add_note", {"text": "x"}))
        assert "notes-a__add_note or notes-b__add_note" in str(e), e
        assert "clash" in (h.folder / "hangar.log").read_text()
        # Unclashed names are the server's own; prefixed ones work as well.
        assert asyncio.run(_call(h.url, "echo", {"message": "m"})).content[0].text == "Echo: m"
        assert asyncio.run(_call(h.url, "everything__echo", {"message": "n"})).content[0].text == "Echo: n"
    finally:
        h.stop()


async def _call(url, tool, args):
    async with Client(url, mode="legacy") as c:
        return await c.call_tool(tool, args)


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


def initialize(url: str, version: str) -> str:
    """A raw handshake at `version` (the answer must name it); the session id."""
    message = {**INITIALIZE, "params": {**INITIALIZE["params"], "protocolVersion": version}}
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert json.load(r)["result"]["protocolVersion"] == version
        return r.headers["mcp-session-id"]


def post(url: str, headers: dict, message: dict | list = INITIALIZE) -> int:
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream",
        **stateless_headers(message), **headers})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def test_other_sites_cannot_reach_a_loopback_endpoint_through_a_browser(tmp_path):
    h = start(tmp_path / "run", {"notes.yaml": notes_server("notes")})
    try:
        port = h.url.split(":")[2].split("/")[0]
        assert post(h.url, {}) == 200
        assert post(h.url, {"origin": f"http://localhost:{port}"}) == 200
        assert post(h.url, {"origin": "http://evil.example"}) == 403
        # A rebound DNS name reaches loopback with its own name as Host.
        assert post(h.url, {"host": f"evil.example:{port}"}) == 403
        assert post(h.url, {"host": f"localhost:{port}"}) == 200
    finally:
        h.stop()
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "notes.yaml").write_text(notes_server("notes"))
    h = Hangar(allowed, args=["run", str(allowed), "--allowed-origin", "https://app.example.com"])
    try:
        assert post(h.url, {"origin": "https://app.example.com"}) == 200
        assert post(h.url, {"origin": "https://other.example.com"}) == 403
    finally:
        h.stop()


def test_the_official_typescript_clients_of_both_generations(reference, tmp_path):  # noqa: F811
    h = start(tmp_path / "run", {"reference.yaml": remote("reference", reference), "everything.yaml": everything_server()})
    try:
        wait_for(lambda: {"reference__test_simple_text", "everything__echo"} <= set(names(h.url)), timeout=60)
        out = subprocess.run([str(NODE), str(CONFORMANCE / "clients.mjs"), h.url, "everything__echo", '{"message":"ts"}'],
                             capture_output=True, text=True, timeout=300)
        results = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(results) == 3 and out.returncode == 0, out.stdout + out.stderr
        for r in results:
            assert r["version"] == "hangar", r  # Hangar's own serverInfo, in both eras
            assert r["call"]["content"][0]["text"] == "Echo: ts", r
            assert "reference__test_simple_prompt" in r["prompts"] and "test://static-text" in r["resources"], r
    finally:
        h.stop()


def test_the_transport_rules_on_the_wire(tmp_path):
    h = start(tmp_path / "run", {"notes.yaml": notes_server("notes")})
    try:
        wait_for(lambda: names(h.url), timeout=60)
        assert post(h.url, {"content-type": "text/plain"}) == 415
        assert post(h.url, {"accept": "text/html"}) == 406
        assert post(h.url, {"mcp-protocol-version": "1999-01-01"}) == 400
        # A notification in a forged session is refused like a request would be.
        notification = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert post(h.url, {"mcp-session-id": "forged.id"}, notification) == 404
        # The stateless revision's header and _meta must name the same version.
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientInfo":
                {"name": "t", "version": "1"}, "io.modelcontextprotocol/clientCapabilities": {}}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}}
        assert post(h.url, {"mcp-protocol-version": "2026-07-28"}, listing) == 200
        assert post(h.url, {"mcp-protocol-version": "2025-11-25"}, listing) == 400
        # 2025-03-26 requires batches; later revisions (which send the header) removed them.
        session = initialize(h.url, "2025-03-26")
        batch = [{"jsonrpc": "2.0", "method": "notifications/initialized"},
                 {"jsonrpc": "2.0", "id": "a", "method": "tools/list"},
                 {"jsonrpc": "2.0", "id": "b", "method": "ping"},
                 {"jsonrpc": "2.0", "id": "c", "method": "nothing/here"}]
        request = urllib.request.Request(h.url, data=json.dumps(batch).encode(), method="POST", headers={
            "content-type": "application/json", "accept": "application/json, text/event-stream",
            "mcp-session-id": session})
        with urllib.request.urlopen(request, timeout=30) as r:
            answers = {a["id"]: a for a in json.load(r)}
        assert set(answers) == {"a", "b", "c"}, answers
        assert any(t["name"].startswith("notes__") for t in answers["a"]["result"]["tools"]), answers["a"]
        assert answers["b"]["result"] == {} and answers["c"]["error"]["code"] == -32601
        assert post(h.url, {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}, batch) == 400
    finally:
        h.stop()


def test_a_stdio_servers_requests_and_resource_updates_reach_the_client(tmp_path):
    h = start(tmp_path / "run", {"everything.yaml": everything_server()})
    try:
        # Hangar declares sampling to its servers (it relays it), so the server offers this tool.
        wait_for(lambda: "everything__trigger-sampling-request" in names(h.url), timeout=60)
        updates = []

        async def sampling(context, params):
            return t.CreateMessageResult(role="assistant", content=t.TextContent(type="text", text="sampled"), model="m")

        async def on_message(message):
            if getattr(message, "method", None) == "notifications/resources/updated":
                updates.append(message.params.uri)

        async def session():
            async with Client(h.url, mode="legacy", sampling_callback=sampling, message_handler=on_message) as c:
                sampled = await c.call_tool("everything__trigger-sampling-request", {"prompt": "p", "maxTokens": 10})
                uri = next(r.uri for r in (await c.list_resources()).resources if r.uri.startswith("demo://"))
                await c.subscribe_resource(uri)
                await c.call_tool("everything__toggle-subscriber-updates", {})
                for _ in range(200):  # at most 20 s: the server sends an update at once, then every 5 s
                    if updates:
                        break
                    await asyncio.sleep(0.1)
                return sampled, uri

        sampled, uri = asyncio.run(asyncio.wait_for(session(), 90))
        assert '"text": "sampled"' in sampled.content[0].text, sampled
        assert uri in updates, (uri, updates)
    finally:
        h.stop()


def test_a_stateless_servers_input_required_reaches_clients_of_both_generations(tmp_path):
    # The notes server (Python SDK 2.x) speaks 2026-07-28: clear_notes asks through input_required.
    h = start(tmp_path / "run", {"notes.yaml": notes_server("notes")})
    try:
        wait_for(lambda: "notes__clear_notes" in names(h.url), timeout=60)
        asked = []

        async def elicitation(context, params):
            asked.append(params.message)
            return t.ElicitResult(action="accept", content={"confirm": True})

        async def clear(mode, **callbacks):
            async with Client(h.url, mode=mode, **callbacks) as c:
                await c.call_tool("notes__add_note", {"text": "one"})
                return (await c.call_tool("notes__clear_notes", {})).content[0].text

        for mode in ("auto", "legacy"):
            assert asyncio.run(asyncio.wait_for(clear(mode, elicitation_callback=elicitation), 60)) == "cleared", mode
        assert asked == ["Remove all 1 notes?", "Remove all 1 notes?"], asked
        # A client that cannot answer is not asked: the server sees the capabilities the client
        # declared (not Hangar's), and refuses with its own clear error.
        e = mcp_error(clear("legacy"))
        assert "did not declare" in str(e) and "elicitation" in str(e), e
    finally:
        h.stop()


def test_a_stateless_client_listens_for_list_changes(tmp_path):
    h = start(tmp_path / "run", {"notes.yaml": notes_server("notes")})
    try:
        wait_for(lambda: "notes__add_note" in names(h.url), timeout=60)

        async def listen():
            async with Client(h.url, mode="auto") as c:
                async with c.listen(tools_list_changed=True, resource_subscriptions=["test://x"]) as sub:
                    honored = sub.honored
                    # A second server arrives: the tool list changes.
                    (h.folder / "everything.yaml").write_text(everything_server())
                    event = await asyncio.wait_for(sub.__anext__(), 60)
                    return honored, event

        honored, event = asyncio.run(listen())
        assert honored.tools_list_changed and not honored.resource_subscriptions, honored
        assert "ToolsListChanged" in type(event).__name__, event
        wait_for(lambda: "everything__echo" in names(h.url), timeout=60)
    finally:
        h.stop()


def test_a_dropped_answer_stream_resumes_with_last_event_id(tmp_path):
    h = start(tmp_path / "run", {"everything.yaml": everything_server()})
    try:
        wait_for(lambda: "everything__trigger-long-running-operation" in names(h.url), timeout=60)
        session = initialize(h.url, "2025-11-25")
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
        call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
            "name": "everything__trigger-long-running-operation", "arguments": {"duration": 3, "steps": 6},
            "_meta": {"progressToken": "p"}}}
        request = urllib.request.Request(h.url, data=json.dumps(call).encode(), method="POST", headers=headers)
        r = urllib.request.urlopen(request, timeout=30)
        first = [r.readline().decode() for _ in range(6)]  # the priming event, then the first progress
        r.close()  # the connection drops mid-call
        ids = [line.split(":", 1)[1].strip() for line in first if line.startswith("id:")]
        assert ids and ids[0].endswith(":0"), first  # a priming event with an id and no data
        last = ids[-1]
        resume = urllib.request.Request(h.url, method="GET", headers={
            "accept": "text/event-stream", "mcp-session-id": session, "last-event-id": last})
        with urllib.request.urlopen(resume, timeout=30) as rest:
            messages = [json.loads(line[5:]) for line in rest.read().decode().splitlines() if line.startswith("data:") and line[5:].strip()]
        assert messages[-1]["id"] == 9 and "result" in messages[-1], messages[-1]
        progress = [m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"]
        assert progress and progress == sorted(progress), progress  # the rest, in order, none twice
    finally:
        h.stop()


def test_prompts_and_resources_count_against_the_servers_rate_limit(reference, tmp_path):  # noqa: F811
    limited = ", tools: {rateLimit: {requestsPerMinute: 3, burst: 3}}"
    h = start(tmp_path / "run", {"reference.yaml": remote("reference", reference, limited)})
    try:
        wait_for(lambda: "reference__test_simple_text" in names(h.url), timeout=60)

        async def spend():
            async with Client(h.url, mode="legacy") as c:
                await c.get_prompt("reference__test_simple_prompt")
                await c.read_resource("test://static-text")
                await c.call_tool("reference__test_simple_text", {})  # the same bucket as tools
                await c.get_prompt("reference__test_simple_prompt")

        e = mcp_error(spend())
        assert e.code == -32029 and "spec.tools.rateLimit" in str(e), e
    finally:
        h.stop()
