// Durability: what keeping the data on disk costs, in the same run as its in-memory baseline.
//
// 1. Two clusters side by side, each a view leader and 3 servers (demo/cluster.ts): one durable
//    (LevelDB data directories under a temporary directory, removed afterwards), one
//    `--in-memory`. Each is preloaded with setr; then getr and setr at each concurrency, through
//    the SDK section's load code (bench/sdk.ts), on the in-memory cluster and right after on the
//    durable one, so that both see the same state of the machine. The ratio durable/in-memory of
//    each row; the goal: durable setr at c=64 >= 0.7 x in-memory.
// 2. Syncs per setr: the fdatasync and fsync calls of the 3 durable servers during each measured
//    setr case, counted from outside with `perf stat` (bench/syscall-count.ts), over the setr
//    attempted in that case. Syncing every write on its own, a setr would cost 9 (the vote, the
//    accept and the decision at each of 3 replicas); grouped, it costs 6 at c=1 (a decision nobody
//    waits for rides on the next vote's sync, lib/group-commit.ts), and under load one sync
//    covers many. Null, with the reason, where perf is unavailable.
// 3. Restart: one durable server joins a view leader (failure timeout long enough that the view
//    does not change while it is down) empty, is SIGKILLed, and 100,000 keys are written into
//    its data directory with its own store (server/durable-store.ts: the same records, in LevelDB's
//    log as a live server leaves them). It is started on that directory and port, then SIGKILLed
//    and started again `restarts` times. Each start is timed from spawn to its `listening on`
//    line and to serving: its /status shows the view's epoch and no rebalance (heartbeats
//    acknowledged, the read lease held), then one key is read through the read path. Goal: serving
//    within 2 s. Why not load it through the server: its local /set, batched (lib/batching.ts),
//    syncs once per key in turn (a /batch runs its entries one after the other, each awaiting its
//    own sync), about 1,500 keys/s here, 1 minute for 100,000; and keys sent by `transfer` each
//    leave a `received` record, more than 16,384 of which make the restarted server exit at its
//    first copy phase (the group commit's queue bound; see docs/performance.md, "Durability").
// 4. Disk and memory per key on that server: the data directory's allocated bytes (du) and the
//    process's VmRSS, each minus the same server's when empty, over the keys.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LogRecord } from '../demo/cluster';
import { assert } from '../lib/assert';
import { initHashing } from '../lib/hash';
import { call } from '../lib/http-client';
import { STORE_BATCH_OPS_MAX } from '../lib/limits';
import { ServerApi } from '../lib/messages';
import { DurableStore } from '../server/durable-store';
import {
  CountingClient,
  preloadWithSetr,
  runSdkCase,
  startSettledCluster,
  strideOver,
  type SdkOp,
} from './sdk';
import {
  caseFigures,
  errorMessage,
  fmt,
  killChild,
  residentBytes,
  settled,
  sleep,
  startChild,
  waitForView,
  withCluster,
  type CaseFigures,
  type LoadResult,
  type StartedChild,
  type Table,
} from './stats';
import { SyncCounter, type SyncCounts } from './syscall-count';

const ROOT = path.resolve(__dirname, '..', '..');
const SERVER_BIN = path.join(ROOT, 'bin', 'dht-server');

export interface DurabilityOptions {
  /** Keys preloaded into each 3-server cluster (getr and setr pick among them). */
  readonly keys: number;
  readonly valueBytes: number;
  readonly concurrencies: readonly number[];
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly preloadConcurrency: number;
  readonly preloadBudgetMs: number;
  readonly settleTimeoutMs: number;
  /** Keys the restarted server holds. */
  readonly restartKeys: number;
  /** SIGKILL and start again this many times in a row (the first replays LevelDB's log). */
  readonly restarts: number;
  readonly servingTimeoutMs: number;
  /** A pause before each RSS reading: the server's garbage collector gets a chance to run. */
  readonly settleMs: number;
}

