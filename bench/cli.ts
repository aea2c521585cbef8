// The command-line client: wall time of one `bin/dht-client getr KEY`, process start included,
// against a one-server cluster. The baseline is `node -e ''` on the same machine in the same
// run: what starting any Node process costs here. The difference is what loading our modules
// (yargs, axios, zod, xxhash-wasm) and the two RPCs (query_servers, then the read) cost.

import path from 'node:path';
import { DhtClient } from '../client/sdk';
import { assert } from '../lib/assert';
import { initHashing } from '../lib/hash';
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
const CLI_KEY = 'cli-bench-key';
const CLI_VALUE = 'cli-bench-value';

export interface CliTiming {
  readonly command: string;
  readonly runs: number;
  readonly medianMs: number;
  readonly minMs: number;
  readonly maxMs: number;
}

export interface CliResult {
  readonly getr: CliTiming;
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
  return withCluster(
    CLI_TIMINGS,
    () => {},
    async (cluster) => {
      const leader = await cluster.startViewLeader();
      await cluster.startServer();
      await waitForView(leader.address, settled(1), options.settleTimeoutMs, 50);
      await new DhtClient({ viewLeader: leader.address }).setr(CLI_KEY, CLI_VALUE);

      const getrArgs = [clientScript(), '--viewleader', leader.address, 'getr', CLI_KEY];
      const check = (run: ProcessRun): void => {
        if (run.code !== 0 || run.stdout.trim() !== CLI_VALUE) {
          throw new Error(
            `dht-client getr: exit ${run.code ?? run.signal}, stdout '${run.stdout.trim()}', ` +
              `stderr '${run.stderr.trim().slice(0, 200)}'`,
          );
        }
      };
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
  ];
}
