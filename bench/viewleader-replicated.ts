// The replicated view leader (3 members, `dht-viewleader --peers`) against one view leader alone,
// both keeping their state on disk (the single one's synced state store, each member's synced
// Raft log), measured in the same run, one after the other:
//
// - query_servers, closed loop at c=1 and c=16 through the SDK (DhtClient finds the leader;
//   every answer of the replicated one waits for a read index: a round to a majority);
// - a join: a heartbeat from a new server ID, timed until it is answered, and the joined ID
//   checked in the view it answers with (the view change is durable, and for the replicated one
//   committed by a majority, before that answer); next to it a heartbeat that changes nothing;
// - the cost of being there: CPU time of the view leader's processes (all members) while the
//   servers heartbeat every HEARTBEAT_LOAD_INTERVAL_MS, as the demo's servers do, and nothing else
//   happens (a replicated leader confirms each heartbeat's answer with a read index, and ticks
//   its followers every RAFT_TICK_MS);
// - failover (replicated only): the leading member SIGKILLed, then the time until query_servers
//   is first answered by the new leader, polled every FAILOVER_POLL_MS at each surviving member,
//   and the time an SDK query_servers started at the kill takes (it finds the new leader itself,
//   waiting out the election). The killed member is restarted on its log and caught up before
//   the next kill. For the single view leader, the same SIGKILL followed at once by a restart on
//   its data directory (what a supervisor could do at best) is timed the same way.
//
// The "servers" are the bench itself: heartbeats with made-up IDs and addresses nobody listens
// on (a new address is never probed). The failure timeout is long (FAILURE_TIMEOUT_S), so none
// of them leaves during the section and every view change is a join the bench made.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DhtClient } from '../client/sdk';
import type { LocalCluster } from '../demo/cluster';
import { assert } from '../lib/assert';
import { DhtError } from '../lib/errors';
import { call } from '../lib/http-client';
import { ViewLeaderApi } from '../lib/messages';
import { ViewLeaderGroup } from '../lib/view-leader-group';
import {
  cpuSeconds,
  fmt,
  runLoad,
  sleep,
  summarize,
  withCluster,
  type LatencySummary,
  type Table,
} from './stats';

export interface ViewLeaderBenchOptions {
  readonly members: number;
  /** Servers joined (unmeasured) before the figures: the view query_servers answers with. */
  readonly servers: number;
  readonly concurrencies: readonly number[];
  readonly queryDurationMs: number;
  readonly queryWarmupMs: number;
  readonly queryOpsMax: number;
  /** Joins timed per variant, one at a time; as many heartbeats that change nothing. */
  readonly joins: number;
  /** Leaders killed (replicated), restarts timed (single). */
  readonly kills: number;
  /** How long the servers heartbeat while the view leader's CPU time is measured. */
  readonly heartbeatLoadMs: number;
}

export const VIEWLEADER_FULL: ViewLeaderBenchOptions = {
  members: 3,
  servers: 4,
  concurrencies: [1, 16],
  queryDurationMs: 4_000,
  queryWarmupMs: 500,
  queryOpsMax: 500_000,
  joins: 100,
  kills: 8,
  heartbeatLoadMs: 10_000,
};
export const VIEWLEADER_QUICK: ViewLeaderBenchOptions = {
  members: 3,
  servers: 4,
  concurrencies: [1, 16],
  queryDurationMs: 1_000,
  queryWarmupMs: 200,
  queryOpsMax: 100_000,
  joins: 20,
  kills: 2,
  heartbeatLoadMs: 2_000,
};

/** Long enough that no made-up server leaves during the section. */
const FAILURE_TIMEOUT_S = 300;
/** Unused (the section starts no server), but part of a cluster's timings. */
const HEARTBEAT_INTERVAL_S = 1;
const RPC_TIMEOUT_MS = 2_000;
/** Failover: each surviving member is asked this often; the resolution of the figure. */
const FAILOVER_POLL_MS = 10;
/** Failover: a poll's request gives up after this long (a member busy electing). */
const FAILOVER_POLL_TIMEOUT_MS = 500;
/** Longer than any failover or restart may take: past it the section fails. */
const FAILOVER_WAIT_MS = 20_000;
/** After a restarted member caught up, before the next kill: its election timer settles. */
const BETWEEN_KILLS_MS = 500;
/** Each server's heartbeat interval during the CPU measurement (the demo's 0.2 s). */
const HEARTBEAT_LOAD_INTERVAL_MS = 200;
/** The made-up servers' addresses: 127.0.0.1 ports from here, one per join (nobody listens). */
const FAKE_PORT_FIRST = 20_000;

