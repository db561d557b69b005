"""A test-only "MCP server" that answers every line on stdin with garbage: HTML, a JSON-RPC
answer to a request nobody sent, and bytes that are not UTF-8."""
import sys

for _ in sys.stdin.buffer:
    sys.stdout.buffer.write(b'<html>not JSON-RPC</html>\n{"jsonrpc": "2.0", "id": "nobody-asked", "result": 1}\n\x00\xff\xfe\n')
    sys.stdout.buffer.flush()
