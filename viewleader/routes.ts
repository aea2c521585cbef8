// The thin driver between HTTP and the pure core: each handler reads the clock, lets the core
// decide, turns refusals into DhtError values, and carries out the effects (logging view
// changes, releasing the locks of servers that left, probing a contested address).
//
// Durable before answered (the contract's "Durability"): every step (the synchronous part of a
// handler, or a tick) ends by handing the cores' change logs to the StateLog as one unit, and
// every answer waits until everything written so far is durable, its own step's changes and any
// other's it could reveal (a tick's expiry, another request's lock). A step that changed
// nothing writes nothing, so a heartbeat of a member costs no write and no sync.

import { assert } from '../lib/assert';
import { DhtError } from '../lib/errors';
import type { RpcServer } from '../lib/http-server';
import { TRANSFER_BODY_BYTES_MAX } from '../lib/limits';
import type { Logger } from '../lib/logger';
import {
  memberWithoutLog,
  ViewLeaderApi,
  type MemberStatus,
  type RaftRequest,
  type RequestOf,
  type ResponseOf,
} from '../lib/messages';
import { clusterStatus, ServerStatsTable } from './cluster-status';
import type { Cycle, LockTable } from './locks';
import type { AddressProbe, Membership, ViewChange } from './membership';
import { IN_MEMORY, type StateLog } from './saved-state';
import type { ServedView, ViewLeaderMetrics } from './metrics';
import { ViewHistory } from './view-history';

/** Milliseconds from a monotonic clock: expiry must not jump when the wall clock is set. */
export type MonotonicClock = () => number;

/**
 * Asks the process listening on `address` who it is (viewleader/address-probe.ts). Never
 * rejects: every failure is an AddressProbe. Must be bounded in time (ADDRESS_PROBE_TIMEOUT_MS).
 */
export type ProbeAddress = (address: string) => Promise<AddressProbe>;

type Api = typeof ViewLeaderApi;

export class ViewLeader {
  /**
   * Probes in flight, by address: heartbeats contesting one address share one probe, so a flood
   * of forged heartbeats costs one status request per live address, never one per heartbeat.
   */
  private readonly probes = new Map<string, Promise<AddressProbe>>();

  /**
   * Set once saving failed: the cores were replaced by what is on disk, reads are served from
   * them, and every change is refused with this (`storage_failed`) until a restart.
   */
  private failure: DhtError | undefined;

  /** What each server last said of itself, for the operator's view: memory only, never saved. */
  private readonly serverStats = new ServerStatsTable();
  /** The view changes installed since this view leader started leading (memory only). */
  private readonly history = new ViewHistory();
  private readonly leadingSinceMs: number;

  constructor(
    private membership: Membership,
    private locks: LockTable,
    private readonly logger: Logger,
    private readonly nowMs: MonotonicClock,
    private readonly probeAddress: ProbeAddress,
    private readonly state: StateLog = IN_MEMORY,
    /** Counts the view changes (the process's metrics; none in unit tests). */
    private readonly metrics?: ViewLeaderMetrics,
    /** Wall-clock time (ms since 1970), for the history's times only: never for expiry. */
    private readonly wallClockMs: () => number = Date.now,
  ) {
    this.leadingSinceMs = wallClockMs();
  }

  /**
   * The passage of time (the timer's step); also run at the start of every request's step so
   * expiry is exact. Skipped while the state log is busy: requests are refused meanwhile, and the
   * next tick catches up.
   */
  tick(): void {
    if (this.state.busy || this.failure !== undefined) return;
    this.advanceClock();
    this.save();
  }

  private advanceClock(): void {
    this.carryOut(this.membership.tick(this.nowMs()));
  }

  /**
   * One step: refuse it if the state log cannot take its changes, apply expiry, run `decide`
   * against the cores, and hand what changed to the state log. Synchronous, so that no other
   * step interleaves; the caller then awaits `durable()` before answering.
   */
  private step<T>(decide: () => T): T {
    if (this.failure !== undefined) throw this.failure;
    if (this.state.busy) {
      throw new DhtError(
        'retry',
        'the view leader is waiting for its disk; try again',
        'storage_busy',
      );
    }
    this.advanceClock();
    const result = decide();
    this.save();
    return result;
  }

  private save(): void {
    const changes = { membership: this.membership.takeChanges(), locks: this.locks.takeChanges() };
    this.state.write(changes);
  }