export const DURABILITY_FULL: DurabilityOptions = {
  keys: 5_000,
  valueBytes: 100,
  concurrencies: [1, 64],
  durationMs: 3_000,
  warmupMs: 500,
  preloadConcurrency: 64,
  preloadBudgetMs: 20_000,
  settleTimeoutMs: 30_000,
  restartKeys: 100_000,
  restarts: 3,
  servingTimeoutMs: 20_000,
  settleMs: 1_000,
};
export const DURABILITY_QUICK: DurabilityOptions = {
  keys: 500,
  valueBytes: 100,
  concurrencies: [1, 64],
  durationMs: 700,
  warmupMs: 150,
  preloadConcurrency: 64,
  preloadBudgetMs: 3_000,
  settleTimeoutMs: 30_000,
  restartKeys: 100_000,
  restarts: 1,
  servingTimeoutMs: 20_000,
  settleMs: 300,
};

/** As the SDK section's clusters. */
const LOAD_TIMINGS = { failureTimeoutS: 2, heartbeatIntervalS: 0.2 };
/** The restart stays well within the failure timeout: the server resumes its ID, no view change. */
const RESTART_TIMINGS = { failureTimeoutS: 10, heartbeatIntervalS: 0.2 };
const CLUSTER_SERVERS = 3;
/** Every write synced on its own: the vote, the accept and the decision at each replica. */
const SYNCS_PER_SETR_UNGROUPED = 3 * CLUSTER_SERVERS;
export const SETR_RATIO_GOAL = 0.7;
export const SERVING_GOAL_MS = 2_000;
const STATUS_POLL_MS = 10;
const STATUS_TIMEOUT_MS = 2_000;
const STATUS_POLLS_MAX = 100_000;

export type Storage = 'in-memory' | 'durable';

export interface SyncFigure {
  readonly fdatasync: number;
  readonly fsync: number;
  /** (fdatasync + fsync) of the 3 servers over the setr attempted in the case. */
  readonly perSetr: number;
}

export interface DurabilityCase extends CaseFigures {
  readonly op: SdkOp;
  readonly storage: Storage;
  readonly viewLeaderRequests: number;
  /** Durable setr only; null where the syscalls could not be counted (see `syncs.note`). */
  readonly syncs: SyncFigure | null;
}

export interface DurabilityRatio {
  readonly op: SdkOp;
  readonly concurrency: number;
  /** Durable over in-memory. */
  readonly opsPerSec: number;
  readonly p50: number;
  readonly p99: number;
}

export interface RestartFigure {
  /** False for the first start, on the directory the bench wrote (closed cleanly). */
  readonly afterSigkill: boolean;
  /** From spawn to the `listening on` line. */
  readonly listeningMs: number;
  /** From spawn to a /status with the view's epoch and no rebalance. */
  readonly servingMs: number;
  /** The server's own `data directory open` log: LevelDB open and the load into memory. */
  readonly storeOpenMs: number | null;
  /** Records (2PC state, received marks) the store loaded besides the keys; from the same log. */
  readonly recordsRecovered: number | null;
  readonly keysRecovered: number;
  readonly sameServerId: boolean;
}

export interface DurabilityResult {
  readonly keys: number;
  readonly valueBytes: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly timings: typeof LOAD_TIMINGS;
  /** Where the durable servers kept their data: the file system decides what a sync costs. */
  readonly dataDir: { readonly path: string; readonly filesystem: string };
  readonly preload: Readonly<
    Record<
      Storage,
      {
        readonly keysLoaded: number;
        readonly setrPerSec: number;
        readonly elapsedMs: number;
        readonly errors: number;
      }
    >
  >;
  readonly cases: readonly DurabilityCase[];
  readonly ratios: readonly DurabilityRatio[];
  readonly setrGoal: {
    readonly concurrency: number;
    readonly goal: number;
    readonly ratio: number | null;
    readonly met: boolean;
  };
  readonly syncs: {
    readonly method: string;
    /** Why the counts are null, if they are. */
    readonly note: string | null;
    readonly ungroupedPerSetr: number;
    /** Per concurrency of the setr cases, e.g. `{ "c1": 9.0, "c64": 2.1 }`; null if not counted. */
    readonly perSetr: Readonly<Record<string, number | null>>;
  };
  /** Each durable server's data directory after the load cases (keys, 2PC records, logs). */
  readonly clusterDataDirBytes: readonly number[];
  readonly restart: RestartResult;
}

