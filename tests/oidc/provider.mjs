// A real OpenID provider (oidc-provider) on loopback for Hangar's OAuth tests.
//
//   node provider.mjs PORT KEYS.json
//
// KEYS.json is a private JWK set (the test makes it, so it can rotate keys and sign hostile
// tokens with the provider's own key). Clients use the client-credentials grant with a
// `resource` (RFC 8707); the access token is then a JWT (RFC 9068) whose `aud` is that resource,
// with the client's groups in a `groups` claim. Prints "ready" when it listens.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [port, keysFile] = process.argv.slice(2);
const jwks = JSON.parse(readFileSync(keysFile, 'utf8'));

// Each test client with its secret, the scopes it may ask for and its groups.
const CLIENTS = {
  'agent-ops': { secret: 'ops-secret-0123456789', scope: 'mcp:tools', groups: ['ops'] },
  'agent-readers': { secret: 'readers-secret-0123456789', scope: 'mcp:tools', groups: ['readers'] },
  'agent-noscope': { secret: 'noscope-secret-0123456789', scope: 'profile', groups: ['ops'] },
};

const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks,
  clients: Object.entries(CLIENTS).map(([id, c]) => ({
    client_id: id,
    client_secret: c.secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: c.scope,
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  scopes: ['mcp:tools', 'profile'],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // Any loopback resource is ours (Hangar listens on a port the test picks).
      getResourceServerInfo(ctx, resourceIndicator) {
        if (!resourceIndicator.startsWith('http://127.0.0.1:')) throw new Error('unknown resource');
        return {
          scope: 'mcp:tools profile',
          audience: resourceIndicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims(ctx, token) {
    return { groups: CLIENTS[token.clientId]?.groups ?? [] };
  },
});

provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
