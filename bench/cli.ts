// The command-line client: wall time of one `bin/dht-client getr KEY`, process start included,
// against a one-server cluster. The baseline is `node -e ''` on the same machine in the same
// run: what starting any Node process costs here. The difference is what loading our modules
// (yargs, zod, xxhash-wasm) and the two RPCs (query_servers, then the read) cost.
//
// Then a script's view of it: PARALLEL_CALLS `getr` started at once against four servers, from
// the first spawn to the last exit; once with every server up, once right after the key's
// primary was SIGKILLed (the view leader, with a long failure timeout, has not noticed yet: every
// call finds the dead primary first in its replicas, and reads from the next).

import path from 'node:path';
import { DhtClient } from '../client/sdk';
import { assert } from '../lib/assert';
import { initHashing } from '../lib/hash';
import { allocateReplicas } from '../lib/ring';
import {
  fmt,
  percentile,
  runNode,
  settled,
  waitForView,
  withCluster,
  type ProcessRun,
  type Table,
} from './stats';

export interface CliOptions {
  /** Invocations timed per command; the median is the figure. */
  readonly runs: number;
  readonly runTimeoutMs: number;
  readonly settleTimeoutMs: number;
}

export const CLI_FULL: CliOptions = { runs: 20, runTimeoutMs: 15_000, settleTimeoutMs: 30_000 };
export const CLI_QUICK: CliOptions = { runs: 5, runTimeoutMs: 15_000, settleTimeoutMs: 30_000 };

const CLI_TIMINGS = { failureTimeoutS: 2, heartbeatIntervalS: 0.2 };
/** What a user's script did: 16 reads at once, on a 2-core machine. */
const PARALLEL_CALLS = 16;
const PARALLEL_SERVERS = 4;
/**
 * One call's time limit in a parallel round: 16 starts share 2 cores, and a machine busy with
 * other work can stretch them far beyond one start's runTimeoutMs.
 */
const PARALLEL_RUN_TIMEOUT_MS = 60_000;
/** Long enough that the view leader keeps the killed server in the view while the calls run. */
const PARALLEL_TIMINGS = { failureTimeoutS: 120, heartbeatIntervalS: 0.5 };
const CLI_KEY = 'cli-bench-key';
const CLI_VALUE = 'cli-bench-value';

export interface CliTiming {
  readonly command: string;
  readonly runs: number;
  readonly medianMs: number;
  readonly minMs: number;
  readonly maxMs: number;
}

export interface ParallelRun {
  readonly calls: number;
  /** From the first spawn to the last exit. */
  readonly wallMs: number;
  /** The slowest call alone, process start included. */
  readonly slowestCallMs: number;
}

export interface CliResult {
  readonly getr: CliTiming;
  /** PARALLEL_CALLS getr at once, every server up. */
  readonly parallel: ParallelRun;
  /** The same right after the key's primary was SIGKILLed, before the view leader noticed. */
  readonly parallelAfterKill: ParallelRun;
  readonly nodeStartup: CliTiming;
  /** Median getr over median `node -e ''`: 1 would mean our CLI costs nothing over Node. */
  readonly getrOverNodeStartup: number;
  /** Median getr minus median `node -e ''`: what our code costs per invocation. */
  readonly overMs: number;
}

function clientScript(): string {
  return path.resolve(__dirname, '..', '..', 'bin', 'dht-client');
}

export async function measureCli(options: CliOptions): Promise<CliResult> {
  assert(options.runs >= 1, 'at least one run');
  await initHashing();
  const single = await withCluster(
    CLI_TIMINGS,
    () => {},
    async (cluster) => {
      const leader = await cluster.startViewLeader();
      await cluster.startServer();
      await waitForView(leader.address, settled(1), options.settleTimeoutMs, 50);
      await new DhtClient({ viewLeader: leader.address }).setr(CLI_KEY, CLI_VALUE);

      const getrArgs = [clientScript(), '--viewleader', leader.address, 'getr', CLI_KEY];
      const check = (run: ProcessRun): void => checkGetr(run);
      // Interleaved, so that both see the same load on the shared machine; one untimed run each
      // first (the file cache).
      check(await runNode(getrArgs, options.runTimeoutMs));
      await runNode(['-e', ''], options.runTimeoutMs);
      const getr: number[] = [];
      const node: number[] = [];
      for (let i = 0; i < options.runs; i++) {
        const run = await runNode(getrArgs, options.runTimeoutMs);
        check(run);
        getr.push(run.wallMs);
        const bare = await runNode(['-e', ''], options.runTimeoutMs);
        if (bare.code !== 0) throw new Error(`node -e '': exit ${bare.code ?? bare.signal}`);
        node.push(bare.wallMs);
      }
      const g = timing(`bin/dht-client getr ${CLI_KEY}`, getr);
      const n = timing(`node -e ''`, node);
      return {
        getr: g,
        nodeStartup: n,
        getrOverNodeStartup: g.medianMs / n.medianMs,
        overMs: g.medianMs - n.medianMs,
      };
    },
  );
  const { parallel, parallelAfterKill } = await measureParallel(options);
  return { ...single, parallel, parallelAfterKill };
}