export interface RestartResult {
  readonly keys: number;
  readonly valueBytes: number;
  readonly payloadBytesPerKey: number;
  /** Writing the keys into the stopped server's directory (DurableStore, batches of 4,096). */
  readonly load: { readonly elapsedMs: number; readonly keysPerSec: number };
  readonly restarts: readonly RestartFigure[];
  readonly goalMs: number;
  /** The slowest restart's serving time within the goal. */
  readonly met: boolean;
  readonly disk: {
    readonly emptyBytes: number;
    readonly loadedBytes: number;
    readonly afterRestartBytes: number;
    /** Apparent size (sum of file sizes) after the restart. */
    readonly afterRestartApparentBytes: number;
    /** (after the restart - empty) / keys. */
    readonly perKeyBytes: number;
    readonly perKeyOverPayload: number;
  };
  readonly rss: {
    readonly emptyBytes: number;
    /** The first process to start on the keys (it read them from disk, served a little). */
    readonly loadedBytes: number;
    /** The process after the last SIGKILL and restart. */
    readonly afterRestartBytes: number;
    /** (after the restart - empty) / keys. */
    readonly perKeyBytes: number;
    readonly perKeyLoadedBytes: number;
  };
}

export async function measureDurability(options: DurabilityOptions): Promise<DurabilityResult> {
  assert(options.concurrencies.length > 0, 'at least one concurrency');
  assert(options.restarts >= 1, 'at least one restart');
  await initHashing();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-bench-durability-'));
  // Ctrl-C ends the bench with process.exit (bench/main.ts): the directory goes then too.
  const removeRoot = (): void => fs.rmSync(root, { recursive: true, force: true });
  process.on('exit', removeRoot);
  try {
    const filesystem = filesystemOf(root);
    const load = await measureLoad(options, path.join(root, 'cluster'));
    const restart = await measureRestart(options, path.join(root, 'restart'));
    return {
      ...load,
      keys: options.keys,
      valueBytes: options.valueBytes,
      durationMs: options.durationMs,
      warmupMs: options.warmupMs,
      timings: LOAD_TIMINGS,
      dataDir: { path: root, filesystem },
      restart,
    };
  } finally {
    process.off('exit', removeRoot);
    removeRoot();
  }
}

type LoadFigures = Pick<
  DurabilityResult,
  'preload' | 'cases' | 'ratios' | 'setrGoal' | 'syncs' | 'clusterDataDirBytes'
>;

