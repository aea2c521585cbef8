// The storage server's shell (server/storage-server.ts) over a real LevelDB store whose queue of
// writes waiting for a sync is at its bound, as a stalled disk under load leaves it: new work is
// refused before it changes anything, and what was admitted already is written whole. Before
// this rule, a write refused for room after the participant had decided left a commit decided on
// disk without its value, or some of its records without the others (a review's reproductions,
// 2026-12-03): after a restart the replica served an older value, or answered "aborted" for a
// commit it had acknowledged.
//
// White-box: the server's route handlers are called directly (a stand-in for RpcServer records
// them), the test plays the coordinator, and the view is installed through the server's private
// ViewTracker. A crash is closing the store (what was queued is synced, memory is dropped) and a
// restart a new server on the same directory.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DhtError } from '../../lib/errors';
import type { RpcServer } from '../../lib/http-server';
import { STORE_QUEUE_OPS_MAX } from '../../lib/limits';
import { createLogger } from '../../lib/logger';
import { ProcessMetrics } from '../../lib/metrics';
import { ServerApi, type Ballot, type ServerRef, type View } from '../../lib/messages';
import { DurableStore } from '../../server/durable-store';
import { StorageServer } from '../../server/storage-server';

type Handler = (body: unknown) => Promise<unknown>;

interface Node {
  readonly ref: ServerRef;
  readonly dir: string;
  readonly store: DurableStore;
  readonly server: StorageServer;
  call(endpoint: { readonly path: string }, body: unknown): Promise<unknown>;
}

const logger = createLogger('stalled-disk-test', 'silent');
const BALLOT0: Ballot = { epoch: 1, round: 0, slot: 0 };

let root: string;
const running: Node[] = [];
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-stalled-disk-'));
});
afterEach(async () => {
  for (const node of running.splice(0)) await stop(node);
  fs.rmSync(root, { recursive: true, force: true });
});

function viewOf(ids: readonly string[]): View {
  const servers = ids.map((id, i) => ({ id, address: `127.0.0.1:${38100 + i}` }));
  return { epoch: 1, servers, rebalancing: false, placement: { epoch: 1, servers } };
}

async function startNode(id: string, view: View, prepareTimeoutMs = 60_000): Promise<Node> {
  const dir = path.join(root, id);
  const store = await DurableStore.open(dir);
  const server = new StorageServer(
    // Port 9 of loopback: nobody listens, so a heartbeat the server tries fails at once.
    {
      serverId: id,
      durable: true,
      viewLeaders: ['127.0.0.1:9'],
      heartbeatIntervalMs: 60_000,
      prepareTimeoutMs,
    },
    store,
    logger,
    new ProcessMetrics('server'),
  );
  const handlers = new Map<string, Handler>();
  const recorder = {
    route(endpoint: { path: string; request: { parse(b: unknown): unknown } }, handler: Handler) {
      handlers.set(endpoint.path, (body) => Promise.resolve(handler(endpoint.request.parse(body))));
      return recorder;
    },
  };
  server.routes(recorder as unknown as RpcServer);
  installSettledView(server, view);
  const ref = view.servers.find((s) => s.id === id);
  if (ref === undefined) throw new Error(`${id} is not in the view`);
  const node: Node = {
    ref,
    dir,
    store,
    server,
    call: (endpoint, body) => {
      const handler = handlers.get(endpoint.path);
      if (handler === undefined) throw new Error(`no route ${endpoint.path}`);
      return handler(body);
    },
  };
  running.push(node);
  return node;
}

/** The view installed, its (empty) rebalance done, and a lease for the test's length. */
function installSettledView(server: StorageServer, view: View): void {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- white-box, see the header
  const s = server as any;
  s.viewServers = view.servers;
  const [install] = s.tracker.onAck(view);
  s.tracker.onCopied(install.run, []);
  s.tracker.onAck(view);
  s.tracker.renewLease(performance.now(), 600_000);
}

