// Requests that used to damage the cluster (issue 8), sent by hand over plain HTTP to real
// processes, as anyone on the network could send them: no authentication is assumed.
//
// - A version a request claims (lib/limits.ts, VERSION_CLAIM_MAX): a transfer, a commit or a
//   peer's decision answer with 2^53 - 1 used to leave the key with no version for its next
//   setr (exit 3, "version: Too big"). Now it is refused (4xx, nothing changed) and later setr
//   works; a claim at the bound is taken, and the honest writes above it keep working, through a
//   rebalancing too.
// - A heartbeat with a new ID from a live server's address used to evict that server. Now the
//   view leader asks the address who listens there (viewleader/membership.ts, `takeOver`): the
//   live server stays, while a real restart on its port still takes over at once.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type * as z from 'zod/mini';
import { ERROR_KINDS, type ErrorKind } from '../../lib/errors';
import { VERSION_CLAIM_MAX, VERSION_MAX } from '../../lib/limits';
import { StatusResponse, ValueResponse, ViewLeaderApi, type View } from '../../lib/messages';
import { probeAddress } from '../../viewleader/address-probe';
import { Cluster } from '../support/cluster';
import { requestJson, type JsonReply } from '../support/http-request';
import { killAll, portBlock, waitFor, type Proc } from '../support/processes';

const PORTS = portBlock(10);
const CLAIM = VERSION_CLAIM_MAX;
/** setr may meet a rebalancing if a heartbeat is late on a busy machine: wait it out. */
const WAIT = ['--wait', '10', '--timeout', '10'];

/** POST `body` as JSON, unsigned, as anyone on the network could. */
function post(address: string, path: string, body: unknown): Promise<JsonReply> {
  return requestJson(address, path, { body });
}

async function ok<T>(address: string, path: string, body: unknown): Promise<T> {
  const answer = await post(address, path, body);
  expect({ path, status: answer.status }).toEqual({ path, status: 200 });
  return answer.body as T;
}

type Status = z.infer<typeof StatusResponse>;
type Held = z.infer<typeof ValueResponse>;

const status = (server: Proc): Promise<Status> => ok<Status>(server.address, '/status', {});
const view = (leader: Proc): Promise<View> => ok<View>(leader.address, '/query_servers', {});
const get = async (server: Proc, key: string): Promise<Held | undefined> => {
  const answer = await post(server.address, '/get', { key });
  return answer.status === 404 ? undefined : (answer.body as Held);
};

/**
 * A view leader and `servers` servers on this file's ports, heartbeating every 0.2 s. The tests
 * of a describe share them (the cluster is started in its beforeAll).
 */
const startCluster = (
  servers: number,
  options: { readonly failureTimeoutS: number; readonly prepareTimeoutS?: number },
): Promise<Cluster> =>
  Cluster.start({
    ...options,
    servers,
    viewLeaderPort: PORTS.viewleader,
    serverPort: (i) => PORTS.server(i),
  });

/**
 * The view as the view leader sends it, once it lists exactly the cluster's live servers, and
 * neither they nor the view leader rebalance.
 */
async function settled(cluster: Cluster): Promise<View> {
  await cluster.settled(cluster.servers.size);
  return view(cluster.viewLeader);
}

/**
 * Refused with a JSON error of this kind and reason, at the kind's status (lib/errors.ts): 400 for
 * an `invalid` claim, 503 for a `retry` ("refused for now, nothing done"), 409 for `rejected`.
 */
function expectRefused(answer: JsonReply, kind: ErrorKind, reason: string): void {
  expect({ status: answer.status, body: answer.body }).toEqual({
    status: ERROR_KINDS[kind].httpStatus,
    body: { kind, reason, error: expect.any(String) },
  });
}

async function setr(cluster: Cluster, key: string, value: string): Promise<void> {
  const result = await cluster.cli(...WAIT, 'setr', key, value);
  expect({ key, code: result.code, stderr: result.stderr }).toEqual({ key, code: 0, stderr: '' });
}

afterAll(async () => {
  await killAll();
});

// ---- versions -----------------------------------------------------------------------------------

