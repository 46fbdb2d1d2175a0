// node oidc-provider (the certified Node.js implementation pinned in package.json) set
// up for `scripts/bench compare`: the client_credentials grant only, issuing ES256
// JWT access tokens, as admit-oauth does, on 127.0.0.1.
//
//   node bench-provider.js PORT [WORKERS]
//
// One confidential client, `bench-client` / `bench-client-secret`
// (client_secret_basic), may ask for the scopes `accounts:create profile`; its tokens
// are for the resource `urn:admit:bench` (the default when the request names none).
// WORKERS (default 1) processes share the port through node's cluster module, each a
// whole provider with the same signing key: Node.js runs JavaScript on one core per
// process, so this is how oidc-provider uses a machine's cores. Prints
// `oidc-provider listening on http://127.0.0.1:PORT (N workers)` once every worker
// accepts connections.

import cluster from 'node:cluster';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, workersArg] = process.argv.slice(2);
if (!port) {
  console.error('usage: node bench-provider.js PORT [WORKERS]');
  process.exit(2);
}
const workers = Number(workersArg || 1);
const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:admit:bench';
const scope = 'accounts:create profile';

if (cluster.isPrimary) {
  // One signing key for every worker, made fresh for the run.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', use: 'sig', alg: 'ES256' };
  let ready = 0;
  for (let i = 0; i < workers; i += 1) {
    const worker = cluster.fork({ BENCH_JWK: JSON.stringify(jwk) });
    worker.on('message', (m) => {
      if (m === 'listening') {
        ready += 1;
        if (ready === workers) console.log(`oidc-provider listening on ${issuer} (${workers} workers)`);
      }
    });
  }
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) {
      console.error(`worker ${w.process.pid} exited (${signal || code})`);
      process.exit(1);
    }
  });
  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
      setTimeout(() => process.exit(0), 2000).unref();
      cluster.on('exit', () => {
        if (Object.keys(cluster.workers).length === 0) process.exit(0);
      });
    });
  }
} else {
  const jwk = JSON.parse(process.env.BENCH_JWK);
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'bench-client',
        client_secret: 'bench-client-secret',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        // The only key is ES256 (the default would be RS256).
        id_token_signed_response_alg: 'ES256',
        scope,
      },
    ],
    jwks: { keys: [jwk] },
    scopes: ['accounts:create', 'profile'],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope,
          audience: resource,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    cookies: { keys: ['admit-bench-cookie-key'] },
  });
  const server = provider.listen(Number(port), '127.0.0.1', () => process.send('listening'));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
