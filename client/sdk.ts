// The typed SDK: every client command as a method. The CLI is a thin layer over it; tests and
// benchmarks call it in-process. It caches the view so that steady-state setr/getr cost the view
// leader nothing, and refreshes it when a replica reports a different epoch or a rebalancing.

import { randomUUID } from 'node:crypto';
import { candidateAddresses } from '../lib/address';
import { assert } from '../lib/assert';
import { coordinatorBallot } from '../lib/ballot';
import { DhtError } from '../lib/errors';
import { call, UnreachableError } from '../lib/http-client';
import { setUpAuthentication } from '../lib/http-auth';
import { callBatched } from '../lib/batching';
import {
  CLIENT_TIMEOUT_S_DEFAULT,
  LOCK_RETRY_INTERVAL_S_DEFAULT,
  READ_PENDING_RETRY_MS,
  SERVER_PORT_FIRST,
  SERVER_PORT_LAST,
  VIEW_POLL_MS,
  VIEWLEADER_PORT_FIRST,
  VIEWLEADER_PORT_LAST,
} from '../lib/limits';
import {
  Key,
  ServerApi,
  Value,
  ViewLeaderApi,
  memberWithoutLog,
  type ClusterStatus,
  type MemberStatus,
  type RequestOf,
  type ServerRef,
  type View,
} from '../lib/messages';
import { allocateReplicas } from '../lib/ring';
import { Coordinator, type AckResult, type Send, type VoteResult } from './coordinator';
import { CandidateSet } from './endpoints';
import { ViewLeaderGroup } from '../lib/view-leader-group';

export interface ClientOptions {
  /** `HOST[:PORT][,...]`; a HOST alone scans the contract's port range. */
  readonly viewLeader?: string;
  /** Per-request timeout. */
  readonly timeoutMs?: number;
  /** How long setr/getr wait for a rebalancing to finish before refusing with `retry`. */
  readonly waitMs?: number;
  /** Keep the view between operations (the SDK default); the CLI asks once per command. */
  readonly cacheView?: boolean;
  /**
   * The cluster's secret file (docs/security.md): every request of this process is signed with
   * it from now on (a process has one secret). Default: none.
   */
  readonly secretFile?: string;
}

export interface SetrResult {
  readonly version: number;
}

/** What a replicated write commits: a value (setr), or a delete (delr), which is a tombstone. */
type Write = { readonly value: string } | { readonly deleted: true };
const DELETE: Write = { deleted: true };

export interface GetrResult {
  readonly value: string;
  readonly version: number;
}

export class DhtClient {
  private readonly viewLeader: ViewLeaderGroup;
  private readonly timeoutMs: number;
  private readonly waitMs: number;
  private readonly cacheView: boolean;
  private cachedView: View | undefined;
  /** The highest epoch of any view this client has received. */
  private highestEpochSeen = 0;

  constructor(options: ClientOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? CLIENT_TIMEOUT_S_DEFAULT * 1000;
    this.waitMs = options.waitMs ?? 0;
    this.cacheView = options.cacheView ?? true;
    if (options.secretFile !== undefined) setUpAuthentication({ secretFile: options.secretFile });
    const addresses = candidateAddresses(
      options.viewLeader ?? `127.0.0.1:${VIEWLEADER_PORT_FIRST}`,
      VIEWLEADER_PORT_FIRST,
      VIEWLEADER_PORT_LAST,
    );
    this.viewLeader = new ViewLeaderGroup(addresses, this.timeoutMs);
  }

  // ---- view leader ------------------------------------------------------------------------------

  async queryServers(): Promise<View> {
    const view = await this.viewLeader.call(ViewLeaderApi.queryServers, {});
    // Epochs never go back: an older one than this client has seen comes from a view leader that
    // lost its state or lags behind, and acting on it could send writes to the wrong replicas.
    if (view.epoch < this.highestEpochSeen) {
      throw new DhtError(
        'retry',
        `the view leader answered epoch ${view.epoch}, older than epoch ${this.highestEpochSeen} seen before`,
        'stale_view',
      );
    }
    this.highestEpochSeen = view.epoch;
    this.cachedView = this.cacheView ? view : undefined;
    return view;
  }

