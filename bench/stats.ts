// The measuring harness shared by every bench section: latency percentiles, a closed-loop load
// driver bounded in both operation count and time, and a registry of child processes so that
// every process a section starts is killed by PID, in `finally` and on SIGINT alike.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { LocalCluster, type ClusterTimings, type LogRecord } from '../demo/cluster';
import { assert } from '../lib/assert';
import { call } from '../lib/http-client';
import { ViewLeaderApi, type View } from '../lib/messages';

// ---- percentiles --------------------------------------------------------------------------------

export interface LatencySummary {
  readonly samples: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

/**
 * The q-quantile (0 <= q <= 1) of ascending `sorted` by the nearest-rank method: the smallest
 * sample with at least q of all samples at or below it. No interpolation, so p99.9 of 1,000
 * samples is the largest one, never a value that was not observed.
 */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  assert(q >= 0 && q <= 1, 'a quantile is within [0, 1]');
  assert(sorted.length > 0, 'a percentile needs at least one sample');
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1];
}

/** Summarise latencies in milliseconds; `samplesMs` is sorted in place. */
export function summarize(samplesMs: Float64Array): LatencySummary {
  if (samplesMs.length === 0) {
    return { samples: 0, meanMs: NaN, p50Ms: NaN, p99Ms: NaN, p999Ms: NaN, maxMs: NaN };
  }
  samplesMs.sort();
  let sum = 0;
  for (let i = 0; i < samplesMs.length; i++) sum += samplesMs[i];
  return {
    samples: samplesMs.length,
    meanMs: sum / samplesMs.length,
    p50Ms: percentile(samplesMs, 0.5),
    p99Ms: percentile(samplesMs, 0.99),
    p999Ms: percentile(samplesMs, 0.999),
    maxMs: samplesMs[samplesMs.length - 1],
  };
}

// ---- closed-loop load ---------------------------------------------------------------------------

/** No run records more samples than this (8 bytes each: 80 MB at most). */
export const LOAD_OPS_MAX = 10_000_000;
export const LOAD_CONCURRENCY_MAX = 1024;
/** Errors kept verbatim for the report; the rest are only counted. */
const LOAD_ERRORS_KEPT_MAX = 5;

export interface LoadOptions {
  /** Operations in flight at once: each worker starts its next op when the previous ends. */
  readonly concurrency: number;
  /** Stop issuing new operations after this long (operations in flight finish). */
  readonly durationMs: number;
  /** Stop issuing new operations after this many, whichever bound comes first. */
  readonly maxOps: number;
  /** One operation; `i` counts from 0 across all workers. A throw counts as an error. */
  readonly op: (i: number) => Promise<unknown>;
}

export interface LoadResult {
  readonly concurrency: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstErrors: readonly string[];
  readonly elapsedMs: number;
  /** Successful operations per second of wall time. */
  readonly opsPerSec: number;
  /** Latencies of successful operations only. */
  readonly latency: LatencySummary;
}

