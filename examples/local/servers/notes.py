"""A small MCP server written with the official Python SDK (2.x, 2026-07-28 by default):
a notebook with `add_note`, `list_notes`, `word_count` and `clear_notes` (which asks the user
to confirm: in 2026-07-28 through an `input_required` result, in older revisions with an
`elicitation/create` request). Runs over stdio, or over Streamable HTTP with `--http PORT`.
Notes live in memory, per process."""
import sys
from typing import Annotated

from pydantic import BaseModel

from mcp.server import MCPServer
from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver.resolve import Elicit, Resolve

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


class Confirmation(BaseModel):
    confirm: bool


def ask_to_clear() -> Elicit[Confirmation]:
    return Elicit(f"Remove all {len(NOTES)} notes?", Confirmation)


@server.tool()
def clear_notes(answer: Annotated[ElicitationResult[Confirmation], Resolve(ask_to_clear)]) -> str:
    """Remove every note, once the user confirms."""
    if answer.action == "accept" and answer.data.confirm:
        NOTES.clear()
        return "cleared"
    return f"kept ({answer.action})"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]), json_response=True)
    else:
        server.run("stdio")