async function measureLoad(options: DurabilityOptions, dataRoot: string): Promise<LoadFigures> {
  const value = 'd'.repeat(options.valueBytes);
  const keyOf = (i: number): string => `durability-key-${i}`;
  const ignoreLogs = (_server: string, _record: LogRecord): void => {};
  return withCluster({ ...LOAD_TIMINGS, dataRoot }, ignoreLogs, (durableCluster) =>
    withCluster(LOAD_TIMINGS, ignoreLogs, async (memoryCluster) => {
      const setups = [];
      for (const [storage, cluster] of [
        ['in-memory', memoryCluster],
        ['durable', durableCluster],
      ] as const) {
        const leader = await startSettledCluster(cluster, CLUSTER_SERVERS, options.settleTimeoutMs);
        const client = new CountingClient({
          viewLeader: leader.address,
          cacheView: true,
          waitMs: 0,
        });
        const preload = await preloadWithSetr(client, {
          keys: options.keys,
          keyOf,
          value,
          concurrency: options.preloadConcurrency,
          budgetMs: options.preloadBudgetMs,
        });
        setups.push({ storage, cluster, client, preload });
      }
      const durablePids = durableCluster.servers.map((s) => s.child.pid);
      assert(
        durablePids.every((pid): pid is number => pid !== undefined),
        'every server has a PID',
      );

      let syncNote: string | null = null;
      const cases: DurabilityCase[] = [];
      for (const op of ['getr', 'setr'] as const) {
        for (const concurrency of options.concurrencies) {
          // In memory first, then durable right after: the two see the same machine.
          for (const { storage, client, preload } of setups) {
            let syncs: SyncFigure | null = null;
            const countSyncs = storage === 'durable' && op === 'setr' && syncNote === null;
            const { result, viewLeaderRequests } = await runSdkCase(client, {
              op,
              concurrency,
              pick: strideOver(preload.loadedKeys, keyOf),
              value,
              warmupMs: options.warmupMs,
              durationMs: options.durationMs,
              around: countSyncs
                ? async (measure) => {
                    const counted = await countedRun(durablePids, measure);
                    if (counted.counts === undefined) syncNote = counted.note;
                    else syncs = syncFigure(counted.counts, counted.result);
                    return counted.result;
                  }
                : undefined,
            });
            cases.push(durabilityCase(op, storage, result, viewLeaderRequests, syncs));
          }
        }
      }

      const clusterDataDirBytes = durableCluster.servers.map(
        (s) => diskUsage(path.join(dataRoot, s.name)).allocatedBytes,
      );
      const preload = Object.fromEntries(
        setups.map(({ storage, preload: p }) => [
          storage,
          {
            keysLoaded: p.loadedKeys.length,
            setrPerSec: p.run.opsPerSec,
            elapsedMs: p.run.elapsedMs,
            errors: p.run.errors,
          },
        ]),
      ) as DurabilityResult['preload'];
      const ratios = ratiosOf(cases);
      const setrAtTop = ratios.find(
        (r) => r.op === 'setr' && r.concurrency === Math.max(...options.concurrencies),
      );
      const perSetr: Record<string, number | null> = {};
      for (const c of cases) {
        if (c.op === 'setr' && c.storage === 'durable') {
          perSetr[`c${c.concurrency}`] = c.syncs?.perSetr ?? null;
        }
      }
      return {
        preload,
        cases,
        ratios,
        setrGoal: {
          concurrency: Math.max(...options.concurrencies),
          goal: SETR_RATIO_GOAL,
          ratio: setrAtTop?.opsPerSec ?? null,
          met: setrAtTop !== undefined && setrAtTop.opsPerSec >= SETR_RATIO_GOAL,
        },
        syncs: {
          method:
            'perf stat -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -p <the 3 durable servers>, ' +
            'attached for the measured run of each durable setr case only',
          note: syncNote,
          ungroupedPerSetr: SYNCS_PER_SETR_UNGROUPED,
          perSetr,
        },
        clusterDataDirBytes,
      };
    }),
  );
}

/** `measure` with the sync calls of `pids` counted around it; no counts (and why) if perf fails. */
async function countedRun(
  pids: readonly number[],
  measure: () => Promise<LoadResult>,
): Promise<
  | { readonly result: LoadResult; readonly counts: SyncCounts }
  | { readonly result: LoadResult; readonly counts: undefined; readonly note: string }
> {
  let counter: SyncCounter;
  try {
    counter = await SyncCounter.attach(pids);
  } catch (err) {
    return { result: await measure(), counts: undefined, note: unavailable(err) };
  }
  let result: LoadResult;
  try {
    result = await measure();
  } catch (err) {
    await counter.stop().catch(() => undefined);
    throw err;
  }
  try {
    return { result, counts: await counter.stop() };
  } catch (err) {
    return { result, counts: undefined, note: unavailable(err) };
  }
}

