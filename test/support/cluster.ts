// A test cluster of real processes on loopback: a view leader and storage servers on fixed ports
// (so a restarted server comes back at the same address, with a new ID), the client CLI, and
// coordinators started with the SDK's fault-injection variables. Shared by the integration tests;
// every process is killed by PID when the test ends (test/support/processes.ts). The view leader
// is one process the cluster starts (`Cluster.start`), or a replicated one the test runs itself
// (`Cluster.startWithViewLeaders`, test/support/viewleader-group.ts).

import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { call } from '../../lib/http-client';
import { DhtError } from '../../lib/errors';
import { ServerApi, ViewLeaderApi, type ServerRef, type View } from '../../lib/messages';
import { allocateReplicas } from '../../lib/ring';
import { ViewLeaderGroup } from '../../lib/view-leader-group';
import {
  runClient,
  startProcess,
  startWatched,
  waitFor,
  type CliResult,
  type PortBlock,
  type Proc,
} from './processes';

export interface ServerOptions {
  /** --heartbeat-interval (s); 0.2 unless given. */
  readonly heartbeatS?: number;
  /** --prepare-timeout (s); the default unless given. */
  readonly prepareTimeoutS?: number;
  /** Extra environment (fault injection). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface ClusterOptions extends ServerOptions {
  readonly servers: number;
  /** How long the start waits for its first settled view; a file with long settles gives its own. */
  readonly settleTimeoutMs?: number;
  /** The view leader's port; server i listens on serverPort(i). */
  readonly viewLeaderPort: number;
  readonly serverPort: (index: number) => number;
  /**
   * View leader --failure-timeout (s); 2 unless given: long enough that a server on a busy machine
   * is not expelled for a late heartbeat (an expelled ID never returns), short enough for the
   * tests that wait for a killed server to leave.
   */
  readonly failureTimeoutS?: number;
  /** Per-server overrides, by index. */
  readonly perServer?: Readonly<Record<number, ServerOptions>>;
  /** Durable processes: server i keeps its data in DIR/server-i, the view leader in DIR/viewleader. */
  readonly dataRoot?: string;
  /**
   * Every process and CLI run gets `--secret-file FILE` (the test process itself signs its own
   * queries after `useSecret`, lib/http-auth.ts).
   */
  readonly secretFile?: string;
}

/**
 * A cluster whose view leader is a replicated one the test runs itself: the cluster starts no view
 * leader, and its servers and clients are given every member (`--viewleader A,B,C`).
 */
export interface GroupClusterOptions extends Omit<
  ClusterOptions,
  'viewLeaderPort' | 'failureTimeoutS'
> {
  /** The members' addresses. */
  readonly viewLeaders: readonly string[];
}

/** How long the cluster's own queries of a replicated view leader wait for an answer. */
const GROUP_CALL_TIMEOUT_MS = 2_000;

export class Cluster {
  readonly servers = new Map<string, Proc>();
  /** Every process this cluster started, killed ones included: the logs a failed test keeps. */
  readonly started: { readonly name: string; readonly proc: Proc }[] = [];
  private readonly indexOf = new Map<string, number>();
  /** The lowest server index no process of this cluster has used yet (`addServer`). */
  private nextIndex = 0;
  /** The members of a replicated view leader (`startWithViewLeaders`), asked as clients do. */
  private readonly group: ViewLeaderGroup | undefined;

  private constructor(
    private readonly options: ClusterOptions | GroupClusterOptions,
    /** The view leader alone, replaced by `restartViewLeader` on the same port; or none. */
    private alone: Proc | undefined,
  ) {
    this.group =
      'viewLeaders' in options
        ? new ViewLeaderGroup(options.viewLeaders, GROUP_CALL_TIMEOUT_MS)
        : undefined;
  }

  static async start(options: ClusterOptions): Promise<Cluster> {
    const cluster = new Cluster(options, await startViewLeader(options));
    cluster.started.push({ name: 'viewleader', proc: cluster.viewLeader });
    await cluster.startServers();
    return cluster;
  }

  /** Servers (and clients) of a replicated view leader whose members the test runs. */
  static async startWithViewLeaders(options: GroupClusterOptions): Promise<Cluster> {
    const cluster = new Cluster(options, undefined);
    await cluster.startServers();
    return cluster;
  }

  private async startServers(): Promise<void> {
    const count = this.options.servers;
    await Promise.all(Array.from({ length: count }, (_, i) => this.startServer(i)));
    await this.settled(count, this.options.settleTimeoutMs);
  }

