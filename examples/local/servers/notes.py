"""A small MCP server written with the official Python SDK (2.x, 2026-07-28 by default):
a notebook with `add_note`, `list_notes` and `word_count`. Runs over stdio, or over Streamable
HTTP with `--http PORT`. Notes live in memory, per process."""
import sys

from mcp.server import MCPServer

server = MCPServer("notes")
NOTES: list[str] = []


@server.tool()
def add_note(text: str) -> str:
    """Store a note and return how many notes there are."""
    NOTES.append(text)
    return f"{len(NOTES)} notes"


@server.tool()
def list_notes() -> str:
    """All notes, one per line."""
    return "\n".join(NOTES)


@server.tool()
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]), json_response=True)
    else:
        server.run("stdio")