  /** Wait until everything an answer could reveal is durable. */
  private async durable(): Promise<void> {
    try {
      await this.state.durable();
    } catch (err) {
      if (err instanceof DhtError) throw err; // not_leader: the caller asks the leader
      const message = err instanceof Error ? err.message : String(err);
      throw new DhtError('unavailable', `the view leader could not save its state: ${message}`);
    }
  }

  /**
   * A heartbeat is answered at once unless it contests a live server's address; then it waits
   * for one probe of that address (bounded by the probe's timeout). Other requests are served
   * meanwhile: the probe is awaited, nothing blocks the event loop.
   */
  async heartbeat(request: RequestOf<Api['heartbeat']>): Promise<ResponseOf<Api['heartbeat']>> {
    const { serverId, address, epoch } = request;
    if (this.failure !== undefined) return this.heartbeatReadOnly(serverId, address);
    let outcome = this.step(() => {
      const first = this.membership.heartbeat(serverId, address, this.nowMs(), epoch);
      this.carryOut(first.change);
      return first;
    });
    if (outcome.kind === 'address_held') {
      const holder = outcome.holder;
      const probe = await this.probe(address);
      outcome = this.step(() => {
        const second = this.membership.takeOver(
          serverId,
          address,
          holder.id,
          probe,
          this.nowMs(),
          epoch,
        );
        this.carryOut(second.change);
        return second;
      });
      if (outcome.kind === 'address_in_use') {
        this.logger.warn(
          { serverId, address, holder: holder.id, probe },
          'heartbeat refused: its address belongs to a live server',
        );
      }
    }
    await this.durable();
    switch (outcome.kind) {
      case 'accepted':
        if (request.stats !== undefined) this.serverStats.note(serverId, request.stats);
        return {
          epoch: outcome.view.epoch,
          view: outcome.view,
          leaseMs: Math.floor(this.membership.failureTimeoutMs), // shorter is the safe side
        };
      case 'expired':
        throw new DhtError(
          'rejected',
          `server ${serverId} timed out and is rejected forever; a restarted process needs a new ID`,
          'server_expired',
        );
      case 'address_changed':
        throw new DhtError(
          'invalid',
          `server ${serverId} is in the view at ${outcome.address}, not ${address}`,
          'bad_request',
        );
      case 'address_held':
        // The address changed hands while it was probed: the next heartbeat tries again.
        throw new DhtError(
          'retry',
          `address ${address} changed hands meanwhile (now ${outcome.holder.id}); try again`,
          'address_in_use',
        );
      case 'address_in_use':
        throw new DhtError(
          'retry',
          `address ${address} belongs to live server ${outcome.holder.id}, ${describeProbe(outcome.probe)}`,
          'address_in_use',
        );
    }
  }

  /** One probe per address at a time, shared by every heartbeat that contests it. */
  private probe(address: string): Promise<AddressProbe> {
    const inFlight = this.probes.get(address);
    if (inFlight !== undefined) return inFlight;
    const probe = this.probeAddress(address)
      .catch((): AddressProbe => ({ kind: 'no_answer' }))
      .finally(() => this.probes.delete(address));
    this.probes.set(address, probe);
    return probe;
  }

  async queryServers(): Promise<ResponseOf<Api['queryServers']>> {
    if (this.failure !== undefined) return this.membership.view();
    const view = this.step(() => this.membership.view());
    await this.durable();
    return view;
  }

  async rebalanceDone(
    request: RequestOf<Api['rebalanceDone']>,
  ): Promise<ResponseOf<Api['rebalanceDone']>> {
    const { serverId, epoch, phase, stats } = request;
    // The server forgets a report once it is acknowledged (server/view-tracker.ts), so the
    // progress it records is durable before the answer.
    const outcome = this.step(() => this.membership.rebalanceDone(serverId, epoch, phase));
    await this.durable();
    switch (outcome.kind) {
      case 'recorded':
        if (stats !== undefined) this.serverStats.note(serverId, stats);
        this.logger.debug({ serverId, epoch, phase }, 'rebalancing progress reported');
        if (this.membership.placement.epoch === epoch && phase === 'copied') {
          this.logger.debug({ epoch }, 'copy phase complete');
        }
        if (outcome.finished) this.logger.info({ epoch }, 'rebalancing finished');
        return {};
      case 'stale':
        return {};
      case 'future_epoch':
        throw new DhtError(
          'invalid',
          `epoch ${epoch} is in the future (current: ${this.membership.epoch})`,
          'bad_request',
        );
      case 'expired':
        throw new DhtError('rejected', `server ${serverId} timed out`, 'server_expired');
      case 'not_in_view':
        throw new DhtError('rejected', `server ${serverId} is not in the view`, 'not_in_view');
    }
  }

