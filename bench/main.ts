// `npm run bench`: runs the bench sections in order, prints a table per section to stdout and
// writes bench/results.json. `--quick` shortens every section (under two minutes in all).
//
// A section is a function from the run's settings to its JSON figures and its printed tables.
// To add one, write `bench/<name>.ts` exporting `measure...(options)` and `...Tables(result)`,
// and list it in SECTIONS below. A section that starts processes uses startChild/killChild,
// runNode or withCluster from ./stats (killed by PID in `finally`, and on SIGINT by main).
//
// A section that throws does not end the run: its entry in results.json becomes
// `{ "error": "message" }`, its table says ERROR, the next section runs. The process exits 0 only
// if every section it ran produced its figures, 1 otherwise (results.json is written either way).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ALLOCATOR_FULL, ALLOCATOR_QUICK, allocatorTables, measureAllocator } from './allocator';
import { CLI_FULL, CLI_QUICK, cliTables, measureCli } from './cli';
import {
  DURABILITY_FULL,
  DURABILITY_QUICK,
  durabilityTables,
  measureDurability,
} from './durability';
import { ETCD_FULL, ETCD_QUICK, etcdTables, measureEtcd } from './etcd';
import { FAILOVER_FULL, FAILOVER_QUICK, failoverTables, measureFailover } from './failover';
import { KV_FULL, KV_QUICK, kvTables, measureKv } from './kv';
import { AUTH_FULL, AUTH_QUICK, authTables, measureAuth } from './auth';
import { measureMemory, MEMORY_FULL, MEMORY_QUICK, memoryTables } from './memory';
import {
  measureRebalancing,
  REBALANCING_FULL,
  REBALANCING_QUICK,
  rebalancingTables,
} from './rebalancing';
import {
  measureRpcBaseline,
  RPC_FULL,
  RPC_QUICK,
  rpcTables,
  type RpcBaseline,
} from './rpc-baseline';
import { measureSdk, SDK_FULL, SDK_QUICK, sdkTables } from './sdk';
import {
  measureViewLeader,
  VIEWLEADER_FULL,
  VIEWLEADER_QUICK,
  viewLeaderTables,
} from './viewleader-replicated';
import {
  errorMessage,
  formatTable,
  killAllChildrenNow,
  runningChildren,
  type Table,
} from './stats';

const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS_PATH_DEFAULT = path.join(ROOT, 'bench', 'results.json');

export interface SectionSettings {
  readonly quick: boolean;
  /** The rpc section's figures once it has run in this process (the baseline of later ratios). */
  readonly rpc: RpcBaseline | undefined;
}

export interface SectionOutcome {
  /** JSON-serialisable figures. */
  readonly data: unknown;
  readonly tables: readonly Table[];
}

export interface Section {
  /** The key in results.json: `rpc` and `allocator` at the top level, the rest in `sections`. */
  readonly name: string;
  readonly title: string;
  readonly run: (settings: SectionSettings) => Promise<SectionOutcome>;
}

/** The quick run's RPC cases are shorter still: the whole quick run stays under two minutes. */
const RPC_IN_QUICK_RUN = { ...RPC_QUICK, durationMs: 1_000, warmupMs: 200 };

/** In the order they run: the rpc baseline first, since later sections are read against it. */
export const SECTIONS: readonly Section[] = [
  {
    name: 'rpc',
    title: 'RPC baseline (lean undici/node:http vs our node:http shell)',
    run: async ({ quick }) => {
      const result = await measureRpcBaseline(quick ? RPC_IN_QUICK_RUN : RPC_FULL);
      return { data: result, tables: rpcTables(result) };
    },
  },
  {
    name: 'sdk',
    title: 'SDK getr/setr against 3 and 5 servers',
    run: async ({ quick, rpc }) => {
      const result = await measureSdk(quick ? SDK_QUICK : SDK_FULL, rpc);
      return { data: result, tables: sdkTables(result) };
    },
  },
  {
    name: 'kv',
    title: 'The HTTP API: /kv GET and PUT next to SDK getr/setr',
    run: async ({ quick }) => {
      const result = await measureKv(quick ? KV_QUICK : KV_FULL);
      return { data: result, tables: kvTables(result) };
    },
  },
  {
    name: 'auth',
    title: 'The cost of authentication: SDK getr/setr without and with --secret-file',
    run: async ({ quick }) => {
      const result = await measureAuth(quick ? AUTH_QUICK : AUTH_FULL);
      return { data: result, tables: authTables(result) };
    },
  },
  {
    name: 'cli',
    title: 'CLI invocation',
    run: async ({ quick }) => {
      const result = await measureCli(quick ? CLI_QUICK : CLI_FULL);
      return { data: result, tables: cliTables(result) };
    },
  },
  {
    name: 'allocator',
    title: 'Ring allocator (lookup cost, evenness, movement)',
    run: async ({ quick }) => {
      const result = await measureAllocator(quick ? ALLOCATOR_QUICK : ALLOCATOR_FULL);
      return { data: result, tables: allocatorTables(result) };
    },
  },
  {
    name: 'rebalancing',
    title: 'Rebalancing on a leave and a join',
    run: async ({ quick }) => {
      const result = await measureRebalancing(quick ? REBALANCING_QUICK : REBALANCING_FULL);
      return { data: result, tables: rebalancingTables(result) };
    },
  },
  {
    name: 'memory',
    title: 'Server memory per key',
    run: async ({ quick }) => {
      const result = await measureMemory(quick ? MEMORY_QUICK : MEMORY_FULL);
      return { data: result, tables: memoryTables(result) };
    },
  },
  {
    name: 'durability',
    title: 'Durability: durable vs in-memory, syncs per setr, restart, disk and RSS per key',
    run: async ({ quick }) => {
      const result = await measureDurability(quick ? DURABILITY_QUICK : DURABILITY_FULL);
      return { data: result, tables: durabilityTables(result) };
    },
  },
  {
    name: 'etcd',
    title: 'etcd side by side: put/get against setr/getr, dht durable and in-memory',
    run: async ({ quick }) => {
      const result = await measureEtcd(quick ? ETCD_QUICK : ETCD_FULL);
      return { data: result, tables: etcdTables(result) };
    },
  },
  {
    name: 'failover',
    title: 'Failover: downtime of getr and setr when a server is killed',
    run: async ({ quick }) => {
      const result = await measureFailover(quick ? FAILOVER_QUICK : FAILOVER_FULL);
      return { data: result, tables: failoverTables(result) };
    },
  },
  {
    name: 'viewleader',
    title: 'Replicated view leader vs one alone: failover, joins, query_servers',
    run: async ({ quick }) => {
      const result = await measureViewLeader(quick ? VIEWLEADER_QUICK : VIEWLEADER_FULL);
      return { data: result, tables: viewLeaderTables(result) };
    },
  },
];