describe('versions a request claims', () => {
  let cluster: Cluster;
  let first: Proc;
  let second: Proc | undefined;

  beforeAll(async () => {
    cluster = await startCluster(1, { failureTimeoutS: 5, prepareTimeoutS: 1 });
    [first] = cluster.servers.values();
  }, 30_000);

  afterAll(async () => {
    await killAll();
  });

  const transfer = async (key: string, version: number, sourceId = 'anyone'): Promise<JsonReply> =>
    post(first.address, '/transfer', {
      epoch: (await status(first)).epoch,
      sourceId,
      entries: [{ key, value: 'forged', version }],
    });

  /** A prepare on `first` alone (vote 0 for a fresh key); returns its txid. */
  const prepareAlone = async (key: string): Promise<string> => {
    const { epoch, serverId } = await status(first);
    const txid = randomUUID();
    expect(
      await ok(first.address, '/prepare', {
        txid,
        key,
        value: 'forged',
        epoch,
        serverId,
        replicas: [{ id: serverId, address: first.address }],
      }),
    ).toEqual({ vote: 'yes', version: 0 });
    return txid;
  };

  test.each([
    { what: '2^53 - 1', version: VERSION_MAX },
    { what: 'the claim bound + 1', version: CLAIM + 1 },
  ])(
    'a transfer at $what is refused, changes nothing, and setr of the key works',
    async ({ what, version }) => {
      const key = `transfer at ${what}`;
      const before = await status(first);
      expectRefused(await transfer(key, version), 'invalid', 'version_out_of_reach');
      expect(await get(first, key)).toBeUndefined();
      expect((await status(first)).keyCount).toBe(before.keyCount);
      await setr(cluster, key, 'honest');
      expect(await get(first, key)).toEqual({ value: 'honest', version: 1 });
    },
  );

  test.each([
    { what: '2^53 - 1', version: VERSION_MAX },
    // A commit claims its vote (commit = 1 + the highest vote): + 2 is the first beyond the bound.
    { what: 'the claim bound + 2', version: CLAIM + 2 },
  ])(
    'a prepare + commit at $what is refused, changes nothing, and setr works',
    async ({ what, version }) => {
      const key = `commit at ${what}`;
      const txid = await prepareAlone(key);
      expectRefused(
        await post(first.address, '/commit', { txid, key, version }),
        'invalid',
        'version_out_of_reach',
      );
      expect(await get(first, key)).toBeUndefined();
      expect((await status(first)).pendingTransactions).toBe(1); // still prepared, not committed
      expect(await ok(first.address, '/abort', { txid, key })).toEqual({});
      expect(await get(first, key)).toBeUndefined();
      await setr(cluster, key, 'honest');
      expect(await get(first, key)).toEqual({ value: 'honest', version: 1 });
    },
  );

  test('a commit beyond the safe integers is refused by the schema', async () => {
    const key = 'commit at 2^53';
    const txid = await prepareAlone(key);
    const answer = await post(first.address, '/commit', { txid, key, version: 2 ** 53 });
    expectRefused(answer, 'invalid', 'bad_request');
    await ok(first.address, '/abort', { txid, key });
  });

  test('a commit at the claim bound + 1 is taken (an honest coordinator sends it when another replica holds the bound)', async () => {
    const key = 'commit at the bound + 1';
    const txid = await prepareAlone(key);
    expect(await ok(first.address, '/commit', { txid, key, version: CLAIM + 1 })).toEqual({});
    await setr(cluster, key, 'honest');
    expect(await get(first, key)).toEqual({ value: 'honest', version: CLAIM + 2 });
  });

  const AT_BOUND = 'transfer at the bound';

  test('a transfer at the claim bound is taken, and setr after setr still works', async () => {
    expect(
      await ok(first.address, '/transfer', {
        epoch: (await status(first)).epoch,
        sourceId: 'anyone',
        entries: [{ key: AT_BOUND, value: 'forged', version: CLAIM }],
      }),
    ).toEqual({ stored: 1 });
    expect(await get(first, AT_BOUND)).toEqual({ value: 'forged', version: CLAIM });
    await setr(cluster, AT_BOUND, 'honest 1');
    await setr(cluster, AT_BOUND, 'honest 2');
    expect(await get(first, AT_BOUND)).toEqual({ value: 'honest 2', version: CLAIM + 2 });
  });

  test('versions above the bound reached by honest writes move in a rebalancing, and commits keep working', async () => {
    // The new server receives the key at the bound + 2: its source vouches for it.
    second = await cluster.startServer(1);
    await settled(cluster);
    expect(await get(second, AT_BOUND)).toEqual({ value: 'honest 2', version: CLAIM + 2 });
    await setr(cluster, AT_BOUND, 'honest 3');
    for (const server of [first, second]) {
      expect(await get(server, AT_BOUND)).toEqual({ value: 'honest 3', version: CLAIM + 3 });
    }
    // Replicas that differ above the bound (a local set on one): the other replica's vote backs
    // the commit.
    await ok(first.address, '/set', { key: AT_BOUND, value: 'local' });
    await setr(cluster, AT_BOUND, 'honest 4');
    for (const server of [first, second]) {
      expect(await get(server, AT_BOUND)).toEqual({ value: 'honest 4', version: CLAIM + 5 });
    }
  }, 60_000);

  test('a forged transfer above what the named source holds is refused, even naming a real source', async () => {
    const sourceId = (await status(second!)).serverId;
    const answer = await transfer(AT_BOUND, CLAIM + 100, sourceId);
    expectRefused(answer, 'invalid', 'version_out_of_reach');
    expect(await get(first, AT_BOUND)).toEqual({ value: 'honest 4', version: CLAIM + 5 });
  });

  test("a made-up primary's answers at 2^53 - 1 are not applied", async () => {
    // A prepare naming a primary that is not in the view: it answers "committed" at 2^53 - 1 to
    // anything. Only the replicas in the view are acceptors of a recovery, so the participant
    // decides without it (and tells it the outcome, which is all it ever hears).
    let asked = 0;
    const fakePrimary = http.createServer((req, res) => {
      asked++;
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ state: 'committed', version: VERSION_MAX }));
      });
    });
    await new Promise<void>((resolve) => fakePrimary.listen(0, '127.0.0.1', resolve));
    try {
      const fakeAddress = `127.0.0.1:${(fakePrimary.address() as AddressInfo).port}`;
      await settled(cluster);
      const key = 'decided by a made-up primary';
      const { epoch, serverId } = await status(first);
      const txid = randomUUID();
      expect(
        await ok(first.address, '/prepare', {
          txid,
          key,
          value: 'forged',
          epoch,
          serverId,
          replicas: [
            { id: 'made-up', address: fakeAddress },
            { id: serverId, address: first.address },
          ],
        }),
      ).toEqual({ vote: 'yes', version: 0 });
      await waitFor('the prepared transaction to be resolved', async () =>
        (await status(first)).pendingTransactions === 0 ? true : undefined,
      );
      // Nothing was accepted, so the recovery chose abort; the made-up primary only learned it.
      expect(await get(first, key)).toBeUndefined();
      await waitFor('the made-up primary to hear the outcome', () =>
        asked > 0 ? true : undefined,
      );
      await setr(cluster, key, 'honest');
      expect((await get(first, key))?.value).toBe('honest');
    } finally {
      fakePrimary.closeAllConnections();
      await new Promise((resolve) => fakePrimary.close(resolve));
    }
  }, 60_000);
});