  async locate(key: string): Promise<{ epoch: number; replicas: string[] }> {
    checkKey(key);
    const view = await this.queryServers();
    return { epoch: view.epoch, replicas: allocateReplicas(key, view).map((s) => s.address) };
  }

  /** Ask once: granted, or queued behind the holder. */
  async lockTry(lock: string, requester: string): Promise<boolean> {
    return (await this.viewLeader.call(ViewLeaderApi.lockGet, { lock, requester })).granted;
  }

  /** Wait until granted, asking every `retryIntervalMs`; `waitMs` bounds the wait if given. */
  async lockGet(
    lock: string,
    requester: string,
    retryIntervalMs = LOCK_RETRY_INTERVAL_S_DEFAULT * 1000,
    waitMs?: number,
  ): Promise<void> {
    const deadline = waitMs === undefined ? Infinity : Date.now() + waitMs;
    for (;;) {
      if (await this.lockTry(lock, requester)) return;
      if (Date.now() + retryIntervalMs > deadline) {
        // Giving up: leave the queue, so the lock is never handed to a requester who left.
        await this.lockRelease(lock, requester).catch(() => undefined);
        throw new DhtError('retry', `lock '${lock}' is held by another requester`);
      }
      await sleep(retryIntervalMs);
    }
  }

  async lockRelease(lock: string, requester: string): Promise<void> {
    // Not idempotent: a second release after a timed-out first one would say `lock_not_held`.
    await this.viewLeader.call(
      ViewLeaderApi.lockRelease,
      { lock, requester },
      { idempotent: false },
    );
  }

  /**
   * Every member of the view leader as it reports itself (`viewleader_status`); a member that
   * does not answer is `unreachable`. Asks each address given, in order.
   */
  async viewLeaderStatus(): Promise<MemberStatus[]> {
    return Promise.all(
      this.viewLeader.addresses.map(async (address) => {
        try {
          return await call(
            address,
            ViewLeaderApi.viewleaderStatus,
            {},
            { timeoutMs: this.timeoutMs },
          );
        } catch (err) {
          if (!(err instanceof UnreachableError)) throw err;
          return memberWithoutLog(address, 'unreachable', 0);
        }
      }),
    );
  }

  /**
   * The operator's view (`status`): the view with every server's keys, share of the ring, last
   * heartbeat and rebalancing progress, as the view leader knows them.
   */
  async clusterStatus(): Promise<ClusterStatus> {
    return this.viewLeader.call(ViewLeaderApi.clusterStatus, {});
  }

  async deadlocks(): Promise<string[][]> {
    return (await this.viewLeader.call(ViewLeaderApi.deadlocks, {})).cycles;
  }

  // ---- replicated operations --------------------------------------------------------------------

  /** Replicated set by epoch-checked two-phase commit (client/coordinator.ts). */
  async setr(key: string, value: string): Promise<SetrResult> {
    checkKey(key);
    checkValue(value);
    return this.withSettledView(key, (view, replicas) =>
      this.commit(view, replicas, key, { value }),
    );
  }

  /**
   * Replicated delete: the same two-phase commit as setr, writing a tombstone at 1 + the highest
   * vote (docs/design.md, "Delete and tombstones"). Committed whether or not the key existed;
   * `version` is the tombstone's.
   */
  async delr(key: string): Promise<SetrResult> {
    checkKey(key);
    return this.withSettledView(key, (view, replicas) => this.commit(view, replicas, key, DELETE));
  }

  /** Replicated get: the replicas in order; a dead one costs one failed request. */
  async getr(key: string): Promise<GetrResult> {
    checkKey(key);
    return this.withSettledView(key, (view, replicas) => this.read(view, replicas, key));
  }