export type Variant = 'single' | 'replicated';

export interface QueryFigure {
  readonly concurrency: number;
  readonly opsPerSec: number;
  readonly errors: number;
  readonly latency: LatencySummary;
}

export interface VariantFigures {
  readonly query: readonly QueryFigure[];
  /** A heartbeat from a new ID, until answered with a view that holds it. */
  readonly join: LatencySummary;
  /** A heartbeat from a server already in the view: nothing changes. */
  readonly heartbeat: LatencySummary;
  /** Epoch after the joins (the made-up servers' joins, one epoch each). */
  readonly epoch: number;
  /** CPU time of the view leader's processes per second of heartbeats alone (1 = one core). */
  readonly heartbeatLoadCores: number;
  readonly heartbeatLoadHeartbeats: number;
}

export interface Recovery {
  /** SIGKILL to the first query_servers answered, polled at every live member. */
  readonly firstAnswer: LatencySummary;
  /** An SDK query_servers started right after the SIGKILL, until it returned. */
  readonly sdk: LatencySummary;
  /** Term of the leader after each kill (replicated), or 0. */
  readonly terms: readonly number[];
  /** True iff no answer after a kill showed an epoch below the one before it. */
  readonly epochKept: boolean;
}

export interface ViewLeaderBenchResult {
  readonly members: number;
  readonly servers: number;
  readonly failureTimeoutS: number;
  readonly failoverPollMs: number;
  readonly heartbeatLoadIntervalMs: number;
  readonly variants: Readonly<Record<Variant, VariantFigures>>;
  /** The replicated view leader's failover: the leading member SIGKILLed. */
  readonly failover: Recovery;
  /** The single view leader SIGKILLed and restarted at once on its data directory. */
  readonly restart: Recovery;
}

export async function measureViewLeader(
  options: ViewLeaderBenchOptions,
): Promise<ViewLeaderBenchResult> {
  assert(options.kills >= 1 && options.kills <= 100, 'a bounded count of kills');
  assert(options.joins >= 1 && options.joins <= 10_000, 'a bounded count of joins');
  const single = await runVariant('single', options);
  const replicated = await runVariant('replicated', options);
  return {
    members: options.members,
    servers: options.servers,
    failureTimeoutS: FAILURE_TIMEOUT_S,
    failoverPollMs: FAILOVER_POLL_MS,
    heartbeatLoadIntervalMs: HEARTBEAT_LOAD_INTERVAL_MS,
    variants: { single: single.figures, replicated: replicated.figures },
    failover: replicated.recovery,
    restart: single.recovery,
  };
}

async function runVariant(
  variant: Variant,
  options: ViewLeaderBenchOptions,
): Promise<{ figures: VariantFigures; recovery: Recovery }> {
  // Both variants keep their state on disk: a member cannot run in memory, and the single one
  // must pay for its syncs too for the comparison to be fair.
  const dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), `dht-bench-vl-${variant}-`));
  const removeDataRoot = (): void => fs.rmSync(dataRoot, { recursive: true, force: true });
  // Interrupted (bench/main.ts kills the children and exits on SIGINT): no directory left behind.
  process.once('exit', removeDataRoot);
  try {
    return await withCluster(
      { failureTimeoutS: FAILURE_TIMEOUT_S, heartbeatIntervalS: HEARTBEAT_INTERVAL_S, dataRoot },
      () => {},
      async (cluster) => {
        if (variant === 'single') await cluster.startViewLeader();
        else await cluster.startViewLeaderGroup(options.members);
        const figures = await measureVariant(cluster, options);
        const recovery =
          variant === 'single'
            ? await measureRestarts(cluster, options.kills)
            : await measureFailovers(cluster, options.kills);
        return { figures, recovery };
      },
    );
  } finally {
    process.removeListener('exit', removeDataRoot);
    removeDataRoot();
  }
}