// ---- address takeover ---------------------------------------------------------------------------

describe('a heartbeat with a new ID from a live server address', () => {
  let cluster: Cluster;
  let leader: Proc;
  let victim: Proc;

  beforeAll(async () => {
    await killAll();
    // A long failure timeout: nothing here may leave the view by timing out.
    cluster = await startCluster(1, { failureTimeoutS: 30 });
    leader = cluster.viewLeader;
    [victim] = cluster.servers.values();
  }, 30_000);

  afterAll(async () => {
    await killAll();
  });

  const forgedHeartbeat = (address: string): Promise<JsonReply> =>
    post(leader.address, ViewLeaderApi.heartbeat.path, { serverId: randomUUID(), address });

  test('is refused (503 retry / address_in_use) and the live server stays, same ID, same epoch', async () => {
    const before = await settled(cluster);
    expectRefused(await forgedHeartbeat(victim.address), 'retry', 'address_in_use');
    expect(await view(leader)).toEqual(before);
    // The victim's own heartbeats are still accepted: it keeps its view and serves.
    const { serverId } = await status(victim);
    const ack = await ok<{ epoch: number }>(leader.address, ViewLeaderApi.heartbeat.path, {
      serverId,
      address: victim.address,
    });
    expect(ack.epoch).toBe(before.epoch);
    await setr(cluster, 'after a forged heartbeat', 'v');
    expect(leader.stderr()).toContain('heartbeat refused: its address belongs to a live server');
  });

  test('a flood of them changes nothing either', async () => {
    const before = await settled(cluster);
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => forgedHeartbeat(victim.address)),
    );
    for (const answer of answers) expectRefused(answer, 'retry', 'address_in_use');
    expect(await view(leader)).toEqual(before);
  });

  test('a paused holder still holds its address: refused after the probe timeout', async () => {
    const before = await settled(cluster);
    cluster.signal(victim.address, 'SIGSTOP');
    try {
      const startedMs = Date.now();
      const answer = await forgedHeartbeat(victim.address);
      expectRefused(answer, 'retry', 'address_in_use');
      expect(Date.now() - startedMs).toBeLessThan(5_000);
    } finally {
      cluster.signal(victim.address, 'SIGCONT');
    }
    expect((await settled(cluster)).servers).toEqual(before.servers);
  });

  test('a real restart on the same port takes over at once, long before the failure timeout', async () => {
    const before = await settled(cluster);
    const oldId = (await status(victim)).serverId;
    await cluster.kill(victim.address);
    const restartedAtMs = Date.now();
    victim = await cluster.startServer(0);
    const after = await settled(cluster);
    expect(Date.now() - restartedAtMs).toBeLessThan(10_000); // the failure timeout is 30 s
    const newId = (await status(victim)).serverId;
    expect(newId).not.toBe(oldId);
    expect(after.servers).toEqual([{ id: newId, address: victim.address }]);
    expect(after.epoch).toBeGreaterThan(before.epoch);
    // The old ID was evicted: rejected forever.
    const old = await post(leader.address, ViewLeaderApi.heartbeat.path, {
      serverId: oldId,
      address: victim.address,
    });
    expectRefused(old, 'rejected', 'server_expired');
  }, 60_000);
});

