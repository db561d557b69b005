#!/usr/bin/env node
// The server the official conformance suite is run against, directly and through `hangar run`:
// every tool, resource and prompt its server scenarios call, written with the official
// TypeScript SDK (stateful Streamable HTTP, resumable streams, DNS-rebinding protection).
// Usage: node reference-server.mjs PORT
import { randomUUID } from 'node:crypto';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { ElicitResultSchema, CreateMessageResultSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { ANSWERS, CAPABILITIES, CONTENTS, FORMS, MESSAGES, sleep, text } from './fixtures.mjs';

const port = Number(process.argv[2] ?? 3000);

// Resumable streams (SEP-1699): events kept per stream, replayed after a Last-Event-ID.
const events = [];
const eventStore = {
  async storeEvent(streamId, message) {
    const eventId = `${streamId}::${String(events.length).padStart(8, '0')}`;
    events.push({ eventId, streamId, message });
    return eventId;
  },
  async replayEventsAfter(lastEventId, { send }) {
    const streamId = lastEventId.split('::')[0];
    for (const e of events) {
      if (e.streamId === streamId && e.eventId > lastEventId && Object.keys(e.message).length > 0) {
        await send(e.eventId, e.message);
      }
    }
    return streamId;
  },
};

const transports = new Map();

// The raw 2020-12 schema a tools/list must carry through unchanged (SEP-1613).
const SCHEMA_2020_12 = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
  properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
  additionalProperties: false,
};

