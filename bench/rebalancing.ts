// Rebalancing in numbers: a 4-server cluster holding N keys loses one server (SIGKILL), then a
// new server joins. For each view change: seconds until query_servers says rebalancing false
// (for the leave, the failure timeout's detection is part of it), and the copies moved per
// second, from the servers' own 'copy phase done' log records (keysPushed, elapsedMs).
//
// The keys must sit exactly where the allocator puts them, as after setr. They are written with
// setr at high concurrency for as long as the preload budget allows; the rest, if any, are sent
// with the rebalancing `transfer` endpoint straight to the replicas allocateReplicas gives for
// the settled view (version 1, as a first setr would), and every server's key count is then
// checked against the allocator's count. (The local `set` endpoint would not do: it writes one
// server only.)

import { DhtClient } from '../client/sdk';
import type { LogRecord } from '../demo/cluster';
import { assert } from '../lib/assert';
import { initHashing } from '../lib/hash';
import { call } from '../lib/http-client';
import { TRANSFER_BATCH_KEYS_MAX } from '../lib/limits';
import { ServerApi, type Entry, type ServerRef, type View } from '../lib/messages';
import { allocateReplicas } from '../lib/ring';
import { fmt, runLoad, settled, sleep, waitForView, withCluster, type Table } from './stats';

export interface RebalancingOptions {
  readonly keys: number;
  readonly valueBytes: number;
  readonly servers: number;
  readonly setrConcurrency: number;
  /** setr preloads for at most this long; the transfer endpoint places the rest. */
  readonly setrBudgetMs: number;
  readonly settleTimeoutMs: number;
}

export const REBALANCING_FULL: RebalancingOptions = {
  keys: 100_000,
  valueBytes: 100,
  servers: 4,
  setrConcurrency: 128,
  setrBudgetMs: 40_000,
  settleTimeoutMs: 60_000,
};
export const REBALANCING_QUICK: RebalancingOptions = {
  keys: 10_000,
  valueBytes: 100,
  servers: 4,
  setrConcurrency: 128,
  setrBudgetMs: 4_000,
  settleTimeoutMs: 30_000,
};

const REBALANCING_TIMINGS = { failureTimeoutS: 1, heartbeatIntervalS: 0.2 };
/** How often the view leader is asked while a rebalance runs: the resolution of the timings. */
const REBALANCE_POLL_MS = 20;
/** Log records arrive through a pipe: wait this long after the settled view before reading. */
const LOG_GRACE_MS = 300;
const TRANSFER_TIMEOUT_MS = 30_000;

interface CopyRecord {
  readonly server: string;
  readonly epoch: number;
  readonly keysPushed: number;
  readonly keysOffered: number;
  readonly elapsedMs: number;
}

export interface ViewChangeFigure {
  readonly change: string;
  readonly epoch: number;
  readonly serversBefore: number;
  readonly serversAfter: number;
  /** From the SIGKILL, or from spawning the new server, to query_servers rebalancing false. */
  readonly totalMs: number;
  /** From the same start to the first query_servers showing the new epoch. */
  readonly viewChangeMs: number;
  /** From the new epoch to rebalancing false: the servers' copy, barrier and cleanup. */
  readonly rebalanceMs: number;
  /** Sum over the servers of keysPushed for the epoch (copies sent as values). */
  readonly keysPushed: number;
  readonly keysOffered: number;
  /** The slowest server's copy phase (they copy in parallel). */
  readonly copyElapsedMs: number;
  /** keysPushed / copyElapsedMs. */
  readonly keysPerSec: number;
  /** Copies the allocator says must move: the leaver's copies, or the joiner's share. */
  readonly optimalCopies: number;
  readonly servers: number;
}

