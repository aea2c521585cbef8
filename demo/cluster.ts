// A local cluster of real processes (view leader + servers) on loopback, for the demo and the
// benchmarks: started on OS-assigned ports, killed by PID, cleaned up on exit and on Ctrl-C.

import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

const ROOT = path.resolve(__dirname, '..', '..');
const READY_TIMEOUT_MS = 15_000;

export interface ClusterTimings {
  readonly failureTimeoutS: number;
  readonly heartbeatIntervalS: number;
  /** Servers keep their data in DIR/server-N; without it they run `--in-memory`. */
  readonly dataRoot?: string;
}

export interface ProcessHandle {
  readonly name: string;
  readonly address: string;
  readonly child: ChildProcess;
  /** How it was started, so that it can be started again on its port (and data). */
  readonly bin: string;
  readonly args: readonly string[];
}

/** A structured log line of a server (pino JSON). */
export type LogRecord = Record<string, unknown> & { msg?: string };

export class LocalCluster {
  private readonly children = new Set<ChildProcess>();
  viewLeader: ProcessHandle | undefined;
  readonly servers: ProcessHandle[] = [];
  private serial = 0;

  constructor(
    private readonly timings: ClusterTimings,
    private readonly onLog: (server: string, record: LogRecord) => void = () => {},
  ) {}

  async startViewLeader(): Promise<ProcessHandle> {
    const storage =
      this.timings.dataRoot === undefined
        ? ['--in-memory']
        : ['--data-dir', path.join(this.timings.dataRoot, 'viewleader')];
    // Without a dataRoot: in memory. The default directory is named after the port, and these
    // clusters run on OS-assigned ports, so default directories would only pile up.
    this.viewLeader = await this.spawn('viewleader', 'dht-viewleader', [
      '--port',
      '0',
      '--failure-timeout',
      String(this.timings.failureTimeoutS),
      ...storage,
    ]);
    return this.viewLeader;
  }

  /**
   * SIGKILL every process at once (the view leader too), as a power cut would, then start each
   * again on its port and data directory. Needs `dataRoot`; returns when all are listening.
   */
  async killEverythingAndRestart(): Promise<void> {
    if (this.timings.dataRoot === undefined) throw new Error('a restart needs data directories');
    const before = [this.viewLeader, ...this.servers].filter(
      (h): h is ProcessHandle => h !== undefined,
    );
    await this.stop();
    const again = (h: ProcessHandle): Promise<ProcessHandle> => {
      const port = h.address.slice(h.address.lastIndexOf(':') + 1);
      const args = [...h.args];
      args[args.indexOf('--port') + 1] = port;
      return this.spawn(h.name, h.bin, args);
    };
    const [viewLeader, ...servers] = before;
    this.viewLeader = await again(viewLeader);
    this.servers.splice(0, this.servers.length, ...(await Promise.all(servers.map(again))));
  }

  async startServer(): Promise<ProcessHandle> {
    if (this.viewLeader === undefined) throw new Error('start the view leader first');
    const name = `server-${++this.serial}`;
    const storage =
      this.timings.dataRoot === undefined
        ? ['--in-memory']
        : ['--data-dir', path.join(this.timings.dataRoot, name)];
    const handle = await this.spawn(name, 'dht-server', [
      '--port',
      '0',
      '--viewleader',
      this.viewLeader.address,
      '--heartbeat-interval',
      String(this.timings.heartbeatIntervalS),
      ...storage,
    ]);
    this.servers.push(handle);
    return handle;
  }

  /** SIGKILL one server and forget it. */
  killServer(handle: ProcessHandle): void {
    handle.child.kill('SIGKILL');
    this.servers.splice(this.servers.indexOf(handle), 1);
  }

  /** Kill every process this cluster started (by PID) and wait for them to exit. */
  async stop(): Promise<void> {
    const children = [...this.children];
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(
      children.map((child) =>
        child.exitCode !== null || child.signalCode !== null
          ? Promise.resolve()
          : new Promise<void>((resolve) => child.once('exit', () => resolve())),
      ),
    );
    this.children.clear();
  }

  /** Best effort for a synchronous exit path (Ctrl-C, uncaught error). */
  killAllNow(): void {
    for (const child of this.children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  private spawn(name: string, bin: string, args: string[]): Promise<ProcessHandle> {
    const child = spawn(
      process.execPath,
      [path.join(ROOT, 'bin', bin), ...args, '--log-level', 'info'],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    const stderrLines: string[] = [];
    readline.createInterface({ input: child.stderr! }).on('line', (line) => {
      if (stderrLines.length < 50) stderrLines.push(line);
      if (!line.startsWith('{')) return;
      try {
        this.onLog(name, JSON.parse(line) as LogRecord);
      } catch {
        // not a log record
      }
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name} not ready:\n${stderrLines.join('\n')}`)),
        READY_TIMEOUT_MS,
      );
      readline.createInterface({ input: child.stdout! }).once('line', (line) => {
        clearTimeout(timer);
        const match = /^listening on (\S+)$/.exec(line);
        if (match) resolve({ name, address: match[1], child, bin, args });
        else reject(new Error(`${name}: unexpected first line '${line}'`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code}) before ready:\n${stderrLines.join('\n')}`));
      });
    });
  }
}
