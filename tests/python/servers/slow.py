"""A test-only MCP server (official Python SDK, stdio) whose `sleep` tool reports, into the file
named by SLOW_LOG, when each call started and whether it finished or was cancelled."""
import asyncio
import os

from mcp.server import MCPServer

server = MCPServer("slow")


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then say so."""
    with open(os.environ["SLOW_LOG"], "a") as log:
        log.write("started\n")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        with open(os.environ["SLOW_LOG"], "a") as log:
            log.write("cancelled\n")
        raise
    with open(os.environ["SLOW_LOG"], "a") as log:
        log.write("finished\n")
    return f"slept {seconds}s"


if __name__ == "__main__":
    server.run("stdio")
