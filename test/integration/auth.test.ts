// Authentication (contract Part 2, "Authentication"; lib/auth.ts): a cluster started with
// `--secret-file` works for whoever has the secret (our CLI, and a Python script that follows
// docs/security.md), and every endpoint of every process refuses, with 401 and no change, a request
// without the secret, with a wrong one, replayed, or altered on the way. The refusals are counted.
// Processes exposed beyond loopback refuse to start without a secret, and the secret appears in
// no log, error or help text.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RequestSigner, Secret, sha256Hex } from '../../lib/auth';
import { useSecret } from '../../lib/http-auth';
import { ServerApi, TransportApi, ViewLeaderApi } from '../../lib/messages';
import { Cluster } from '../support/cluster';
import { httpRequest } from '../support/http-request';
import { ViewLeaderMembers, queryMember } from '../support/viewleader-group';
import { killAll, portBlock, runToExit, startProcess, waitFor } from '../support/processes';

const PORTS = portBlock(24);
/** Recognisable in any output it might leak into. */
const CANARY = `canary-${'7'.repeat(24)}-secret`;

let dir: string;
let secretFile: string;
let secret: Secret;
let cluster: Cluster;
let signer: RequestSigner;

interface Answer {
  readonly status: number;
  readonly body: unknown;
}

interface Sent {
  readonly method: string;
  readonly address: string;
  readonly target: string;
  readonly body: string;
  readonly headers: Record<string, string>;
}

/** A request signed as our shell signs it, to be sent as is, replayed or altered. */
function signed(
  address: string,
  target: string,
  body: unknown,
  method = 'POST',
  by = signer,
): Sent {
  const text = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
  const headers = by.headers(
    { method, host: address, target, bodyDigest: sha256Hex(text) },
    Date.now(),
  );
  return { method, address, target, body: text, headers };
}

async function send(sent: Sent, over: Partial<Sent> = {}): Promise<Answer> {
  const s = { ...sent, ...over };
  const response = await fetch(`http://${s.address}${s.target}`, {
    method: s.method,
    headers: { 'content-type': 'application/json', ...s.headers },
    body: s.method === 'GET' || s.method === 'HEAD' ? undefined : s.body,
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // a value, or an empty body
  }
  return { status: response.status, body: parsed };
}

function expect401(what: string, answer: Answer, failure?: string): void {
  const body = answer.body as { kind?: string; reason?: string; error?: string };
  expect({ what, status: answer.status, kind: body.kind, reason: body.reason }).toEqual({
    what,
    status: 401,
    kind: 'unauthorized',
    reason: 'unauthenticated',
  });
  if (failure !== undefined) expect({ what, error: body.error }).toEqual({ what, error: failure });
  expect(JSON.stringify(answer.body)).not.toContain(CANARY);
}

/** Everything a refused request could have changed, read with the secret. */
async function snapshot(): Promise<unknown> {
  const view = await cluster.view();
  const servers = await Promise.all(
    [...cluster.servers.keys()].sort().map(async (address) => {
      const keys = (await send(signed(address, '/query_all_keys', {}))).body as { keys: string[] };
      const values = await Promise.all(
        [...keys.keys]
          .sort()
          .map(async (key) => [key, (await send(signed(address, '/get', { key }))).body]),
      );
      const status = (await send(signed(address, '/status', {}))).body as Record<string, unknown>;
      return { address, values, pending: status.pendingTransactions, epoch: status.epoch };
    }),
  );
  return { epoch: view.epoch, view: view.servers, servers };
}

/** A body each endpoint would act on if it were authenticated. */
function harmfulBody(path: string, serverId: string): unknown {
  const txn = { transactionId: 'evil-txn', epoch: 1 };
  switch (path) {
    case '/set':
      return { key: 'k1', value: 'evil' };
    case '/print':
      return { text: 'evil' };
    case '/heartbeat':
      return { serverId: 'evil-server', address: '127.0.0.1:1' };
    case '/lock_get':
    case '/lock_release':
      return { lock: 'l', requester: 'evil' };
    case '/rebalance_done':
      return { serverId, epoch: 1 };
    case '/batch':
      return { requests: [{ path: '/set', body: { key: 'k1', value: 'evil' } }] };
    default:
      return { ...txn, key: 'k1', value: 'evil' };
  }
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-auth-'));
  secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, `${CANARY}\n`, { mode: 0o600 });
  const read = Secret.fromFileContent(fs.readFileSync(secretFile));
  if (typeof read === 'string') throw new Error(read);
  secret = read;
  useSecret(secret); // the cluster helper's own queries sign as the processes do
  signer = new RequestSigner(secret, 'ab'.repeat(8));
  cluster = await Cluster.start({
    servers: 3,
    viewLeaderPort: PORTS.viewleader,
    serverPort: PORTS.server,
    secretFile,
    // Nothing here is about timing: keep servers in the view on a busy machine.
    failureTimeoutS: 10,
    heartbeatS: 0.5,
  });
  // Something to see unchanged.
  const set = await cluster.cli('--wait', '10', 'setr', 'k1', 'before');
  expect(set).toMatchObject({ code: 0 });
}, 60_000);