  /** The view leader process, when it runs alone. */
  get viewLeader(): Proc {
    if (this.alone === undefined) throw new Error('this cluster has a replicated view leader');
    return this.alone;
  }

  /** `--viewleader` for servers and clients: the view leader's address, or every member's. */
  get vl(): string {
    return this.group?.addresses.join(',') ?? this.viewLeader.address;
  }

  /** The options of a cluster whose view leader runs alone (the ones that restart it). */
  private get aloneOptions(): ClusterOptions {
    if ('viewLeaders' in this.options) {
      throw new Error("this cluster's view leader is replicated: restart its members instead");
    }
    return this.options;
  }

  /**
   * SIGKILL the view leader and start a new one on its port. It keeps its state in memory only, so
   * it comes back with no view, no placement and no expired IDs: the servers rejoin at their next
   * heartbeat, an expelled one that still runs included (docs/design.md, "Known limitations").
   */
  async restartViewLeader(): Promise<Proc> {
    this.viewLeader.child.kill('SIGKILL');
    await this.viewLeader.exited;
    this.alone = await startViewLeader(this.aloneOptions);
    this.started.push({ name: 'viewleader', proc: this.alone });
    return this.alone;
  }

  /**
   * SIGKILL every process at once (the view leader too), as a power cut would, and start each
   * again on its port and data directory (needs `dataRoot`).
   */
  async killEverythingAndRestart(): Promise<void> {
    const indexes = [...this.servers.keys()].map((a) => this.indexAt(a));
    const all = [this.viewLeader, ...this.servers.values()];
    for (const p of all) p.child.kill('SIGKILL');
    await Promise.all(all.map((p) => p.exited));
    this.servers.clear();
    this.alone = await startViewLeader(this.aloneOptions);
    this.started.push({ name: 'viewleader', proc: this.alone });
    await Promise.all(indexes.map((i) => this.startServer(i)));
  }

  /** Start server number `index` on its fixed port: the same address after a restart. */
  async startServer(index: number): Promise<Proc> {
    const own = { ...this.options, ...this.options.perServer?.[index] };
    const args = ['--port', String(this.options.serverPort(index)), '--viewleader', this.vl];
    args.push('--heartbeat-interval', String(own.heartbeatS ?? 0.2));
    if (own.prepareTimeoutS !== undefined) {
      args.push('--prepare-timeout', String(own.prepareTimeoutS));
    }
    if (this.options.dataRoot !== undefined) {
      args.push('--data-dir', this.dataDir(index));
    }
    args.push(...secretArgs(this.options));
    this.nextIndex = Math.max(this.nextIndex, index + 1);
    const server = await startProcess('dht-server', args, own.env);
    this.servers.set(server.address, server);
    this.indexOf.set(server.address, index);
    this.started.push({ name: `server${index}`, proc: server });
    return server;
  }

  /** A server on a port no process of this cluster has used: a new machine joining, not a restart. */
  addServer(): Promise<Proc> {
    return this.startServer(this.nextIndex);
  }

  /** Server `index`'s data directory (with `dataRoot`). */
  dataDir(index: number): string {
    if (this.options.dataRoot === undefined) throw new Error('this cluster keeps no data on disk');
    return path.join(this.options.dataRoot, `server-${index}`);
  }

  /** The index of the server at `address`. */
  indexAt(address: string): number {
    const index = this.indexOf.get(address);
    if (index === undefined) throw new Error(`no server of this test at ${address}`);
    return index;
  }

  /**
   * SIGKILL the server at `address` and start a new process on the same port: a new ID, or with
   * `dataRoot` the same data directory (it resumes its ID if the view leader still has it).
   */
  async restart(address: string): Promise<Proc> {
    const index = this.indexOf.get(address);
    if (index === undefined) throw new Error(`no server of this test at ${address}`);
    await this.kill(address);
    return this.startServer(index);
  }

  async kill(address: string): Promise<void> {
    const server = this.servers.get(address);
    if (server === undefined) throw new Error(`no server of this test at ${address}`);
    server.child.kill('SIGKILL');
    await server.exited;
    this.servers.delete(address);
  }

  /** SIGSTOP (`pause`) or SIGCONT (`resume`) the server at `address`. */
  signal(address: string, signal: 'SIGSTOP' | 'SIGCONT'): void {
    const server = this.servers.get(address);
    if (server === undefined) throw new Error(`no server of this test at ${address}`);
    server.child.kill(signal);
  }

