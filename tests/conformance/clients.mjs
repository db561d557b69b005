#!/usr/bin/env node
// The official TypeScript clients against one MCP endpoint: SDK v1 (@modelcontextprotocol/sdk,
// 2025 handshake) and v2 (@modelcontextprotocol/client) in both eras. Each lists the tools,
// calls TOOL with ARGS (JSON) and lists prompts and resources; one JSON line per client.
// Usage: node clients.mjs URL TOOL ARGS
import { clients, eachClient } from './ts-clients.mjs';

const [url, tool, args] = process.argv.slice(2);
await eachClient(url, Object.keys(clients), async (client) => {
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const call = await client.callTool({ name: tool, arguments: JSON.parse(args) });
  const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
  const resources = (await client.listResources()).resources.map((r) => r.uri);
  return { version: client.getServerVersion?.()?.name, tools, call, prompts, resources };
});
