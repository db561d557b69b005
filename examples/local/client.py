"""A few lines with the official MCP Python SDK: list Hangar's tools and call some.
Run: examples/local/.venv/bin/python examples/local/client.py [URL [TOOL 'JSON-ARGUMENTS']]
Without TOOL it calls one tool of each of the local demo's servers."""
import asyncio, json, sys

from mcp import Client


async def main(url: str, calls: list[tuple[str, dict]]) -> None:
    async with Client(url) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools))
        for tool, arguments in calls:
            print(await client.call_tool(tool, arguments))


args = sys.argv[1:]
demo = [("everything__echo", {"message": "hello through Hangar"}),
        ("notes__word_count", {"text": "one gateway, many servers"})]
calls = [(args[1], json.loads(args[2] if len(args) > 2 else "{}"))] if len(args) > 1 else demo
asyncio.run(main(args[0] if args else "http://127.0.0.1:8080/mcp", calls))