export interface RebalancingResult {
  readonly keys: number;
  readonly valueBytes: number;
  readonly servers: number;
  readonly failureTimeoutS: number;
  readonly heartbeatIntervalS: number;
  readonly preload: {
    readonly setrConcurrency: number;
    readonly setrKeys: number;
    readonly setrErrors: number;
    readonly setrMs: number;
    readonly setrPerSec: number;
    /** Seconds a setr-only preload of every key would take at that rate. */
    readonly setrAllKeysEstimateS: number;
    readonly transferKeys: number;
    readonly transferMs: number;
    /** Every server holds exactly the allocator's count of keys for the settled view. */
    readonly placementVerified: boolean;
  };
  readonly leave: ViewChangeFigure;
  /** The leave's total minus the failure timeout: what is not detection. */
  readonly leaveMinusFailureTimeoutMs: number;
  readonly join: ViewChangeFigure;
  /** The join's total from the moment the new server announced `listening on`. */
  readonly joinFromReadyMs: number;
}

export async function measureRebalancing(options: RebalancingOptions): Promise<RebalancingResult> {
  await initHashing();
  const copies: CopyRecord[] = [];
  const onLog = (server: string, record: LogRecord): void => {
    if (record.msg !== 'copy phase done') return;
    copies.push({
      server,
      epoch: Number(record.epoch),
      keysPushed: Number(record.keysPushed ?? 0),
      keysOffered: Number(record.keysOffered ?? 0),
      elapsedMs: Number(record.elapsedMs ?? 0),
    });
  };
  const value = 'r'.repeat(options.valueBytes);
  const keyOf = (i: number): string => `rebalance-key-${i}`;

  return withCluster(REBALANCING_TIMINGS, onLog, async (cluster) => {
    const leader = await cluster.startViewLeader();
    for (let i = 0; i < options.servers; i++) await cluster.startServer();
    let view = (
      await waitForView(leader.address, settled(options.servers), options.settleTimeoutMs, 50)
    ).view;

    // ---- preload: setr for as long as the budget allows, then transfer to the replicas ----
    const client = new DhtClient({ viewLeader: leader.address, cacheView: true, waitMs: 0 });
    const loaded = new Uint8Array(options.keys);
    const setr = await runLoad({
      concurrency: options.setrConcurrency,
      durationMs: options.setrBudgetMs,
      maxOps: options.keys,
      op: async (i) => {
        await client.setr(keyOf(i), value);
        loaded[i] = 1;
      },
    });
    const transferStart = performance.now();
    const rest: number[] = [];
    for (let i = 0; i < options.keys; i++) if (loaded[i] === 0) rest.push(i);
    await placeDirectly(
      view,
      rest.map((i) => ({ key: keyOf(i), value, version: 1 })),
    );
    const transferMs = performance.now() - transferStart;
    const placementVerified = await verifyPlacement(
      view,
      Array.from({ length: options.keys }, (_, i) => keyOf(i)),
    );

    // ---- leave: SIGKILL one server ----
    const victim = cluster.servers[cluster.servers.length - 1];
    const victimRef = view.servers.find((s) => s.address === victim.address);
    assert(victimRef !== undefined, 'the victim is in the view');
    const leaverCopies = countCopies(view, options.keys, keyOf, (ids) => ids.has(victimRef.id));
    const leaveStart = performance.now();
    cluster.killServer(victim);
    const leave = await timeViewChange(
      leader.address,
      view,
      options.servers - 1,
      leaveStart,
      options.settleTimeoutMs,
    );
    await sleep(LOG_GRACE_MS);
    view = leave.view;
    const leaveFigure = figure('leave (SIGKILL)', leave, copies, leaverCopies, options.servers);

    // ---- join: a new server process ----
    const joinStart = performance.now();
    const joiner = await cluster.startServer();
    const joinReadyMs = performance.now() - joinStart;
    const join = await timeViewChange(
      leader.address,
      view,
      options.servers,
      joinStart,
      options.settleTimeoutMs,
    );
    await sleep(LOG_GRACE_MS);
    const joinerRef = join.view.servers.find((s) => s.address === joiner.address);
    assert(joinerRef !== undefined, 'the new server is in the view');
    const joinerCopies = countCopies(join.view, options.keys, keyOf, (ids) =>
      ids.has(joinerRef.id),
    );
    const joinFigure = figure('join (new server)', join, copies, joinerCopies, options.servers - 1);

    return {
      keys: options.keys,
      valueBytes: options.valueBytes,
      servers: options.servers,
      failureTimeoutS: REBALANCING_TIMINGS.failureTimeoutS,
      heartbeatIntervalS: REBALANCING_TIMINGS.heartbeatIntervalS,
      preload: {
        setrConcurrency: options.setrConcurrency,
        setrKeys: setr.ops,
        setrErrors: setr.errors,
        setrMs: setr.elapsedMs,
        setrPerSec: setr.opsPerSec,
        setrAllKeysEstimateS: setr.opsPerSec > 0 ? options.keys / setr.opsPerSec : NaN,
        transferKeys: rest.length,
        transferMs,
        placementVerified,
      },
      leave: leaveFigure,
      leaveMinusFailureTimeoutMs: leaveFigure.totalMs - REBALANCING_TIMINGS.failureTimeoutS * 1000,
      join: joinFigure,
      joinFromReadyMs: joinFigure.totalMs - joinReadyMs,
    };
  });
}

