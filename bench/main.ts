// `npm run bench`: runs the bench sections in order, prints a table per section to stdout and
// writes bench/results.json. `--quick` shortens every section (well under a minute in all).
//
// A section is a function from the run's settings to its JSON figures and its printed tables.
// To add one, write `bench/<name>.ts` exporting `measure...(options)` and `...Tables(result)`,
// then replace its TODO(section) placeholder in SECTIONS below. A section that starts processes
// uses startChild/killChild from ./stats (killed by PID in `finally`, and on SIGINT by main).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ALLOCATOR_FULL, ALLOCATOR_QUICK, allocatorTables, measureAllocator } from './allocator';
import { measureRpcBaseline, RPC_FULL, RPC_QUICK, rpcTables } from './rpc-baseline';
import { formatTable, killAllChildrenNow, runningChildren, type Table } from './stats';

const ROOT = path.resolve(__dirname, '..', '..');
const RESULTS_PATH_DEFAULT = path.join(ROOT, 'bench', 'results.json');

export interface SectionSettings {
  readonly quick: boolean;
}

export interface SectionOutcome {
  /** JSON-serialisable figures; null while the section is not implemented. */
  readonly data: unknown;
  readonly tables: readonly Table[];
}

export interface Section {
  /** The key in results.json: `rpc` and `allocator` at the top level, the rest in `sections`. */
  readonly name: string;
  readonly title: string;
  readonly run: (settings: SectionSettings) => Promise<SectionOutcome>;
}

const notYet = (): Promise<SectionOutcome> => Promise.resolve({ data: null, tables: [] });

/** In the order they run. Sections still to come report null. */
export const SECTIONS: readonly Section[] = [
  {
    name: 'rpc',
    title: 'RPC baseline (lean undici/node:http vs our axios/express shell)',
    run: async ({ quick }) => {
      const result = await measureRpcBaseline(quick ? RPC_QUICK : RPC_FULL);
      return { data: result, tables: rpcTables(result) };
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
  // TODO(section): sdk — getr/setr through the client SDK against a local cluster (view leader +
  // servers as child processes), concurrency 1 and 64, req/s and p50/p99/p99.9 as ratios
  // against rpc.lean and rpc.ours.
  { name: 'sdk', title: 'SDK getr/setr (to come)', run: notYet },
  // TODO(section): cli — wall time of one bin/dht-client invocation (process start included).
  { name: 'cli', title: 'CLI invocation (to come)', run: notYet },
  // TODO(section): rebalancing — time and bytes to rebalance N keys on a join and on a leave,
  // against the allocator's optimal copies moved.
  { name: 'rebalancing', title: 'Rebalancing (to come)', run: notYet },
  // TODO(section): memory — server RSS per stored key/value byte.
  { name: 'memory', title: 'Memory (to come)', run: notYet },
  // TODO(section): failover — time from a server's death to the view without it and to the
  // first successful setr on its keys.
  { name: 'failover', title: 'Failover (to come)', run: notYet },
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
  readonly rpc: unknown;
  readonly allocator: unknown;
  readonly sections: Readonly<Record<string, unknown>>;
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('bench')
    .usage('$0 [--quick] [--only NAME,...] [--out FILE]')
    .option('quick', {
      type: 'boolean',
      default: false,
      describe: 'short runs (well under a minute in all)',
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

  const settings: SectionSettings = { quick: argv.quick };
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
    const outcome = await section.run(settings);
    results[section.name] = outcome.data;
    if (outcome.tables.length === 0) {
      process.stdout.write(`${section.title}: not measured\n\n`);
    }
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
}

if (require.main === module) {
  main()
    .then(() => process.exit(0))
    .catch((err: unknown) => {
      killAllChildrenNow();
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}\n`);
      process.exit(1);
    });
}
