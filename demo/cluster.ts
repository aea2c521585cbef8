// A local cluster of real processes (view leader + servers) on loopback, for the demo and the
// benchmarks: started on OS-assigned ports, killed by PID, cleaned up on exit and on Ctrl-C.
//
// The view leader is one process alone (startViewLeader), or the members of a replicated one
// (startViewLeaderGroup: `dht-viewleader --peers A,B,C`). A member's port must be known before
// it starts, since every member names all of them in `--peers`: free loopback ports are found
// first by binding port 0 (freeLoopbackPorts), then each member is started on its own.

import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { DhtClient } from '../client/sdk';
import { assert } from '../lib/assert';
import type { MemberStatus } from '../lib/messages';
import { spawnListening } from './spawn';

/** Of each process's stderr, what a failed start shows. */
const STDERR_KEPT_CHARS = 8_000;
/** The contract's "a new leader within 5 s", with room for a loaded machine. */
export const LEADER_WAIT_MS = 15_000;
const LEADER_POLL_MS = 50;
/** A status request to one member; a member that does not answer in time counts as unreachable. */
const STATUS_TIMEOUT_MS = 1_000;
/** The contract's group sizes: 2f+1 members for f = 1 or 2. */
const GROUP_SIZES: readonly number[] = [3, 5];

export interface ClusterTimings {
  readonly failureTimeoutS: number;
  readonly heartbeatIntervalS: number;
  /** Servers keep their data in DIR/server-N; without it they run `--in-memory`. */
  readonly dataRoot?: string;
  /** Every process gets `--secret-file FILE` (docs/security.md). */
  readonly secretFile?: string;
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

/** The member that leads, as it reports itself (`viewleader_status`). */
export interface Leader {
  readonly member: ProcessHandle;
  readonly status: MemberStatus;
}

export class LocalCluster {
  private readonly children = new Set<ChildProcess>();
  /**
   * The view leader: one process (startViewLeader), or every member of a replicated one in
   * `--peers` order (startViewLeaderGroup). A killed member keeps its place (and its address):
   * restartViewLeader starts it again there.
   */
  readonly viewLeaders: ProcessHandle[] = [];
  readonly servers: ProcessHandle[] = [];
  private serial = 0;

  constructor(
    private readonly timings: ClusterTimings,
    private readonly onLog: (server: string, record: LogRecord) => void = () => {},
  ) {}

  private get secretArgs(): string[] {
    const file = this.timings.secretFile;
    return file === undefined ? [] : ['--secret-file', file];
  }

  /** What servers and clients take as `--viewleader`: every member's address, comma-separated. */
  get viewLeaderAddress(): string {
    if (this.viewLeaders.length === 0) throw new Error('start the view leader first');
    return this.viewLeaders.map((h) => h.address).join(',');
  }

  /** One view leader alone (no `--peers`), on an OS-assigned port. */
  async startViewLeader(): Promise<ProcessHandle> {
    if (this.viewLeaders.length > 0) throw new Error('the view leader is already started');
    const storage =
      this.timings.dataRoot === undefined
        ? ['--in-memory']
        : ['--data-dir', path.join(this.timings.dataRoot, 'viewleader')];
    // Without a dataRoot: in memory. The default directory is named after the port, and these
    // clusters run on OS-assigned ports, so default directories would only pile up.
    const handle = await this.spawn('viewleader', 'dht-viewleader', [
      '--port',
      '0',
      '--failure-timeout',
      String(this.timings.failureTimeoutS),
      ...storage,
    ]);
    this.viewLeaders.push(handle);
    return handle;
  }

  /**
   * A replicated view leader of `count` members (3 or 5), each on a free loopback port with its
   * Raft log in DIR/viewleader-N (a member keeps its log on disk: needs `dataRoot`). Returns once
   * a leader serves query_servers.
   */
  async startViewLeaderGroup(count: number): Promise<Leader> {
    if (this.viewLeaders.length > 0) throw new Error('the view leader is already started');
    if (!GROUP_SIZES.includes(count))
      throw new Error('a replicated view leader has 3 or 5 members');
    const dataRoot = this.timings.dataRoot;
    if (dataRoot === undefined) throw new Error('a replicated view leader needs data directories');
    const ports = await freeLoopbackPorts(count);
    const peers = ports.map((port) => `127.0.0.1:${port}`).join(',');
    const members = await Promise.all(
      ports.map((port, i) =>
        this.spawn(`viewleader-${i + 1}`, 'dht-viewleader', [
          '--port',
          String(port),
          '--peers',
          peers,
          '--failure-timeout',
          String(this.timings.failureTimeoutS),
          '--data-dir',
          path.join(dataRoot, `viewleader-${i + 1}`),
        ]),
      ),
    );
    this.viewLeaders.push(...members);
    return this.waitForLeader();
  }

  /** Every member as it reports itself, in `--peers` order; one that does not answer is `unreachable`. */
  async viewLeaderStatus(): Promise<MemberStatus[]> {
    const client = new DhtClient({
      viewLeader: this.viewLeaderAddress,
      timeoutMs: STATUS_TIMEOUT_MS,
    });
    return client.viewLeaderStatus();
  }

