// Real processes for integration tests: each started on loopback with its own port, awaited by
// its `listening on` line, and killed by PID when the test ends (also when it fails).

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, spawnListening, type Listening } from '../../demo/spawn';

export { ROOT };

/** A process of a test: its child, address, logs (all of stderr) and exit. */
export type Proc = Listening;

const running = new Set<ChildProcess>();

/** Every test file calls this once: no child outlives its test file. */
export function cleanupProcessesAfterAll(): void {
  afterEach(async () => {
    await killAll();
  });
}

/**
 * SIGKILL every child still running and wait until each has exited. SIGKILL also ends a child
 * that is stopped (SIGSTOP, see `pause`): the kernel delivers it without the child running again.
 */
export async function killAll(): Promise<void> {
  const children = [...running];
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) resolve();
          else child.once('exit', () => resolve());
        }),
    ),
  );
  running.clear();
}

/**
 * Freeze a process (SIGSTOP), as a long GC pause or a suspended VM would: it keeps its port and
 * its connections, but answers nothing and sends nothing until `resume`. Resolves once the
 * kernel reports it stopped (on Linux; elsewhere once the signal is sent).
 */
export async function pause(proc: Proc): Promise<void> {
  signal(proc, 'SIGSTOP');
  await waitFor(`${proc.address} to stop`, () => (isStopped(proc) !== false ? true : undefined));
}

/** Let a paused process run again (SIGCONT); resolves once the kernel reports it running. */
export async function resume(proc: Proc): Promise<void> {
  signal(proc, 'SIGCONT');
  await waitFor(`${proc.address} to run`, () => (isStopped(proc) !== true ? true : undefined));
}

function signal(proc: Proc, name: NodeJS.Signals): void {
  const { child } = proc;
  if (child.exitCode !== null || child.signalCode !== null || !child.kill(name)) {
    throw new Error(`cannot send ${name} to ${proc.address}: it has exited`);
  }
}

/** From /proc/PID/stat (Linux): stopped by a signal or not; undefined where there is no /proc. */
function isStopped(proc: Proc): boolean | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${proc.child.pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "PID (COMM) STATE ...": COMM may itself hold spaces and parentheses.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'T';
}

/**
 * Start `bin/NAME args...` and wait for its `listening on HOST:PORT` line. Servers and view
 * leaders run `--in-memory` unless the test names a `--data-dir` (see `withStorage`).
 */
export async function startProcess(
  name: string,
  args: string[],
  env?: Readonly<Record<string, string>>,
): Promise<Proc> {
  return spawnListening(name, withStorage(name, args), {
    env,
    onSpawn: (child) => {
      running.add(child);
      child.once('exit', () => running.delete(child));
    },
  });
}

/**
 * Run `node -e SOURCE ARGS...` from the repository root with piped stdio: a client process of
 * the test's own (its own connections, its own view cache). Killed by `killAll` like the others.
 */
export function startScript(source: string, args: string[] = []): ChildProcess {
  const child = spawn(process.execPath, ['-e', source, '--', ...args], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

/**
 * Servers and view leaders in tests run `--in-memory` unless the test gives a `--data-dir`: the
 * default data directory (dht-data/server-PORT or dht-data/viewleader-PORT, under the repository)
 * would outlive the test, and each test file uses fixed ports, so the next run would resume the
 * IDs, views, expired IDs and locks the last one left. The tests of durability pass temporary
 * directories (durability.test.ts, viewleader-durable.test.ts).
 */
function withStorage(name: string, args: string[]): string[] {
  if (name !== 'dht-server' && name !== 'dht-viewleader') return args;
  return args.includes('--data-dir') || args.includes('--in-memory')
    ? args
    : [...args, '--in-memory'];
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run `bin/dht-client args...` to completion, optionally with stdin and more environment. */
export function runClient(
  args: string[],
  stdin?: string,
  env?: Readonly<Record<string, string>>,
): Promise<CliResult> {
  return runToExit('dht-client', args, stdin, env);
}

/** A process watched as it runs: what it has printed so far, and its exit. */
export interface Watched {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Its exit code (null if a signal ended it), once it has exited and its output is read. */
  readonly exited: Promise<number | null>;
}

export interface WatchOptions {
  /** Working directory; the repository's root unless given. */
  readonly cwd?: string;
  /** Added to the test's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Written to its stdin, which is then closed (closed at once without it). */
  readonly stdin?: string;
}

/**
 * Start `bin/NAME args...` exactly as given (no `--in-memory` is added) and watch it, without
 * waiting for anything: a start that must fail, the exact lines a process prints, the code it
 * exits with on a signal. Killed by `killAll` like the others if it does not end by itself.
 */
export function startWatched(name: string, args: string[], options: WatchOptions = {}): Watched {
  const { cwd = ROOT, env, stdin = '' } = options;
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', name), ...args], {
    cwd,
    env: env === undefined ? process.env : { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // 'close', not 'exit': by then stdout and stderr have been read to their end.
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', (err) => {
      running.delete(child);
      reject(err);
    });
    child.once('close', (code) => {
      running.delete(child);
      resolve(code);
    });
  });
  // A spawn that fails rejects `exited` for whoever awaits it, and is no unhandled rejection for
  // a test that only reads the output.
  exited.catch(() => undefined);
  child.stdin.end(stdin);
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/**
 * Run `bin/NAME args...` to completion (a start that must fail, say), exactly as given: no
 * `--in-memory` is added; `env` is added to the test's environment.
 */
export async function runToExit(
  name: string,
  args: string[],
  stdin?: string,
  env?: Readonly<Record<string, string>>,
): Promise<CliResult> {
  const watched = startWatched(name, args, { stdin, env });
  const code = await watched.exited;
  return { code, stdout: watched.stdout(), stderr: watched.stderr() };
}

/** Poll `check` until it returns a value other than undefined, or fail after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * A block of ports private to one test file, so files can run in parallel. The blocks sit below
 * Linux's ephemeral range (32768..60999 by default), so an outgoing connection never holds one.
 * DHT_TEST_PORT_OFFSET (a multiple of 50 up to 10,000) moves every block, so that two checkouts
 * on one machine can run their suites at once.
 */
const PORT_OFFSET = portOffset(process.env.DHT_TEST_PORT_OFFSET);

function portOffset(text: string | undefined): number {
  if (text === undefined || text === '') return 0;
  const offset = Number(text);
  if (!Number.isInteger(offset) || offset < 0 || offset > 10_000 || offset % 50 !== 0) {
    throw new Error(`DHT_TEST_PORT_OFFSET=${text}: expected a multiple of 50 from 0 to 10000`);
  }
  return offset;
}

export interface PortBlock {
  readonly viewleader: number;
  readonly server: (i: number) => number;
}

export function portBlock(fileIndex: number): PortBlock {
  const base = 21000 + PORT_OFFSET + fileIndex * 50;
  return { viewleader: base, server: (i) => base + 1 + i };
}
