// A peer in the bench: etcd side by side with dht, in the same run, through the same load code.
//
// etcd is what a user wanting a small replicated store would pick instead. Three etcd members run
// on loopback (their own data directories in a temporary folder; etcd's defaults, so every write
// is in its fsynced WAL before it is acknowledged), next to two dht clusters of 3 servers each
// (demo/cluster.ts): one durable (LevelDB data directories in the same folder, so the same file
// system), one `--in-memory`. All three are preloaded with the same keys and values; then, for
// each operation and concurrency, the three are measured right one after the other (etcd, dht
// durable, dht in-memory), so that they see the same state of the machine:
//   write: etcd put (a Raft round, the leader's and a majority's WAL synced) vs dht setr;
//   read:  etcd get, linearizable (etcd3's default: a ReadIndex round to the leader) vs dht getr.
// Every case is runWarmedLoad (bench/stats.ts), the closed loop of the SDK section; the keys are
// picked by the same stride (bench/sdk.ts strideOver). The etcd3 client spreads its calls over
// the three members (its default: a random member per call), as dht's SDK does over replicas.
// Besides ops/s and latency, each case records the CPU the measured system's processes used, the
// bench process's own (the client), and what the rest of the machine used meanwhile.
//
// etcd must be on PATH (`apt-get install -y etcd-server`); without it the section reports that it
// was skipped and how to install it. The members listen on fixed loopback ports
// (ETCD_PORT_FIRST...), never the package's 2379/2380: a system etcd, should the package have
// started one, is not ours and is left alone. They are stopped with SIGTERM, then SIGKILL, by PID.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import type { Etcd3 } from 'etcd3';
import type { LocalCluster, LogRecord } from '../demo/cluster';
import { assert } from '../lib/assert';
import { initHashing } from '../lib/hash';
import { filesystemOf } from './durability';
import { CountingClient, preloadWith, startSettledCluster, strideOver } from './sdk';
import {
  caseFigures,
  cpuSeconds,
  errorMessage,
  fmt,
  runWarmedLoad,
  sleep,
  terminateChild,
  track,
  withCluster,
  type CaseFigures,
  type LoadResult,
  type Table,
} from './stats';

export interface EtcdOptions {
  /** Keys preloaded into each of the three stores; reads and writes pick among them. */
  readonly keys: number;
  readonly valueBytes: number;
  readonly concurrencies: readonly number[];
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly preloadConcurrency: number;
  /** Each store's preload stops here even if not every key is written (the count says so). */
  readonly preloadBudgetMs: number;
  readonly settleTimeoutMs: number;
  /** From the first spawn to every member reporting itself healthy. */
  readonly readyTimeoutMs: number;
  /** How long each system's CPU is read while it serves nothing (its background work). */
  readonly idleMs: number;
}

export const ETCD_FULL: EtcdOptions = {
  keys: 5_000,
  valueBytes: 100,
  concurrencies: [1, 64],
  durationMs: 3_000,
  warmupMs: 500,
  preloadConcurrency: 64,
  preloadBudgetMs: 20_000,
  settleTimeoutMs: 30_000,
  readyTimeoutMs: 20_000,
  idleMs: 2_000,
};
export const ETCD_QUICK: EtcdOptions = {
  keys: 500,
  valueBytes: 100,
  concurrencies: [1, 64],
  durationMs: 700,
  warmupMs: 150,
  preloadConcurrency: 64,
  preloadBudgetMs: 3_000,
  settleTimeoutMs: 30_000,
  readyTimeoutMs: 20_000,
  idleMs: 500,
};