function unavailable(err: unknown): string {
  return (
    `sync calls not counted (${errorMessage(err)}): the servers expose no sync counter; ` +
    'the bench counts fdatasync/fsync with perf stat, which needs perf and the permission to attach'
  );
}

function syncFigure(counts: SyncCounts, r: LoadResult): SyncFigure {
  const attempted = r.ops + r.errors;
  return {
    fdatasync: counts.fdatasync,
    fsync: counts.fsync,
    perSetr: attempted === 0 ? NaN : (counts.fdatasync + counts.fsync) / attempted,
  };
}

function durabilityCase(
  op: SdkOp,
  storage: Storage,
  r: LoadResult,
  viewLeaderRequests: number,
  syncs: SyncFigure | null,
): DurabilityCase {
  return {
    op,
    storage,
    ...caseFigures(r),
    viewLeaderRequests,
    syncs,
  };
}

function ratiosOf(cases: readonly DurabilityCase[]): DurabilityRatio[] {
  const ratios: DurabilityRatio[] = [];
  for (const durable of cases) {
    if (durable.storage !== 'durable') continue;
    const memory = cases.find(
      (c) =>
        c.storage === 'in-memory' && c.op === durable.op && c.concurrency === durable.concurrency,
    );
    if (memory === undefined) continue;
    ratios.push({
      op: durable.op,
      concurrency: durable.concurrency,
      opsPerSec: durable.opsPerSec / memory.opsPerSec,
      p50: durable.p50Ms / memory.p50Ms,
      p99: durable.p99Ms / memory.p99Ms,
    });
  }
  return ratios;
}

// ---- restart -------------------------------------------------------------------------------------

