// A storage server: its bucket, the 2PC participant, and the view it believes in. This class is
// the shell that wires the pure parts (Participant, ViewTracker, planRebalance) to the network
// and timers: it executes what they decide and feeds them what the network says.

import { DhtError } from '../lib/errors';
import { call, UnreachableError } from '../lib/http-client';
import type { Logger } from '../lib/logger';
import {
  ServerApi,
  ViewLeaderApi,
  type RebalancePhase,
  type ServerRef,
  type View,
} from '../lib/messages';
import { ViewTracker, type ViewEffect } from './view-tracker';
import type { RpcServer } from '../lib/http-server';
import {
  TRANSFER_BODY_BYTES_MAX,
  DECISION_RETRY_MS,
  DECISIONS_REMEMBERED_MAX,
} from '../lib/limits';
import { Participant } from './participant';
import { Rebalancer } from './rebalancer';
import type { Store } from './store';

const PARTICIPANT_TICK_MS = 100;
/** While waiting at the copy barrier, ask the view leader this often (a few asks per epoch). */
const BARRIER_POLL_MS = 50;
const VIEWLEADER_TIMEOUT_MS = 2000;
/** While no view leader answers, repeat the warning at most this often (heartbeats can be 50 ms apart). */
const UNREACHABLE_WARNING_INTERVAL_MS = 10_000;

export interface StorageServerConfig {
  readonly serverId: string;
  readonly viewLeaders: readonly string[];
  readonly heartbeatIntervalMs: number;
  readonly prepareTimeoutMs: number;
}

export class StorageServer {
  /** Known once listening: exactly the `listening on` address. */
  private address = '';
  private readonly tracker = new ViewTracker();
  private viewLeaderIndex = 0;
  private heartbeatInFlight = false;
  /** Since when no view leader has answered, and when that was last logged. */
  private viewLeaderLost: { sinceMs: number; warnedMs: number } | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly participant: Participant;
  private readonly rebalancer: Rebalancer;

  constructor(
    private readonly config: StorageServerConfig,
    private readonly store: Store,
    private readonly logger: Logger,
  ) {
    this.participant = new Participant({
      selfId: config.serverId,
      prepareTimeoutMs: config.prepareTimeoutMs,
      decisionRetryMs: DECISION_RETRY_MS,
      decisionsRememberedMax: DECISIONS_REMEMBERED_MAX,
    });
    this.rebalancer = new Rebalancer({
      selfId: config.serverId,
      store,
      logger,
      pendingTransactions: () => this.participant.pendingCount,
    });
  }

  start(address: string): void {
    this.address = address;
    void this.heartbeat();
    this.timers.push(setInterval(() => void this.heartbeat(), this.config.heartbeatIntervalMs));
    this.timers.push(setInterval(() => this.tickParticipant(), PARTICIPANT_TICK_MS));
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
  }

