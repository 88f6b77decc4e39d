// A real OpenID provider (oidc-provider) on loopback for the helper's login tests.
//
//   node tests/oidc/provider.mjs            prints {"issuer": "http://127.0.0.1:<port>"} on stdout when ready
//
// Settings (environment): OIDC_CLIENT_ID (default ccweb-cli), OIDC_ID_TOKEN_TTL (seconds, default 3600),
// OIDC_NO_DEVICE=1 (advertise no device endpoint), OIDC_TLS_CERT and OIDC_TLS_KEY (PEM files: serve https) with
// OIDC_HOST (the issuer's host name, default 127.0.0.1; it listens on 127.0.0.1 whatever the name). The built-in
// development pages handle login (any name, any password) and consent; an account's e-mail is
// <login>@example.com and its groups come from GROUPS below. The scope roles adds Keycloak's nested claim
// realm_access: {roles: [...]} (ROLES below) to the ID token, as Keycloak's realm roles mapper does when told to.
// GET /_test/grants lists the token grants served so far ({"grant_type", "client_id"}), so tests can prove
// which grant produced a token. The process exits when its stdin closes or its parent dies.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';

import Provider from 'oidc-provider';

const CLIENT_ID = process.env.OIDC_CLIENT_ID || 'ccweb-cli';
const ID_TOKEN_TTL = Number(process.env.OIDC_ID_TOKEN_TTL || 3600);
const DEVICE = process.env.OIDC_NO_DEVICE !== '1';
const GROUPS = { mallory: [], bob: ['contractors'] };
const ROLES = { alice: ['offline_access', 'default-roles-corp', 'ccweb-developers'] };

const grants = [];

function account(id) {
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        email: `${id}@example.com`,
        email_verified: true,
        name: id,
        groups: GROUPS[id] ?? ['engineering'],
        realm_access: { roles: ROLES[id] ?? ['offline_access', 'default-roles-corp'] },
      };
    },
  };
}

const TLS = process.env.OIDC_TLS_CERT
  ? { cert: fs.readFileSync(process.env.OIDC_TLS_CERT), key: fs.readFileSync(process.env.OIDC_TLS_KEY) }
  : null;
const HOST = process.env.OIDC_HOST || '127.0.0.1';

const server = TLS ? https.createServer(TLS) : http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `${TLS ? 'https' : 'http'}://${HOST}:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_name: 'ccweb-helper',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback'], // a native client may use any loopback port (RFC 8252)
      response_types: ['code'],
      grant_types: DEVICE
        ? ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code']
        : ['authorization_code', 'refresh_token'],
    }],
    findAccount: (_ctx, id) => account(id),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
      roles: ['realm_access'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', 'roles'],
    conformIdTokenClaims: false, // ID tokens carry email and groups: the ccweb policy matches on them
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    cookies: { keys: ['ccweb-test-cookie-key'] },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: DEVICE },
      revocation: { enabled: true },
    },
    ttl: {
      IdToken: ID_TOKEN_TTL,
      AccessToken: ID_TOKEN_TTL,
      AuthorizationCode: 120,
      DeviceCode: 300,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 86400,
    },
  });
  provider.use(async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/_test/grants') {
      ctx.body = grants;
      return;
    }
    await next();
    if (ctx.path === '/token' && ctx.status === 200) {
      grants.push({ grant_type: ctx.oidc?.params?.grant_type, client_id: ctx.oidc?.client?.clientId });
    }
    if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      ctx.body.interval = 1; // poll quickly: this provider is on loopback
    }
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// Stop with the test session: when stdin closes, or when the parent is gone.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 1000).unref();