async function measureRestart(
  options: DurabilityOptions,
  dataRoot: string,
): Promise<RestartResult> {
  const keyOf = (i: number): string => `restart-key-${String(i).padStart(7, '0')}`;
  // Incompressible (base64 of a hash stream), so that LevelDB's compression flatters nothing.
  const valueOf = (i: number): string =>
    createHash('shake256', { outputLength: Math.ceil((options.valueBytes * 3) / 4) })
      .update(String(i))
      .digest('base64')
      .slice(0, options.valueBytes);
  // The restarted server's `data directory open` log record, reset before each restart.
  const opened: { openMs: number | null; records: number | null } = { openMs: null, records: null };
  const onStderrLine = (line: string): void => {
    if (!line.startsWith('{')) return;
    let record: LogRecord;
    try {
      record = JSON.parse(line) as LogRecord;
    } catch {
      return; // not a log record
    }
    if (record.msg !== 'data directory open') return;
    if (typeof record.openMs === 'number') opened.openMs = record.openMs;
    if (typeof record.records === 'number') opened.records = record.records;
  };

  return withCluster({ ...RESTART_TIMINGS, dataRoot }, ignoreServerLogs, async (cluster) => {
    // The server joins empty: its ID is stored, the view (epoch) names it.
    const leader = await startSettledCluster(cluster, 1, options.settleTimeoutMs);
    const server = cluster.servers[0];
    const dir = path.join(dataRoot, server.name);
    const firstPid = server.child.pid;
    if (firstPid === undefined) throw new Error('the server has no PID');
    await sleep(options.settleMs);
    const rssEmptyBytes = residentBytes(firstPid);
    const before = await call(server.address, ServerApi.status, {}, { timeoutMs: 5_000 });
    const { view } = await waitForView(leader.address, settled(1), options.settleTimeoutMs, 50);
    await killChild(server.child);
    const diskEmpty = diskUsage(dir);

    // The keys, written into its directory while it is down, as its own store writes them.
    const t0 = performance.now();
    await writeKeys(dir, options.restartKeys, keyOf, valueOf);
    const loadMs = performance.now() - t0;
    const diskLoaded = diskUsage(dir);

    const port = server.address.slice(server.address.lastIndexOf(':') + 1);
    const args = [
      '--port',
      port,
      '--viewleader',
      leader.address,
      '--heartbeat-interval',
      String(RESTART_TIMINGS.heartbeatIntervalS),
      '--data-dir',
      dir,
      '--log-level',
      'info',
    ];
    const restarts: RestartFigure[] = [];
    let running: StartedChild | undefined;
    try {
      // The first start finds the keys in LevelDB's log, as the bench left them; then, `restarts`
      // times, SIGKILL the serving process and start it again.
      let rssLoadedBytes = 0;
      for (let r = 0; r <= options.restarts; r++) {
        if (running !== undefined) await killChild(running.child);
        opened.openMs = null;
        opened.records = null;
        const spawnedAt = performance.now();
        running = await startChild(SERVER_BIN, args, onStderrLine);
        const listeningMs = performance.now() - spawnedAt;
        if (running.firstLine !== `listening on ${server.address}`) {
          throw new Error(`restarted server: unexpected first line '${running.firstLine}'`);
        }
        const status = await waitForServing(server.address, view.epoch, options.servingTimeoutMs);
        const servingMs = performance.now() - spawnedAt;
        // It serves what it held: a key read through getr's path (lease and epoch checked).
        const probe = Math.floor(options.restartKeys / 2);
        const read = await call(
          server.address,
          ServerApi.read,
          { key: keyOf(probe), epoch: status.epoch, serverId: status.serverId },
          { timeoutMs: 5_000 },
        );
        if (read.value !== valueOf(probe)) throw new Error('restarted server: wrong value read');
        if (status.keyCount !== options.restartKeys) {
          throw new Error(
            `restarted server holds ${status.keyCount} keys, not ${options.restartKeys}`,
          );
        }
        const figure: RestartFigure = {
          afterSigkill: r > 0,
          listeningMs,
          servingMs,
          storeOpenMs: opened.openMs,
          recordsRecovered: opened.records,
          keysRecovered: status.keyCount,
          sameServerId: status.serverId === before.serverId,
        };
        restarts.push(figure);
        if (r === 0) {
          // The first start reads what the bench wrote; its RSS is the "loaded" reading.
          await sleep(options.settleMs);
          rssLoadedBytes = residentBytes(pidOf(running));
        }
      }
      assert(running !== undefined, 'the server ran');
      await sleep(options.settleMs);
      const rssAfterBytes = residentBytes(pidOf(running));
      const diskAfter = diskUsage(dir);
      const payloadBytesPerKey = keyOf(0).length + options.valueBytes;
      const diskPerKey =
        (diskAfter.allocatedBytes - diskEmpty.allocatedBytes) / options.restartKeys;
      return {
        keys: options.restartKeys,
        valueBytes: options.valueBytes,
        payloadBytesPerKey,
        load: { elapsedMs: loadMs, keysPerSec: (options.restartKeys * 1000) / loadMs },
        restarts,
        goalMs: SERVING_GOAL_MS,
        met: restarts.every((f) => f.servingMs <= SERVING_GOAL_MS),
        disk: {
          emptyBytes: diskEmpty.allocatedBytes,
          loadedBytes: diskLoaded.allocatedBytes,
          afterRestartBytes: diskAfter.allocatedBytes,
          afterRestartApparentBytes: diskAfter.apparentBytes,
          perKeyBytes: diskPerKey,
          perKeyOverPayload: diskPerKey / payloadBytesPerKey,
        },
        rss: {
          emptyBytes: rssEmptyBytes,
          loadedBytes: rssLoadedBytes,
          afterRestartBytes: rssAfterBytes,
          perKeyBytes: (rssAfterBytes - rssEmptyBytes) / options.restartKeys,
          perKeyLoadedBytes: (rssLoadedBytes - rssEmptyBytes) / options.restartKeys,
        },
      };
    } finally {
      if (running !== undefined) await killChild(running.child);
    }
  });
}