export const ETCD_INSTALL = 'DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server';
const ETCD_MEMBERS = 3;
/** Member i listens for clients on FIRST + STRIDE * i and for its peers on the port after. */
const ETCD_PORT_FIRST = 24_000;
const ETCD_PORT_STRIDE = 10;
const ETCD_READY_POLL_MS = 100;
const ETCD_HEALTH_TIMEOUT_MS = 1_000;
const ETCD_READY_POLLS_MAX = 10_000;
/** SIGTERM lets a member close its WAL; after this it is SIGKILLed. */
const ETCD_STOP_GRACE_MS = 5_000;
/** Every etcd call has a deadline: a stuck call fails the operation instead of the bench. */
const ETCD_CALL_TIMEOUT_MS = 5_000;
/** The last lines of a member's log, quoted when it fails to start. */
const ETCD_LOG_LINES_KEPT = 20;
const ETCD_VERSION_TIMEOUT_MS = 5_000;
/** As the SDK and durability sections' clusters. */
const DHT_TIMINGS = { failureTimeoutS: 2, heartbeatIntervalS: 0.2 };
const DHT_SERVERS = 3;

export type PeerSystem = 'etcd' | 'dht durable' | 'dht in-memory';
export type PeerOp = 'write' | 'read';
const OP_NAMES: Readonly<Record<PeerOp, { readonly etcd: string; readonly dht: string }>> = {
  write: { etcd: 'put', dht: 'setr' },
  read: { etcd: 'get (linearizable)', dht: 'getr' },
};

export interface PeerCase extends CaseFigures {
  readonly system: PeerSystem;
  readonly op: PeerOp;
  /** CPU of the measured system's processes (etcd: 3 members; dht: view leader and 3 servers). */
  readonly serverCpuMsPerOp: number;
  /** CPU of the bench process (the client) per operation. */
  readonly clientCpuMsPerOp: number;
  /** Cores busy meanwhile with work that is not this bench's (other users of the machine). */
  readonly otherCores: number;
}

export interface PeerRatio {
  readonly op: PeerOp;
  readonly concurrency: number;
  readonly storage: 'durable' | 'in-memory';
  /** dht over etcd: above 1 is dht ahead. */
  readonly opsPerSec: number;
  /** dht over etcd: below 1 is dht ahead. */
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly aheadOnOpsPerSec: boolean;
  readonly aheadOnLatency: boolean;
}

export interface EtcdSkipped {
  readonly skipped: true;
  readonly reason: string;
  readonly install: string;
}

export interface EtcdComparison {
  readonly skipped: false;
  readonly etcd: {
    readonly version: string;
    readonly binary: string;
    readonly members: number;
    readonly settings: string;
    readonly clientUrls: readonly string[];
    /** From the first spawn to every member healthy. */
    readonly readyMs: number;
  };
  readonly dataDir: { readonly path: string; readonly filesystem: string };
  readonly keys: number;
  readonly valueBytes: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly preloadConcurrency: number;
  readonly dhtTimings: typeof DHT_TIMINGS;
  readonly preload: Readonly<
    Record<
      PeerSystem,
      {
        readonly keysLoaded: number;
        readonly opsPerSec: number;
        readonly elapsedMs: number;
        readonly errors: number;
      }
    >
  >;
  /**
   * Cores each system's processes used while serving nothing (heartbeats, ticks, timers), read
   * over `idleMs` after the preload: part of every case's server CPU, whatever its rate.
   */
  readonly idleCores: Readonly<Record<PeerSystem, number>>;
  readonly idleMs: number;
  /** Keys loaded into all three stores: the cases pick among these, on every side alike. */
  readonly keysPicked: number;
  readonly cases: readonly PeerCase[];
  readonly ratios: readonly PeerRatio[];
  /** The goal: dht durable ahead of etcd (ops/s) on every row. */
  readonly goal: {
    readonly rows: number;
    readonly aheadOnOpsPerSec: number;
    readonly aheadOnLatency: number;
    readonly met: boolean;
  };
  /** 1-minute load average when the section began and ended. */
  readonly loadAverage: { readonly before: number; readonly after: number };
}

export type EtcdResult = EtcdSkipped | EtcdComparison;