/** What every section reports of one load case: its counts and latencies, flat. */
export interface CaseFigures {
  readonly concurrency: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstErrors: readonly string[];
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

export function caseFigures(r: LoadResult): CaseFigures {
  return {
    concurrency: r.concurrency,
    ops: r.ops,
    errors: r.errors,
    firstErrors: r.firstErrors,
    opsPerSec: r.opsPerSec,
    p50Ms: r.latency.p50Ms,
    p99Ms: r.latency.p99Ms,
    p999Ms: r.latency.p999Ms,
    maxMs: r.latency.maxMs,
  };
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { concurrency, durationMs, maxOps, op } = options;
  assert(Number.isInteger(concurrency), 'concurrency is an integer');
  assert(concurrency >= 1 && concurrency <= LOAD_CONCURRENCY_MAX, 'concurrency is bounded');
  assert(Number.isInteger(maxOps) && maxOps >= 1 && maxOps <= LOAD_OPS_MAX, 'maxOps is bounded');
  assert(durationMs > 0 && Number.isFinite(durationMs), 'durationMs is positive and finite');

  const latencies = new Float64Array(maxOps);
  let recorded = 0;
  let issued = 0;
  let errors = 0;
  const firstErrors: string[] = [];
  const start = performance.now();
  const deadline = start + durationMs;

  const worker = async (): Promise<void> => {
    // Bounded twice: `issued` reaches maxOps, or the clock passes the deadline.
    while (issued < maxOps && performance.now() < deadline) {
      const i = issued++;
      const t0 = performance.now();
      try {
        await op(i);
        latencies[recorded++] = performance.now() - t0;
      } catch (err) {
        errors++;
        if (firstErrors.length < LOAD_ERRORS_KEPT_MAX) {
          firstErrors.push(err instanceof Error ? err.message : String(err));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));

  const elapsedMs = performance.now() - start;
  assert(recorded + errors === issued, 'every issued operation ended exactly once');
  assert(issued <= maxOps, 'never more operations than maxOps');
  return {
    concurrency,
    ops: recorded,
    errors,
    firstErrors,
    elapsedMs,
    opsPerSec: (recorded * 1000) / elapsedMs,
    latency: summarize(latencies.subarray(0, recorded)),
  };
}

export interface WarmedLoadOptions {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly op: (i: number) => Promise<unknown>;
  /**
   * Runs the measured load (not the warm-up), e.g. with a counter attached around it only.
   * Default: runs it as is.
   */
  readonly around?: (measure: () => Promise<LoadResult>) => Promise<LoadResult>;
}

/** No case issues more operations than this, in its warm-up or in its measured run. */
export const CASE_OPS_MAX = 1_000_000;

/**
 * One bench case: a warm-up of `op` (connections opened, caches filled; not recorded), then the
 * measured closed-loop run. Every section that compares systems measures them through this.
 */
export async function runWarmedLoad(options: WarmedLoadOptions): Promise<LoadResult> {
  const { concurrency, op } = options;
  await runLoad({ concurrency, durationMs: options.warmupMs, maxOps: CASE_OPS_MAX, op });
  const measure = (): Promise<LoadResult> =>
    runLoad({ concurrency, durationMs: options.durationMs, maxOps: CASE_OPS_MAX, op });
  return options.around === undefined ? measure() : options.around(measure);
}

// ---- child processes ----------------------------------------------------------------------------

const children = new Set<ChildProcess>();
const CHILD_READY_TIMEOUT_MS = 15_000;
const CHILD_EXIT_WAIT_MS = 5_000;

export interface StartedChild {
  readonly child: ChildProcess;
  /** The first line the child wrote to stdout (its readiness announcement). */
  readonly firstLine: string;
}

/**
 * Start `node script args...` and wait for its first stdout line. The child's stdin is a pipe it
 * can watch: when this process dies, however abruptly, the pipe closes and the child exits. Its
 * stderr goes to ours, or line by line to `onStderrLine` if given.
 */
export async function startChild(
  script: string,
  args: readonly string[],
  onStderrLine?: (line: string) => void,
): Promise<StartedChild> {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['pipe', 'pipe', onStderrLine === undefined ? 'inherit' : 'pipe'],
  });
  track(child);
  if (onStderrLine !== undefined) {
    readline.createInterface({ input: child.stderr! }).on('line', onStderrLine);
  }
  try {
    const firstLine = await new Promise<string>((resolve, reject) => {
      let stdout = '';
      const timer = setTimeout(
        () => reject(new Error(`${script} not ready after ${CHILD_READY_TIMEOUT_MS} ms`)),
        CHILD_READY_TIMEOUT_MS,
      );
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        const newline = stdout.indexOf('\n');
        if (newline >= 0) {
          clearTimeout(timer);
          resolve(stdout.slice(0, newline));
        }
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${script} exited (${code ?? signal}) before it was ready`));
      });
    });
    return { child, firstLine };
  } catch (err) {
    await killChild(child);
    throw err;
  }
}

/**
 * Register a child process started some other way (not `node`: e.g. a profiler), so that it is
 * killed with the others on Ctrl-C and counted by runningChildren until it exits.
 */
export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGKILL one child by its PID and wait (bounded) until it is gone. */
export async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, CHILD_EXIT_WAIT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  if (child.pid !== undefined) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // Already gone between the check and the kill.
    }
  }
  await exited;
  children.delete(child);
}

/**
 * Stop one child by its PID: SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves
 * once it is gone (or CHILD_EXIT_WAIT_MS after the SIGKILL, should it not even die then).
 */
export async function terminateChild(child: ChildProcess, graceMs: number): Promise<void> {
  assert(graceMs >= 0 && Number.isFinite(graceMs), 'a grace period is finite');
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return;
  }
  const exited = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  if (child.pid !== undefined) {
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // Already gone between the check and the signal.
    }
  }
  if (!(await exited)) await killChild(child);
  children.delete(child);
}

/** Synchronous, for signal handlers: SIGKILL every child still running, by PID. */
export function killAllChildrenNow(): void {
  for (const cluster of clusters) cluster.killAllNow();
  clusters.clear();
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  children.clear();
}

export function runningChildren(): number {
  return children.size + clusters.size;
}

export interface ProcessRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** From spawn to exit: process start included. */
  readonly wallMs: number;
}

const PROCESS_OUTPUT_CHARS_MAX = 64 * 1024;

/**
 * Run `node args...` to completion, SIGKILLed by PID after `timeoutMs`. Registered like every
 * other child, so Ctrl-C kills it too.
 */
export function runNode(args: readonly string[], timeoutMs: number): Promise<ProcessRun> {
  assert(timeoutMs > 0 && Number.isFinite(timeoutMs), 'a process run has a finite time limit');
  const t0 = performance.now();
  const child = spawn(process.execPath, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    if (stdout.length < PROCESS_OUTPUT_CHARS_MAX) stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < PROCESS_OUTPUT_CHARS_MAX) stderr += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      reject(err);
    });
    child.once('close', (code, signal) => {
      const wallMs = performance.now() - t0;
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr, wallMs });
    });
  });
}

// ---- local clusters -----------------------------------------------------------------------------

const clusters = new Set<LocalCluster>();

/**
 * Run `body` with a LocalCluster (demo/cluster.ts: a view leader and servers as real processes on
 * OS-assigned loopback ports). Every process it started is killed by PID when `body` ends, throws,
 * or the bench is interrupted (killAllChildrenNow).
 */
export async function withCluster<T>(
  timings: ClusterTimings,
  onLog: (server: string, record: LogRecord) => void,
  body: (cluster: LocalCluster) => Promise<T>,
): Promise<T> {
  const cluster = new LocalCluster(timings, onLog);
  clusters.add(cluster);
  try {
    return await body(cluster);
  } finally {
    await cluster.stop();
    clusters.delete(cluster);
  }
}

/** A poll of query_servers may take this long before it counts as failed. */
const VIEW_POLL_TIMEOUT_MS = 2_000;
/** No wait polls more often than this many times, whatever its time limit. */
const VIEW_POLLS_MAX = 100_000;

export interface ViewWait {
  readonly view: View;
  /** From the call to the poll that satisfied the predicate. */
  readonly elapsedMs: number;
  readonly polls: number;
}

/**
 * Ask the view leader (directly, not through an SDK client) every `pollMs` until `done(view)`;
 * `onPoll` sees every view with the time since the call. Throws after `timeoutMs`.
 */
export async function waitForView(
  viewLeader: string,
  done: (view: View) => boolean,
  timeoutMs: number,
  pollMs: number,
  onPoll: (view: View, elapsedMs: number) => void = () => {},
): Promise<ViewWait> {
  const t0 = performance.now();
  let last: View | undefined;
  for (let polls = 1; polls <= VIEW_POLLS_MAX; polls++) {
    try {
      last = await call(
        viewLeader,
        ViewLeaderApi.queryServers,
        {},
        {
          timeoutMs: VIEW_POLL_TIMEOUT_MS,
        },
      );
      const elapsedMs = performance.now() - t0;
      onPoll(last, elapsedMs);
      if (done(last)) return { view: last, elapsedMs, polls };
    } catch {
      // A slow answer under load: ask again until the time limit.
    }
    if (performance.now() - t0 > timeoutMs) break;
    await sleep(pollMs);
  }
  const seen =
    last === undefined
      ? 'no answer'
      : `epoch ${last.epoch}, ${last.servers.length} servers, rebalancing ${last.rebalancing}`;
  throw new Error(`view not as expected after ${timeoutMs} ms (last: ${seen})`);
}

/** A settled view of exactly `servers` servers, newer than `afterEpoch`. */
export function settled(servers: number, afterEpoch = -1): (view: View) => boolean {
  return (view) => view.servers.length === servers && !view.rebalancing && view.epoch > afterEpoch;
}

/** Resident set size of a process (Linux /proc), in bytes. */
export function residentBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  assert(match !== null, `VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/**
 * CPU time a process has used so far (user + system, Linux /proc), in seconds. /proc reports it
 * in USER_HZ ticks, which the kernel fixes at 100 per second for this interface.
 */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count the fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  assert(Number.isFinite(utime) && Number.isFinite(stime), `utime and stime in /proc/${pid}/stat`);
  return (utime + stime) / USER_HZ;
}
const USER_HZ = 100;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- tables -------------------------------------------------------------------------------------

/** What a section prints: a titled table of already formatted cells. */
export interface Table {
  readonly title: string;
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

export function formatTable(table: Table): string {
  const widths = table.header.map((h, c) =>
    Math.max(h.length, ...table.rows.map((r) => (r[c] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [table.title, line(table.header), rule, ...table.rows.map(line)].join('\n');
}

/** A number with a fixed count of decimals, or a dash when there is none. */
export function fmt(value: number | null | undefined, decimals = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  });
}
