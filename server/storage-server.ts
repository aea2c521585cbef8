// A storage server: its bucket, the 2PC participant, and the view it believes in. This class is
// the shell that wires the pure parts (Participant, planRebalance) to the network and timers.

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

type RebalanceProgress =
  | { readonly state: 'idle' }
  | { readonly state: 'copying'; readonly epoch: number }
  | { readonly state: 'copied'; readonly epoch: number; readonly drop: readonly string[] };
const VIEWLEADER_TIMEOUT_MS = 2000;

export interface StorageServerConfig {
  readonly serverId: string;
  readonly viewLeaders: readonly string[];
  readonly heartbeatIntervalMs: number;
  readonly prepareTimeoutMs: number;
}

export class StorageServer {
  /** Known once listening: exactly the `listening on` address. */
  private address = '';
  private epoch = -1;
  private view: View | undefined;
  private viewIds: ReadonlySet<string> = new Set();
  /** True from installing a view until this server's part of its rebalance is done. */
  private rebalancing = false;
  /** Where this server is in the current epoch's rebalance (docs/design.md, "Rebalancing"). */
  private progress: RebalanceProgress = { state: 'idle' };
  /** A progress report the view leader has not acknowledged yet (re-sent with heartbeats). */
  private unreported: { epoch: number; phase: RebalancePhase } | undefined;
  private viewLeaderIndex = 0;
  private heartbeatInFlight = false;
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
      isSuperseded: (epoch) => epoch !== this.epoch,
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
        epoch: this.epoch,
        rebalancing: this.rebalancing,
        keyCount: store.size,
        pendingTransactions: this.participant.pendingCount,
      }))
      .route(ServerApi.prepare, (request) => {
        this.noticeEpoch(request.epoch);
        const vote = this.participant.prepare(
          request,
          {
            epoch: this.epoch,
            rebalancing: this.rebalancing,
            currentVersion: store.versionOf(request.key),
          },
          performance.now(),
        );
        if (vote.vote === 'no') throw vote.error;
        return vote;
      })
      .route(ServerApi.commit, ({ txid, key, version }) => {
        const apply = this.participant.commit(txid, key, version);
        if (apply !== undefined) this.apply(apply.key, apply.value, apply.version, txid);
        return {};
      })
      .route(ServerApi.abort, ({ txid, key }) => {
        this.participant.abort(txid, key);
        return {};
      })
      .route(ServerApi.decision, ({ txid, serverId }) => {
        this.checkServerId(serverId);
        return this.participant.answer(txid, performance.now());
      })
      .route(ServerApi.read, ({ key, epoch, serverId }) => {
        this.checkServerId(serverId);
        this.noticeEpoch(epoch);
        if (epoch !== this.epoch) {
          throw new DhtError(
            'retry',
            `epoch ${this.epoch} here, ${epoch} in request`,
            'epoch_mismatch',
          );
        }
        if (this.rebalancing) throw new DhtError('retry', 'rebalancing under way', 'rebalancing');
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
        ({ entries }) => {
          let stored = 0;
          for (const e of entries) if (store.putIfNewer(e.key, e.value, e.version)) stored++;
          return { stored };
        },
        { bodyBytesMax: TRANSFER_BODY_BYTES_MAX },
      )
      .route(
        ServerApi.offer,
        ({ entries }) => ({
          missing: entries.filter((e) => store.versionOf(e.key) < e.version).map((e) => e.key),
        }),
        { bodyBytesMax: TRANSFER_BODY_BYTES_MAX },
      );
  }

  private checkServerId(serverId: string): void {
    if (serverId !== this.config.serverId) {
      throw new DhtError('retry', 'server ID differs from the caller view', 'server_id_mismatch');
    }
  }

  /** A request from a newer epoch: learn the view now rather than at the next heartbeat. */
  private noticeEpoch(epoch: number): void {
    if (epoch > this.epoch) void this.heartbeat();
  }

  private apply(key: string, value: string, version: number, txid: string): void {
    if (!this.store.putIfNewer(key, value, version)) {
      this.logger.warn(
        { key, version, held: this.store.versionOf(key), txid },
        'commit older than held copy',
      );
    }
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
    const resolution = this.participant.onAnswer(txid, target, answer, this.viewIds);
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
          { serverId: this.config.serverId, address: this.address },
          { timeoutMs: VIEWLEADER_TIMEOUT_MS },
        );
        this.viewLeaderIndex = (this.viewLeaderIndex + attempt) % leaders.length;
        if (ack.epoch !== this.epoch) this.install(ack.view);
        else this.observe(ack.view);
        if (this.unreported !== undefined)
          await this.report(this.unreported.epoch, this.unreported.phase);
        return;
      } catch (err) {
        if (err instanceof UnreachableError) continue;
        if (err instanceof DhtError) {
          this.logger.error(
            { err: err.message, reason: err.reason },
            'heartbeat rejected by the view leader',
          );
          if (err.reason === 'server_expired') this.leaveView();
          return;
        }
        throw err;
      }
    }
    this.logger.warn({ viewLeaders: leaders.length }, 'no view leader reachable; will keep trying');
  }

  /**
   * The view leader declared this server failed: it is in no view any more, so it must not
   * serve replicated reads or writes for the last epoch it knew (a client with an old cached
   * view could otherwise read a stale copy). Its ID is rejected forever; a restart rejoins.
   */
  private leaveView(): void {
    if (this.epoch === -1) return;
    this.epoch = -1;
    this.view = undefined;
    this.viewIds = new Set();
    this.rebalancing = true;
    this.progress = { state: 'idle' };
  }

  private install(view: View): void {
    this.logger.info({ epoch: view.epoch, servers: view.servers.length }, 'view installed');
    this.epoch = view.epoch;
    this.view = view;
    this.viewIds = new Set(view.servers.map((s) => s.id));
    this.rebalancing = true;
    this.unreported = undefined;
    for (const r of this.participant.epochChanged(performance.now())) {
      this.logger.info({ txid: r.txid, outcome: r.outcome, why: r.why }, 'transaction resolved');
    }
    void this.copyPhase(view);
  }

  /** Copy, report `copied`, then wait at the barrier (the view leader's placement). */
  private async copyPhase(view: View): Promise<void> {
    this.progress = { state: 'copying', epoch: view.epoch };
    const report = await this.rebalancer.copy(view);
    if (report === undefined || view.epoch !== this.epoch) return; // a newer view took over
    this.logger.info(
      {
        epoch: view.epoch,
        keysPushed: report.keysPushed,
        keysOffered: report.keysOffered,
        elapsedMs: report.elapsedMs,
      },
      'copy phase done',
    );
    this.progress = { state: 'copied', epoch: view.epoch, drop: report.drop };
    await this.report(view.epoch, 'copied');
    while (this.progress.state === 'copied' && this.progress.epoch === this.epoch) {
      await sleep(BARRIER_POLL_MS);
      await this.heartbeat();
    }
  }

  /** A view of the current epoch: is the barrier passed? */
  private observe(view: View): void {
    this.view = view;
    const progress = this.progress;
    if (progress.state !== 'copied' || progress.epoch !== view.epoch) return;
    if (view.placement.epoch !== view.epoch) return;
    // Every server has copied: every key is on all its replicas, so the rest can go.
    this.rebalancer.cleanup(progress.drop);
    this.progress = { state: 'idle' };
    this.rebalancing = false;
    this.logger.info({ epoch: view.epoch, keysDropped: progress.drop.length }, 'rebalance done');
    this.unreported = { epoch: view.epoch, phase: 'done' };
  }

  private async report(epoch: number, phase: RebalancePhase): Promise<void> {
    this.unreported = { epoch, phase };
    const address = this.config.viewLeaders[this.viewLeaderIndex];
    try {
      await call(
        address,
        ViewLeaderApi.rebalanceDone,
        { serverId: this.config.serverId, epoch, phase },
        { timeoutMs: VIEWLEADER_TIMEOUT_MS },
      );
      if (this.unreported?.epoch === epoch && this.unreported.phase === phase)
        this.unreported = undefined;
    } catch (err) {
      // Sent again with the next heartbeat.
      this.logger.warn({ err: String(err), epoch, phase }, 'could not report rebalance progress');
    }
  }

  currentView(): View | undefined {
    return this.view;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