export async function measureEtcd(options: EtcdOptions): Promise<EtcdResult> {
  assert(options.concurrencies.length > 0, 'at least one concurrency');
  assert(options.keys > 0 && options.valueBytes > 0, 'keys and values to load');
  const found = findEtcd();
  if (!found.ok) return { skipped: true, reason: found.reason, install: ETCD_INSTALL };
  await initHashing();
  const loadBefore = os.loadavg()[0];
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-bench-etcd-'));
  // Ctrl-C ends the bench with process.exit (bench/main.ts): the directory goes then too.
  const removeRoot = (): void => fs.rmSync(root, { recursive: true, force: true });
  process.on('exit', removeRoot);
  try {
    const filesystem = filesystemOf(root);
    const ignoreLogs = (_server: string, _record: LogRecord): void => {};
    const figures = await withEtcdCluster(
      found,
      path.join(root, 'etcd'),
      options.readyTimeoutMs,
      (etcd) =>
        withCluster({ ...DHT_TIMINGS, dataRoot: path.join(root, 'dht') }, ignoreLogs, (durable) =>
          withCluster(DHT_TIMINGS, ignoreLogs, (memory) => compare(options, etcd, durable, memory)),
        ),
    );
    return {
      skipped: false,
      ...figures,
      dataDir: { path: root, filesystem },
      keys: options.keys,
      valueBytes: options.valueBytes,
      durationMs: options.durationMs,
      warmupMs: options.warmupMs,
      preloadConcurrency: options.preloadConcurrency,
      dhtTimings: DHT_TIMINGS,
      loadAverage: { before: loadBefore, after: os.loadavg()[0] },
    };
  } finally {
    process.off('exit', removeRoot);
    removeRoot();
  }
}

// ---- the comparison ------------------------------------------------------------------------------

interface Store {
  readonly system: PeerSystem;
  readonly write: (key: string, value: string) => Promise<unknown>;
  /** Resolves once the key's value was read and is the expected one. */
  readonly read: (key: string, value: string) => Promise<unknown>;
  readonly pids: readonly number[];
}

type ComparisonFigures = Pick<
  EtcdComparison,
  'etcd' | 'preload' | 'idleCores' | 'idleMs' | 'keysPicked' | 'cases' | 'ratios' | 'goal'
>;