async function stop(node: Node): Promise<void> {
  node.server.stop();
  await node.store.close().catch(() => undefined);
}

/** SIGKILL and a restart on the same directory, resuming the ID. */
async function crashAndRestart(node: Node, view: View): Promise<Node> {
  running.splice(running.indexOf(node), 1);
  await stop(node);
  return startNode(node.ref.id, view);
}

/** Queue writes nobody syncs (in one turn) until the store is at its bound, as a stalled disk. */
async function stall(store: DurableStore): Promise<void> {
  await store.flush();
  for (let i = 0; !store.busy; i++) store.putRecord('filler', `f${i}`, 'x');
  expect(store.unsyncedWrites).toBe(STORE_QUEUE_OPS_MAX);
}

/** What a call answered: its body, or its error's kind and reason. */
async function outcome(call: Promise<unknown>): Promise<unknown> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof DhtError) return `${err.kind}/${err.reason ?? ''}`;
    throw err;
  }
}

async function readAt(node: Node, key: string): Promise<unknown> {
  return outcome(node.call(ServerApi.read, { key, epoch: 1, serverId: node.ref.id }));
}

/** A coordinator's votes and accepts of the commit at `version`, on every replica. */
async function prepareAndAccept(
  replicas: readonly Node[],
  txid: string,
  key: string,
  value: string,
  version: number,
): Promise<void> {
  const refs = replicas.map((r) => r.ref);
  for (const r of replicas) {
    const request = { txid, key, value, epoch: 1, serverId: r.ref.id, replicas: refs };
    await r.call(ServerApi.prepare, request);
  }
  const outcomeAccepted = { state: 'committed', version };
  for (const r of replicas) {
    const request = { txid, key, serverId: r.ref.id, ballot: BALLOT0, outcome: outcomeAccepted };
    await r.call(ServerApi.accept, request);
  }
}

