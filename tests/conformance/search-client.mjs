#!/usr/bin/env node
// Tool search with the official TypeScript clients: SDK v1 (2025 handshake) and v2 (2026-07-28
// stateless when the server offers it). Each lists the tools, calls search_tools with QUERY, then
// calls the first tool found through call_tool with ARGS (JSON); one JSON line per client.
// Usage: node search-client.mjs URL QUERY ARGS
import { eachClient } from './ts-clients.mjs';

const [url, query, args] = process.argv.slice(2);
await eachClient(url, ['sdk-1.32 (2025-11-25)', 'client-2.4 auto (2026-07-28)'], async (client) => {
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const search = await client.callTool({ name: 'search_tools', arguments: { query, limit: 3 } });
  const found = (search.structuredContent?.tools ?? []).map((t) => t.name);
  const call = found.length
    ? await client.callTool({ name: 'call_tool', arguments: { name: found[0], arguments: JSON.parse(args) } })
    : null;
  return { tools, found, call };
});