async function compare(
  options: EtcdOptions,
  etcd: EtcdCluster,
  durableCluster: LocalCluster,
  memoryCluster: LocalCluster,
): Promise<ComparisonFigures> {
  const value = 'p'.repeat(options.valueBytes);
  const keyOf = (i: number): string => `peer-key-${i}`;
  const stores: Store[] = [];
  const etcdClient = await etcd.client();
  try {
    stores.push({
      system: 'etcd',
      write: (key, v) => etcdClient.put(key).value(v).exec(),
      read: async (key, v) => {
        const got = await etcdClient.get(key).string();
        if (got !== v)
          throw new Error(`etcd get ${key}: ${got === null ? 'not found' : 'wrong value'}`);
      },
      pids: etcd.pids(),
    });
    for (const [system, cluster] of [
      ['dht durable', durableCluster],
      ['dht in-memory', memoryCluster],
    ] as const) {
      const leader = await startSettledCluster(cluster, DHT_SERVERS, options.settleTimeoutMs);
      const client = new CountingClient({ viewLeader: leader.address, cacheView: true, waitMs: 0 });
      stores.push({
        system,
        write: (key, v) => client.setr(key, v),
        read: async (key, v) => {
          const got = await client.getr(key);
          if (got.value !== v) throw new Error(`dht getr ${key}: wrong value`);
        },
        pids: [...cluster.viewLeaders, ...cluster.servers].map((h) => pidOf(h.child)),
      });
    }
    const everyPid = stores.flatMap((s) => s.pids);

    const preload: Partial<Record<PeerSystem, ComparisonFigures['preload'][PeerSystem]>> = {};
    // Only the keys every store holds are picked: the same keys, in the same order, on all sides.
    let common: readonly number[] | undefined;
    for (const store of stores) {
      const loaded = await preloadWith(store.write, {
        keys: options.keys,
        keyOf,
        value,
        concurrency: options.preloadConcurrency,
        budgetMs: options.preloadBudgetMs,
      });
      preload[store.system] = {
        keysLoaded: loaded.loadedKeys.length,
        opsPerSec: loaded.run.opsPerSec,
        elapsedMs: loaded.run.elapsedMs,
        errors: loaded.run.errors,
      };
      const here = new Set(loaded.loadedKeys);
      common = (common ?? loaded.loadedKeys).filter((i) => here.has(i));
    }
    assert(common !== undefined, 'at least one store');
    if (common.length === 0) throw new Error('no key was loaded into every store');
    const pick = strideOver(common, keyOf);

    // Background work, all three at once: nothing is sent to any of them meanwhile.
    const idleBefore = stores.map((store) => cpuSnapshot(store.pids, everyPid));
    await sleep(options.idleMs);
    const idleCores: Partial<Record<PeerSystem, number>> = {};
    stores.forEach((store, i) => {
      const after = cpuSnapshot(store.pids, everyPid);
      idleCores[store.system] =
        (after.systemS - idleBefore[i].systemS) / ((after.atMs - idleBefore[i].atMs) / 1000);
    });

    const cases: PeerCase[] = [];
    for (const op of ['read', 'write'] as const) {
      for (const concurrency of options.concurrencies) {
        // One after the other, in the same order every time: the three see the same machine.
        for (const store of stores) {
          const run = (i: number): Promise<unknown> =>
            op === 'write' ? store.write(pick(i), value) : store.read(pick(i), value);
          let cpu: CpuUse | undefined;
          const result = await runWarmedLoad({
            concurrency,
            warmupMs: options.warmupMs,
            durationMs: options.durationMs,
            op: run,
            around: async (measure) => {
              const before = cpuSnapshot(store.pids, everyPid);
              const r = await measure();
              cpu = cpuSince(before, cpuSnapshot(store.pids, everyPid));
              return r;
            },
          });
          assert(cpu !== undefined, 'the measured run was timed');
          cases.push(peerCase(store.system, op, result, cpu));
        }
      }
    }
    const ratios = ratiosOf(cases);
    const durableRows = ratios.filter((r) => r.storage === 'durable');
    return {
      etcd: etcd.description(),
      preload: preload as ComparisonFigures['preload'],
      idleCores: idleCores as ComparisonFigures['idleCores'],
      idleMs: options.idleMs,
      keysPicked: common.length,
      cases,
      ratios,
      goal: {
        rows: durableRows.length,
        aheadOnOpsPerSec: durableRows.filter((r) => r.aheadOnOpsPerSec).length,
        aheadOnLatency: durableRows.filter((r) => r.aheadOnLatency).length,
        met: durableRows.length > 0 && durableRows.every((r) => r.aheadOnOpsPerSec),
      },
    };
  } finally {
    etcdClient.close();
  }
}

function peerCase(system: PeerSystem, op: PeerOp, r: LoadResult, cpu: CpuUse): PeerCase {
  const attempted = Math.max(1, r.ops + r.errors);
  return {
    system,
    op,
    ...caseFigures(r),
    serverCpuMsPerOp: (cpu.systemS * 1000) / attempted,
    clientCpuMsPerOp: (cpu.clientS * 1000) / attempted,
    otherCores: cpu.otherCores,
  };
}

export function ratiosOf(cases: readonly PeerCase[]): PeerRatio[] {
  const ratios: PeerRatio[] = [];
  for (const dht of cases) {
    if (dht.system === 'etcd') continue;
    const etcd = cases.find(
      (c) => c.system === 'etcd' && c.op === dht.op && c.concurrency === dht.concurrency,
    );
    if (etcd === undefined) continue;
    const p50 = dht.p50Ms / etcd.p50Ms;
    const p99 = dht.p99Ms / etcd.p99Ms;
    const p999 = dht.p999Ms / etcd.p999Ms;
    const opsPerSec = dht.opsPerSec / etcd.opsPerSec;
    ratios.push({
      op: dht.op,
      concurrency: dht.concurrency,
      storage: dht.system === 'dht durable' ? 'durable' : 'in-memory',
      opsPerSec,
      p50,
      p99,
      p999,
      aheadOnOpsPerSec: opsPerSec > 1,
      aheadOnLatency: p50 < 1 && p99 < 1 && p999 < 1,
    });
  }
  return ratios;
}

