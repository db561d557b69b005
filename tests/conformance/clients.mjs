#!/usr/bin/env node
// The official TypeScript clients against one MCP endpoint: SDK v1 (@modelcontextprotocol/sdk,
// 2025 handshake) and v2 (@modelcontextprotocol/client) in both eras. Each lists the tools,
// calls TOOL with ARGS (JSON) and lists prompts and resources; one JSON line per client.
// Usage: node clients.mjs URL TOOL ARGS
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';

const [url, tool, args] = process.argv.slice(2);
const clients = {
  'sdk-1.32 (2025-11-25)': () => [new ClientV1({ name: 'ts-v1', version: '1' }), new TransportV1(new URL(url))],
  'client-2.4 legacy': () => [
    new ClientV2({ name: 'ts-v2', version: '2' }, { versionNegotiation: { mode: 'legacy' } }),
    new TransportV2(new URL(url)),
  ],
  'client-2.4 auto (2026-07-28)': () => [
    new ClientV2({ name: 'ts-v2', version: '2' }, { versionNegotiation: { mode: 'auto' } }),
    new TransportV2(new URL(url)),
  ],
};
let failed = false;
for (const [name, make] of Object.entries(clients)) {
  const [client, transport] = make();
  try {
    await client.connect(transport);
    const tools = (await client.listTools()).tools.map((t) => t.name);
    const call = await client.callTool({ name: tool, arguments: JSON.parse(args) });
    const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
    const resources = (await client.listResources()).resources.map((r) => r.uri);
    console.log(JSON.stringify({ client: name, version: client.getServerVersion?.()?.name, tools, call, prompts, resources }));
  } catch (e) {
    failed = true;
    console.log(JSON.stringify({ client: name, error: String(e?.stack ?? e) }));
  } finally {
    await client.close().catch(() => {});
  }
}
process.exit(failed ? 1 : 0);
