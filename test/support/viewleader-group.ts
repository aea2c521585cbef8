// A replicated view leader of real processes for integration tests: 3 (or 5) `dht-viewleader
// --peers` members on fixed loopback ports, each on its own data directory under a root the test
// owns, so a member can be SIGKILLed and started again on its directory at the same address.
// Every process is killed by PID when the test ends (test/support/processes.ts).

import path from 'node:path';
import { DhtError } from '../../lib/errors';
import { call } from '../../lib/http-client';
import { ViewLeaderApi, type MemberStatus, type View } from '../../lib/messages';
import {
  pause,
  resume,
  runClient,
  startProcess,
  waitFor,
  type CliResult,
  type Proc,
} from './processes';

/** A member that does not answer its status within this is reported unreachable. */
const STATUS_TIMEOUT_MS = 1_000;

export class ViewLeaderMembers {
  /** Every member's address, in the order of `--peers`. */
  readonly addresses: readonly string[];
  private readonly procs = new Map<string, Proc>();
  /** Every process started, the killed ones included, for their logs. */
  readonly started: { readonly address: string; readonly proc: Proc }[] = [];

  private constructor(
    ports: readonly number[],
    private readonly dataRoot: string,
    private readonly failureTimeoutS: number,
    private readonly extraArgs: readonly string[],
  ) {
    this.addresses = ports.map((p) => `127.0.0.1:${p}`);
  }

  /** Start one member per port (each on DATAROOT/viewleader-PORT), all at once. */
  static async start(
    ports: readonly number[],
    dataRoot: string,
    failureTimeoutS: number,
    /** More flags for every member (`--secret-file FILE`, say). */
    extraArgs: readonly string[] = [],
  ): Promise<ViewLeaderMembers> {
    const group = new ViewLeaderMembers(ports, dataRoot, failureTimeoutS, extraArgs);
    await Promise.all(group.addresses.map((a) => group.startMember(a)));
    return group;
  }

  /** `--viewleader` for servers and clients: every member, comma-separated. */
  get list(): string {
    return this.addresses.join(',');
  }

  dataDir(address: string): string {
    return path.join(this.dataRoot, `viewleader-${portOf(address)}`);
  }

  /** The running process of the member at `address`. */
  proc(address: string): Proc {
    const proc = this.procs.get(address);
    if (proc === undefined) throw new Error(`no member of this test runs at ${address}`);
    return proc;
  }

  /** Start the member at `address` on its data directory (again, after `kill`). */
  async startMember(address: string): Promise<Proc> {
    if (this.procs.has(address)) throw new Error(`the member at ${address} already runs`);
    const proc = await startProcess('dht-viewleader', [
      '--port',
      String(portOf(address)),
      '--peers',
      this.list,
      '--data-dir',
      this.dataDir(address),
      '--failure-timeout',
      String(this.failureTimeoutS),
      ...this.extraArgs,
    ]);
    this.procs.set(address, proc);
    this.started.push({ address, proc });
    return proc;
  }

  /** SIGKILL the member at `address` and wait until it has exited. */
  async kill(address: string): Promise<void> {
    const proc = this.proc(address);
    proc.child.kill('SIGKILL');
    await proc.exited;
    this.procs.delete(address);
  }

  /** SIGSTOP / SIGCONT the member at `address` (test/support/processes.ts `pause`, `resume`). */
  pause(address: string): Promise<void> {
    return pause(this.proc(address));
  }

  resume(address: string): Promise<void> {
    return resume(this.proc(address));
  }

  /** Each member's own report (`viewleader_status`), `unreachable` for one that does not answer. */
  async statuses(): Promise<MemberStatus[]> {
    return Promise.all(this.addresses.map((a) => memberStatus(a)));
  }

  /**
   * Wait until one member leads and serves (it answers query_servers itself); its address.
   * `among` restricts the candidates (e.g. the survivors of a kill).
   */
  leader(timeoutMs = 20_000, among: readonly string[] = this.addresses): Promise<string> {
    return waitFor(
      'a member to lead and serve',
      async () => {
        for (const address of among) {
          if ((await memberStatus(address)).role !== 'leader') continue;
          if ((await queryMember(address)) !== undefined) return address;
        }
        return undefined;
      },
      timeoutMs,
    );
  }

  /** Wait until the member at `address` has applied everything the leader had committed. */
  async caughtUp(address: string, timeoutMs = 20_000): Promise<MemberStatus> {
    const leader = await this.leader(timeoutMs);
    const target = (await memberStatus(leader)).commitIndex;
    return waitFor(
      `${address} to apply up to ${target}`,
      async () => {
        const status = await memberStatus(address);
        return status.role !== 'unreachable' && status.appliedIndex >= target ? status : undefined;
      },
      timeoutMs,
    );
  }

  /** `bin/dht-client --viewleader A,B,C args...`. */
  cli(...args: string[]): Promise<CliResult> {
    return runClient(['--viewleader', this.list, ...args]);
  }
}

/** One member's `viewleader_status`, or `unreachable`. */
export async function memberStatus(address: string): Promise<MemberStatus> {
  try {
    return await call(
      address,
      ViewLeaderApi.viewleaderStatus,
      {},
      { timeoutMs: STATUS_TIMEOUT_MS },
    );
  } catch (err) {
    if (!(err instanceof DhtError)) throw err;
    return {
      address,
      role: 'unreachable',
      term: 0,
      leader: null,
      commitIndex: 0,
      appliedIndex: 0,
      lastIndex: 0,
      snapshotIndex: 0,
      epoch: 0,
      replicated: false,
    };
  }
}

/**
 * query_servers sent to one member directly (not following redirects): the view it serves, or
 * undefined when it answers `not_leader` (or any other refusal, or not at all).
 */
export async function queryMember(address: string, timeoutMs = 2_000): Promise<View | undefined> {
  try {
    return await call(address, ViewLeaderApi.queryServers, {}, { timeoutMs });
  } catch (err) {
    if (err instanceof DhtError) return undefined;
    throw err;
  }
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}