async function measureVariant(
  cluster: LocalCluster,
  options: ViewLeaderBenchOptions,
): Promise<VariantFigures> {
  // As a server calls it: one group over every member, following not_leader to the leader.
  const group = new ViewLeaderGroup(cluster.viewLeaderAddress.split(','), RPC_TIMEOUT_MS);
  let port = FAKE_PORT_FIRST;
  const join = async (): Promise<{ serverId: string; address: string; epoch: number }> => {
    const serverId = randomUUID();
    const address = `127.0.0.1:${port++}`;
    const answer = await group.call(ViewLeaderApi.heartbeat, { serverId, address });
    if (!answer.view.servers.some((s) => s.id === serverId)) {
      throw new Error(`the view answered to ${serverId}'s join does not hold it`);
    }
    return { serverId, address, epoch: answer.epoch };
  };
  const members: { serverId: string; address: string }[] = [];
  for (let i = 0; i < options.servers; i++) members.push(await join());

  const client = new DhtClient({
    viewLeader: cluster.viewLeaderAddress,
    timeoutMs: RPC_TIMEOUT_MS,
  });
  const query: QueryFigure[] = [];
  for (const concurrency of options.concurrencies) {
    const op = (): Promise<unknown> => client.queryServers();
    await runLoad({
      concurrency,
      durationMs: options.queryWarmupMs,
      maxOps: options.queryOpsMax,
      op,
    });
    const load = await runLoad({
      concurrency,
      durationMs: options.queryDurationMs,
      maxOps: options.queryOpsMax,
      op,
    });
    query.push({
      concurrency,
      opsPerSec: load.opsPerSec,
      errors: load.errors,
      latency: load.latency,
    });
  }

  const joinMs = new Float64Array(options.joins);
  const heartbeatMs = new Float64Array(options.joins);
  let epoch = 0;
  for (let i = 0; i < options.joins; i++) {
    const t0 = performance.now();
    const joined = await join();
    joinMs[i] = performance.now() - t0;
    assert(joined.epoch > epoch, 'every join installs a newer epoch');
    epoch = joined.epoch;
    const { serverId, address } = members[i % members.length];
    const t1 = performance.now();
    const answer = await group.call(ViewLeaderApi.heartbeat, { serverId, address, epoch });
    heartbeatMs[i] = performance.now() - t1;
    assert(answer.epoch === epoch, 'a heartbeat from a member changes nothing');
  }
  const load = await heartbeatLoad(cluster, group, members, options.heartbeatLoadMs, epoch);
  return {
    query,
    join: summarize(joinMs),
    heartbeat: summarize(heartbeatMs),
    epoch,
    heartbeatLoadCores: load.cores,
    heartbeatLoadHeartbeats: load.heartbeats,
  };
}

/**
 * Every server in `members` heartbeats every HEARTBEAT_LOAD_INTERVAL_MS for `durationMs`; the
 * view leader's processes' CPU time over that window, per second.
 */
async function heartbeatLoad(
  cluster: LocalCluster,
  group: ViewLeaderGroup,
  members: readonly { serverId: string; address: string }[],
  durationMs: number,
  epoch: number,
): Promise<{ cores: number; heartbeats: number }> {
  const pids = cluster.viewLeaders.map((m) => {
    assert(m.child.pid !== undefined, 'a running view leader has a PID');
    return m.child.pid;
  });
  const cpuBefore = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const t0 = performance.now();
  let heartbeats = 0;
  await Promise.all(
    members.map(async ({ serverId, address }) => {
      // Bounded by time; each beat waits for its answer, as a server's does.
      while (performance.now() - t0 < durationMs) {
        const started = performance.now();
        await group.call(ViewLeaderApi.heartbeat, { serverId, address, epoch });
        heartbeats++;
        await sleep(Math.max(0, HEARTBEAT_LOAD_INTERVAL_MS - (performance.now() - started)));
      }
    }),
  );
  const elapsedS = (performance.now() - t0) / 1000;
  const cpuAfter = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  return { cores: (cpuAfter - cpuBefore) / elapsedS, heartbeats };
}

