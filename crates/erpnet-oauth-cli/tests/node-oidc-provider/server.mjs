// A second, independent OpenID Connect provider for the `erpnet-oauth` CLI's interoperability tests:
// node-oidc-provider (https://github.com/panva/node-oidc-provider, an OpenID Certified implementation)
// serving ERP.net's paths, plus a small resource server standing in for the Domain API.
//
//   node server.mjs --redirect-uri URI [--redirect-uri URI]... [--routes erpnet|provider] [--strict-offline-access]
//                  [--no-rotation]
//
// Listens on 127.0.0.1 on a port the OS chooses and prints one line on stdout once it accepts
// connections: `listening http://127.0.0.1:PORT`. Test-only: keys, secrets and accounts are generated or
// fixed here and never leave the loopback interface.
//
// What is served (with `--routes erpnet`, the default):
//   /id/.well-known/openid-configuration          discovery (issuer http://127.0.0.1:PORT/id)
//   /id/.well-known/openid-configuration/jwks     the signing keys (a fresh RSA key, RS256)
//   /id/connect/authorize, /id/connect/token, /id/connect/userinfo, /id/connect/revocation,
//   /id/connect/introspect, /id/connect/endsession ERP.net's endpoint paths
//   /id/interaction/UID                           the login form (HTML), posted to /id/interaction/UID/login
//   /api/domain/odata/Crm_Customers               a Domain API stand-in: 200 with rows for a live access
//                                                 token, 401 with WWW-Authenticate otherwise
//   /_test/counters                               GET: what happened, as JSON
//   /_test/expire                                 POST (body: an access token): ends that access token
//                                                 only, as its expiry would, leaving the grant alive
// OP_DEBUG=1 in the environment logs each login interaction's prompt and parameters on stderr.
// With `--routes provider`, node-oidc-provider's own paths (/id/auth, /id/token, /id/me, ...): a client
// that follows discovery works the same; one that hard-codes ERP.net's paths does not.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const redirectUris = [];
let routesKind = 'erpnet';
let strictOfflineAccess = false;
let rotate = true;
for (let i = 0; i < args.length; i += 1) {
  if (args[i] === '--redirect-uri' && i + 1 < args.length) {
    redirectUris.push(args[i + 1]);
    i += 1;
  } else if (args[i] === '--routes' && i + 1 < args.length) {
    routesKind = args[i + 1];
    i += 1;
  } else if (args[i] === '--strict-offline-access') {
    strictOfflineAccess = true;
  } else if (args[i] === '--no-rotation') {
    rotate = false;
  } else {
    process.stderr.write(`server.mjs: unknown argument ${args[i]}\n`);
    process.exit(2);
  }
}
if (redirectUris.length === 0 || !['erpnet', 'provider'].includes(routesKind)) {
  process.stderr.write('usage: node server.mjs --redirect-uri URI... [--routes erpnet|provider]\n');
  process.exit(2);
}

// The trusted applications, as the CLI's tests know them (the mock ERP.net's demo apps).
export const CONFIDENTIAL_CLIENT_ID = 'my.trusted.app/first';
export const CLIENT_SECRET = 'my_plain_app_secret';
export const PUBLIC_CLIENT_ID = 'my.trusted.app/public';
// The one user: a GUID subject, as ERP.net's users have (unlike the mock's "admin").
const USERNAME = 'admin';
const PASSWORD = 'admin-password';
const SUBJECT = '5f0c2f4e-8f1a-4d36-9a57-2c1e7b3d9a10';

const ERPNET_ROUTES = {
  authorization: '/connect/authorize',
  token: '/connect/token',
  userinfo: '/connect/userinfo',
  revocation: '/connect/revocation',
  introspection: '/connect/introspect',
  end_session: '/connect/endsession',
  jwks: '/.well-known/openid-configuration/jwks',
};