/**
 * Put `keys` keys (version 1) into the durable store in `dir` with the server's own DurableStore,
 * one sync per STORE_BATCH_OPS_MAX keys (the group commit's queue holds 4 such batches at most).
 */
async function writeKeys(
  dir: string,
  keys: number,
  keyOf: (i: number) => string,
  valueOf: (i: number) => string,
): Promise<void> {
  const store = await DurableStore.open(dir);
  try {
    for (let i = 0; i < keys; i++) {
      store.put(keyOf(i), valueOf(i), 1);
      if ((i + 1) % STORE_BATCH_OPS_MAX === 0) await store.flush();
    }
    await store.flush();
  } finally {
    await store.close();
  }
}

function pidOf(started: StartedChild): number {
  const pid = started.child.pid;
  if (pid === undefined) throw new Error('a started process has a PID');
  return pid;
}

function ignoreServerLogs(_server: string, _record: LogRecord): void {}

/**
 * Poll the server's /status until it has installed `epoch` (or a later one, should the view have
 * changed meanwhile) and is not rebalancing; bounded in time.
 */
async function waitForServing(
  address: string,
  epoch: number,
  timeoutMs: number,
): Promise<{ readonly serverId: string; readonly keyCount: number; readonly epoch: number }> {
  const t0 = performance.now();
  let last = 'no answer';
  for (let polls = 0; polls < STATUS_POLLS_MAX; polls++) {
    try {
      const status = await call(address, ServerApi.status, {}, { timeoutMs: STATUS_TIMEOUT_MS });
      if (status.epoch >= epoch && !status.rebalancing) return status;
      last = `epoch ${status.epoch}, rebalancing ${status.rebalancing}`;
    } catch (err) {
      last = errorMessage(err);
    }
    if (performance.now() - t0 > timeoutMs) break;
    await sleep(STATUS_POLL_MS);
  }
  throw new Error(`restarted server not serving epoch ${epoch} after ${timeoutMs} ms (${last})`);
}

// ---- files ---------------------------------------------------------------------------------------

/** What `du` counts (allocated blocks) and the sum of the file sizes, of a directory tree. */
export function diskUsage(dir: string): { allocatedBytes: number; apparentBytes: number } {
  let allocatedBytes = 0;
  let apparentBytes = 0;
  const visit = (p: string): void => {
    const stat = fs.lstatSync(p);
    allocatedBytes += stat.blocks * 512;
    if (stat.isDirectory()) {
      for (const name of fs.readdirSync(p)) visit(path.join(p, name));
    } else {
      apparentBytes += stat.size;
    }
  };
  visit(dir);
  return { allocatedBytes, apparentBytes };
}

/** The file system type of `dir` from statfs's magic number (the common ones by name). */
export function filesystemOf(dir: string): string {
  const names: Record<number, string> = {
    0xef53: 'ext2/3/4',
    0x01021994: 'tmpfs',
    0x58465342: 'xfs',
    0x9123683e: 'btrfs',
    0x794c7630: 'overlayfs',
    0x2fc12fc1: 'zfs',
    0x6969: 'nfs',
  };
  try {
    const type = fs.statfsSync(dir).type;
    return names[type] ?? `statfs type 0x${type.toString(16)}`;
  } catch (err) {
    return `unknown (${errorMessage(err)})`;
  }
}

// ---- tables --------------------------------------------------------------------------------------