/** The leading member SIGKILLed `kills` times; each time restarted and caught up after. */
async function measureFailovers(cluster: LocalCluster, kills: number): Promise<Recovery> {
  const firstAnswerMs = new Float64Array(kills);
  const sdkMs = new Float64Array(kills);
  const terms: number[] = [];
  let epochKept = true;
  for (let k = 0; k < kills; k++) {
    const leader = await cluster.waitForLeader();
    const epochBefore = leader.status.epoch;
    const client = new DhtClient({
      viewLeader: cluster.viewLeaderAddress,
      timeoutMs: RPC_TIMEOUT_MS,
    });
    await client.queryServers(); // the SDK now asks the leader first, as a client in use would
    const t0 = performance.now();
    await cluster.killViewLeader(leader.member);
    const survivors = cluster.viewLeaders.filter((m) => m !== leader.member);
    const [polled, sdk] = await Promise.all([
      pollFirstAnswer(
        survivors.map((m) => m.address),
        t0,
      ),
      sdkFirstAnswer(client, t0),
    ]);
    firstAnswerMs[k] = polled.elapsedMs;
    sdkMs[k] = sdk.elapsedMs;
    if (polled.epoch < epochBefore || sdk.epoch < epochBefore) epochKept = false;
    const next = await cluster.waitForLeader();
    terms.push(next.status.term);
    await cluster.restartViewLeader(leader.member);
    await waitForCatchUp(cluster, leader.member.address);
    await sleep(BETWEEN_KILLS_MS);
  }
  return { firstAnswer: summarize(firstAnswerMs), sdk: summarize(sdkMs), terms, epochKept };
}

/** The single view leader SIGKILLed and at once restarted on its data, `kills` times. */
async function measureRestarts(cluster: LocalCluster, kills: number): Promise<Recovery> {
  const firstAnswerMs = new Float64Array(kills);
  const sdkMs = new Float64Array(kills);
  let epochKept = true;
  for (let k = 0; k < kills; k++) {
    const [alone] = cluster.viewLeaders;
    const client = new DhtClient({ viewLeader: alone.address, timeoutMs: RPC_TIMEOUT_MS });
    const epochBefore = (await client.queryServers()).epoch;
    const t0 = performance.now();
    await cluster.killViewLeader(alone);
    // Restarted at once; meanwhile both askers find nothing listening and ask again.
    const [, polled, sdk] = await Promise.all([
      cluster.restartViewLeader(alone),
      pollFirstAnswer([alone.address], t0),
      sdkFirstAnswer(client, t0),
    ]);
    firstAnswerMs[k] = polled.elapsedMs;
    sdkMs[k] = sdk.elapsedMs;
    if (polled.epoch < epochBefore || sdk.epoch < epochBefore) epochKept = false;
    await sleep(BETWEEN_KILLS_MS);
  }
  return { firstAnswer: summarize(firstAnswerMs), sdk: summarize(sdkMs), terms: [], epochKept };
}

interface Answered {
  readonly elapsedMs: number;
  readonly epoch: number;
}

/** Ask every member in `members` every FAILOVER_POLL_MS until one answers query_servers. */
async function pollFirstAnswer(members: readonly string[], t0: number): Promise<Answered> {
  const polls = Math.ceil(FAILOVER_WAIT_MS / FAILOVER_POLL_MS);
  for (let poll = 0; poll < polls && performance.now() - t0 < FAILOVER_WAIT_MS; poll++) {
    const answers = await Promise.all(
      members.map((address) =>
        call(address, ViewLeaderApi.queryServers, {}, { timeoutMs: FAILOVER_POLL_TIMEOUT_MS }).then(
          (view) => ({ at: performance.now(), epoch: view.epoch }),
          () => undefined,
        ),
      ),
    );
    const first = answers
      .filter((a): a is { at: number; epoch: number } => a !== undefined)
      .sort((a, b) => a.at - b.at)[0];
    if (first !== undefined) return { elapsedMs: first.at - t0, epoch: first.epoch };
    await sleep(FAILOVER_POLL_MS);
  }
  throw new Error(`no member answered query_servers within ${FAILOVER_WAIT_MS} ms of the kill`);
}

/** One SDK query_servers (it waits out an election itself), asked again if it gives up. */
async function sdkFirstAnswer(client: DhtClient, t0: number): Promise<Answered> {
  for (;;) {
    try {
      const view = await client.queryServers();
      return { elapsedMs: performance.now() - t0, epoch: view.epoch };
    } catch (err) {
      if (!(err instanceof DhtError) || performance.now() - t0 > FAILOVER_WAIT_MS) throw err;
      await sleep(FAILOVER_POLL_MS);
    }
  }
}