  /**
   * The operator's view (`dht-client status`, the page): served like query_servers (expiry
   * applied, and durable before it is shown), plus what the servers last said of themselves.
   */
  async clusterStatus(): Promise<ResponseOf<Api['clusterStatus']>> {
    if (this.failure === undefined) {
      this.step(() => undefined);
      await this.durable();
    }
    return clusterStatus({
      view: this.membership.view(),
      members: this.membership.memberReports(this.nowMs()),
      stats: this.serverStats,
      failureTimeoutMs: this.membership.failureTimeoutMs,
      history: this.history.list(),
      leadingSinceMs: this.leadingSinceMs,
    });
  }

  async lockGet(request: RequestOf<Api['lockGet']>): Promise<ResponseOf<Api['lockGet']>> {
    const { lock, requester } = request;
    // While changes are refused, asking again for a lock one holds changes nothing: granted.
    if (this.failure !== undefined && this.locks.holderOf(lock) === requester) {
      return { granted: true };
    }
    const outcome = this.step(() => this.locks.get(lock, requester));
    await this.durable();
    switch (outcome.kind) {
      case 'granted':
        return { granted: true };
      case 'queued':
        this.warnOfDeadlocks(outcome.newCycles);
        return { granted: false };
      case 'table_full':
        throw new DhtError('retry', `the lock table is full (${this.locks.size} entries)`);
    }
  }

  async lockRelease(
    request: RequestOf<Api['lockRelease']>,
  ): Promise<ResponseOf<Api['lockRelease']>> {
    const { lock, requester } = request;
    const outcome = this.step(() => this.locks.release(lock, requester));
    await this.durable();
    switch (outcome.kind) {
      case 'released':
        this.warnOfDeadlocks(outcome.newCycles);
        return {};
      case 'dequeued':
        return {};
      case 'not_held':
        throw new DhtError(
          'rejected',
          `${requester} neither holds nor waits for lock ${lock}`,
          'lock_not_held',
        );
    }
  }

  async deadlocks(): Promise<ResponseOf<Api['deadlocks']>> {
    if (this.failure !== undefined) return { cycles: this.locks.deadlocks().map((c) => [...c]) };
    const cycles = this.step(() => this.locks.deadlocks().map((cycle) => [...cycle]));
    await this.durable();
    return { cycles };
  }

  /**
   * Saving failed (the contract's "Disk full or a failed write"): from now on serve what is on
   * disk, read back into `membership` and `locks`, and refuse every change with `failure`. The
   * cores in memory may hold changes that never reached the disk; none of them was answered, and
   * none will be shown. A restart on the directory (after the disk is fixed) resumes.
   */
  refuseChanges(membership: Membership, locks: LockTable, failure: DhtError): void {
    this.membership = membership;
    this.locks = locks;
    this.failure = failure;
  }

  /**
   * A heartbeat while changes are refused: a member of the saved view, at its saved address, is
   * answered with that view (nothing changes, and nobody can be expelled meanwhile, so its lease
   * holds); anything else would change the view and is refused.
   */
  private heartbeatReadOnly(serverId: string, address: string): ResponseOf<Api['heartbeat']> {
    assert(this.failure !== undefined, 'only while changes are refused');
    const view = this.membership.view();
    if (!view.servers.some((s) => s.id === serverId && s.address === address)) throw this.failure;
    return {
      epoch: view.epoch,
      view,
      leaseMs: Math.floor(this.membership.failureTimeoutMs),
    };
  }

  routes(rpc: RpcServer): RpcServer {
    return viewLeaderRoutes(rpc, {
      leader: () => Promise.resolve(this),
      status: () => this.status(),
    });
  }

  /** How this view leader reports itself when it runs alone (`viewleader_status`). */
  status(): MemberStatus {
    return memberWithoutLog('', 'leader', this.membership.epoch);
  }