async function setr(
  replicas: readonly Node[],
  txid: string,
  key: string,
  value: string,
  version: number,
): Promise<void> {
  await prepareAndAccept(replicas, txid, key, value, version);
  for (const r of replicas) await r.call(ServerApi.commit, { txid, key, version });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- white-box, see the header
const inside = (node: Node): any => node.server;

describe('a stalled disk (the queue of writes waiting for a sync at its bound)', () => {
  test('new work is refused with retry/storage_busy before it changes anything', async () => {
    const view = viewOf(['a', 'b', 'c']);
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((id) => startNode(id, view)));
    await setr([a, b, c], 'tx1', 'k', 'v1', 1);
    const refs = [a.ref, b.ref, c.ref];
    await a.call(ServerApi.prepare, {
      txid: 'tx2',
      key: 'k',
      value: 'v2',
      epoch: 1,
      serverId: 'a',
      replicas: refs,
    });
    await stall(a.store);
    const queued = a.store.unsyncedWrites;

    const vote = { txid: 'tx3', key: 'other', value: 'x', epoch: 1, serverId: 'a', replicas: refs };
    expect(await outcome(a.call(ServerApi.prepare, vote))).toBe('retry/storage_busy');
    const accept = {
      txid: 'tx2',
      key: 'k',
      serverId: 'a',
      ballot: BALLOT0,
      outcome: { state: 'committed', version: 2 },
    };
    expect(await outcome(a.call(ServerApi.accept, accept))).toBe('retry/storage_busy');
    const promise = {
      txid: 'tx2',
      key: 'k',
      serverId: 'a',
      ballot: { epoch: 1, round: 1, slot: 2 },
    };
    expect(await outcome(a.call(ServerApi.decision, promise))).toBe('retry/storage_busy');
    expect(await outcome(a.call(ServerApi.set, { key: 'local', value: 'x' }))).toBe(
      'retry/storage_busy',
    );
    const transfer = {
      epoch: 1,
      sourceId: 'b',
      entries: [{ key: 'moved', value: 'x', version: 1 }],
    };
    expect(await outcome(a.call(ServerApi.transfer, transfer))).toBe('retry/storage_busy');
    // An abort of a transaction unknown here would write a fence: new work too.
    expect(await outcome(a.call(ServerApi.abort, { txid: 'unknown', key: 'other' }))).toBe(
      'retry/storage_busy',
    );

    // Nothing changed: no vote, no acceptance, no promise, no value, nothing more queued.
    expect(inside(a).participant.isPending('other')).toBe(false);
    expect(await outcome(a.call(ServerApi.decision, { ...promise, ballot: BALLOT0 }))).toBe(
      'retry/storage_busy',
    );
    expect(a.store.unsyncedWrites).toBe(queued);
    expect(a.store.get('local')).toBeUndefined();
    expect(a.store.get('moved')).toBeUndefined();

    // The coordinator's abort of tx2, prepared here, completes admitted work: taken.
    expect(await outcome(a.call(ServerApi.abort, { txid: 'tx2', key: 'k' }))).toEqual({});
    expect(inside(a).participant.isPending('k')).toBe(false);

    // Once the disk catches up, the same work is taken.
    await a.store.flush();
    expect(await outcome(a.call(ServerApi.prepare, vote))).toEqual({ vote: 'yes', version: 0 });
  });

  test('a commit arriving meanwhile is applied and recorded whole: after a restart it is there', async () => {
    // Replicas in getr order: b (primary), a, c. Before the rule, a's /commit was refused after
    // its participant had decided, the decision reached the disk with the next sync but the value
    // never did, and once b was gone a served v1 after b had served v2.
    const view = viewOf(['b', 'a', 'c']);
    const [b, a0, c] = await Promise.all(['b', 'a', 'c'].map((id) => startNode(id, view)));
    await setr([b, a0, c], 'tx1', 'k', 'v1', 1);
    await prepareAndAccept([b, a0, c], 'tx2', 'k', 'v2', 2);
    for (const r of [b, c]) await r.call(ServerApi.commit, { txid: 'tx2', key: 'k', version: 2 });
    expect(await readAt(b, 'k')).toMatchObject({ value: 'v2', version: 2 });

    await stall(a0.store);
    expect(await outcome(a0.call(ServerApi.commit, { txid: 'tx2', key: 'k', version: 2 }))).toEqual(
      {},
    );
    expect(await readAt(a0, 'k')).toMatchObject({ value: 'v2', version: 2 });
    await a0.store.flush(); // the disk catches up

    const a = await crashAndRestart(a0, view);
    expect(inside(a).participant.outcomeOf('tx2')).toEqual({ state: 'committed', version: 2 });
    expect(await readAt(a, 'k')).toMatchObject({ value: 'v2', version: 2 });
  });

  test('no recovery ballot starts meanwhile; once the disk catches up, the transaction is decided', async () => {
    const view = viewOf(['a']);
    const a = await startNode('a', view, 1); // a prepare timeout of 1 ms: recoveries are due at once
    await prepareAndAccept([a], 'tx1', 'k', 'v1', 1); // the coordinator dies before its commit
    // The test ticks the participant itself: the shell's own timer could recover tx1 before the
    // queue is stalled (on a busy machine it did).
    clearInterval(inside(a).participantTimer);
    inside(a).participantTimer = undefined;
    await stall(a.store);
    const queued = a.store.unsyncedWrites;
    await new Promise((resolve) => setTimeout(resolve, 5)); // past the prepare timeout
    inside(a).tickParticipant();
    expect(inside(a).participant.isPending('k')).toBe(true);
    expect(a.store.unsyncedWrites).toBe(queued);

    await a.store.flush();
    const deadline = Date.now() + 10_000;
    while (inside(a).participant.refusesReads('k')) {
      if (Date.now() > deadline) throw new Error('tx1 was not decided within 10 s');
      inside(a).tickParticipant();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(inside(a).participant.outcomeOf('tx1')).toEqual({ state: 'committed', version: 1 });
    expect(await readAt(a, 'k')).toMatchObject({ value: 'v1', version: 1 });
  });
});
