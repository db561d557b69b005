"""Ten lines with the official MCP Python SDK: list Hangar's tools and call two of them.
Run: examples/local/.venv/bin/python examples/local/client.py [http://127.0.0.1:8080/mcp]"""
import asyncio, sys

from mcp import Client


async def main(url: str) -> None:
    async with Client(url) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools))
        print(await client.call_tool("everything__echo", {"message": "hello through Hangar"}))
        print(await client.call_tool("notes__word_count", {"text": "one gateway, many servers"}))


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/mcp"))
