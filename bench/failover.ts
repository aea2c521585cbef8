// Failover: a continuous stream of getr and setr (half the workers each, one SDK client with a
// cached view and no waiting: every refusal is a failure) while one server of 4 is SIGKILLed.
// Every operation's start, end and outcome is recorded; the downtime of an operation kind is the
// longest interval during which it failed: from the start of the first failed operation of a run
// of failures (in start order) to the start of the next operation that succeeded. It is reported
// for all keys and for the keys that had a replica on the killed server, next to the configured
// failure timeout and the view changes as query_servers showed them.

import { DhtClient } from '../client/sdk';
import { initHashing } from '../lib/hash';
import { DhtError } from '../lib/errors';
import { allocateReplicas } from '../lib/ring';
import { fmt, runLoad, settled, sleep, waitForView, withCluster, type Table } from './stats';

export interface FailoverOptions {
  readonly servers: number;
  readonly keys: number;
  readonly valueBytes: number;
  /** Workers per client variant and operation kind (getr and setr each). */
  readonly workersPerOp: number;
  readonly runMs: number;
  readonly killAtMs: number;
  readonly opsMax: number;
  readonly settleTimeoutMs: number;
}

export const FAILOVER_FULL: FailoverOptions = {
  servers: 4,
  keys: 1_000,
  valueBytes: 100,
  workersPerOp: 2,
  runMs: 10_000,
  killAtMs: 3_000,
  opsMax: 500_000,
  settleTimeoutMs: 30_000,
};
export const FAILOVER_QUICK: FailoverOptions = {
  servers: 4,
  keys: 300,
  valueBytes: 100,
  workersPerOp: 2,
  runMs: 6_000,
  killAtMs: 2_000,
  opsMax: 200_000,
  settleTimeoutMs: 30_000,
};

const FAILOVER_TIMINGS = { failureTimeoutS: 1, heartbeatIntervalS: 0.2 };
const VIEW_POLL_MS = 25;
const ERROR_KINDS_KEPT_MAX = 8;
/**
 * A worker pauses this long after a failed operation, as a client retrying in a loop would: with
 * waitMs 0 a refusal comes back at once, and eight workers retrying without a pause would flood
 * the view leader (each refusal also refreshes the cached view) and starve the 2 cores that the
 * servers' heartbeats and rebalancing need. It is also the resolution of the downtime figures.
 */
const FAILED_OP_PAUSE_MS = 10;

type OpKind = 'getr' | 'setr';

interface OpRecord {
  readonly variant: ClientVariant;
  readonly kind: OpKind;
  readonly affected: boolean;
  readonly startMs: number;
  readonly endMs: number;
  readonly ok: boolean;
}

export interface Downtime {
  /** The longest interval during which this kind failed, in ms (0: it never failed). */
  readonly longestMs: number;
  /** Start of that interval, ms after the SIGKILL (negative: before it). */
  readonly fromKillMs: number | null;
  /** False if the last failures were never followed by a success within the run. */
  readonly recovered: boolean;
  readonly ops: number;
  readonly failed: number;
}

/** The SDK as it is, and with the workaround for a stuck cached view (see docs/performance.md). */
export type ClientVariant = 'sdk' | 'refreshing';

export interface VariantDowntimes {
  readonly getr: Downtime;
  readonly setr: Downtime;
  /** The same, only for keys that had a replica on the killed server. */
  readonly getrAffected: Downtime;
  readonly setrAffected: Downtime;
}

export interface FailoverResult {
  readonly servers: number;
  readonly keys: number;
  /** Workers per client variant and operation kind. */
  readonly workersPerOp: number;
  readonly runMs: number;
  readonly killAtMs: number;
  readonly failedOpPauseMs: number;
  readonly failureTimeoutS: number;
  readonly heartbeatIntervalS: number;
  /** From the SIGKILL to the first query_servers without the killed server. */
  readonly viewChangeMs: number | null;
  /** From the SIGKILL to query_servers rebalancing false with one server fewer. */
  readonly settledMs: number | null;
  /**
   * sdk: one DhtClient (cacheView true, waitMs 0) used as it is. refreshing: another one whose
   * workers call queryServers() after a refusal for rebalancing, which replaces the cached view.
   */
  readonly variants: Readonly<Record<ClientVariant, VariantDowntimes>>;
  /** Failure kinds by count (the first few kinds). */
  readonly failures: Readonly<Record<string, number>>;
}

