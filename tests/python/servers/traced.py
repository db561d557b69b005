"""A test-only MCP server (official Python SDK, stdio) that exports its spans by OTLP/HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT: the SDK opens a span for each request and continues the trace
context it finds in the request's `_meta`. With CRASH_ON_CALL set, `echo` kills the process
mid-call (a member failing, for failover)."""
import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from mcp.server import MCPServer

provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "traced")}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

server = MCPServer("traced")


@server.tool()
def echo(text: str) -> str:
    """Says `text` back."""
    if os.environ.get("CRASH_ON_CALL"):
        os._exit(3)
    return text


if __name__ == "__main__":
    server.run("stdio")