  /**
   * The member that leads and serves: one that says it leads and answers query_servers (a new
   * leader answers only once it has applied its term's first entry). Polls until LEADER_WAIT_MS.
   * Two members may both say they lead for a moment (the old one not yet told): the higher term.
   */
  async waitForLeader(timeoutMs = LEADER_WAIT_MS): Promise<Leader> {
    const deadline = performance.now() + timeoutMs;
    const client = new DhtClient({
      viewLeader: this.viewLeaderAddress,
      timeoutMs: STATUS_TIMEOUT_MS,
    });
    for (;;) {
      const statuses = await this.viewLeaderStatus();
      const leading = statuses
        .filter((s) => s.role === 'leader')
        .sort((a, b) => b.term - a.term)[0];
      const member = this.viewLeaders.find((h) => h.address === leading?.address);
      if (leading !== undefined && member !== undefined) {
        // Asked through the group, which follows not_leader to the leader: an answer means the
        // leader serves (a status alone does not: it may not have applied its term's no-op yet).
        const served = await client.queryServers().then(
          () => true,
          () => false,
        );
        if (served) return { member, status: leading };
      }
      if (performance.now() > deadline) {
        const seen = statuses.map((s) => `${s.address} ${s.role} term ${s.term}`).join(', ');
        throw new Error(`no view leader member leads after ${timeoutMs} ms (${seen})`);
      }
      await new Promise((resolve) => setTimeout(resolve, LEADER_POLL_MS));
    }
  }

  /**
   * SIGKILL the member that leads (found by its status) and wait until it is gone; `killedAtMs`
   * is Date.now() when the signal was sent.
   */
  async killLeader(): Promise<Leader & { readonly killedAtMs: number }> {
    const leader = await this.waitForLeader();
    const killedAtMs = Date.now();
    await this.kill(leader.member);
    return { ...leader, killedAtMs };
  }

  /** SIGKILL one view leader member (or the view leader alone) by PID; it keeps its place. */
  async killViewLeader(member: ProcessHandle): Promise<void> {
    assert(this.viewLeaders.includes(member), 'a member of this cluster');
    await this.kill(member);
  }

  /** Start a killed member again on its port and data directory, in its place in the list. */
  async restartViewLeader(member: ProcessHandle): Promise<ProcessHandle> {
    const index = this.viewLeaders.indexOf(member);
    assert(index >= 0, 'a member of this cluster');
    assert(member.child.exitCode !== null || member.child.signalCode !== null, 'a dead member');
    if (this.timings.dataRoot === undefined) throw new Error('a restart needs data directories');
    const again = await this.spawn(member.name, member.bin, onItsPort(member));
    this.viewLeaders[index] = again;
    return again;
  }

  /**
   * SIGKILL every process at once (the view leader too), as a power cut would, then start each
   * again on its port and data directory. Needs `dataRoot`; returns when all are listening.
   */
  async killEverythingAndRestart(): Promise<void> {
    if (this.timings.dataRoot === undefined) throw new Error('a restart needs data directories');
    const viewLeaders = [...this.viewLeaders];
    const servers = [...this.servers];
    await this.stop();
    const again = (h: ProcessHandle): Promise<ProcessHandle> =>
      this.spawn(h.name, h.bin, onItsPort(h));
    // The members together: none can lead before a majority of them is up.
    this.viewLeaders.splice(0, viewLeaders.length, ...(await Promise.all(viewLeaders.map(again))));
    this.servers.splice(0, servers.length, ...(await Promise.all(servers.map(again))));
  }

  async startServer(): Promise<ProcessHandle> {
    const viewLeader = this.viewLeaderAddress;
    const name = `server-${++this.serial}`;
    const storage =
      this.timings.dataRoot === undefined
        ? ['--in-memory']
        : ['--data-dir', path.join(this.timings.dataRoot, name)];
    const handle = await this.spawn(name, 'dht-server', [
      '--port',
      '0',
      '--viewleader',
      viewLeader,
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

  private async kill(handle: ProcessHandle): Promise<void> {
    const { child } = handle;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  /** Best effort for a synchronous exit path (Ctrl-C, uncaught error). */
  killAllNow(): void {
    for (const child of this.children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  private async spawn(name: string, bin: string, args: string[]): Promise<ProcessHandle> {
    const started = await spawnListening(
      bin,
      [...args, ...this.secretArgs, '--log-level', 'info'],
      {
        stderrCharsMax: STDERR_KEPT_CHARS,
        onSpawn: (child) => {
          this.children.add(child);
          child.once('exit', () => this.children.delete(child));
          readline.createInterface({ input: child.stderr! }).on('line', (line) => {
            if (!line.startsWith('{')) return;
            try {
              this.onLog(name, JSON.parse(line) as LogRecord);
            } catch {
              // not a log record
            }
          });
        },
      },
    );
    return { name, address: started.address, child: started.child, bin, args };
  }
}

/** How `handle` was started, on the port it got (an OS-assigned `--port 0` pinned to it). */
function onItsPort(handle: ProcessHandle): string[] {
  const port = handle.address.slice(handle.address.lastIndexOf(':') + 1);
  const args = [...handle.args];
  args[args.indexOf('--port') + 1] = port;
  return args;
}

/**
 * `count` distinct loopback ports free right now: each bound on port 0 (the OS picks), all held
 * at once so that none repeats, then released for the caller to listen on. Another process could
 * take one in between; the member started on it would then fail to start, with a clear error.
 */
export async function freeLoopbackPorts(count: number): Promise<number[]> {
  assert(Number.isInteger(count) && count >= 1 && count <= 16, 'a few ports');
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((server) => (server.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(
      servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
  }
}