interface TimedChange {
  readonly view: View;
  readonly totalMs: number;
  readonly viewChangeMs: number;
}

/** Poll the view leader from `startedMs` until a settled view newer than `before`. */
async function timeViewChange(
  viewLeader: string,
  before: View,
  servers: number,
  startedMs: number,
  timeoutMs: number,
): Promise<TimedChange> {
  let viewChangeAt: number | undefined;
  const wait = await waitForView(
    viewLeader,
    settled(servers, before.epoch),
    timeoutMs,
    REBALANCE_POLL_MS,
    (v) => {
      if (viewChangeAt === undefined && v.epoch > before.epoch) viewChangeAt = performance.now();
    },
  );
  const now = performance.now();
  return {
    view: wait.view,
    totalMs: now - startedMs,
    viewChangeMs: (viewChangeAt ?? now) - startedMs,
  };
}

function figure(
  change: string,
  timed: TimedChange,
  copies: readonly CopyRecord[],
  optimalCopies: number,
  serversBefore: number,
): ViewChangeFigure {
  // Every epoch from the first change up to the settled one (a leave is one epoch, but a slow
  // machine might see two view changes back to back).
  const epochs = copies.filter((c) => c.epoch === timed.view.epoch);
  const keysPushed = epochs.reduce((sum, c) => sum + c.keysPushed, 0);
  const keysOffered = epochs.reduce((sum, c) => sum + c.keysOffered, 0);
  const copyElapsedMs = epochs.reduce((max, c) => Math.max(max, c.elapsedMs), 0);
  return {
    change,
    epoch: timed.view.epoch,
    serversBefore,
    serversAfter: timed.view.servers.length,
    totalMs: timed.totalMs,
    viewChangeMs: timed.viewChangeMs,
    rebalanceMs: timed.totalMs - timed.viewChangeMs,
    keysPushed,
    keysOffered,
    copyElapsedMs,
    keysPerSec: copyElapsedMs > 0 ? (keysPushed * 1000) / copyElapsedMs : NaN,
    optimalCopies,
    servers: epochs.length,
  };
}

/** Keys whose replica set (by server ID) satisfies `moves`, for `view`. */
function countCopies(
  view: View,
  keys: number,
  keyOf: (i: number) => string,
  moves: (replicaIds: ReadonlySet<string>) => boolean,
): number {
  let count = 0;
  for (let i = 0; i < keys; i++) {
    const ids = new Set(allocateReplicas(keyOf(i), view).map((s) => s.id));
    if (moves(ids)) count++;
  }
  return count;
}