export async function measureFailover(options: FailoverOptions): Promise<FailoverResult> {
  await initHashing();
  const value = 'f'.repeat(options.valueBytes);
  const keyOf = (i: number): string => `failover-key-${i}`;

  return withCluster(
    FAILOVER_TIMINGS,
    () => {},
    async (cluster) => {
      const leader = await cluster.startViewLeader();
      for (let i = 0; i < options.servers; i++) await cluster.startServer();
      const { view } = await waitForView(
        leader.address,
        settled(options.servers),
        options.settleTimeoutMs,
        50,
      );
      const clients: Record<ClientVariant, DhtClient> = {
        sdk: new DhtClient({ viewLeader: leader.address, cacheView: true, waitMs: 0 }),
        refreshing: new DhtClient({ viewLeader: leader.address, cacheView: true, waitMs: 0 }),
      };
      const preload = await runLoad({
        concurrency: 64,
        durationMs: options.settleTimeoutMs,
        maxOps: options.keys,
        op: (i) => clients.sdk.setr(keyOf(i), value),
      });
      if (preload.errors > 0) {
        throw new Error(`preload: ${preload.errors} setr failed (${preload.firstErrors[0]})`);
      }
      await clients.refreshing.queryServers();

      const victim = cluster.servers[cluster.servers.length - 1];
      const victimId = view.servers.find((s) => s.address === victim.address)?.id;
      const affected = new Uint8Array(options.keys);
      for (let i = 0; i < options.keys; i++) {
        if (allocateReplicas(keyOf(i), view).some((s) => s.id === victimId)) affected[i] = 1;
      }

      const records: OpRecord[] = [];
      const failures = new Map<string, number>();
      const t0 = performance.now();
      const stopAt = t0 + options.runMs;
      const worker =
        (variant: ClientVariant, kind: OpKind, offset: number) =>
        async (i: number): Promise<void> => {
          const client = clients[variant];
          const k = (i * 7919 + offset) % options.keys;
          const startMs = performance.now() - t0;
          let ok = true;
          let refresh = false;
          try {
            if (kind === 'getr') await client.getr(keyOf(k));
            else await client.setr(keyOf(k), value);
          } catch (err) {
            ok = false;
            const reason = err instanceof DhtError ? `${err.kind}/${err.reason ?? '-'}` : 'other';
            const label = `${variant} ${kind}: ${reason}`;
            if (failures.has(label) || failures.size < ERROR_KINDS_KEPT_MAX) {
              failures.set(label, (failures.get(label) ?? 0) + 1);
            }
            refresh = err instanceof DhtError && err.reason === 'rebalancing';
          }
          if (records.length < options.opsMax) {
            records.push({
              variant,
              kind,
              affected: affected[k] === 1,
              startMs,
              endMs: performance.now() - t0,
              ok,
            });
          }
          if (ok) return;
          await sleep(FAILED_OP_PAUSE_MS);
          if (refresh && variant === 'refreshing') {
            await client.queryServers().catch(() => undefined);
          }
        };

      const remaining = (): number => Math.max(1, stopAt - performance.now());
      // The view as query_servers shows it, throughout.
      let killAt = Infinity;
      let viewChangeAt: number | undefined;
      let settledAt: number | undefined;
      const watch = async (): Promise<void> => {
        const before = view.epoch;
        try {
          await waitForView(leader.address, (v) => v.epoch > before, remaining(), VIEW_POLL_MS);
          viewChangeAt = performance.now();
          await waitForView(
            leader.address,
            settled(options.servers - 1, before),
            remaining(),
            VIEW_POLL_MS,
          );
          settledAt = performance.now();
        } catch {
          // Not within the run: reported as null.
        }
      };
      const killer = async (): Promise<void> => {
        await sleep(options.killAtMs);
        killAt = performance.now();
        cluster.killServer(victim);
      };

      const loads: Promise<unknown>[] = [];
      // Each of the four streams starts a quarter of the keys further: no two collide on a key.
      for (const variant of ['sdk', 'refreshing'] as const) {
        for (const kind of ['getr', 'setr'] as const) {
          const offset = loads.length * Math.floor(options.keys / 4);
          loads.push(
            runLoad({
              concurrency: options.workersPerOp,
              durationMs: remaining(),
              maxOps: options.opsMax,
              op: worker(variant, kind, offset),
            }),
          );
        }
      }
      await Promise.all([...loads, killer().then(watch)]);

      const killMs = killAt - t0;
      const downtimes = (variant: ClientVariant): VariantDowntimes => {
        const of = (kind: OpKind, onlyAffected: boolean): Downtime =>
          longestFailure(
            records.filter(
              (r) => r.variant === variant && r.kind === kind && (!onlyAffected || r.affected),
            ),
            killMs,
          );
        return {
          getr: of('getr', false),
          setr: of('setr', false),
          getrAffected: of('getr', true),
          setrAffected: of('setr', true),
        };
      };
      return {
        servers: options.servers,
        keys: options.keys,
        workersPerOp: options.workersPerOp,
        runMs: options.runMs,
        killAtMs: options.killAtMs,
        failedOpPauseMs: FAILED_OP_PAUSE_MS,
        failureTimeoutS: FAILOVER_TIMINGS.failureTimeoutS,
        heartbeatIntervalS: FAILOVER_TIMINGS.heartbeatIntervalS,
        viewChangeMs: viewChangeAt === undefined ? null : viewChangeAt - killAt,
        settledMs: settledAt === undefined ? null : settledAt - killAt,
        variants: { sdk: downtimes('sdk'), refreshing: downtimes('refreshing') },
        failures: Object.fromEntries(failures),
      };
    },
  );
}

