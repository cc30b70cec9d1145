// The OAuth authorization server of paylink-mcp's OAuth-mode tests (tests/it/oauth.rs): a real
// oidc-provider (pinned in package.json), in memory, on 127.0.0.1 and a free port.
//
// It issues RFC 9068 JWT access tokens (typ at+jwt, aud = the RFC 8707 resource indicator) by
// client_credentials (client paylink-cc / paylink-cc-secret) and by authorization code + PKCE
// (public client paylink-public, redirect http://127.0.0.1/callback; login and consent are
// approved by this script, as user "test-user", so the flow runs without a browser).
//
// Environment:
//   TOKEN_TTL       access-token lifetime in seconds (default 300)
//   TOKEN_ALG       access-token signing algorithm (default ES256; RS256, PS256, EdDSA work too)
//   TOKEN_FORMAT    jwt (default) or opaque: opaque tokens are checked by introspection
//                   (POST /token/introspection, client paylink-cc)
//   TEST_JWK        a private JWK (JSON) published and kept as the Ed25519 key: the test signs
//                   tokens the AS would never issue (expired, wrong issuer, ...) with it
//   HIDE_OAUTH_AS_METADATA=1  404 on /.well-known/oauth-authorization-server, so that
//                   discovery must fall back to /.well-known/openid-configuration
//   STOP_ON_STDIN_EOF=1  exit when stdin closes (the test process went away)
//
// Test hooks, under /__test/ (never part of a real authorization server):
//   POST /__test/rotate     replace the ES256 signing key by a new one (new kid)
//   POST /__test/jwks-down  answer 503 on /jwks;  POST /__test/jwks-up  answer it again
//   POST /__test/introspection-down  answer 503 on /token/introspection;
//   POST /__test/introspection-up    answer it again
//   GET  /__test/stats      {"jwks": <GETs of /jwks>, "introspections": <POSTs to /token/introspection>,
//                            "discovery": [<well-known paths asked, in order>]}
//
// Prints one JSON line on stdout once listening: {"issuer": "http://127.0.0.1:PORT", ...}.
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

const SCOPES = 'payment_links:read payment_links:write';
const ttl = Number(process.env.TOKEN_TTL ?? 300);

const jwk = (type, opts, alg) => ({
  ...generateKeyPairSync(type, opts).privateKey.export({ format: 'jwk' }),
  kid: `${alg}-${randomUUID().slice(0, 8)}`,
  use: 'sig',
  // The RSA key names no alg, so that it serves RS256 and PS256 alike.
  ...(type === 'rsa' ? {} : { alg }),
});
const ecKey = () => jwk('ec', { namedCurve: 'P-256' }, 'ES256');
let keys = {
  ec: ecKey(),
  rsa: jwk('rsa', { modulusLength: 2048 }, 'RSA'),
  ed: process.env.TEST_JWK ? JSON.parse(process.env.TEST_JWK) : jwk('ed25519', {}, 'EdDSA'),
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

function makeProvider() {
  const p = new Provider(issuer, {
    jwks: { keys: [keys.ec, keys.rsa, keys.ed] },
    clients: [
      { client_id: 'paylink-cc', client_secret: 'paylink-cc-secret',
        grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
      { client_id: 'paylink-public', token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback'] },
    ],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => ({
          scope: SCOPES,
          audience: resourceIndicator,
          accessTokenTTL: ttl,
          accessTokenFormat: process.env.TOKEN_FORMAT ?? 'jwt',
          jwt: { sign: { alg: process.env.TOKEN_ALG ?? 'ES256' } },
        }),
      },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    ttl: { AccessToken: ttl, ClientCredentials: ttl },
  });
  p.on('server_error', (ctx, err) => console.error('server_error', err));
  return p;
}
let provider = makeProvider();
let oidc = provider.callback();

const stats = { jwks: 0, introspections: 0, discovery: [] };
let jwksDown = false;
let introspectionDown = false;

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt: { name, details: missing }, params } = details;
  if (name === 'login') {
    return provider.interactionFinished(req, res, { login: { accountId: 'test-user' } },
      { mergeWithLastSubmission: false });
  }
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } },
    { mergeWithLastSubmission: true });
}

const json = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

server.on('request', async (req, res) => {
  const path = req.url.split('?')[0];
  try {
    if (path === '/__test/stats') return json(res, 200, stats);
    if (req.method === 'POST' && path === '/__test/rotate') {
      keys = { ...keys, ec: ecKey() };
      provider = makeProvider();
      oidc = provider.callback();
      return json(res, 200, { kid: keys.ec.kid });
    }
    if (req.method === 'POST' && path === '/__test/jwks-down') { jwksDown = true; return json(res, 200, {}); }
    if (req.method === 'POST' && path === '/__test/jwks-up') { jwksDown = false; return json(res, 200, {}); }
    if (req.method === 'POST' && path === '/__test/introspection-down') { introspectionDown = true; return json(res, 200, {}); }
    if (req.method === 'POST' && path === '/__test/introspection-up') { introspectionDown = false; return json(res, 200, {}); }
    if (path.startsWith('/.well-known/')) {
      stats.discovery.push(path);
      if (process.env.HIDE_OAUTH_AS_METADATA && path.startsWith('/.well-known/oauth-authorization-server')) {
        return json(res, 404, { error: 'not_found' });
      }
    }
    if (path === '/jwks') {
      stats.jwks += 1;
      if (jwksDown) return json(res, 503, { error: 'temporarily_unavailable' });
    }
    if (path === '/token/introspection') {
      stats.introspections += 1;
      if (introspectionDown) return json(res, 503, { error: 'temporarily_unavailable' });
    }
    if (path.startsWith('/interaction/')) return await interaction(req, res);
    return oidc(req, res);
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err));
  }
});

console.log(JSON.stringify({ issuer, port, kids: Object.values(keys).map((k) => k.kid) }));
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (process.env.STOP_ON_STDIN_EOF) { process.stdin.on('end', stop); process.stdin.resume(); }