async function measureParallel(
  options: CliOptions,
): Promise<{ parallel: ParallelRun; parallelAfterKill: ParallelRun }> {
  return withCluster(
    PARALLEL_TIMINGS,
    () => {},
    async (cluster) => {
      const leader = await cluster.startViewLeader();
      for (let i = 0; i < PARALLEL_SERVERS; i++) await cluster.startServer();
      const { view } = await waitForView(
        leader.address,
        settled(PARALLEL_SERVERS),
        options.settleTimeoutMs,
        50,
      );
      await new DhtClient({ viewLeader: leader.address }).setr(CLI_KEY, CLI_VALUE);
      const args = [clientScript(), '--viewleader', leader.address, 'getr', CLI_KEY];
      const round = async (what: string): Promise<ParallelRun> => {
        const t0 = performance.now();
        const runs = await Promise.all(
          Array.from({ length: PARALLEL_CALLS }, () => runNode(args, PARALLEL_RUN_TIMEOUT_MS)),
        );
        const wallMs = performance.now() - t0;
        for (const run of runs) checkGetr(run, `${what}: `);
        return {
          calls: runs.length,
          wallMs,
          slowestCallMs: Math.max(...runs.map((r) => r.wallMs)),
        };
      };
      const parallel = await round('all servers up');
      const primary = allocateReplicas(CLI_KEY, view)[0];
      const victim = cluster.servers.find((s) => s.address === primary.address);
      assert(victim !== undefined, 'the primary is one of the servers started');
      cluster.killServer(victim);
      const parallelAfterKill = await round('after SIGKILL of the primary');
      // Measured before the view leader noticed, or the figure says nothing about a dead primary.
      const after = await new DhtClient({ viewLeader: leader.address }).queryServers();
      if (after.epoch !== view.epoch) {
        throw new Error(
          'the view changed during the calls: raise PARALLEL_TIMINGS.failureTimeoutS',
        );
      }
      return { parallel, parallelAfterKill };
    },
  );
}

function checkGetr(run: ProcessRun, what = ''): void {
  if (run.code !== 0 || run.stdout.trim() !== CLI_VALUE) {
    throw new Error(
      `${what}dht-client getr: exit ${run.code ?? run.signal}, stdout '${run.stdout.trim()}', ` +
        `stderr '${run.stderr.trim().slice(0, 200)}'`,
    );
  }
}

function timing(command: string, samplesMs: number[]): CliTiming {
  const sorted = Float64Array.from(samplesMs).sort();
  return {
    command,
    runs: sorted.length,
    medianMs: percentile(sorted, 0.5),
    minMs: sorted[0],
    maxMs: sorted[sorted.length - 1],
  };
}

export function cliTables(result: CliResult): Table[] {
  const row = (t: CliTiming, ratio: string): string[] => [
    t.command,
    String(t.runs),
    fmt(t.medianMs, 1),
    fmt(t.minMs, 1),
    fmt(t.maxMs, 1),
    ratio,
  ];
  return [
    {
      title: 'CLI: wall time of one invocation, process start included (one-server cluster)',
      header: ['command', 'runs', 'median ms', 'min ms', 'max ms', 'x node -e'],
      rows: [
        row(result.getr, fmt(result.getrOverNodeStartup, 2)),
        row(result.nodeStartup, '1.00'),
        ['getr - node -e (our modules + 2 RPCs)', '', fmt(result.overMs, 1), '', '', ''],
      ],
    },
    {
      title: `CLI: ${PARALLEL_CALLS} getr started at once (${PARALLEL_SERVERS} servers), first spawn to last exit`,
      header: ['case', 'calls', 'wall ms', 'slowest call ms'],
      rows: [
        parallelRow('every server up', result.parallel),
        parallelRow("right after SIGKILL of the key's primary", result.parallelAfterKill),
      ],
    },
  ];
}

function parallelRow(name: string, run: ParallelRun): string[] {
  return [name, String(run.calls), fmt(run.wallMs, 0), fmt(run.slowestCallMs, 0)];
}
