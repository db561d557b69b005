"""A test-only MCP server (official Python SDK, stdio) whose answers are as large as a server's
may be: `numbers` returns `count` integers (millions of JSON values), `text` a string of `size`
characters."""
from mcp.server import MCPServer

server = MCPServer("big")


@server.tool()
def numbers(count: int) -> list[int]:
    """`count` ones."""
    return [1] * count


@server.tool()
def text(size: int) -> str:
    """A string of `size` x."""
    return "x" * size


if __name__ == "__main__":
    server.run("stdio")