function build() {
  const server = new McpServer(
    { name: 'hangar-conformance-reference', version: '1.0.0' },
    {
      capabilities: CAPABILITIES,
    },
  );
  const log = (data) =>
    server.server.notification({ method: 'notifications/message', params: { level: 'info', logger: 'reference', data } }).catch(() => {});

  for (const [name, { description, answer }] of Object.entries(ANSWERS)) {
    server.registerTool(name, { description }, async () => answer);
  }
  server.registerTool('test_tool_with_logging', { description: 'Logs three messages while it runs', inputSchema: {} }, async (_args, extra) => {
    for (const step of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
      await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data: step } });
      await sleep(50);
    }
    return text('Tool with logging executed successfully');
  });
  server.registerTool('test_tool_with_progress', { description: 'Reports progress 0, 50, 100', inputSchema: {} }, async (_args, extra) => {
    const progressToken = extra._meta?.progressToken ?? 0;
    for (const progress of [0, 50, 100]) {
      await extra.sendNotification({
        method: 'notifications/progress',
        params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
      });
      await sleep(50);
    }
    return text(String(progressToken));
  });
  server.registerTool('test_error_handling', { description: 'Always fails' }, async () => {
    throw new Error('This tool intentionally returns an error for testing');
  });
  server.registerTool('test_reconnection', { description: 'Closes its SSE stream mid-call (SEP-1699)', inputSchema: {} }, async (_args, extra) => {
    const transport = transports.get(extra.sessionId);
    if (transport && extra.requestId !== undefined) transport.closeSSEStream(extra.requestId);
    await sleep(100);
    return text('Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.');
  });
  server.registerTool('test_sampling', { description: 'Asks the client for an LLM completion', inputSchema: { prompt: z.string() } }, async ({ prompt }) => {
    try {
      const answer = await server.server.request(
        { method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 } },
        CreateMessageResultSchema,
      );
      return text(`LLM response: ${answer.content?.text ?? 'No response'}`);
    } catch (e) {
      return text(`Sampling not supported or error: ${e.message}`);
    }
  });
  const elicit = async (message, requestedSchema, prefix) => {
    try {
      const answer = await server.server.request({ method: 'elicitation/create', params: { message, requestedSchema } }, ElicitResultSchema);
      return text(`${prefix}: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);
    } catch (e) {
      return text(`Elicitation not supported or error: ${e.message}`);
    }
  };
  server.registerTool('test_elicitation', { description: 'Asks the user for input', inputSchema: { message: z.string() } }, async ({ message }) =>
    elicit(message, FORMS.response, 'User response'));
  server.registerTool('test_elicitation_sep1034_defaults', { description: 'Elicits with defaults (SEP-1034)', inputSchema: {} }, async () =>
    elicit(FORMS.defaults.message, FORMS.defaults.requestedSchema, 'Elicitation completed'));
  server.registerTool('test_elicitation_sep1330_enums', { description: 'Elicits every enum form (SEP-1330)', inputSchema: {} }, async () =>
    elicit(FORMS.enums.message, FORMS.enums.requestedSchema, 'Elicitation completed'));
  server.registerTool('json_schema_2020_12_tool', {
    description: 'Carries a JSON Schema 2020-12 input schema (SEP-1613)',
    inputSchema: { name: z.string().optional(), address: z.object({ street: z.string().optional(), city: z.string().optional() }).optional() },
  }, async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`));

  // tools/list as the SDK answers it, except the 2020-12 tool's schema, which goes out raw.
  const listTools = server.server._requestHandlers.get('tools/list');
  server.server.setRequestHandler(ListToolsRequestSchema, async (request, extra) => {
    const listed = await listTools(request, extra);
    return { ...listed, tools: listed.tools.map((t) => (t.name === 'json_schema_2020_12_tool' ? { ...t, inputSchema: SCHEMA_2020_12 } : t)) };
  });

  server.registerResource('static-text', 'test://static-text', { title: 'Static Text Resource', description: 'A static text resource', mimeType: 'text/plain' }, async () => CONTENTS['test://static-text']);
  server.registerResource('static-binary', 'test://static-binary', { title: 'Static Binary Resource', description: 'A PNG', mimeType: 'image/png' }, async () => CONTENTS['test://static-binary']);
  server.registerResource('template', new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { title: 'Resource Template', description: 'Data for an id', mimeType: 'application/json' },
    async (uri, { id }) => CONTENTS.template(uri.toString(), id));
  server.registerResource('watched-resource', 'test://watched-resource', { title: 'Watched Resource', description: 'Subscribable', mimeType: 'text/plain' }, async () => CONTENTS['test://watched-resource']);
  const subscriptions = new Set();
  server.server.setRequestHandler(z.object({ method: z.literal('resources/subscribe') }).passthrough(), async (request) => {
    subscriptions.add(request.params.uri);
    log(`Subscribed to resource: ${request.params.uri}`);
    return {};
  });
  server.server.setRequestHandler(z.object({ method: z.literal('resources/unsubscribe') }).passthrough(), async (request) => {
    subscriptions.delete(request.params.uri);
    log(`Unsubscribed from resource: ${request.params.uri}`);
    return {};
  });

  server.registerPrompt('test_simple_prompt', { title: 'Simple Test Prompt', description: 'No arguments' }, async () => MESSAGES.test_simple_prompt());
  server.registerPrompt('test_prompt_with_arguments', {
    title: 'Prompt With Arguments', description: 'Two required arguments',
    argsSchema: { arg1: z.string().describe('First test argument'), arg2: z.string().describe('Second test argument') },
  }, async (args) => MESSAGES.test_prompt_with_arguments(args));
  server.registerPrompt('test_prompt_with_embedded_resource', {
    title: 'Prompt With Embedded Resource', description: 'Embeds the resource named',
    argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') },
  }, async (args) => MESSAGES.test_prompt_with_embedded_resource(args));
  server.registerPrompt('test_prompt_with_image', { title: 'Prompt With Image', description: 'Carries an image' }, async () => MESSAGES.test_prompt_with_image());

  server.server.setRequestHandler(z.object({ method: z.literal('logging/setLevel') }).passthrough(), async (request) => {
    log(`Log level set to: ${request.params.level}`);
    return {};
  });
  server.server.setRequestHandler(z.object({ method: z.literal('completion/complete') }).passthrough(), async () => ({
    completion: { values: [], total: 0, hasMore: false },
  }));
  return server;
}

// DNS-rebinding protection: loopback Host headers only (the SDK's default for 127.0.0.1).
const app = createMcpExpressApp();
app.post('/mcp', async (req, res) => {
  const id = req.headers['mcp-session-id'];
  let transport = id && transports.get(id);
  if (!transport) {
    if (id || req.body?.method !== 'initialize') {
      res.status(id ? 404 : 400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'unknown or missing session' }, id: null });
      return;
    }
    const server = build();
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore,
      retryInterval: 5000,
      onsessioninitialized: (sid) => transports.set(sid, transport),
    });
    transport.onclose = () => {
      if (transport.sessionId) transports.delete(transport.sessionId);
      server.close();
    };
    await server.connect(transport);
  }
  await transport.handleRequest(req, res, req.body);
});
const bySession = async (req, res) => {
  const transport = transports.get(req.headers['mcp-session-id']);
  if (!transport) {
    res.status(404).send('unknown or missing session');
    return;
  }
  await transport.handleRequest(req, res);
};
app.get('/mcp', bySession);
app.delete('/mcp', bySession);
app.listen(port, '127.0.0.1', () => console.log(`reference server on http://127.0.0.1:${port}/mcp`));
