// The thin driver between HTTP and the pure core: each handler reads the clock, lets the core
// decide, turns refusals into DhtError values, and carries out the effects (logging view
// changes, releasing the locks of servers that left).

import { DhtError } from '../lib/errors';
import type { RpcServer } from '../lib/http-server';
import type { Logger } from '../lib/logger';
import { ViewLeaderApi, type RequestOf, type ResponseOf } from '../lib/messages';
import type { Cycle, LockTable } from './locks';
import type { Membership, ViewChange } from './membership';

/** Milliseconds from a monotonic clock: expiry must not jump when the wall clock is set. */
export type MonotonicClock = () => number;

type Api = typeof ViewLeaderApi;

export class ViewLeader {
  constructor(
    private readonly membership: Membership,
    private readonly locks: LockTable,
    private readonly logger: Logger,
    private readonly nowMs: MonotonicClock,
  ) {}

  /** The passage of time; also run at the start of every request so expiry is exact. */
  tick(): void {
    this.carryOut(this.membership.tick(this.nowMs()));
  }

  heartbeat(request: RequestOf<Api['heartbeat']>): ResponseOf<Api['heartbeat']> {
    this.tick();
    const { serverId, address, epoch } = request;
    const outcome = this.membership.heartbeat(serverId, address, this.nowMs(), epoch);
    this.carryOut(outcome.change);
    switch (outcome.kind) {
      case 'accepted':
        return { epoch: outcome.view.epoch, view: outcome.view };
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
    }
  }

  queryServers(): ResponseOf<Api['queryServers']> {
    this.tick();
    return this.membership.view();
  }

  rebalanceDone(request: RequestOf<Api['rebalanceDone']>): ResponseOf<Api['rebalanceDone']> {
    this.tick();
    const { serverId, epoch, phase } = request;
    const outcome = this.membership.rebalanceDone(serverId, epoch, phase);
    switch (outcome.kind) {
      case 'recorded':
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

  lockGet(request: RequestOf<Api['lockGet']>): ResponseOf<Api['lockGet']> {
    this.tick();
    const { lock, requester } = request;
    const outcome = this.locks.get(lock, requester);
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

  lockRelease(request: RequestOf<Api['lockRelease']>): ResponseOf<Api['lockRelease']> {
    this.tick();
    const { lock, requester } = request;
    const outcome = this.locks.release(lock, requester);
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

  deadlocks(): ResponseOf<Api['deadlocks']> {
    this.tick();
    return { cycles: this.locks.deadlocks().map((cycle) => [...cycle]) };
  }

  routes(rpc: RpcServer): RpcServer {
    return rpc
      .route(ViewLeaderApi.heartbeat, (r) => this.heartbeat(r))
      .route(ViewLeaderApi.queryServers, () => this.queryServers())
      .route(ViewLeaderApi.rebalanceDone, (r) => this.rebalanceDone(r))
      .route(ViewLeaderApi.lockGet, (r) => this.lockGet(r))
      .route(ViewLeaderApi.lockRelease, (r) => this.lockRelease(r))
      .route(ViewLeaderApi.deadlocks, () => this.deadlocks());
  }

  /** Log a view change and drop the locks of the servers that left (by ID and by address). */
  private carryOut(change: ViewChange | undefined): void {
    if (change === undefined) return;
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