  /**
   * Run `operation` against a view that is not rebalancing. A `retry` answer (epoch changed,
   * rebalancing, server replaced) refreshes the view and tries again until the wait runs out;
   * a view that came from the cache always gets one fresh try.
   */
  private async withSettledView<T>(
    key: string,
    operation: (view: View, replicas: readonly ServerRef[]) => Promise<T>,
  ): Promise<T> {
    const deadline = Date.now() + this.waitMs;
    let fromCache = this.cachedView !== undefined;
    let view = this.cachedView ?? (await this.queryServers());
    for (;;) {
      if (!view.rebalancing) {
        if (view.servers.length === 0)
          throw new DhtError('unavailable', 'no servers in the view', 'no_servers');
        try {
          return await operation(view, allocateReplicas(key, view));
        } catch (err) {
          if (!(err instanceof DhtError) || err.kind !== 'retry' || err.reason === 'key_busy')
            throw err;
          if (!fromCache && Date.now() >= deadline) throw err;
        }
      } else if (!fromCache && Date.now() >= deadline) {
        throw new DhtError(
          'retry',
          `rebalancing under way (epoch ${view.epoch}); retry later`,
          'rebalancing',
        );
      }
      if (!fromCache) await sleep(VIEW_POLL_MS);
      fromCache = false;
      this.cachedView = undefined;
      view = await this.queryServers();
    }
  }

  private async commit(
    view: View,
    replicas: readonly ServerRef[],
    key: string,
    write: Write,
  ): Promise<SetrResult> {
    const txid = randomUUID();
    const coordinator = new Coordinator(replicas.length, {
      primaryLearnsFirst: FAULTS.afterPrimaryCommitMs > 0,
    });
    const ballot = coordinatorBallot(view.epoch);
    const deliver = async (send: Send): Promise<void> => {
      const replica = replicas[send.replica];
      let next: Send[];
      switch (send.type) {
        case 'prepare': {
          const vote = await this.vote(replica, {
            txid,
            key,
            ...write,
            epoch: view.epoch,
            serverId: replica.id,
            replicas: [...replicas],
          });
          next = coordinator.onVote(send.replica, vote);
          break;
        }
        case 'accept':
          await faultPause(FAULTS.beforeCommitMs);
          next = coordinator.onAcceptAck(
            send.replica,
            await this.ack(() =>
              callBatched(
                replica.address,
                ServerApi.accept,
                {
                  txid,
                  key,
                  serverId: replica.id,
                  ballot,
                  outcome: { state: 'committed', version: send.version },
                },
                this.rpc(),
              ),
            ),
          );
          break;
        case 'commit':
          if (send.replica !== 0) await faultPause(FAULTS.afterPrimaryCommitMs);
          next = coordinator.onCommitAck(
            send.replica,
            await this.ack(() =>
              callBatched(
                replica.address,
                ServerApi.commit,
                { txid, key, version: send.version },
                this.rpc(),
              ),
            ),
          );
          break;
        case 'abort':
          next = coordinator.onAbortAck(
            send.replica,
            await this.ack(() =>
              callBatched(replica.address, ServerApi.abort, { txid, key }, this.rpc()),
            ),
          );
          break;
      }
      await Promise.all(next.map(deliver));
    };
    await Promise.all(coordinator.start().map(deliver));
    const outcome = coordinator.outcome;
    assert(
      outcome !== undefined,
      'the coordinator reaches an outcome once every message is answered',
    );
    if (outcome.type === 'failed') throw outcome.error;
    return { version: outcome.version };
  }

  private async vote(
    replica: ServerRef,
    request: Parameters<typeof prepareCall>[1],
  ): Promise<VoteResult> {
    try {
      const { version } = await prepareCall(replica.address, request, this.timeoutMs);
      return { type: 'yes', version };
    } catch (err) {
      if (err instanceof UnreachableError) return { type: 'unreachable', transport: err.transport };
      if (err instanceof DhtError && err.kind !== 'unknown') return { type: 'no', error: err };
      return { type: 'unreachable', transport: 'broken' };
    }
  }