/**
 * Send `entries` with the transfer endpoint to exactly their replicas for `view`, in batches of
 * TRANSFER_BATCH_KEYS_MAX, one batch in flight per server, the servers in parallel.
 */
export async function placeDirectly(view: View, entries: readonly Entry[]): Promise<void> {
  const byServer = new Map<string, { ref: ServerRef; entries: Entry[] }>();
  for (const s of view.servers) byServer.set(s.id, { ref: s, entries: [] });
  for (const entry of entries) {
    for (const replica of allocateReplicas(entry.key, view)) {
      byServer.get(replica.id)?.entries.push(entry);
    }
  }
  await Promise.all(
    [...byServer.values()].map(async ({ ref, entries: mine }) => {
      for (let i = 0; i < mine.length; i += TRANSFER_BATCH_KEYS_MAX) {
        await call(
          ref.address,
          ServerApi.transfer,
          {
            epoch: view.epoch,
            sourceId: 'bench-preload',
            entries: mine.slice(i, i + TRANSFER_BATCH_KEYS_MAX),
          },
          { timeoutMs: TRANSFER_TIMEOUT_MS },
        );
      }
    }),
  );
}

/** Every server of `view` holds exactly as many keys as the allocator gives it. */
async function verifyPlacement(view: View, keys: readonly string[]): Promise<boolean> {
  const expected = new Map<string, number>(view.servers.map((s) => [s.id, 0]));
  for (const key of keys) {
    for (const r of allocateReplicas(key, view)) expected.set(r.id, (expected.get(r.id) ?? 0) + 1);
  }
  const held = await Promise.all(
    view.servers.map((s) => call(s.address, ServerApi.status, {}, { timeoutMs: 5_000 })),
  );
  return held.every((status) => status.keyCount === expected.get(status.serverId));
}

export function rebalancingTables(r: RebalancingResult): Table[] {
  const row = (f: ViewChangeFigure, extra: string): string[] => [
    `${f.change} ${f.serversBefore} -> ${f.serversAfter}`,
    fmt(f.totalMs / 1000, 2),
    fmt(f.viewChangeMs / 1000, 2),
    fmt(f.rebalanceMs / 1000, 2),
    extra,
    fmt(f.keysPushed),
    fmt(f.optimalCopies),
    fmt(f.keysPerSec),
  ];
  return [
    {
      title:
        `Rebalancing: ${fmt(r.keys)} keys of ${r.valueBytes} B on ${r.servers} servers ` +
        `(failure timeout ${r.failureTimeoutS} s, heartbeat ${r.heartbeatIntervalS} s)`,
      header: [
        'view change',
        'total s',
        'to new epoch s',
        'rebalance s',
        'total - timeout s',
        'copies pushed',
        'optimal',
        'copies/s',
      ],
      rows: [row(r.leave, fmt(r.leaveMinusFailureTimeoutMs / 1000, 2)), row(r.join, '')],
    },
    {
      title: 'Rebalancing set-up',
      header: ['measure', 'value'],
      rows: [
        [
          `preload with setr at c=${r.preload.setrConcurrency}`,
          `${fmt(r.preload.setrKeys)} keys in ${fmt(r.preload.setrMs / 1000, 1)} s ` +
            `(${fmt(r.preload.setrPerSec)} setr/s, ${r.preload.setrErrors} errors; ` +
            `all ${fmt(r.keys)} would take ~${fmt(r.preload.setrAllKeysEstimateS)} s)`,
        ],
        [
          'the rest placed with transfer on their replicas',
          `${fmt(r.preload.transferKeys)} keys in ${fmt(r.preload.transferMs / 1000, 1)} s`,
        ],
        ['every server holds the allocator count', r.preload.placementVerified ? 'yes' : 'NO'],
        ['join: from the new server listening to settled', `${fmt(r.joinFromReadyMs / 1000, 2)} s`],
      ],
    },
  ];
}
