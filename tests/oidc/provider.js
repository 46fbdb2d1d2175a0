// A real OpenID Connect provider for tests/social.rs: panva's oidc-provider (the
// certified Node.js implementation, pinned in package.json), with its development
// login and consent pages, on 127.0.0.1.
//
//   node provider.js PORT REDIRECT_URI
//
// Confidential clients: `admit-test` / `admit-test-secret` (the application whose
// tokens sign up) and `other-app` / `other-app-secret`, both for the authorization
// code flow to REDIRECT_URI, and `admit-platform` / `admit-platform-secret`, which
// only introspects tokens (RFC 7662, at /token/introspection). Any login name signs in: the account's
// subject is that name, its email `<name>@oidc.example.test`, marked verified, unless
// the name starts with `unverified-` (email_verified false). Prints
// `oidc-provider listening on http://127.0.0.1:PORT` once it accepts connections.

import Provider from 'oidc-provider';

const [port, redirectUri] = process.argv.slice(2);
if (!port || !redirectUri) {
  console.error('usage: node provider.js PORT REDIRECT_URI');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'admit-test',
      client_secret: 'admit-test-secret',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      // Another application of the same provider: its tokens are not admit-test's.
      client_id: 'other-app',
      client_secret: 'other-app-secret',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      // The platform itself, as a resource server: it only introspects tokens.
      client_id: 'admit-platform',
      client_secret: 'admit-platform-secret',
      redirect_uris: [],
      grant_types: [],
      response_types: [],
    },
  ],
  features: { introspection: { enabled: true } },
  // Signed cookies need keys; these protect nothing but a throwaway test provider.
  cookies: { keys: ['admit-test-cookie-key'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@oidc.example.test`,
          email_verified: !id.startsWith('unverified-'),
          name: `User ${id}`,
        };
      },
    };
  },
});

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
