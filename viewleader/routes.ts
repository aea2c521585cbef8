// The thin driver between HTTP and the pure core: each handler reads the clock, lets the core
// decide, turns refusals into DhtError values, and carries out the effects (logging view
// changes, releasing the locks of servers that left, probing a contested address).

import { DhtError } from '../lib/errors';
import type { RpcServer } from '../lib/http-server';
import type { Logger } from '../lib/logger';
import { ViewLeaderApi, type RequestOf, type ResponseOf } from '../lib/messages';
import type { Cycle, LockTable } from './locks';
import type { AddressProbe, Membership, ViewChange } from './membership';

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

  constructor(
    private readonly membership: Membership,
    private readonly locks: LockTable,
    private readonly logger: Logger,
    private readonly nowMs: MonotonicClock,
    private readonly probeAddress: ProbeAddress,
  ) {}

  /** The passage of time; also run at the start of every request so expiry is exact. */
  tick(): void {
    this.carryOut(this.membership.tick(this.nowMs()));
  }

  /**
   * A heartbeat is answered at once unless it contests a live server's address; then it waits
   * for one probe of that address (bounded by the probe's timeout). Other requests are served
   * meanwhile: the probe is awaited, nothing blocks the event loop.
   */
  async heartbeat(request: RequestOf<Api['heartbeat']>): Promise<ResponseOf<Api['heartbeat']>> {
    this.tick();
    const { serverId, address, epoch } = request;
    let outcome = this.membership.heartbeat(serverId, address, this.nowMs(), epoch);
    this.carryOut(outcome.change);
    if (outcome.kind === 'address_held') {
      const holder = outcome.holder;
      const probe = await this.probe(address);
      outcome = this.membership.takeOver(serverId, address, holder.id, probe, this.nowMs(), epoch);
      this.carryOut(outcome.change);
      if (outcome.kind === 'address_in_use') {
        this.logger.warn(
          { serverId, address, holder: holder.id, probe },
          'heartbeat refused: its address belongs to a live server',
        );
      }
    }
    switch (outcome.kind) {
      case 'accepted':
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