  cli(...args: string[]): Promise<CliResult> {
    return runClient(['--viewleader', this.vl, ...secretArgs(this.options), ...args]);
  }

  /** Run the CLI with fault-injection env; it is killed when the test ends. */
  spawnCoordinator(
    args: string[],
    env: Record<string, string>,
  ): { child: ChildProcess; done: Promise<CliResult> } {
    const coordinator = startWatched('dht-client', ['--viewleader', this.vl, ...args], { env });
    const done = coordinator.exited.then((code) => ({
      code,
      stdout: coordinator.stdout(),
      stderr: coordinator.stderr(),
    }));
    return { child: coordinator.child, done };
  }

  view(): Promise<View> {
    return this.group !== undefined
      ? this.group.call(ViewLeaderApi.queryServers, {})
      : call(this.vl, ViewLeaderApi.queryServers, {});
  }

  /** Wait until the view has `count` servers, is not rebalancing, and every server installed it. */
  async settled(count: number, timeoutMs?: number): Promise<View> {
    return waitFor(
      `a settled view of ${count} servers`,
      async () => {
        const view = await this.view();
        // A server with a long heartbeat interval learns a newer view from any request of that
        // epoch (as from a client's read); without one it would wait for its next heartbeat.
        await Promise.all(
          view.servers.map((s) =>
            call(s.address, ServerApi.read, { key: 'settle', epoch: view.epoch, serverId: s.id })
              .then(() => undefined)
              .catch(() => undefined),
          ),
        );
        if (view.servers.length !== count || view.rebalancing) return undefined;
        const statuses = await Promise.all(view.servers.map((s) => status(s.address)));
        return statuses.every((s) => s.epoch === view.epoch && !s.rebalancing) ? view : undefined;
      },
      timeoutMs,
    );
  }

  async replicasOf(key: string): Promise<readonly ServerRef[]> {
    return allocateReplicas(key, await this.view());
  }
}

function startViewLeader(options: ClusterOptions): Promise<Proc> {
  const args = ['--port', String(options.viewLeaderPort)];
  args.push('--failure-timeout', String(options.failureTimeoutS ?? 2));
  if (options.dataRoot !== undefined) {
    args.push('--data-dir', path.join(options.dataRoot, 'viewleader'));
  }
  args.push(...secretArgs(options));
  return startProcess('dht-viewleader', args);
}

function secretArgs(options: { readonly secretFile?: string }): string[] {
  return options.secretFile === undefined ? [] : ['--secret-file', options.secretFile];
}

/**
 * Each test of a file gets its own ports in the file's block (a view leader, up to five servers),
 * so no test meets the processes or the kept-alive connections of another.
 */
export const PORTS_PER_TEST = 6;

/** `Cluster.start` on the ports of test number `slot` of a file's port block. */
export function startClusterInSlot(
  ports: PortBlock,
  slot: number,
  options: Omit<ClusterOptions, 'viewLeaderPort' | 'serverPort'>,
): Promise<Cluster> {
  return Cluster.start({
    ...options,
    viewLeaderPort: ports.viewleader + slot * PORTS_PER_TEST,
    serverPort: (i) => ports.server(slot * PORTS_PER_TEST + i),
  });
}

export function status(address: string) {
  return call(address, ServerApi.status, {});
}

/** A server's own copy of `key` (local get), or null when it has none. */
export async function localGet(address: string, key: string): Promise<string | null> {
  try {
    return (await call(address, ServerApi.get, { key })).value;
  } catch (err) {
    if (err instanceof DhtError && err.kind === 'not_found') return null;
    throw err;
  }
}

export async function localValues(
  replicas: readonly ServerRef[],
  key: string,
): Promise<(string | null)[]> {
  return Promise.all(replicas.map((r) => localGet(r.address, key)));
}

export async function pendingCounts(replicas: readonly ServerRef[]): Promise<number[]> {
  return Promise.all(replicas.map(async (r) => (await status(r.address)).pendingTransactions));
}

export function expectCode(result: CliResult, codes: readonly number[], what: string): void {
  if (!codes.includes(result.code ?? -1)) {
    throw new Error(
      `${what}: exit ${result.code}, stdout ${JSON.stringify(result.stdout)}, stderr ${result.stderr}`,
    );
  }
}