// ---- CPU accounting ------------------------------------------------------------------------------

interface CpuSnapshot {
  readonly atMs: number;
  /** The measured system's processes. */
  readonly systemS: number;
  /** Every process of this section (all three stores) and the bench process. */
  readonly oursS: number;
  readonly clientS: number;
  /** The whole machine's busy time (/proc/stat), in seconds; NaN where unreadable. */
  readonly machineS: number;
}

interface CpuUse {
  readonly systemS: number;
  readonly clientS: number;
  readonly otherCores: number;
}

function cpuSnapshot(systemPids: readonly number[], everyPid: readonly number[]): CpuSnapshot {
  const usage = process.cpuUsage();
  const clientS = (usage.user + usage.system) / 1e6;
  const sum = (pids: readonly number[]): number =>
    pids.reduce((total, pid) => total + cpuSeconds(pid), 0);
  return {
    atMs: performance.now(),
    systemS: sum(systemPids),
    oursS: sum(everyPid) + clientS,
    clientS,
    machineS: machineBusySeconds(),
  };
}

function cpuSince(before: CpuSnapshot, after: CpuSnapshot): CpuUse {
  const wallS = (after.atMs - before.atMs) / 1000;
  const others = after.machineS - before.machineS - (after.oursS - before.oursS);
  return {
    systemS: after.systemS - before.systemS,
    clientS: after.clientS - before.clientS,
    // Clock ticks are coarse (10 ms): a slightly negative figure is noise, shown as 0.
    otherCores: wallS > 0 ? Math.max(0, others / wallS) : NaN,
  };
}

const USER_HZ = 100;

/** Busy time of all cores since boot: /proc/stat's first line less idle and iowait. */
function machineBusySeconds(): number {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already within user).
    const busy = ticks.slice(0, 8).reduce((a, b) => a + b, 0) - ticks[3] - ticks[4];
    return busy / USER_HZ;
  } catch {
    return NaN;
  }
}

// ---- etcd processes -----------------------------------------------------------------------------

interface FoundEtcd {
  readonly ok: true;
  readonly binary: string;
  readonly version: string;
}

function findEtcd(): FoundEtcd | { readonly ok: false; readonly reason: string } {
  const run = spawnSync('etcd', ['--version'], {
    encoding: 'utf8',
    timeout: ETCD_VERSION_TIMEOUT_MS,
  });
  if (run.error !== undefined) {
    const missing = (run.error as NodeJS.ErrnoException).code === 'ENOENT';
    return {
      ok: false,
      reason: missing ? 'etcd is not on PATH' : `etcd --version failed: ${run.error.message}`,
    };
  }
  if (run.status !== 0) return { ok: false, reason: `etcd --version exited ${run.status}` };
  const version = /etcd Version:\s*(\S+)/.exec(run.stdout)?.[1];
  if (version === undefined) return { ok: false, reason: 'etcd --version printed no version' };
  return { ok: true, binary: 'etcd', version };
}

interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly child: ChildProcess;
  readonly log: string[];
}

interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  pids(): number[];
  client(): Promise<Etcd3>;
  description(): EtcdComparison['etcd'];
}

/**
 * Run `body` with three etcd members on loopback, data in `dataRoot`; resolves once all are
 * healthy (bounded by `readyTimeoutMs`). Every member is stopped by PID when `body` ends or
 * throws (and SIGKILLed with the other children if the bench is interrupted).
 */
