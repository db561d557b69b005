// The official TypeScript clients the tests drive: SDK v1 (@modelcontextprotocol/sdk, 2025
// handshake) and v2 (@modelcontextprotocol/client) in both eras, each as [client, transport].
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';

const v2 = (url, mode) => [
  new ClientV2({ name: 'ts-v2', version: '2' }, { versionNegotiation: { mode } }),
  new TransportV2(new URL(url)),
];

export const clients = {
  'sdk-1.32 (2025-11-25)': (url) => [new ClientV1({ name: 'ts-v1', version: '1' }), new TransportV1(new URL(url))],
  'client-2.4 legacy': (url) => v2(url, 'legacy'),
  'client-2.4 auto (2026-07-28)': (url) => v2(url, 'auto'),
};

/// Runs `job(client)` with each client named in `names` connected to `url`; one JSON line per
/// client (its result, or its error); exits 1 if any failed.
export async function eachClient(url, names, job) {
  let failed = false;
  for (const name of names) {
    const [client, transport] = clients[name](url);
    try {
      await client.connect(transport);
      console.log(JSON.stringify({ client: name, ...(await job(client)) }));
    } catch (e) {
      failed = true;
      console.log(JSON.stringify({ client: name, error: String(e?.stack ?? e) }));
    } finally {
      await client.close().catch(() => {});
    }
  }
  process.exit(failed ? 1 : 0);
}
