"""A test-only MCP client (official Python SDK) that exports its spans by OTLP/HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT: `traced_client.py URL TOOL JSON-ARGS` calls one tool inside a span
of its own; the SDK puts the trace context into the request's `_meta`. Prints the trace id and
the result as one JSON line."""
import asyncio
import json
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from mcp import Client
from mcp.shared.exceptions import MCPError

provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)


async def main(url: str, tool: str, arguments: dict) -> dict:
    with trace.get_tracer("agent").start_as_current_span("agent task") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        try:
            async with Client(url) as client:
                result = await client.call_tool(tool, arguments)
                return {"trace_id": trace_id, "result": result.structured_content}
        except MCPError as e:
            return {"trace_id": trace_id, "error": {"code": e.code, "message": str(e)}}


if __name__ == "__main__":
    outcome = asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
    provider.shutdown()
    print(json.dumps(outcome), flush=True)
