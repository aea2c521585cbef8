// The one way dht's own tooling starts a long-running dht process (the demo, the benchmarks and
// the integration tests): `node bin/NAME ARGS...` from the repository root, ready once it prints
// the contract's one stdout line `listening on HOST:PORT`. A process that exits first, prints
// anything else first, or is not ready by the deadline is a clear error with the tail of its
// stderr. The caller keeps the child (to kill it by PID) from the moment it is spawned.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PROCESS_READY_TIMEOUT_MS } from '../lib/limits';

/** The repository: the nearest folder up with a package.json (from demo/ or dist/demo/). */
export const ROOT = repositoryRoot(__dirname);

function repositoryRoot(from: string): string {
  let dir = from;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
  return dir;
}

export interface SpawnOptions {
  /** Added to this process's environment. */
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
  /** Called with the child at once, before it can print: register it, attach listeners. */
  readonly onSpawn?: (child: ChildProcess) => void;
  /** Keep only the last this many characters of stderr (default: all of it, as tests read logs). */
  readonly stderrCharsMax?: number;
}

export interface Listening {
  readonly child: ChildProcess;
  /** HOST:PORT of its `listening on` line. */
  readonly address: string;
  readonly port: number;
  /** What it wrote to stderr so far (all of it, or the tail: `stderrCharsMax`). */
  stderr(): string;
  /** Resolves with the exit code (or signal) once it has ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnListening(
  bin: string,
  args: readonly string[],
  options: SpawnOptions = {},
): Promise<Listening> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', bin), ...args], {
    cwd: ROOT,
    env: options.env === undefined ? process.env : { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  options.onSpawn?.(child);
  let stderr = '';
  const keep = options.stderrCharsMax ?? Infinity;
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (stderr.length > keep) stderr = stderr.slice(-keep);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const timeoutMs = options.timeoutMs ?? PROCESS_READY_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    let stdout = '';
    const fail = (why: string): void => {
      clearTimeout(timer);
      reject(new Error(`${bin} ${why}; stderr:\n${stderr}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', function onData(d: string) {
      stdout += d;
      const newline = stdout.indexOf('\n');
      if (newline < 0) return;
      child.stdout!.off('data', onData);
      const match = /^listening on (\S+)$/.exec(stdout.slice(0, newline));
      if (match === null) {
        fail(`printed '${stdout.slice(0, newline)}' before 'listening on'`);
        return;
      }
      clearTimeout(timer);
      const address = match[1];
      const port = Number(address.slice(address.lastIndexOf(':') + 1));
      resolve({ child, address, port, stderr: () => stderr, exited });
    });
    void exited.then(({ code, signal }) => fail(`exited (${code ?? signal}) before ready`));
  });
}