// ---- the probe ----------------------------------------------------------------------------------

describe('the address probe (viewleader/address-probe.ts)', () => {
  /** An in-process HTTP server on a port the OS picks; `handler` answers every request. */
  async function listen(
    handler: http.RequestListener,
  ): Promise<{ address: string; close(): Promise<void> }> {
    const server = http.createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      },
    };
  }

  const json =
    (body: unknown): http.RequestListener =>
    (req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(body));
      });
    };

  test('a server answers with its ID', async () => {
    const server = await listen(
      json({
        serverId: 'the-one',
        address: '127.0.0.1:1',
        epoch: 1,
        rebalancing: false,
        keyCount: 0,
        pendingTransactions: 0,
      }),
    );
    try {
      expect(await probeAddress(server.address)).toEqual({ kind: 'answered', serverId: 'the-one' });
    } finally {
      await server.close();
    }
  });

  test('nothing listening: refused', async () => {
    const server = await listen(json({}));
    const { address } = server;
    await server.close();
    expect(await probeAddress(address)).toEqual({ kind: 'refused' });
  });

  test.each([
    { what: 'an error answer', handler: json({ kind: 'invalid', error: 'no' }) },
    {
      what: 'not a server status',
      handler: ((req, res) => {
        req.resume();
        res.end('<html>hello</html>');
      }) as http.RequestListener,
    },
    {
      what: 'an endless answer',
      handler: ((req, res) => {
        req.resume();
        res.write('{"serverId":"');
        const chunk = 'x'.repeat(16 * 1024);
        const timer = setInterval(() => res.write(chunk), 1);
        res.on('close', () => clearInterval(timer));
      }) as http.RequestListener,
    },
  ])('$what: no answer', async ({ handler }) => {
    const server = await listen(handler);
    try {
      expect(await probeAddress(server.address)).toEqual({ kind: 'no_answer' });
    } finally {
      await server.close();
    }
  });

  test('a listener that never answers: no answer, within the timeout', async () => {
    const server = await listen((req) => req.resume()); // accepts, never answers
    try {
      const startedMs = Date.now();
      expect(await probeAddress(server.address, 200)).toEqual({ kind: 'no_answer' });
      expect(Date.now() - startedMs).toBeLessThan(2_000);
    } finally {
      await server.close();
    }
  });
});
