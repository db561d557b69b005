"""A test-only remote MCP server (official Python SDK, Streamable HTTP on 127.0.0.1:PORT) that
answers only requests carrying `Authorization: <GUARD_EXPECT>` and writes every Authorization
value it receives, one per line, to the file GUARD_LOG (to prove what reached it)."""
import os
import sys

import uvicorn
from mcp.server import MCPServer

server = MCPServer("guarded")


@server.tool()
def secret_word() -> str:
    """Say the word only an authorised caller hears."""
    return "swordfish"


def guarded(app):
    expected = os.environ["GUARD_EXPECT"].encode()

    async def guard(scope, receive, send):
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"")
            with open(os.environ["GUARD_LOG"], "ab") as log:
                log.write(auth + b"\n")
            if auth != expected:
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"wrong credentials"})
                return
        await app(scope, receive, send)

    return guard


if __name__ == "__main__":
    app = server.streamable_http_app(json_response=True)
    uvicorn.run(guarded(app), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="on")