const TOP_LEVEL_SECTIONS = new Set(['rpc', 'allocator']);

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryBytes: number;
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  readonly osRelease: string;
  readonly date: string;
}

function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryBytes: os.totalmem(),
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    osRelease: os.release(),
    date: new Date().toISOString(),
  };
}

export interface BenchResults {
  readonly machine: Machine;
  readonly quick: boolean;
  readonly elapsedS: number;
  /** Sections that threw; their entries hold `{ "error": message }`. */
  readonly failed: readonly string[];
  readonly rpc: unknown;
  readonly allocator: unknown;
  readonly sections: Readonly<Record<string, unknown>>;
}

async function main(): Promise<number> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('bench')
    .usage('$0 [--quick] [--only NAME,...] [--out FILE]')
    .option('quick', {
      type: 'boolean',
      default: false,
      describe: 'short runs (under two minutes in all)',
    })
    .option('only', {
      type: 'string',
      describe: `comma-separated sections to run (${SECTIONS.map((s) => s.name).join(', ')})`,
    })
    .option('out', { type: 'string', default: RESULTS_PATH_DEFAULT, describe: 'results file' })
    .strict()
    .help()
    .parse();

  const only = argv.only === undefined ? undefined : new Set(argv.only.split(','));
  for (const name of only ?? []) {
    if (!SECTIONS.some((s) => s.name === name)) throw new Error(`--only: no section '${name}'`);
  }

  // Ctrl-C: no child outlives the bench.
  const onSignal = (signal: NodeJS.Signals): void => {
    killAllChildrenNow();
    process.stderr.write(`bench: ${signal}, children killed\n`);
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let rpc: RpcBaseline | undefined;
  const failed: string[] = [];
  const results: Record<string, unknown> = {};
  const started = performance.now();
  const info = machine();
  process.stdout.write(
    `dht bench${argv.quick ? ' --quick' : ''}: ${info.cpus} x ${info.cpuModel}, node ${info.node}\n\n`,
  );
  for (const section of SECTIONS) {
    if (only !== undefined && !only.has(section.name)) {
      results[section.name] = null;
      continue;
    }
    const sectionStart = performance.now();
    process.stderr.write(`bench: ${section.name}...\n`);
    let outcome: SectionOutcome;
    try {
      outcome = await section.run({ quick: argv.quick, rpc });
      if (outcome.data === null || outcome.data === undefined) {
        throw new Error('the section produced no figures');
      }
    } catch (err) {
      // One section's failure (a cluster that would not settle on a slow machine) is recorded,
      // and the run goes on; every process the section started is already dead (its finally).
      failed.push(section.name);
      const message = errorMessage(err);
      process.stderr.write(
        `bench: ${section.name} failed: ${err instanceof Error ? (err.stack ?? message) : message}\n`,
      );
      outcome = {
        data: { error: message },
        tables: [{ title: `${section.title}: ERROR`, header: ['error'], rows: [[message]] }],
      };
    }
    results[section.name] = outcome.data;
    if (section.name === 'rpc' && !failed.includes('rpc')) rpc = outcome.data as RpcBaseline;
    for (const table of outcome.tables) process.stdout.write(`${formatTable(table)}\n\n`);
    process.stderr.write(
      `bench: ${section.name} took ${((performance.now() - sectionStart) / 1000).toFixed(1)} s\n`,
    );
  }

  const sections: Record<string, unknown> = {};
  for (const section of SECTIONS) {
    if (!TOP_LEVEL_SECTIONS.has(section.name)) sections[section.name] = results[section.name];
  }
  const output: BenchResults = {
    machine: info,
    quick: argv.quick,
    elapsedS: (performance.now() - started) / 1000,
    failed,
    rpc: results.rpc ?? null,
    allocator: results.allocator ?? null,
    sections,
  };
  fs.writeFileSync(argv.out, `${JSON.stringify(output, null, 2)}\n`);
  process.stdout.write(
    `wrote ${path.relative(process.cwd(), argv.out) || argv.out} ` +
      `in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
  );
  if (runningChildren() > 0) throw new Error('a section left a child process running');
  if (failed.length > 0) {
    process.stderr.write(`bench: failed sections: ${failed.join(', ')}\n`);
    return 1;
  }
  return 0;
}

if (require.main === module) {
  main()
    .then((code) => process.exit(code))
    .catch((err: unknown) => {
      killAllChildrenNow();
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}\n`);
      process.exit(1);
    });
}
