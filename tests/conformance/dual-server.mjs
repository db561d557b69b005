#!/usr/bin/env node
// The dual-revision server the official conformance suite is run against, directly and through
// `hangar run`: one endpoint that speaks 2025-11-25 (sessions, `initialize`, server-initiated
// requests, resumable SSE) and 2026-07-28 (stateless `_meta` envelope, `server/discover`,
// `input_required` results, cache hints), written with the official TypeScript SDK 2.x
// (`@modelcontextprotocol/server`). One factory backs both legs, as the SDK recommends: the
// modern leg is the SDK's `createMcpHandler`, the 2025 leg its sessionful Streamable HTTP
// transport, chosen per request by the SDK's own `isLegacyRequest`.
// Usage: node dual-server.mjs PORT
import { createServer } from 'node:http';
import { Readable } from 'node:stream';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  McpServer,
  ResourceTemplate,
  WebStandardStreamableHTTPServerTransport,
  createMcpHandler,
  isLegacyRequest,
  inputRequired,
  fromJsonSchema,
  createRequestStateCodec,
  MissingRequiredClientCapabilityError,
  hostHeaderValidationResponse,
  localhostAllowedHostnames,
} from '@modelcontextprotocol/server';
import { z } from 'zod';
import { ANSWERS, CAPABILITIES, CONTENTS, FORMS, MESSAGES, sleep, text } from './fixtures.mjs';

const port = Number(process.argv[2] ?? 3000);
const CAPABILITIES_KEY = 'io.modelcontextprotocol/clientCapabilities';

// requestState is attacker-controlled on the way back: sealed with the SDK's HMAC codec, whose
// verify hook refuses (-32602) state that was altered before any handler runs.
const stateCodec = createRequestStateCodec({ key: randomBytes(32) });
const sign = (payload) => stateCodec.mint(payload);

// A 2026-07-28 request carries the `_meta` envelope; a 2025-11-25 one arrives in a session.
const modern = (ctx) => ctx.mcpReq.envelope !== undefined;
const answers = (ctx) => ctx.mcpReq.inputResponses ?? {};
const accepted = (response, field) => {
  const value = response?.content?.[field];
  return typeof value === 'string' ? value : undefined;
};
const sampledText = (response) => response?.content?.text ?? (Array.isArray(response?.content) ? response.content[0]?.text : undefined);

// Resumable streams (SEP-1699) on the 2025 leg: events kept per stream, replayed after Last-Event-ID.
const events = [];
const eventStore = {
  async storeEvent(streamId, message) {
    const eventId = `${streamId}::${String(events.length).padStart(8, '0')}`;
    events.push({ eventId, streamId, message });
    return eventId;
  },
  async getStreamIdForEventId(eventId) {
    return eventId.split('::')[0];
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

// The 2020-12 schema a tools/list must carry through unchanged (SEP-1613, SEP-2106).
const SCHEMA_2020_12 = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: { address: { $anchor: 'addressDef', type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
  properties: {
    name: { type: 'string' },
    address: { $ref: '#/$defs/address' },
    contactMethod: { type: 'string', enum: ['phone', 'email'] },
    phone: { type: 'string' },
    email: { type: 'string' },
  },
  allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
  if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
  then: { required: ['phone'] },
  else: { required: ['email'] },
  additionalProperties: false,
};

const ask = {
  name: (message = 'What is your name?') =>
    inputRequired.elicit({ message, requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } }),
  sample: (question, maxTokens) =>
    inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: question } }], maxTokens }),
};

