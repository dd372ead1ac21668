// A real OpenID Provider for authmux's live tests: panva's `oidc-provider` (OpenID
// Certified), configured for every grant authmux-oauth2 speaks. Started by
// `cargo xtask oidc start` (and `cargo xtask ci`), which copies this file next to the
// installed `node_modules` and runs it with Node 22.
//
// Environment: PORT (loopback port), OIDC_CLIENT_SECRET (the confidential client's
// secret), OIDC_ACCESS_TTL (access token lifetime in seconds, default 10),
// OIDC_PASSWORD (the users' password).
//
// What is configured, and why:
// - clients: `authmux-cli` (public, native: authorization code with PKCE through a
//   loopback redirect on any port, device flow, refresh), `authmux-service`
//   (confidential, client_secret_basic: client credentials), `authmux-post`
//   (confidential, client_secret_post: device flow, refresh) and
//   `authmux-device-expiring` (public, device flow whose codes live 3 s);
// - refresh tokens always rotate; presenting a consumed one revokes the whole grant
//   (oidc-provider's reuse detection);
// - revocation (RFC 7009), userinfo, short access tokens;
// - the device flow answers with `interval: 1` and enforces it: a poll sooner than 1 s
//   after the previous one gets `slow_down` (RFC 8628 §3.5);
// - the login and consent interactions are plain HTML forms over HTTP, so a test can
//   play the user: log in with an email and password from the user table, consent
//   (or abort, which ends in `access_denied`).
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
if (!port) {
  console.error('PORT is required');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const clientSecret = process.env.OIDC_CLIENT_SECRET;
if (!clientSecret) {
  console.error('OIDC_CLIENT_SECRET is required');
  process.exit(2);
}
const accessTtl = Number(process.env.OIDC_ACCESS_TTL || 10);
const password = process.env.OIDC_PASSWORD || 'correct horse battery';

const USERS = new Map([
  ['alice@example.com', { name: 'Alice Example' }],
  ['bob@example.com', { name: 'Bob Example' }],
]);

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const DEVICE_INTERVAL_SECS = 1;
const EXPIRING_DEVICE_CLIENT = 'authmux-device-expiring';

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`;

const configuration = {
  clients: [
    {
      client_id: 'authmux-cli',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    },
    {
      client_id: 'authmux-service',
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'authmux-post',
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['refresh_token', DEVICE_GRANT],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: EXPIRING_DEVICE_CLIENT,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: [DEVICE_GRANT],
      response_types: [],
      redirect_uris: [],
    },
  ],
  jwks: { keys: [{ ...signingKey, kid: 'authmux-rs256', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'api'],
  async findAccount(ctx, sub) {
    const user = USERS.get(sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: sub, email_verified: true, name: user.name };
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    deviceFlow: {
      enabled: true,
      async userCodeInputSource(ctx, form, out, err) {
        const message = err ? '<p>The code was not accepted.</p>' : '<p>Enter the code shown on your device.</p>';
        ctx.body = page('Device sign-in', message + form.replace('</form>', '<button type="submit">Continue</button></form>'));
      },
      async userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
        ctx.body = page('Confirm device', `<p>Code <code>${escape(userCode)}</code> for ${escape(client.clientId)}.</p>` + form.replace('</form>', '<button type="submit">Continue</button></form>'));
      },
      async successSource(ctx) {
        ctx.body = page('Signed in', '<p id="device-success">The device is signed in. You can close this page.</p>');
      },
    },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  // Refresh tokens for every user grant, so the device flow has them too.
  async issueRefreshToken(ctx, client, code) {
    return client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access');
  },
  ttl: {
    AccessToken: accessTtl,
    ClientCredentials: accessTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
    DeviceCode(ctx, token, client) {
      return client && client.clientId === EXPIRING_DEVICE_CLIENT ? 3 : 600;
    },
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<p id="error">${escape(out.error)}: ${escape(out.error_description || '')}</p>`);
  },
};

const provider = new Provider(issuer, configuration);

provider.on('server_error', (ctx, err) => console.error('server_error', err));

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The interactions: a login form checked against the user table, then a consent form.
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (!match) return next();
  ctx.set('cache-control', 'no-store');
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const action = `/interaction/${escape(details.uid)}`;
  const loginForm = (message) => page('Sign in', `${message}<form method="post" action="${action}"><input type="hidden" name="action" value="login"><input type="email" name="login" value=""><input type="password" name="password" value=""><button type="submit">Sign in</button></form>`);
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    if (details.prompt.name === 'login') {
      ctx.body = loginForm('');
    } else {
      ctx.body = page('Consent', `<p>${escape(details.params.client_id)} asks for ${escape(details.params.scope || '')}</p><form method="post" action="${action}"><input type="hidden" name="action" value="consent"><button type="submit">Allow</button></form>`);
    }
    return undefined;
  }
  if (ctx.method !== 'POST') return next();
  const form = await readForm(ctx.req);
  let result;
  switch (form.get('action')) {
    case 'login': {
      const login = (form.get('login') || '').toLowerCase();
      if (!USERS.has(login) || form.get('password') !== password) {
        ctx.type = 'html';
        ctx.body = loginForm('<p id="login-error">Invalid email or password.</p>');
        return undefined;
      }
      result = { login: { accountId: login } };
      break;
    }
    case 'consent': {
      const { prompt: { details: missing }, params, session: { accountId } } = details;
      let { grantId } = details;
      const grant = grantId ? await provider.Grant.find(grantId) : new provider.Grant({ accountId, clientId: params.client_id });
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      grantId = await grant.save();
      result = { consent: details.grantId ? {} : { grantId } };
      break;
    }
    default:
      result = { error: 'access_denied', error_description: 'the user aborted the sign-in' };
  }
  const redirectTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: result.login === undefined });
  ctx.status = 303;
  ctx.redirect(redirectTo);
  return undefined;
});

// The device flow's polling interval: announced, and enforced with `slow_down`.
const lastPoll = new Map();
provider.use(async (ctx, next) => {
  await next();
  if (ctx.method === 'POST' && ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && ctx.body.device_code) {
    ctx.body = { ...ctx.body, interval: DEVICE_INTERVAL_SECS };
  }
  if (ctx.method === 'POST' && ctx.path === '/token' && ctx.oidc && ctx.oidc.params && ctx.oidc.params.grant_type === DEVICE_GRANT) {
    const code = ctx.oidc.params.device_code;
    const now = Date.now();
    const previous = lastPoll.get(code);
    lastPoll.set(code, now);
    if (ctx.status === 400 && ctx.body && ctx.body.error === 'authorization_pending' && previous !== undefined && now - previous < DEVICE_INTERVAL_SECS * 1000) {
      ctx.body = { error: 'slow_down', error_description: 'you are polling too quickly and should back off' };
    }
    if (lastPoll.size > 10000) lastPoll.clear();
  }
});

const server = createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