/** Until the member at `address` follows the leader and has applied all it has committed. */
async function waitForCatchUp(cluster: LocalCluster, address: string): Promise<void> {
  const t0 = performance.now();
  while (performance.now() - t0 < FAILOVER_WAIT_MS) {
    const statuses = await cluster.viewLeaderStatus();
    const member = statuses.find((s) => s.address === address);
    const leader = statuses.find((s) => s.role === 'leader');
    if (
      member?.role === 'follower' &&
      leader !== undefined &&
      member.term === leader.term &&
      member.appliedIndex >= leader.commitIndex
    ) {
      return;
    }
    await sleep(FAILOVER_POLL_MS * 5);
  }
  throw new Error(`${address} did not catch up with the leader within ${FAILOVER_WAIT_MS} ms`);
}

export function viewLeaderTables(r: ViewLeaderBenchResult): Table[] {
  const { single, replicated } = r.variants;
  const ratio = (a: number, b: number, decimals = 2): string => fmt(a / b, decimals);
  const ms = (value: number): string => fmt(value, 2);
  const rows: string[][] = single.query.map((s, i) => {
    const q = replicated.query[i];
    assert(q.concurrency === s.concurrency, 'the same concurrencies in both variants');
    return [
      'query_servers',
      String(s.concurrency),
      fmt(s.opsPerSec),
      fmt(q.opsPerSec),
      ratio(q.opsPerSec, s.opsPerSec),
      ms(s.latency.p50Ms),
      ms(q.latency.p50Ms),
      ratio(q.latency.p50Ms, s.latency.p50Ms, 1),
      ms(s.latency.p99Ms),
      ms(q.latency.p99Ms),
      fmt(s.errors + q.errors),
    ];
  });
  const sequential = (label: string, s: LatencySummary, q: LatencySummary): string[] => [
    label,
    '1',
    fmt(1000 / s.meanMs),
    fmt(1000 / q.meanMs),
    ratio(s.meanMs, q.meanMs),
    ms(s.p50Ms),
    ms(q.p50Ms),
    ratio(q.p50Ms, s.p50Ms, 1),
    ms(s.p99Ms),
    ms(q.p99Ms),
    '0',
  ];
  rows.push(
    sequential('join (heartbeat, new ID)', single.join, replicated.join),
    sequential('heartbeat (no change)', single.heartbeat, replicated.heartbeat),
  );

  const recovery = (label: string, figure: LatencySummary): string[] => [
    label,
    fmt(figure.samples),
    fmt(figure.p50Ms / 1000, 2),
    fmt(figure.maxMs / 1000, 2),
  ];
  return [
    {
      title:
        `View leader: ${r.members} members (Raft) vs one alone, both on disk; ` +
        `${r.servers} servers in the view while query_servers runs, then ` +
        `${fmt(single.join.samples)} joins, each followed by a heartbeat from one of the first ` +
        `${r.servers} (ops/s of these sequential rows: 1 / mean latency)`,
      header: [
        'operation',
        'conc',
        'single ops/s',
        'repl ops/s',
        'repl/single',
        'single p50 ms',
        'repl p50 ms',
        'p50 repl/single',
        'single p99 ms',
        'repl p99 ms',
        'errors',
      ],
      rows,
    },
    {
      title:
        `View leader CPU (all its processes, user + system) while ${r.servers} servers heartbeat ` +
        `every ${r.heartbeatLoadIntervalMs} ms and nothing else happens`,
      header: ['view leader', 'heartbeats', 'cores'],
      rows: [
        ['single', fmt(single.heartbeatLoadHeartbeats), fmt(single.heartbeatLoadCores, 3)],
        [
          `replicated (${r.members} members)`,
          fmt(replicated.heartbeatLoadHeartbeats),
          fmt(replicated.heartbeatLoadCores, 3),
        ],
        ['repl/single', '', ratio(replicated.heartbeatLoadCores, single.heartbeatLoadCores, 1)],
      ],
    },
    {
      title:
        `View leader recovery: SIGKILL to the first query_servers answered ` +
        `(polled every ${r.failoverPollMs} ms at each live member; the SDK: one query_servers ` +
        `started at the kill); leader terms after the kills: ${r.failover.terms.join(', ')}; ` +
        `epoch never back: ${r.failover.epochKept && r.restart.epochKept ? 'yes' : 'NO'}`,
      header: ['case', 'kills', 'p50 s', 'max s'],
      rows: [
        recovery(`replicated: leader killed, new leader answers`, r.failover.firstAnswer),
        recovery(`replicated: leader killed, SDK query_servers`, r.failover.sdk),
        recovery(`single: killed, restarted at once, answers`, r.restart.firstAnswer),
        recovery(`single: killed, restarted at once, SDK`, r.restart.sdk),
      ],
    },
  ];
}
