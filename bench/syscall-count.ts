// Counting the sync system calls (fdatasync, fsync) of running processes from outside, without
// touching them: `perf stat` on the kernel's syscall tracepoints, attached to their PIDs (every
// thread, and threads they start later). Counting only, no sampling: the cost to the counted
// processes is a counter increment per traced call. Needs perf and the permission to attach
// (root, or kernel.perf_event_paranoid <= 1 for one's own processes); where either is missing,
// attach() throws and the caller reports the figure as unavailable.

import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { assert } from '../lib/assert';
import { killChild, track } from './stats';

export const SYNC_SYSCALLS = ['fdatasync', 'fsync'] as const;
export type SyncSyscall = (typeof SYNC_SYSCALLS)[number];
export type SyncCounts = Readonly<Record<SyncSyscall, number>>;

/** perf prints the counts of every interval: its first line says it is attached and counting. */
const INTERVAL_MS = 100;
const ATTACH_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 5_000;
/** Lines of perf's own messages kept for an error. */
const MESSAGE_LINES_MAX = 10;

export class SyncCounter {
  private readonly counts: Record<SyncSyscall, number> = { fdatasync: 0, fsync: 0 };
  private readonly messages: string[] = [];
  private bad: string | undefined;

  private constructor(private readonly child: ReturnType<typeof spawn>) {}

  /** Start counting the sync calls of `pids`; resolves once perf counts (its first interval). */
  static async attach(pids: readonly number[]): Promise<SyncCounter> {
    assert(pids.length > 0, 'at least one process to count');
    const events = SYNC_SYSCALLS.map((s) => `syscalls:sys_enter_${s}`).join(',');
    const child = track(
      spawn(
        'perf',
        ['stat', '-x', ',', '-I', String(INTERVAL_MS), '-e', events, '-p', pids.join(',')],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      ),
    );
    const counter = new SyncCounter(child);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(new Error(`perf stat did not start counting within ${ATTACH_TIMEOUT_MS} ms`)),
          ATTACH_TIMEOUT_MS,
        );
        const settle = (err?: Error): void => {
          clearTimeout(timer);
          if (err === undefined) resolve();
          else reject(err);
        };
        readline.createInterface({ input: child.stderr! }).on('line', (line) => {
          if (counter.take(line)) settle();
        });
        child.once('error', (err) => settle(new Error(`perf: ${err.message}`)));
        child.once('exit', (code, signal) =>
          settle(
            new Error(
              `perf stat exited (${code ?? signal}) before counting: ${counter.messages.join(' / ') || 'no message'}`,
            ),
          ),
        );
      });
      if (counter.bad !== undefined) throw new Error(counter.bad);
      return counter;
    } catch (err) {
      await killChild(child);
      throw err;
    }
  }

  /** Stop perf (SIGINT: it prints the last, partial interval) and return the totals. */
  async stop(): Promise<SyncCounts> {
    const closed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), STOP_TIMEOUT_MS);
      this.child.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGINT');
    }
    const ok = await closed;
    await killChild(this.child);
    if (!ok) throw new Error('perf stat did not stop after SIGINT');
    if (this.bad !== undefined) throw new Error(this.bad);
    return { ...this.counts };
  }

  /** One line of perf's CSV output (`time,count,unit,event,...`); true if it was a count. */
  private take(line: string): boolean {
    const fields = line.trim().split(',');
    const event = SYNC_SYSCALLS.find((s) => fields[3] === `syscalls:sys_enter_${s}`);
    if (fields.length < 4 || event === undefined) {
      if (line.trim() !== '' && this.messages.length < MESSAGE_LINES_MAX) {
        this.messages.push(line.trim());
      }
      return false;
    }
    // `<not counted>`: no counted thread ran in that interval (a task's counter is enabled only
    // while the task is on a CPU), so none of them made the call. `<not supported>` is an error.
    const count = fields[1] === '<not counted>' ? 0 : Number(fields[1]);
    if (!Number.isSafeInteger(count) || count < 0) {
      this.bad ??= `perf could not count ${event}: ${fields[1]}`;
      return true;
    }
    this.counts[event] += count;
    return true;
  }
}