const counters = {
  authorization_code: 0,
  refresh_token: 0,
  invalid_grant: 0,
  token_errors: 0,
  grants_revoked: 0,
  server_errors: 0,
  api_ok: 0,
  api_unauthorized: 0,
  logins: 0,
};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const base = `http://127.0.0.1:${port}`;
  const apiResource = `${base}/api/domain`;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };

  const clientBase = {
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    application_type: 'web',
  };
  const provider = new Provider(`${base}/id`, {
    clients: [
      { ...clientBase, client_id: CONFIDENTIAL_CLIENT_ID, client_secret: CLIENT_SECRET, token_endpoint_auth_method: 'client_secret_post' },
      { ...clientBase, client_id: PUBLIC_CLIENT_ID, token_endpoint_auth_method: 'none' },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'profile', 'offline_access'],
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
    routes: routesKind === 'erpnet' ? ERPNET_ROUTES : {},
    pkce: { required: () => true },
    // ERP.net's lifetimes: access tokens an hour, ID tokens 300 s, refresh tokens about a month.
    ttl: { AccessToken: 3600, IdToken: 300, RefreshToken: 30 * 24 * 3600, AuthorizationCode: 300, Interaction: 600, Session: 3600, Grant: 30 * 24 * 3600 },
    // ERP.net rotates refresh tokens on every use, and older ones are revoked. `--no-rotation`: the
    // refresh token stays the same (RFC 6749 §6 lets a provider choose).
    rotateRefreshToken: () => rotate,
    // ERP.net issues a refresh token to a trusted application that asks for `offline_access` without
    // `prompt=consent`. OpenID Connect Core §11 lets a provider require `prompt=consent` for offline access
    // "unless other conditions ... are in place", and node-oidc-provider does by default: it drops
    // `offline_access` from a request without it. Here the other condition is that the client is a trusted
    // application allowed the refresh_token grant: it gets a refresh token with every code (the CLI always
    // asks for offline_access, so this differs from ERP.net only for a request that doesn't).
    // `--strict-offline-access` keeps node-oidc-provider's default: a login without a refresh token.
    ...(strictOfflineAccess ? {} : { issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token') }),
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      // The access token is for the Domain API (its `DomainApi` scope), as ERP.net's are.
      resourceIndicators: {
        enabled: true,
        defaultResource: () => apiResource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== apiResource) throw new Provider.errors.InvalidTarget();
          return { scope: 'DomainApi', audience: apiResource, accessTokenFormat: 'opaque', accessTokenTTL: 3600 };
        },
      },
    },
    interactions: { url: (_ctx, interaction) => `/id/interaction/${interaction.uid}` },
    findAccount: (_ctx, sub) => (sub === SUBJECT
      ? { accountId: SUBJECT, claims: () => ({ sub: SUBJECT, name: 'Administrator', preferred_username: USERNAME }) }
      : undefined),
  });
  provider.proxy = false;
  provider.on('grant.success', (ctx) => {
    const grantType = ctx.oidc.params.grant_type;
    if (grantType in counters) counters[grantType] += 1;
  });
  provider.on('grant.error', (_ctx, err) => {
    counters.token_errors += 1;
    if (err.error === 'invalid_grant') counters.invalid_grant += 1;
  });
  provider.on('grant.revoked', () => { counters.grants_revoked += 1; });
  provider.on('server_error', () => { counters.server_errors += 1; });
  const oidc = provider.callback();

  const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const readBody = (req) => new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
  const send = (res, status, type, body, headers = {}) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
    res.end(body);
  };
  const loginPage = (uid, error) => `<!doctype html><html><body><h1>Sign in</h1>${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/id/interaction/${escape(uid)}/login">
<input name="username"><input name="password" type="password"><button type="submit">Sign in</button>
</form></body></html>`;

  async function interaction(req, res, uid, action) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return send(res, 400, 'text/plain', 'interaction mismatch');
    if (process.env.OP_DEBUG) process.stderr.write(`interaction ${JSON.stringify(details.prompt)} ${JSON.stringify(details.params)}\n`);
    if (req.method === 'GET' && action === undefined) return send(res, 200, 'text/html; charset=utf-8', loginPage(uid));
    if (req.method !== 'POST' || action !== 'login') return send(res, 405, 'text/plain', 'method not allowed');
    const form = new URLSearchParams(await readBody(req));
    if (form.get('username') !== USERNAME || form.get('password') !== PASSWORD) {
      return send(res, 200, 'text/html; charset=utf-8', loginPage(uid, 'Wrong user name or password'));
    }
    counters.logins += 1;
    // The user consents to what the application asked for (a trusted application needs no consent screen).
    const { params } = details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: SUBJECT, clientId: params.client_id });
    grant.addOIDCScope(String(params.scope ?? '').split(' ').filter((s) => s !== 'DomainApi').join(' '));
    grant.addResourceScope(apiResource, 'DomainApi');
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { login: { accountId: SUBJECT }, consent: { grantId } }, { mergeWithLastSubmission: false });
  }

  async function domainApi(req, res) {
    const auth = req.headers.authorization ?? '';
    const match = /^Bearer ([^\s]+)$/.exec(auth);
    const token = match ? await provider.AccessToken.find(match[1]) : undefined;
    if (!token || token.isExpired || token.aud !== apiResource || !String(token.scope).split(' ').includes('DomainApi')) {
      counters.api_unauthorized += 1;
      return send(res, 401, 'text/plain', '', {
        'www-authenticate': match ? 'Bearer error="invalid_token", error_description="The access token is not valid"' : 'Bearer',
      });
    }
    counters.api_ok += 1;
    const rows = [
      { Id: '1b2f...', Number: 'C-0001', Name: 'Ada Lovelace Ltd', Owner: token.accountId },
      { Id: '3c4d...', Number: 'C-0002', Name: 'Grace Hopper Inc', Owner: token.accountId },
    ];
    return send(res, 200, 'application/json; odata.metadata=minimal', JSON.stringify({ '@odata.context': `${base}/api/domain/odata/$metadata#Crm_Customers`, value: rows }));
  }

  server.on('request', async (req, res) => {
    try {
      const url = new URL(req.url, base);
      const path = url.pathname;
      const m = /^\/id\/interaction\/([^/]+)(?:\/(login))?$/.exec(path);
      if (m) return await interaction(req, res, m[1], m[2]);
      if (path === '/api/domain/odata/Crm_Customers') return await domainApi(req, res);
      if (path === '/_test/counters' && req.method === 'GET') return send(res, 200, 'application/json', JSON.stringify(counters));
      if (path === '/_test/expire' && req.method === 'POST') {
        const token = await provider.AccessToken.find((await readBody(req)).trim());
        if (token) await token.destroy();
        return send(res, token ? 204 : 404, 'text/plain', '');
      }
      if (path === '/id' || path.startsWith('/id/')) {
        req.originalUrl = req.url;
        req.url = req.url.slice('/id'.length) || '/';
        return oidc(req, res);
      }
      return send(res, 404, 'text/plain', 'not found');
    } catch (err) {
      return send(res, 500, 'text/plain', `server.mjs: ${err.message}`);
    }
  });
  process.stdout.write(`listening ${base}\n`);
});
