// `npm run test:under-load`: the whole suite, several runs in a row, while CPU hogs keep every core
// busy, to find the waits that assume a quiet machine (issue 13). Bounded: each hog stops by itself
// at its deadline, each run is killed at its own, and only the processes this script started are
// ever signalled (by PID; the suite's jest runs in its own process group, killed as a group).
//
//   npm run test:under-load -- [--runs 3] [--hogs N (default: one per core)] [--run-minutes 15]
//                              [-- jest args...]

import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';

interface Options {
  readonly runs: number;
  readonly hogs: number;
  readonly runMinutes: number;
  readonly jestArgs: readonly string[];
}

const ROOT = path.resolve(__dirname, '../..');
/** A run that takes longer than this is killed and counts as failed. */
const RUN_MINUTES_DEFAULT = 15;
const RUNS_DEFAULT = 3;
const RUNS_MAX = 10;

function parseArgs(argv: readonly string[]): Options {
  const dashes = argv.indexOf('--');
  const own = dashes < 0 ? argv : argv.slice(0, dashes);
  const jestArgs = dashes < 0 ? [] : argv.slice(dashes + 1);
  const value = (flag: string, fallback: number): number => {
    const i = own.indexOf(flag);
    if (i < 0) return fallback;
    const n = Number(own[i + 1]);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number`);
    return n;
  };
  for (let i = 0; i < own.length; i += 2) {
    if (!['--runs', '--hogs', '--run-minutes'].includes(own[i])) {
      throw new Error(`unknown argument ${own[i]} (see the comment at the top of this script)`);
    }
  }
  return {
    runs: Math.min(RUNS_MAX, Math.floor(value('--runs', RUNS_DEFAULT))),
    hogs: Math.floor(value('--hogs', os.cpus().length)),
    runMinutes: value('--run-minutes', RUN_MINUTES_DEFAULT),
    jestArgs,
  };
}

const started = new Set<ChildProcess>();

/** A busy loop that ends by itself at `untilMs`, even if this script is killed with SIGKILL. */
function startHog(untilMs: number): ChildProcess {
  const child = spawn(
    process.execPath,
    ['-e', `const end = ${untilMs}; let x = 0; while (Date.now() < end) x = (x + 1) | 0;`],
    { stdio: 'ignore' },
  );
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

interface RunResult {
  readonly passed: boolean;
  readonly seconds: number;
  readonly summary: string;
}

function runSuite(options: Options): Promise<RunResult> {
  const begin = Date.now();
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'node_modules/jest/bin/jest.js'), ...options.jestArgs],
      { cwd: ROOT, stdio: ['ignore', 'inherit', 'pipe'], detached: true },
    );
    started.add(child);
    let tail = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      tail = (tail + chunk.toString('utf8')).slice(-4000);
    });
    const timer = setTimeout(() => killGroup(child), options.runMinutes * 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      started.delete(child);
      const summary = /^Tests: .*$/m.exec(tail)?.[0] ?? '(no summary: killed or crashed)';
      resolve({ passed: code === 0, seconds: (Date.now() - begin) / 1000, summary });
    });
  });
}

/** The suite's jest and its workers and the processes they started: its own process group. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function stopEverything(): void {
  for (const child of started) {
    if (child.spawnargs.some((a) => a.endsWith('jest.js'))) killGroup(child);
    else child.kill('SIGKILL');
  }
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  process.on('SIGINT', () => {
    stopEverything();
    process.exit(130);
  });
  process.on('SIGTERM', () => {
    stopEverything();
    process.exit(143);
  });
  const results: RunResult[] = [];
  for (let run = 1; run <= options.runs; run++) {
    // Hogs live as long as the run may: they stop by themselves if this script dies.
    const until = Date.now() + options.runMinutes * 60_000;
    const hogs = Array.from({ length: options.hogs }, () => startHog(until));
    process.stderr.write(`\n== run ${run}/${options.runs} with ${hogs.length} CPU hog(s) ==\n`);
    results.push(await runSuite(options));
    for (const hog of hogs) hog.kill('SIGKILL');
  }
  process.stdout.write(`\nnpm test under ${options.hogs} CPU hog(s), ${os.cpus().length} cores:\n`);
  results.forEach((r, i) => {
    const verdict = r.passed ? 'passed' : 'FAILED';
    process.stdout.write(`  run ${i + 1}: ${verdict} in ${r.seconds.toFixed(0)} s  ${r.summary}\n`);
  });
  return results.every((r) => r.passed) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    stopEverything();
    process.stderr.write(`ERROR: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