export function durabilityTables(r: DurabilityResult): Table[] {
  const ratioOf = (c: DurabilityCase): string => {
    if (c.storage !== 'durable') return '';
    const ratio = r.ratios.find((x) => x.op === c.op && x.concurrency === c.concurrency);
    return fmt(ratio?.opsPerSec, 2);
  };
  const syncsOf = (c: DurabilityCase): string => {
    if (c.op !== 'setr' || c.storage !== 'durable') return '';
    return c.syncs === null ? 'n/a' : fmt(c.syncs.perSetr, 2);
  };
  const goal = r.setrGoal;
  const rs = r.restart;
  const ms = (v: number | null): string => (v === null ? '-' : `${fmt(v, 0)} ms`);
  const mib = (bytes: number): string => `${fmt(bytes / (1024 * 1024), 1)} MiB`;
  return [
    {
      title:
        `Durability: 3 servers durable (${r.dataDir.filesystem}) vs --in-memory, one DhtClient each, ` +
        `${fmt(r.preload.durable.keysLoaded)} / ${fmt(r.preload['in-memory'].keysLoaded)} keys of ` +
        `${r.valueBytes} B, ${fmt(r.durationMs)} ms per case; dur/mem = durable ops/s over ` +
        `in-memory; syncs/setr = fdatasync+fsync of the 3 servers per setr ` +
        `(${r.syncs.ungroupedPerSetr} without group commit)`,
      header: [
        'op',
        'conc',
        'storage',
        'ops/s',
        'p50 ms',
        'p99 ms',
        'p99.9 ms',
        'dur/mem',
        'syncs/setr',
        'errors',
      ],
      rows: r.cases.map((c) => [
        c.op,
        String(c.concurrency),
        c.storage,
        fmt(c.opsPerSec),
        fmt(c.p50Ms, 2),
        fmt(c.p99Ms, 2),
        fmt(c.p999Ms, 2),
        ratioOf(c),
        syncsOf(c),
        String(c.errors),
      ]),
    },
    {
      title: 'Durability: goals, restart, footprint',
      header: ['measure', 'value'],
      rows: [
        [
          `setr c=${goal.concurrency}: durable / in-memory (goal >= ${goal.goal})`,
          `${fmt(goal.ratio, 2)} (${goal.met ? 'met' : 'MISSED'})`,
        ],
        ...(r.syncs.note === null ? [] : [['syncs per setr', r.syncs.note]]),
        [
          `restart server: ${fmt(rs.keys)} keys written into its directory while stopped`,
          `${fmt(rs.load.keysPerSec)} keys/s, ${fmt(rs.load.elapsedMs / 1000, 2)} s`,
        ],
        ...rs.restarts.map((f, i) => [
          `${f.afterSigkill ? `restart ${i} after SIGKILL` : 'first start on the keys'}: ` +
            'spawn to listening / to serving (store open)',
          `${ms(f.listeningMs)} / ${ms(f.servingMs)} (${ms(f.storeOpenMs)}), ` +
            `${fmt(f.keysRecovered)} keys + ${fmt(f.recordsRecovered)} records, ` +
            `${f.sameServerId ? 'same ID' : 'NEW ID'}`,
        ]),
        [`serving within ${fmt(rs.goalMs)} ms after every start`, rs.met ? 'yes' : 'NO'],
        [
          'disk per key (du after restart - empty, / keys)',
          `${fmt(rs.disk.perKeyBytes)} B (payload ${rs.payloadBytesPerKey} B: x${fmt(rs.disk.perKeyOverPayload, 2)})`,
        ],
        [
          'data dir: empty / keys written / after the restarts (apparent)',
          `${mib(rs.disk.emptyBytes)} / ${mib(rs.disk.loadedBytes)} / ${mib(rs.disk.afterRestartBytes)} (${mib(rs.disk.afterRestartApparentBytes)})`,
        ],
        [
          'RSS per key - empty server: last restart / first start',
          `${fmt(rs.rss.perKeyBytes)} B / ${fmt(rs.rss.perKeyLoadedBytes)} B`,
        ],
        [
          'RSS: empty / first start / last restart',
          `${mib(rs.rss.emptyBytes)} / ${mib(rs.rss.loadedBytes)} / ${mib(rs.rss.afterRestartBytes)}`,
        ],
        [
          '3-server durable cluster: data dir per server after the cases',
          r.clusterDataDirBytes.map(mib).join(', '),
        ],
      ],
    },
  ];
}