afterAll(async () => {
  await killAll();
  useSecret(undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('with the secret', () => {
  test('the CLI works: setr, getr, delr, locks, locate', async () => {
    expect(await cluster.cli('--wait', '10', 'setr', 'k2', 'v2')).toMatchObject({ code: 0 });
    expect(await cluster.cli('getr', 'k2')).toMatchObject({ code: 0, stdout: 'v2' });
    expect(await cluster.cli('--wait', '10', 'delr', 'k2')).toMatchObject({ code: 0 });
    expect(await cluster.cli('getr', 'k2')).toMatchObject({ code: 1 });
    expect(await cluster.cli('lock_get', 'l2', 'me')).toMatchObject({ code: 0 });
    expect(await cluster.cli('lock_release', 'l2', 'me')).toMatchObject({ code: 0 });
    expect(await cluster.cli('locate', 'k2')).toMatchObject({ code: 0 });
  }, 60_000);

  test('the CLI without it, or with another, is refused (exit 1) and changes nothing', async () => {
    const before = await snapshot();
    const other = path.join(dir, 'other');
    fs.writeFileSync(other, 'another secret, long enough', { mode: 0o600 });
    const without = await runToExit('dht-client', ['--viewleader', cluster.vl, 'setr', 'k1', 'x']);
    expect(without).toMatchObject({ code: 1 });
    expect(without.stderr).toMatch(/authentication required/);
    const wrong = await runToExit('dht-client', [
      ...['--viewleader', cluster.vl, '--secret-file', other],
      ...['setr', 'k1', 'x'],
    ]);
    expect(wrong).toMatchObject({ code: 1 });
    expect(wrong.stderr).toMatch(/bad signature/);
    expect(await snapshot()).toEqual(before);
  }, 30_000);

  test('a Python script following docs/security.md uses /kv on any server', () => {
    const script = fs
      .readFileSync(path.join(__dirname, '../../docs/security.md'), 'utf8')
      .match(/```python\n([\s\S]*?)```/)?.[1];
    expect(script).toBeDefined();
    const address = [...cluster.servers.keys()][0];
    const run = (code: string): string =>
      execFileSync('python3', ['-c', `${script}\n${code}`], {
        env: { ...process.env, DHT_SECRET_FILE: secretFile },
        encoding: 'utf8',
        timeout: 20_000,
      });
    expect(
      run(`print(dht_request("PUT", "${address}", "/kv/py%20key", "from python".encode()).status)`),
    ).toBe('204\n');
    expect(run(`print(dht_request("GET", "${address}", "/kv/py%20key").read().decode())`)).toBe(
      'from python\n',
    );
  }, 30_000);
});

describe('every endpoint of every process refuses with 401 and changes nothing', () => {
  const serverPaths = [...Object.values(ServerApi), TransportApi.batch].map((e) => e.path);
  // /raft is served by the members of a replicated view leader only (tested below).
  const leaderPaths = [...Object.values(ViewLeaderApi), TransportApi.batch]
    .map((e) => e.path)
    .filter((p) => p !== ViewLeaderApi.raft.path);

  function targets(): { address: string; path: string; method: string }[] {
    const server = [...cluster.servers.keys()][0];
    return [
      ...serverPaths.map((p) => ({ address: server, path: p, method: 'POST' })),
      ...leaderPaths.map((p) => ({ address: cluster.viewLeader.address, path: p, method: 'POST' })),
      ...['GET', 'PUT', 'DELETE', 'HEAD'].map((m) => ({
        address: server,
        path: '/kv/k1',
        method: m,
      })),
    ];
  }

  test('without credentials, with a wrong secret, replayed, altered', async () => {
    const before = await snapshot();
    const serverId = (await cluster.view()).servers[0].id;
    const wrong = new RequestSigner(
      Secret.fromFileContent(Buffer.from('not the cluster secret at all')) as Secret,
      'cd'.repeat(8),
    );
    const otherServer = [...cluster.servers.keys()][1];
    for (const { address, path: target, method } of targets()) {
      const body = method === 'PUT' ? 'evil' : harmfulBody(target, serverId);
      const what = `${method} ${address}${target}`;
      const genuine = signed(address, target, body, method);
      const unsigned = { ...genuine, headers: {} };
      if (method !== 'HEAD') {
        expect401(
          `${what} unsigned`,
          await send(unsigned),
          'authentication required: this cluster has a secret (see --secret-file)',
        );
        expect401(`${what} wrong secret`, await send(signed(address, target, body, method, wrong)));
        if (method !== 'GET') {
          // fetch sends no body with a GET: that case is its own test below.
          expect401(
            `${what} altered body`,
            await send(genuine, { body: JSON.stringify({ x: 1 }) }),
          );
        }
        expect401(`${what} altered target`, await send(genuine, { target: `${target}x` }));
        expect401(
          `${what} sent to another process`,
          await send(genuine, {
            address: otherServer === address ? cluster.viewLeader.address : otherServer,
          }),
        );
        expect401(
          `${what} altered method`,
          await send(genuine, { method: method === 'PUT' ? 'DELETE' : 'PUT' }),
        );
      } else {
        expect((await send(unsigned)).status).toBe(401);
      }
    }
    expect(await snapshot()).toEqual(before);
  }, 60_000);

  test('a replayed request is refused: a write replayed after a newer one does not bring the old value back', async () => {
    const server = [...cluster.servers.keys()][0];
    const first = signed(server, '/kv/replayed', 'old', 'PUT');
    expect((await send(first)).status).toBe(204);
    expect((await send(signed(server, '/kv/replayed', 'new', 'PUT'))).status).toBe(204);
    expect401(
      'replayed PUT',
      await send(first),
      'request replayed: this request was already received',
    );
    // Through another server it was not meant for: refused too.
    const other = [...cluster.servers.keys()][1];
    expect401('PUT replayed to another server', await send(first, { address: other }));
    expect(await send(signed(server, '/kv/replayed', undefined, 'GET'))).toEqual({
      status: 200,
      body: 'new',
    });
    // Every RPC endpoint: the first copy is taken (whatever its answer), the second refused.
    for (const address of [server, cluster.viewLeader.address]) {
      for (const target of ['/status', '/query_servers', '/query_all_keys', '/deadlocks']) {
        const request = signed(address, target, {});
        const once = await send(request);
        if (once.status === 401) throw new Error(`${address}${target}: ${JSON.stringify(once)}`);
        expect401(`${address}${target} replayed`, await send(request));
      }
    }
  }, 30_000);

  test('/kv: a body stripped from a signed PUT, or added to a signed GET, is refused as altered', async () => {
    const server = [...cluster.servers.keys()][0];
    expect((await send(signed(server, '/kv/stripped', 'kept', 'PUT'))).status).toBe(204);
    // A PUT of 'evil' whose body is lost on the way must not store an empty value.
    expect401(
      'PUT with its body stripped',
      await send(signed(server, '/kv/stripped', 'evil', 'PUT'), { body: '' }),
    );
    // A GET signed with no body, sent with one (node:http: fetch sends no body with a GET).
    const UNSIGNED_BODY = 'a body nobody signed';
    const get = signed(server, '/kv/stripped', undefined, 'GET');
    const reply = await httpRequest(server, get.target, {
      body: UNSIGNED_BODY,
      // Framed by its length: Node sends a GET's body unframed otherwise.
      headers: { ...get.headers, 'content-length': String(Buffer.byteLength(UNSIGNED_BODY)) },
    });
    const withBody: Answer = { status: reply.status, body: JSON.parse(reply.body) };
    expect401('GET with a body added', withBody);
    expect(await send(signed(server, '/kv/stripped', undefined, 'GET'))).toEqual({
      status: 200,
      body: 'kept',
    });
  }, 30_000);

  test('a request signed too long ago is refused', async () => {
    const server = [...cluster.servers.keys()][0];
    const headers = signer.headers(
      { method: 'POST', host: server, target: '/status', bodyDigest: sha256Hex('{}') },
      Date.now() - 10 * 60_000,
    );
    expect401(
      'stale',
      await send({ method: 'POST', address: server, target: '/status', body: '{}', headers }),
    );
  });

  test('/health, /metrics and the page (and what it reads) need no secret', async () => {
    const server = [...cluster.servers.keys()][0];
    for (const address of [server, cluster.viewLeader.address]) {
      for (const target of ['/health', '/metrics', '/', '/ui/cluster.json']) {
        const answer = await send({ method: 'GET', address, target, body: '', headers: {} });
        expect({ address, target, status: answer.status === 401 ? 401 : 'not 401' }).toEqual({
          address,
          target,
          status: 'not 401',
        });
      }
    }
  });

  test('the refusals are counted in /metrics, by endpoint', async () => {
    for (const address of [[...cluster.servers.keys()][0], cluster.viewLeader.address]) {
      const text = await (await fetch(`http://${address}/metrics`)).text();
      const refused = text
        .split('\n')
        .filter((line) => line.startsWith('dht_requests_unauthenticated_total{'))
        .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
      // The loop above sent each endpoint of each at least five refused requests.
      expect({ address, atLeast20: refused >= 20 }).toEqual({ address, atLeast20: true });
    }
    // The HTTP API's refusals (the /kv test above) by method, never by key.
    const server = [...cluster.servers.keys()][0];
    const text = await (await fetch(`http://${server}/metrics`)).text();
    for (const endpoint of ['PUT /kv', 'GET /kv']) {
      expect(text).toMatch(
        new RegExp(`^dht_requests_unauthenticated_total\\{endpoint="${endpoint}"\\} [1-9]`, 'm'),
      );
    }
    expect(text).not.toContain('stripped');
  });

  test('the secret is in no log line', () => {
    for (const proc of [cluster.viewLeader, ...cluster.servers.values()]) {
      expect(proc.stderr()).not.toContain(CANARY);
    }
  });
});

describe('a replicated view leader', () => {
  test('its members elect a leader and serve over signed Raft messages, and refuse unsigned ones', async () => {
    const ports = [PORTS.server(20), PORTS.server(21), PORTS.server(22)];
    const members = await ViewLeaderMembers.start(ports, path.join(dir, 'members'), 10, [
      '--secret-file',
      secretFile,
    ]);
    // Only the leader answers query_servers: ask each member until one does.
    await waitFor('a leader elected over signed Raft messages', async () => {
      for (const address of members.addresses) {
        const view = await queryMember(address);
        if (view !== undefined) return view;
      }
      return undefined;
    });
    const wrong = new RequestSigner(
      Secret.fromFileContent(Buffer.from('not the cluster secret at all')) as Secret,
      'ef'.repeat(8),
    );
    for (const address of members.addresses) {
      const vote = { from: members.addresses[0], messages: [] };
      expect401(
        `${address} /raft unsigned`,
        await send({ ...signed(address, '/raft', vote), headers: {} }),
      );
      expect401(
        `${address} /raft wrong secret`,
        await send(signed(address, '/raft', vote, 'POST', wrong)),
      );
      expect401(
        `${address} /query_servers unsigned`,
        await send({ ...signed(address, '/query_servers', {}), headers: {} }),
      );
    }
    for (const address of members.addresses) {
      expect(members.proc(address).stderr()).not.toContain(CANARY);
    }
  }, 60_000);
});

describe('starting', () => {
  test('a server or view leader bound beyond loopback refuses to start without a secret', async () => {
    for (const name of ['dht-server', 'dht-viewleader']) {
      const run = await runToExit(name, [
        '--host',
        '0.0.0.0',
        '--port',
        String(PORTS.server(9)),
        '--in-memory',
      ]);
      expect({ name, code: run.code }).toEqual({ name, code: 2 });
      expect(run.stderr).toMatch(/--secret-file FILE .* or --insecure/);
    }
  });

  test('a missing, short or unreadable secret file is a clear usage error that never shows the secret', async () => {
    const short = path.join(dir, 'short');
    fs.writeFileSync(short, 'tiny-canary', { mode: 0o600 });
    const check = async (name: string): Promise<void> => {
      const args =
        name === 'dht-client'
          ? ['query_servers']
          : ['--in-memory', '--port', String(PORTS.server(9))];
      const missing = await runToExit(name, ['--secret-file', path.join(dir, 'nope'), ...args]);
      expect({ name, code: missing.code }).toEqual({ name, code: 2 });
      expect(missing.stderr).toContain(
        `cannot read secret file ${path.join(dir, 'nope')} (ENOENT)`,
      );
      const tooShort = await runToExit(name, ['--secret-file', short, ...args]);
      expect({ name, code: tooShort.code }).toEqual({ name, code: 2 });
      expect(tooShort.stderr).toMatch(/at least 16 bytes/);
      expect(tooShort.stderr).not.toContain('tiny-canary');
    };
    await Promise.all(['dht-server', 'dht-viewleader', 'dht-client'].map(check));
  }, 60_000);

  test('--help shows the flag but no secret, even with DHT_SECRET_FILE set', async () => {
    for (const name of ['dht-server', 'dht-viewleader', 'dht-client']) {
      const help = execFileSync(
        process.execPath,
        [path.join(__dirname, '../../bin', name), '--help'],
        {
          env: { ...process.env, DHT_SECRET_FILE: secretFile },
          encoding: 'utf8',
        },
      );
      expect(help).toContain('--secret-file');
      expect(help).not.toContain(CANARY);
    }
  });

  test('DHT_SECRET_FILE is taken when --secret-file is not given', async () => {
    const env = { DHT_SECRET_FILE: secretFile };
    const server = await startProcess(
      'dht-server',
      [
        '--port',
        String(PORTS.server(8)),
        '--viewleader',
        cluster.viewLeader.address,
        '--heartbeat-interval',
        '0.2',
      ],
      env,
    );
    await waitFor('the server started with DHT_SECRET_FILE in the view', async () =>
      (await cluster.view()).servers.some((s) => s.address === server.address) ? true : undefined,
    );
  }, 30_000);
});