  /** The epoch of the view this view leader serves. */
  get epoch(): number {
    return this.membership.epoch;
  }

  /** What the metrics and /health show of the view served: counts, no key. */
  served(): ServedView {
    return {
      epoch: this.membership.epoch,
      servers: this.membership.view().servers.length,
      rebalancing: this.membership.rebalancing,
      locks: this.locks.size,
      storageFailed: this.failure !== undefined,
    };
  }

  /** Set once saving failed (`refuseChanges`): changes are refused until a restart. */
  get storageFailure(): DhtError | undefined {
    return this.failure;
  }

  /** Log a view change and drop the locks of the servers that left (by ID and by address). */
  private carryOut(change: ViewChange | undefined): void {
    if (change === undefined) return;
    this.metrics?.viewChanged(change);
    this.history.record(change, this.wallClockMs());
    this.serverStats.retain(new Set(this.membership.view().servers.map((s) => s.id)));
    this.logger.info(
      {
        epoch: change.epoch,
        joined: change.joined.map((s) => s.id),
        left: change.left.map((s) => s.id),
        servers: this.membership.view().servers.length,
      },
      'view changed',
    );
    for (const server of change.left) {
      this.logger.info(
        { ...server, epoch: change.epoch },
        `server left the view (${server.cause})`,
      );
    }
    const gone = new Set(change.left.flatMap((s) => [s.id, s.address]));
    if (gone.size === 0) return;
    const outcome = this.locks.releaseAll(gone);
    for (const handover of outcome.released) {
      this.logger.info(handover, 'lock released: its holder left the view');
    }
    if (outcome.dequeued.length > 0) {
      this.logger.info({ dequeued: outcome.dequeued }, 'waiters that left the view dequeued');
    }
    this.warnOfDeadlocks(outcome.newCycles);
  }

  private warnOfDeadlocks(cycles: readonly Cycle[]): void {
    if (cycles.length > 0)
      this.logger.warn({ cycles }, 'deadlock: the waits-for graph has a cycle');
  }
}

export interface ViewLeaderRouting {
  /**
   * The ViewLeader that answers, once it is ready. main.ts takes its port before it reads its
   * data directory (the default directory's name holds the port), so a request that arrives in
   * between waits for the restored state instead of seeing an empty one. A member of a
   * replicated view leader that does not lead rejects with NotLeaderError (`not_leader`).
   */
  readonly leader: () => Promise<ViewLeader>;
  /** `viewleader_status`: how this member reports itself (any member answers). */
  readonly status: () => MemberStatus | Promise<MemberStatus>;
  /** Raft messages from another member (replicated only). */
  readonly raft?: (request: RaftRequest) => void;
}

/** The view leader's endpoints. */
export function viewLeaderRoutes(rpc: RpcServer, routing: ViewLeaderRouting): RpcServer {
  const { leader, status, raft } = routing;
  rpc
    .route(ViewLeaderApi.heartbeat, async (r) => (await leader()).heartbeat(r))
    .route(ViewLeaderApi.queryServers, async () => (await leader()).queryServers())
    .route(ViewLeaderApi.rebalanceDone, async (r) => (await leader()).rebalanceDone(r))
    .route(ViewLeaderApi.lockGet, async (r) => (await leader()).lockGet(r))
    .route(ViewLeaderApi.lockRelease, async (r) => (await leader()).lockRelease(r))
    .route(ViewLeaderApi.deadlocks, async () => (await leader()).deadlocks())
    .route(ViewLeaderApi.clusterStatus, async () => (await leader()).clusterStatus())
    .route(ViewLeaderApi.viewleaderStatus, () => status());
  if (raft !== undefined) {
    rpc.route(
      ViewLeaderApi.raft,
      (request) => {
        raft(request);
        return {};
      },
      // A snapshot for a member far behind travels in one message.
      { bodyBytesMax: TRANSFER_BODY_BYTES_MAX },
    );
  }
  return rpc;
}

/** Why a probe did not prove the newcomer, for the refusal's message. */
function describeProbe(probe: AddressProbe): string {
  switch (probe.kind) {
    case 'answered':
      return `which answers there as ${probe.serverId}`;
    case 'no_answer':
      return 'and whatever listens there did not say who it is in time';
    case 'refused':
      // takeOver never refuses after a refused connection; kept total for the switch.
      return 'and nothing listens there';
  }
}