async function withEtcdCluster<T>(
  etcd: FoundEtcd,
  dataRoot: string,
  readyTimeoutMs: number,
  body: (cluster: EtcdCluster) => Promise<T>,
): Promise<T> {
  const ports = Array.from({ length: ETCD_MEMBERS }, (_, i) => {
    const client = ETCD_PORT_FIRST + ETCD_PORT_STRIDE * i;
    return { name: `etcd-${i}`, client, peer: client + 1 };
  });
  for (const { client, peer } of ports) {
    for (const port of [client, peer]) {
      if (!(await portFree(port))) {
        throw new Error(
          `127.0.0.1:${port} is in use (an etcd left by an interrupted bench?): ` +
            'the bench stops only the processes it started',
        );
      }
    }
  }
  const initialCluster = ports.map((p) => `${p.name}=http://127.0.0.1:${p.peer}`).join(',');
  const token = `dht-bench-${process.pid}-${Date.now()}`;
  const members: EtcdMember[] = [];
  const t0 = performance.now();
  try {
    for (const p of ports) {
      const clientUrl = `http://127.0.0.1:${p.client}`;
      const peerUrl = `http://127.0.0.1:${p.peer}`;
      // Only placement flags: sync, snapshot, heartbeat and election settings are etcd's own.
      const args = [
        `--name=${p.name}`,
        `--data-dir=${path.join(dataRoot, p.name)}`,
        `--listen-client-urls=${clientUrl}`,
        `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-token=${token}`,
        '--initial-cluster-state=new',
        '--logger=zap',
        '--log-outputs=stderr',
        '--log-level=warn',
      ];
      const child = track(spawn(etcd.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
      const log: string[] = [];
      readline.createInterface({ input: child.stderr! }).on('line', (line) => {
        log.push(line);
        if (log.length > ETCD_LOG_LINES_KEPT) log.shift();
      });
      // A spawn error (not executable) surfaces as an exit, which the readiness wait reports.
      child.once('error', (err) => log.push(`spawn failed: ${err.message}`));
      members.push({ name: p.name, clientUrl, child, log });
    }
    await waitUntilHealthy(members, readyTimeoutMs);
    const readyMs = performance.now() - t0;
    const clients: Etcd3[] = [];
    const cluster: EtcdCluster = {
      members,
      pids: () => members.map((m) => pidOf(m.child)),
      client: async () => {
        const { Etcd3: Client } = await import('etcd3');
        const c = new Client({
          hosts: members.map((m) => m.clientUrl),
          defaultCallOptions: (context) =>
            context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS },
        });
        clients.push(c);
        return c;
      },
      description: () => ({
        version: etcd.version,
        binary: etcd.binary,
        members: members.length,
        settings:
          "etcd's defaults (WAL fsynced before an entry is acknowledged, " +
          'heartbeat 100 ms, election 1,000 ms, snapshot every 100,000 entries)',
        clientUrls: members.map((m) => m.clientUrl),
        readyMs,
      }),
    };
    try {
      return await body(cluster);
    } finally {
      for (const c of clients) c.close();
    }
  } finally {
    await Promise.all(members.map((m) => terminateChild(m.child, ETCD_STOP_GRACE_MS)));
  }
}

/** Poll every member's /health until all say so; throws on a member's exit or at the deadline. */
async function waitUntilHealthy(members: readonly EtcdMember[], timeoutMs: number): Promise<void> {
  const t0 = performance.now();
  const healthy = new Set<string>();
  let last = 'no answer';
  for (let polls = 0; polls < ETCD_READY_POLLS_MAX; polls++) {
    for (const member of members) {
      const { child } = member;
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(
          `${member.name} exited (${child.exitCode ?? child.signalCode}) before it was ready: ` +
            (member.log.slice(-5).join(' | ') || 'no log'),
        );
      }
      if (healthy.has(member.name)) continue;
      try {
        const body = await httpGet(`${member.clientUrl}/health`, ETCD_HEALTH_TIMEOUT_MS);
        if ((JSON.parse(body) as { health?: unknown }).health === 'true') healthy.add(member.name);
        else last = `${member.name}: ${body.trim()}`;
      } catch (err) {
        last = `${member.name}: ${errorMessage(err)}`;
      }
    }
    if (healthy.size === members.length) return;
    if (performance.now() - t0 > timeoutMs) break;
    await sleep(ETCD_READY_POLL_MS);
  }
  throw new Error(`etcd not healthy after ${timeoutMs} ms (last: ${last})`);
}

function httpGet(url: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { timeout: timeoutMs }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (d: string) => (body += d));
      response.on('end', () => resolve(body));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