  routes(rpc: RpcServer): void {
    const { store } = this;
    rpc
      .route(ServerApi.print, ({ text }) => {
        process.stderr.write(`${text}\n`);
        return {};
      })
      .route(ServerApi.set, ({ key, value }) => {
        store.put(key, value, store.versionOf(key) + 1);
        return {};
      })
      .route(ServerApi.get, ({ key }) => {
        const held = store.get(key);
        if (held === undefined) throw new DhtError('not_found', 'key not found');
        return { value: held.value, version: held.version };
      })
      .route(ServerApi.queryAllKeys, () => ({ keys: [...store.keys()].sort() }))
      .route(ServerApi.status, () => ({
        serverId: this.config.serverId,
        address: this.address,
        epoch: this.tracker.epoch,
        rebalancing: this.tracker.rebalancing,
        keyCount: store.size,
        pendingTransactions: this.participant.pendingCount,
      }))
      .route(ServerApi.prepare, (request) => {
        this.noticeEpoch(request.epoch);
        const vote = this.participant.prepare(
          request,
          {
            epoch: this.tracker.epoch,
            rebalancing: this.tracker.rebalancing,
            currentVersion: store.versionOf(request.key),
          },
          performance.now(),
        );
        if (vote.vote === 'no') throw vote.error;
        return vote;
      })
      .route(ServerApi.commit, ({ txid, key, version }) => {
        const apply = this.participant.commit(txid, key, version);
        if (apply !== undefined && !this.apply(apply.key, apply.value, apply.version, txid)) {
          // Decided, but this copy is newer than the commit (a local set, a stray push): the
          // coordinator must not report "applied on all replicas".
          throw new DhtError(
            'rejected',
            'committed, but a newer copy of the key is held here',
            'newer_copy_held',
          );
        }
        return {};
      })
      .route(ServerApi.abort, ({ txid, key }) => {
        this.participant.abort(txid, key, this.tracker.viewIds);
        return {};
      })
      .route(ServerApi.decision, ({ txid, key, serverId }) => {
        this.checkServerId(serverId);
        return this.participant.answer(txid, performance.now(), key);
      })
      .route(ServerApi.read, ({ key, epoch, serverId }) => {
        this.checkServerId(serverId);
        this.noticeEpoch(epoch);
        if (epoch !== this.tracker.epoch) {
          throw new DhtError(
            'retry',
            `epoch ${this.tracker.epoch} here, ${epoch} in request`,
            'epoch_mismatch',
          );
        }
        if (this.tracker.rebalancing)
          throw new DhtError('retry', 'rebalancing under way', 'rebalancing');
        // Linearizable reads: a replica that may be about to commit answers only once decided.
        if (this.participant.isPending(key)) {
          throw new DhtError('retry', 'a transaction on this key is undecided', 'key_busy');
        }
        const held = store.get(key);
        if (held === undefined) throw new DhtError('not_found', 'key not found');
        return { value: held.value, version: held.version };
      })
      .route(
        ServerApi.transfer,
        ({ epoch, entries }) => {
          this.refuseOlderEpoch(epoch);
          let stored = 0;
          for (const e of entries) {
            if (!store.putIfNewer(e.key, e.value, e.version)) continue;
            this.rebalancer.noteReceived(e.key, epoch);
            stored++;
          }
          return { stored };
        },
        { bodyBytesMax: TRANSFER_BODY_BYTES_MAX },
      )
      .route(
        ServerApi.offer,
        ({ epoch, entries }) => {
          this.refuseOlderEpoch(epoch);
          return {
            missing: entries.filter((e) => store.versionOf(e.key) < e.version).map((e) => e.key),
          };
        },
        { bodyBytesMax: TRANSFER_BODY_BYTES_MAX },
      );
  }

  private checkServerId(serverId: string): void {
    if (serverId !== this.config.serverId) {
      throw new DhtError('retry', 'server ID differs from the caller view', 'server_id_mismatch');
    }
  }

  /**
   * Rebalancing traffic from a run that a newer view superseded is refused: this server may have
   * planned and cleaned up for the newer view already, and a late copy would stay behind as an
   * extra replica. A newer epoch is learned at once (noticeEpoch).
   */
  private refuseOlderEpoch(epoch: number): void {
    if (epoch < this.tracker.epoch) {
      throw new DhtError(
        'retry',
        `epoch ${this.tracker.epoch} here, ${epoch} in request`,
        'epoch_mismatch',
      );
    }
    this.noticeEpoch(epoch);
  }

  /**
   * A request from a newer epoch (a prepare, a read, a rebalancing transfer): learn the view now
   * rather than at the next heartbeat, which may be up to --heartbeat-interval away.
   */
  private noticeEpoch(epoch: number): void {
    if (epoch > this.tracker.epoch) void this.heartbeat();
  }

  /** Store a committed value; false when the held copy is newer or differs (logged, not stored). */
  private apply(key: string, value: string, version: number, txid: string): boolean {
    const held = this.store.get(key);
    // Already there (the same value at the same version, say a local set of the same bytes).
    if (held !== undefined && held.version === version && held.value === value) return true;
    const stored = this.store.putIfNewer(key, value, version);
    if (!stored) {
      this.logger.warn(
        { key, version, held: this.store.versionOf(key), txid },
        'commit older than held copy',
      );
    }
    return stored;
  }

  private tickParticipant(): void {
    const { asks, resolutions } = this.participant.tick(performance.now());
    for (const r of resolutions)
      this.logger.info({ txid: r.txid, outcome: r.outcome, why: r.why }, 'transaction resolved');
    for (const ask of asks) void this.askDecision(ask.txid, ask.key, ask.target);
  }

  private async askDecision(txid: string, key: string, target: ServerRef): Promise<void> {
    let answer;
    try {
      answer = await call(target.address, ServerApi.decision, { txid, key, serverId: target.id });
    } catch (err) {
      if (!(err instanceof DhtError)) throw err;
      answer = 'unreachable' as const;
    }
    const resolution = this.participant.onAnswer(txid, target, answer, this.tracker.viewIds);
    if (resolution === undefined) return;
    if (resolution.apply !== undefined) {
      this.apply(resolution.apply.key, resolution.apply.value, resolution.apply.version, txid);
    }
    this.logger.info(
      { txid, outcome: resolution.outcome, why: resolution.why },
      'transaction resolved',
    );
  }

