#!/usr/bin/env node
// Hangar in the client's seat of the official conformance suite: the suite runs this as its
// client (`conformance client --command "node seat.mjs"`), with the URL of the scenario's server.
// It puts that server behind `hangar run` (a `mode: remote` MCPServer with `unprefixed: true`),
// and an official client (TypeScript client 2.4, stateless 2026-07-28 when the scenario's
// revision is, else the 2025-11-25 handshake) does in front what the scenario asks: the tool
// calls its context names, else every tool, resource and prompt listed. What the scenario's
// server judges is Hangar: its discovery, headers, `_meta`, retries and relay.
// Usage (by the suite): HANGAR_BIN=… MCP_CONFORMANCE_SCENARIO=… node seat.mjs URL
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const url = process.argv[2];
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? '{}');
const stateless = (process.env.MCP_CONFORMANCE_PROTOCOL_VERSION ?? '') >= '2026';

const folder = mkdtempSync(join(tmpdir(), 'hangar-seat-'));
writeFileSync(join(folder, 'scenario.yaml'), [
  'apiVersion: mcp-hangar.io/v1alpha1',
  'kind: MCPServer',
  'metadata: {name: scenario}',
  `spec: {mode: remote, endpoint: ${JSON.stringify(url)}, unprefixed: true}`,
  '',
].join('\n'));
const hangar = spawn(process.env.HANGAR_BIN, ['run', folder, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });

// The endpoint Hangar printed, once it says its server is ready (or gave up on it).
const endpoint = await new Promise((resolve, reject) => {
  let out = '';
  let found;
  const timer = setTimeout(() => reject(new Error(`hangar did not get ready: ${out}`)), 60_000);
  hangar.stdout.on('data', (chunk) => {
    out += chunk;
    found ??= out.match(/MCP endpoint: (\S+)/)?.[1];
    if (found && /^Ready:/m.test(out)) {
      clearTimeout(timer);
      resolve(found);
    }
  });
  hangar.on('exit', (code) => reject(new Error(`hangar exited (${code}): ${out}`)));
});

const client = new Client(
  { name: 'hangar-seat', version: '1.0.0' },
  { capabilities: { elicitation: {}, sampling: {}, roots: {} }, versionNegotiation: { mode: stateless ? 'auto' : 'legacy' } },
);
// What a scenario's server may ask: a form is accepted, a completion and the roots are given.
client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { confirmed: true } }));
client.setRequestHandler('sampling/createMessage', async () => ({
  role: 'assistant', model: 'seat', content: { type: 'text', text: 'ok' },
}));
client.setRequestHandler('roots/list', async () => ({ roots: [{ uri: 'file:///seat', name: 'seat' }] }));

let failed = false;
const attempt = async (what, job) => {
  try {
    await job();
  } catch (e) {
    failed = true;
    console.error(`${what}: ${e?.message ?? e}`);
  }
};
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(endpoint)));
  const tools = (await client.listTools()).tools;
  // An echo tool gets the schema of the tool it names (the suite's schema-preservation check);
  // a tool taking a and b gets numbers; others no arguments.
  const schemaOf = (name) => tools.find((t) => t.name === name)?.inputSchema;
  const argumentsFor = (t) => {
    if (t.name === 'json_schema_echo') return { schema: schemaOf('json_schema_2020_12_tool') };
    return Object.keys(t.inputSchema?.properties ?? {}).includes('a') ? { a: 2, b: 3 } : {};
  };
  const calls = context.toolCalls ?? tools.map((t) => ({ name: t.name, arguments: argumentsFor(t) }));
  for (const call of calls) await attempt(`tools/call ${call.name}`, () => client.callTool(call));
  if (!context.toolCalls) {
    await attempt('resources', async () => {
      for (const r of (await client.listResources()).resources) await client.readResource({ uri: r.uri });
    });
    await attempt('prompts', async () => {
      for (const p of (await client.listPrompts()).prompts) await client.getPrompt({ name: p.name, arguments: {} });
    });
  }
} catch (e) {
  failed = true;
  console.error(e?.stack ?? e);
} finally {
  await client.close().catch(() => {});
  hangar.kill('SIGTERM');
  rmSync(folder, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