/** Whether 127.0.0.1:port can be listened on right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

function pidOf(child: ChildProcess): number {
  const pid = child.pid;
  if (pid === undefined) throw new Error('a started process has a PID');
  return pid;
}

// ---- tables --------------------------------------------------------------------------------------

export function etcdTables(r: EtcdResult): Table[] {
  if (r.skipped) {
    return [
      {
        title: 'etcd side by side: SKIPPED',
        header: ['why', 'to run it'],
        rows: [[r.reason, r.install]],
      },
    ];
  }
  const opName = (c: { op: PeerOp; system: PeerSystem }): string =>
    c.system === 'etcd' ? OP_NAMES[c.op].etcd : OP_NAMES[c.op].dht;
  const goal = r.goal;
  return [
    {
      title:
        `etcd ${r.etcd.version} (${r.etcd.members} members, ${r.etcd.settings}) vs dht ` +
        `(3 servers, durable and in-memory): ${fmt(r.keysPicked)} keys of ${r.valueBytes} B, ` +
        `${fmt(r.durationMs)} ms per case after ${fmt(r.warmupMs)} ms of warm-up, on ` +
        `${r.dataDir.filesystem}; CPU ms/op: the measured system's processes, and the client`,
      header: [
        'op',
        'conc',
        'system',
        'ops/s',
        'p50 ms',
        'p99 ms',
        'p99.9 ms',
        'srv CPU',
        'cli CPU',
        'other cores',
        'errors',
      ],
      rows: r.cases.map((c) => [
        opName(c),
        String(c.concurrency),
        c.system,
        fmt(c.opsPerSec),
        fmt(c.p50Ms, 2),
        fmt(c.p99Ms, 2),
        fmt(c.p999Ms, 2),
        fmt(c.serverCpuMsPerOp, 3),
        fmt(c.clientCpuMsPerOp, 3),
        fmt(c.otherCores, 2),
        String(c.errors),
      ]),
    },
    {
      title:
        'dht over etcd, row by row (ops/s: above 1 is dht ahead; latencies: below 1 is dht ahead); ' +
        `goal: dht durable ahead on ops/s in every row: ${goal.aheadOnOpsPerSec} of ${goal.rows} ` +
        `(${goal.met ? 'met' : 'not met'}); ahead on p50, p99 and p99.9 at once: ` +
        `${goal.aheadOnLatency} of ${goal.rows}`,
      header: ['op', 'conc', 'dht', 'ops/s x', 'p50 x', 'p99 x', 'p99.9 x', 'ahead'],
      rows: r.ratios.map((x) => [
        `${OP_NAMES[x.op].dht}/${OP_NAMES[x.op].etcd.split(' ')[0]}`,
        String(x.concurrency),
        x.storage,
        fmt(x.opsPerSec, 2),
        fmt(x.p50, 2),
        fmt(x.p99, 2),
        fmt(x.p999, 2),
        x.aheadOnOpsPerSec ? (x.aheadOnLatency ? 'yes' : 'ops/s') : 'no',
      ]),
    },
    {
      title: 'etcd comparison set-up',
      header: ['measure', 'value'],
      rows: [
        ['etcd members: first spawn to all healthy', `${fmt(r.etcd.readyMs)} ms`],
        ...(['etcd', 'dht durable', 'dht in-memory'] as const).map((system) => {
          const p = r.preload[system];
          return [
            `preload ${system}: ${fmt(r.keys)} keys at c=${r.preloadConcurrency}`,
            `${fmt(p.keysLoaded)} loaded, ${fmt(p.opsPerSec)}/s, ${p.errors} errors`,
          ];
        }),
        ['keys loaded in all three (reads and writes pick among these)', fmt(r.keysPicked)],
        [
          `cores used while idle (${fmt(r.idleMs)} ms): etcd, dht durable, dht in-memory`,
          (['etcd', 'dht durable', 'dht in-memory'] as const)
            .map((system) => fmt(r.idleCores[system], 3))
            .join(', '),
        ],
        [
          '1-min load average: section start, end',
          `${fmt(r.loadAverage.before, 2)}, ${fmt(r.loadAverage.after, 2)}`,
        ],
      ],
    },
  ];
}