  async heartbeat(): Promise<void> {
    if (this.heartbeatInFlight) return;
    this.heartbeatInFlight = true;
    try {
      await this.heartbeatOnce();
    } finally {
      this.heartbeatInFlight = false;
    }
  }

  private async heartbeatOnce(): Promise<void> {
    const leaders = this.config.viewLeaders;
    for (let attempt = 0; attempt < leaders.length; attempt++) {
      const address = leaders[(this.viewLeaderIndex + attempt) % leaders.length];
      try {
        const ack = await call(
          address,
          ViewLeaderApi.heartbeat,
          {
            serverId: this.config.serverId,
            address: this.address,
            epoch: this.tracker.reportedEpoch,
          },
          { timeoutMs: VIEWLEADER_TIMEOUT_MS },
        );
        this.viewLeaderIndex = (this.viewLeaderIndex + attempt) % leaders.length;
        if (this.viewLeaderLost !== undefined) {
          const downMs = Math.round(performance.now() - this.viewLeaderLost.sinceMs);
          this.logger.info({ address, downMs }, 'view leader reachable again');
          this.viewLeaderLost = undefined;
        }
        await this.execute(this.tracker.onAck(ack.view));
        return;
      } catch (err) {
        if (err instanceof UnreachableError) continue;
        if (err instanceof DhtError) {
          this.logger.error(
            { err: err.message, reason: err.reason },
            'heartbeat rejected by the view leader',
          );
          if (err.reason === 'server_expired') this.tracker.onExpelled();
          return;
        }
        throw err;
      }
    }
    const nowMs = performance.now();
    const lost = (this.viewLeaderLost ??= { sinceMs: nowMs, warnedMs: -Infinity });
    if (nowMs - lost.warnedMs >= UNREACHABLE_WARNING_INTERVAL_MS) {
      lost.warnedMs = nowMs;
      this.logger.warn(
        { viewLeaders: leaders.length, downMs: Math.round(nowMs - lost.sinceMs) },
        'no view leader reachable; will keep trying',
      );
    }
  }

  /** Carry out what the view tracker decided. */
  private async execute(effects: readonly ViewEffect[]): Promise<void> {
    for (const effect of effects) {
      switch (effect.type) {
        case 'install':
          this.install(effect.view, effect.run);
          break;
        case 'cleanup':
          this.rebalancer.cleanup(effect.drop);
          this.logger.info(
            { epoch: effect.epoch, keysDropped: effect.drop.length },
            'rebalance done',
          );
          break;
        case 'report':
          await this.report(effect.epoch, effect.phase);
          break;
      }
    }
  }

  private install(view: View, run: number): void {
    this.logger.info({ epoch: view.epoch, servers: view.servers.length }, 'view installed');
    for (const r of this.participant.epochChanged(performance.now())) {
      this.logger.info({ txid: r.txid, outcome: r.outcome, why: r.why }, 'transaction resolved');
    }
    void this.copyPhase(view, run);
  }

  /** Copy, report `copied`, then wait at the barrier (the view leader's placement). */
  private async copyPhase(view: View, run: number): Promise<void> {
    const report = await this.rebalancer.copy(view, () => this.tracker.isCurrentRun(run));
    if (report === undefined) return; // a newer view took over
    const effects = this.tracker.onCopied(run, report.drop);
    if (effects.length === 0) return; // superseded after the last transfer
    this.logger.info(
      {
        epoch: view.epoch,
        keysPushed: report.keysPushed,
        keysOffered: report.keysOffered,
        elapsedMs: report.elapsedMs,
      },
      'copy phase done',
    );
    await this.execute(effects);
    while (this.tracker.waitingAtBarrier(run)) {
      await sleep(BARRIER_POLL_MS);
      await this.heartbeat();
    }
  }

  private async report(epoch: number, phase: RebalancePhase): Promise<void> {
    const address = this.config.viewLeaders[this.viewLeaderIndex];
    try {
      await call(
        address,
        ViewLeaderApi.rebalanceDone,
        { serverId: this.config.serverId, epoch, phase },
        { timeoutMs: VIEWLEADER_TIMEOUT_MS },
      );
      this.tracker.onReported(epoch, phase);
    } catch (err) {
      // The tracker keeps it unreported: sent again with the next heartbeat acknowledgment.
      this.logger.warn({ err: String(err), epoch, phase }, 'could not report rebalance progress');
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