  private async ack(send: () => Promise<unknown>): Promise<AckResult> {
    try {
      await send();
      return { type: 'ok' };
    } catch (err) {
      if (err instanceof UnreachableError) return { type: 'unreachable', transport: err.transport };
      if (err instanceof DhtError && err.kind !== 'unknown') return { type: 'error', error: err };
      return { type: 'unreachable', transport: 'broken' };
    }
  }

  private async read(view: View, replicas: readonly ServerRef[], key: string): Promise<GetrResult> {
    // An undecided transaction is decided within the participants' prepare timeout; wait for it
    // at most as long as one request may take, or the caller's --wait if longer.
    const busyDeadline = Date.now() + Math.max(this.timeoutMs, this.waitMs);
    for (const replica of replicas) {
      for (;;) {
        try {
          return await callBatched(
            replica.address,
            ServerApi.read,
            { key, epoch: view.epoch, serverId: replica.id },
            this.rpc(),
          );
        } catch (err) {
          // The next replica: this one is gone, or not sure it is still in the view (paused).
          if (err instanceof UnreachableError) break;
          if (err instanceof DhtError && err.reason === 'lease_expired') break;
          if (err instanceof DhtError && err.reason === 'key_busy' && Date.now() < busyDeadline) {
            await sleep(READ_PENDING_RETRY_MS);
            continue;
          }
          throw err;
        }
      }
    }
    throw new DhtError(
      'unavailable',
      `no replica of the key is reachable (${replicas.length} tried)`,
    );
  }

  private rpc(): { timeoutMs: number } {
    return { timeoutMs: this.timeoutMs };
  }
}

/** Commands addressed to one server (`--server`): local, not replicated. */
export class ServerClient {
  private readonly server: CandidateSet;

  constructor(server = '127.0.0.1', timeoutMs = CLIENT_TIMEOUT_S_DEFAULT * 1000) {
    this.server = new CandidateSet(
      'server',
      candidateAddresses(server, SERVER_PORT_FIRST, SERVER_PORT_LAST),
      timeoutMs,
    );
  }

  async print(text: string): Promise<void> {
    await this.server.call(ServerApi.print, { text });
  }

  async set(key: string, value: string): Promise<void> {
    checkKey(key);
    checkValue(value);
    await this.server.call(ServerApi.set, { key, value });
  }

  async get(key: string): Promise<string> {
    checkKey(key);
    return (await this.server.call(ServerApi.get, { key })).value;
  }

  async queryAllKeys(): Promise<string[]> {
    return (await this.server.call(ServerApi.queryAllKeys, {})).keys;
  }
}

function prepareCall(
  address: string,
  request: RequestOf<typeof ServerApi.prepare>,
  timeoutMs: number,
) {
  return callBatched(address, ServerApi.prepare, request, { timeoutMs });
}

/**
 * Fault injection for the crash tests (test/integration/two-phase-commit.test.ts): pause the
 * coordinator at a chosen point so a test can SIGKILL it there. Unset in normal use.
 */
const FAULTS = {
  beforeCommitMs: Number(process.env.DHT_FAULT_PAUSE_BEFORE_COMMIT_MS ?? 0),
  afterPrimaryCommitMs: Number(process.env.DHT_FAULT_PAUSE_AFTER_PRIMARY_COMMIT_MS ?? 0),
};

async function faultPause(ms: number): Promise<void> {
  if (ms > 0) await sleep(ms);
}

function checkKey(key: string): void {
  const parsed = Key.safeParse(key);
  if (!parsed.success) throw new DhtError('invalid', parsed.error.issues[0].message, 'bad_request');
}

function checkValue(value: string): void {
  const parsed = Value.safeParse(value);
  if (!parsed.success) throw new DhtError('invalid', parsed.error.issues[0].message, 'bad_request');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