/** The longest run of failures in start order, from its first start to the next success. */
export function longestFailure(records: readonly OpRecord[], killMs: number): Downtime {
  const sorted = [...records].sort((a, b) => a.startMs - b.startMs);
  let longestMs = 0;
  let longestFrom: number | null = null;
  let recovered = true;
  let runStart: number | undefined;
  let runEnd = 0;
  let failed = 0;
  for (const r of sorted) {
    if (!r.ok) {
      failed++;
      runStart ??= r.startMs;
      runEnd = Math.max(runEnd, r.endMs);
      continue;
    }
    if (runStart !== undefined) {
      if (r.startMs - runStart > longestMs) {
        longestMs = r.startMs - runStart;
        longestFrom = runStart;
      }
      runStart = undefined;
    }
  }
  if (runStart !== undefined && runEnd - runStart > longestMs) {
    longestMs = runEnd - runStart;
    longestFrom = runStart;
    recovered = false;
  }
  return {
    longestMs,
    fromKillMs: longestFrom === null ? null : longestFrom - killMs,
    recovered,
    ops: sorted.length,
    failed,
  };
}

export function failoverTables(r: FailoverResult): Table[] {
  const row = (label: string, d: Downtime): string[] => [
    label,
    fmt(d.ops),
    fmt(d.failed),
    fmt(d.longestMs / 1000, 2) + (d.recovered ? '' : ' (not recovered)'),
    d.fromKillMs === null ? '-' : fmt(d.fromKillMs / 1000, 2),
  ];
  const rows: string[][] = [];
  for (const variant of ['sdk', 'refreshing'] as const) {
    const v = r.variants[variant];
    const who = variant === 'sdk' ? 'SDK as is' : 'SDK + refresh';
    rows.push(
      row(`${who}: getr, all keys`, v.getr),
      row(`${who}: getr, keys on the killed server`, v.getrAffected),
      row(`${who}: setr, all keys`, v.setr),
      row(`${who}: setr, keys on the killed server`, v.setrAffected),
    );
  }
  return [
    {
      title:
        `Failover: one of ${r.servers} servers SIGKILLed at ${fmt(r.killAtMs / 1000, 1)} s of a ` +
        `${fmt(r.runMs / 1000)} s stream (${r.workersPerOp} getr + ${r.workersPerOp} setr workers ` +
        `per client, waitMs 0, ${r.failedOpPauseMs} ms pause after a failure); failure timeout ` +
        `${r.failureTimeoutS} s; view without it after ${fmt((r.viewChangeMs ?? NaN) / 1000, 2)} s, ` +
        `settled after ${fmt((r.settledMs ?? NaN) / 1000, 2)} s`,
      header: ['client: operations', 'ops', 'failed', 'downtime s', 'from kill s'],
      rows,
    },
    {
      title: 'Failover: failures by kind',
      header: ['failure', 'count'],
      rows: Object.entries(r.failures).map(([label, count]) => [label, fmt(count)]),
    },
  ];
}
