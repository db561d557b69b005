#!/usr/bin/env node
// Tool search with the official TypeScript clients: SDK v1 (@modelcontextprotocol/sdk, 2025
// handshake) and v2 (@modelcontextprotocol/client, 2026-07-28 stateless when the server offers
// it). Each lists the tools, calls search_tools with QUERY, then calls the first tool found
// through call_tool with ARGS (JSON); one JSON line per client.
// Usage: node search-client.mjs URL QUERY ARGS
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';

const [url, query, args] = process.argv.slice(2);
const clients = {
  'sdk-1.32 (2025-11-25)': () => [new ClientV1({ name: 'ts-v1', version: '1' }), new TransportV1(new URL(url))],
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
    const search = await client.callTool({ name: 'search_tools', arguments: { query, limit: 3 } });
    const found = (search.structuredContent?.tools ?? []).map((t) => t.name);
    const call = found.length
      ? await client.callTool({ name: 'call_tool', arguments: { name: found[0], arguments: JSON.parse(args) } })
      : null;
    console.log(JSON.stringify({ client: name, tools, found, call }));
  } catch (e) {
    failed = true;
    console.log(JSON.stringify({ client: name, error: String(e?.stack ?? e) }));
  } finally {
    await client.close().catch(() => {});
  }
}
process.exit(failed ? 1 : 0);