function build() {
  const server = new McpServer(
    { name: 'hangar-conformance-dual', version: '1.0.0' },
    {
      capabilities: CAPABILITIES,
      requestState: { verify: stateCodec.verify },
    },
  );

  for (const [name, { description, answer }] of Object.entries(ANSWERS)) {
    server.registerTool(name, { description }, async () => answer);
  }
  server.registerTool('test_tool_with_logging', { description: 'Logs three messages while it runs' }, async (ctx) => {
    for (const step of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
      await ctx.mcpReq.notify({ method: 'notifications/message', params: { level: 'info', data: step } });
      await sleep(50);
    }
    return text('Tool with logging executed successfully');
  });
  server.registerTool('test_tool_with_progress', { description: 'Reports progress 0, 50, 100' }, async (ctx) => {
    const progressToken = ctx.mcpReq._meta?.progressToken ?? 0;
    for (const progress of [0, 50, 100]) {
      await ctx.mcpReq.notify({
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
  server.registerTool('test_reconnection', { description: 'Closes its SSE stream mid-call (SEP-1699)' }, async (ctx) => {
    ctx.http?.closeSSE?.();
    await sleep(100);
    return text('Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.');
  });

  // Asking the client: a server-initiated request on the 2025 leg, an input_required round on the 2026 one.
  server.registerTool('test_sampling', { description: 'Asks the client for an LLM completion', inputSchema: z.object({ prompt: z.string() }) }, async ({ prompt }, ctx) => {
    if (modern(ctx)) {
      const answer = answers(ctx).llm;
      if (!answer) return inputRequired({ inputRequests: { llm: ask.sample(prompt, 100) } });
      return text(`LLM response: ${sampledText(answer) ?? 'No response'}`);
    }
    try {
      const answer = await ctx.mcpReq.requestSampling({ messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 });
      return text(`LLM response: ${sampledText(answer) ?? 'No response'}`);
    } catch (e) {
      return text(`Sampling not supported or error: ${e.message}`);
    }
  });
  const elicit = async (ctx, message, requestedSchema, prefix) => {
    if (modern(ctx)) {
      const answer = answers(ctx).form;
      if (!answer) return inputRequired({ inputRequests: { form: inputRequired.elicit({ message, requestedSchema }) } });
      return text(`${prefix}: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);
    }
    try {
      const answer = await ctx.mcpReq.elicitInput({ message, requestedSchema });
      return text(`${prefix}: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);
    } catch (e) {
      return text(`Elicitation not supported or error: ${e.message}`);
    }
  };
  server.registerTool('test_elicitation', { description: 'Asks the user for input', inputSchema: z.object({ message: z.string() }) }, async ({ message }, ctx) =>
    elicit(ctx, message, FORMS.response, 'User response'));
  server.registerTool('test_elicitation_sep1034_defaults', { description: 'Elicits with defaults (SEP-1034)' }, async (ctx) =>
    elicit(ctx, FORMS.defaults.message, FORMS.defaults.requestedSchema, 'Elicitation completed'));
  server.registerTool('test_elicitation_sep1330_enums', { description: 'Elicits every enum form (SEP-1330)' }, async (ctx) =>
    elicit(ctx, FORMS.enums.message, FORMS.enums.requestedSchema, 'Elicitation completed'));
  server.registerTool('json_schema_2020_12_tool', {
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: fromJsonSchema(SCHEMA_2020_12),
  }, async (args) => text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`));
  // A parameter the client mirrors into an Mcp-Param-Region header (SEP-2243).
  server.registerTool('test_custom_header', {
    description: 'Echoes a region that travels as a header too',
    inputSchema: fromJsonSchema({ type: 'object', properties: { region: { type: 'string', 'x-mcp-header': 'Region' } }, required: ['region'] }),
  }, async ({ region }) => text(`region=${region}`));

  // input_required (SEP-2322): each round answers what is still missing.
  server.registerTool('test_input_required_result_elicitation', { description: 'Asks for a name' }, async (ctx) => {
    const name = accepted(answers(ctx).user_name, 'name');
    return name ? text(`Hello, ${name}!`) : inputRequired({ inputRequests: { user_name: ask.name() } });
  });
  server.registerTool('test_input_required_result_sampling', { description: 'Asks the model a question' }, async (ctx) => {
    const answer = answers(ctx).capital_question;
    return answer
      ? text(`The model answered: ${sampledText(answer) ?? ''}`)
      : inputRequired({ inputRequests: { capital_question: ask.sample('What is the capital of France?', 100) } });
  });
  server.registerTool('test_input_required_result_list_roots', { description: 'Asks for the client roots' }, async (ctx) => {
    const roots = answers(ctx).client_roots?.roots;
    return Array.isArray(roots)
      ? text(`Roots: ${roots.map((r) => r.uri).join(', ')}`)
      : inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
  });
  server.registerTool('test_input_required_result_request_state', { description: 'Round-trips signed state' }, async (ctx) => {
    const state = ctx.mcpReq.requestState();
    const confirm = answers(ctx).confirm;
    if (state?.step === 'confirm' && confirm) {
      return text(`state-ok: confirmed=${JSON.stringify(confirm.content ?? {})}`);
    }
    return inputRequired({
      inputRequests: {
        confirm: inputRequired.elicit({ message: 'Please confirm', requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } }),
      },
      requestState: await sign({ step: 'confirm' }),
    });
  });
  server.registerTool('test_input_required_result_multiple_inputs', { description: 'Asks three things at once' }, async (ctx) => {
    const got = answers(ctx);
    if (ctx.mcpReq.requestState()?.step === 'all' && got.user_name && got.greeting && got.client_roots) {
      return text(`Hello, ${accepted(got.user_name, 'name')}! ${sampledText(got.greeting) ?? ''} (${got.client_roots.roots?.length ?? 0} roots)`);
    }
    return inputRequired({
      inputRequests: { user_name: ask.name(), greeting: ask.sample('Generate a greeting', 50), client_roots: inputRequired.listRoots() },
      requestState: await sign({ step: 'all' }),
    });
  });
  server.registerTool('test_input_required_result_multi_round', { description: 'Asks in two rounds' }, async (ctx) => {
    const state = ctx.mcpReq.requestState();
    const got = answers(ctx);
    if (state?.round === 2 && got.step2) {
      return text(`Done: ${state.name} likes ${accepted(got.step2, 'color')}`);
    }
    if (state?.round === 1 && got.step1) {
      return inputRequired({
        inputRequests: {
          step2: inputRequired.elicit({
            message: 'Step 2: What is your favorite color?',
            requestedSchema: { type: 'object', properties: { color: { type: 'string' } }, required: ['color'] },
          }),
        },
        requestState: await sign({ round: 2, name: accepted(got.step1, 'name') }),
      });
    }
    return inputRequired({ inputRequests: { step1: ask.name('Step 1: What is your name?') }, requestState: await sign({ round: 1 }) });
  });
  server.registerTool('test_input_required_result_tampered_state', { description: 'Refuses state it did not sign' }, async (ctx) => {
    if (ctx.mcpReq.requestState()?.step !== 'tamper') {
      return inputRequired({ inputRequests: { user_name: ask.name() }, requestState: await sign({ step: 'tamper' }) });
    }
    return text(`Hello, ${accepted(answers(ctx).user_name, 'name') ?? 'unknown'}!`);
  });
  server.registerTool('test_input_required_result_capabilities', { description: 'Asks only what the client can answer' }, async (ctx) => {
    const caps = ctx.mcpReq.envelope?.[CAPABILITIES_KEY] ?? ctx.mcpReq._meta?.[CAPABILITIES_KEY] ?? {};
    const got = answers(ctx);
    if (Object.keys(got).length > 0) return text(`answered: ${Object.keys(got).join(', ')}`);
    const inputRequests = {};
    if (caps.elicitation) inputRequests.user_name = ask.name();
    if (caps.sampling) inputRequests.greeting = ask.sample('Generate a greeting', 50);
    if (caps.roots) inputRequests.client_roots = inputRequired.listRoots();
    if (Object.keys(inputRequests).length === 0) return text('the client declared no way to answer');
    return inputRequired({ inputRequests });
  });

  // The stateless revision's diagnostics (SEP-2575): a tool that needs sampling, one that asks
  // while it streams, one that logs (only when the request asked for a log level).
  server.registerTool('test_missing_capability', { description: 'Needs the sampling capability' }, async (ctx) => {
    const answer = answers(ctx).llm;
    if (modern(ctx) && !answer) return inputRequired({ inputRequests: { llm: ask.sample('Say hi', 20) } });
    return text(`sampled: ${sampledText(answer) ?? ''}`);
  });
  server.registerTool('test_streaming_elicitation', { description: 'Reports progress, then asks for a name' }, async (ctx) => {
    const progressToken = ctx.mcpReq._meta?.progressToken;
    if (progressToken !== undefined) {
      await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: 1, total: 2 } });
    }
    const name = accepted(answers(ctx).user_name, 'name');
    return name ? text(`Hello, ${name}!`) : inputRequired({ inputRequests: { user_name: ask.name() } });
  });
  server.registerTool('test_logging_tool', { description: 'Logs at info' }, async (ctx) => {
    await ctx.mcpReq.log('info', 'test_logging_tool ran', 'dual');
    return text('logged');
  });

  server.registerResource('static-text', 'test://static-text', { title: 'Static Text Resource', description: 'A static text resource', mimeType: 'text/plain' }, async () => CONTENTS['test://static-text']);
  server.registerResource('static-binary', 'test://static-binary', { title: 'Static Binary Resource', description: 'A PNG', mimeType: 'image/png' }, async () => CONTENTS['test://static-binary']);
  server.registerResource('template', new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { title: 'Resource Template', description: 'Data for an id', mimeType: 'application/json' },
    async (uri, { id }) => CONTENTS.template(uri.toString(), id));
  server.registerResource('watched-resource', 'test://watched-resource', { title: 'Watched Resource', description: 'Subscribable', mimeType: 'text/plain' }, async () => CONTENTS['test://watched-resource']);

  server.registerPrompt('test_simple_prompt', { title: 'Simple Test Prompt', description: 'No arguments' }, async () => MESSAGES.test_simple_prompt());
  server.registerPrompt('test_prompt_with_arguments', {
    title: 'Prompt With Arguments', description: 'Two required arguments',
    argsSchema: z.object({ arg1: z.string().describe('First test argument'), arg2: z.string().describe('Second test argument') }),
  }, async (args) => MESSAGES.test_prompt_with_arguments(args));
  server.registerPrompt('test_prompt_with_embedded_resource', {
    title: 'Prompt With Embedded Resource', description: 'Embeds the resource named',
    argsSchema: z.object({ resourceUri: z.string().describe('URI of the resource to embed') }),
  }, async (args) => MESSAGES.test_prompt_with_embedded_resource(args));
  server.registerPrompt('test_prompt_with_image', { title: 'Prompt With Image', description: 'Carries an image' }, async () => MESSAGES.test_prompt_with_image());
  server.registerPrompt('test_input_required_result_prompt', { title: 'Prompt that asks first', description: 'Asks for context' }, async (ctx) => {
    const context = accepted(answers(ctx).user_context, 'context');
    if (!context) {
      return inputRequired({
        inputRequests: {
          user_context: inputRequired.elicit({
            message: 'What context should the prompt use?',
            requestedSchema: { type: 'object', properties: { context: { type: 'string' } }, required: ['context'] },
          }),
        },
      });
    }
    return { messages: [{ role: 'user', content: { type: 'text', text: `Use this context: ${context}` } }] };
  });
  // A tool's thrown error becomes an isError result; a missing client capability must be a
  // JSON-RPC error (-32021), so it is checked in front of McpServer's tools/call handler.
  const callTool = server.server._requestHandlers.get('tools/call');
  server.server._requestHandlers.set('tools/call', async (request, ctx) => {
    const caps = ctx.mcpReq.envelope?.[CAPABILITIES_KEY];
    if (request.params?.name === 'test_missing_capability' && caps && !caps.sampling) {
      throw new MissingRequiredClientCapabilityError({ requiredCapabilities: { sampling: {} } });
    }
    return callTool(request, ctx);
  });

  // 2025-11-25 only: the 2026-07-28 revision replaced these with subscriptions/listen.
  const subscriptions = new Set();
  server.server.setRequestHandler('resources/subscribe', async (request) => {
    subscriptions.add(request.params.uri);
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', async (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });
  server.server.setRequestHandler('completion/complete', async () => ({ completion: { values: [], total: 0, hasMore: false } }));
  return server;
}

// The 2026-07-28 leg: the SDK's stateless handler. The 2025-11-25 leg: one transport per session.
const modernHandler = createMcpHandler(build, { legacy: 'reject' });
const sessions = new Map();
async function legacy(request) {
  const id = request.headers.get('mcp-session-id');
  const known = id && sessions.get(id);
  if (known) return known.handleRequest(request);
  if (id) return Response.json({ jsonrpc: '2.0', error: { code: -32000, message: 'unknown session' }, id: null }, { status: 404 });
  if (request.method !== 'POST') return Response.json({ jsonrpc: '2.0', error: { code: -32000, message: 'missing session' }, id: null }, { status: 400 });
  const server = build();
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    eventStore,
    retryInterval: 5000,
    onsessioninitialized: (sid) => sessions.set(sid, transport),
    onsessionclosed: (sid) => sessions.delete(sid),
  });
  await server.connect(transport);
  return transport.handleRequest(request);
}

async function serve(request) {
  // DNS-rebinding protection: loopback Host headers only.
  const refused = hostHeaderValidationResponse(request, localhostAllowedHostnames());
  if (refused) return refused;
  if (new URL(request.url).pathname !== '/mcp') return new Response('not found', { status: 404 });
  return (await isLegacyRequest(request)) ? legacy(request) : modernHandler.fetch(request);
}

// node:http ↔ fetch Request/Response, streaming both ways (SSE answers flush as they are written).
createServer(async (req, res) => {
  try {
    const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : Readable.toWeb(req);
    const request = new Request(`http://${req.headers.host ?? '127.0.0.1'}${req.url}`, {
      method: req.method, headers: req.headers, body, duplex: 'half',
    });
    const response = await serve(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.flushHeaders();
    if (response.body) {
      for await (const chunk of response.body) res.write(chunk);
    }
    res.end();
  } catch (e) {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(e?.message ?? e));
  }
}).listen(port, '127.0.0.1', () => console.log(`dual-revision server on http://127.0.0.1:${port}/mcp`));
