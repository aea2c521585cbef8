// A storage server: its bucket, the 2PC participant, and the view it believes in. This class is
// the shell that wires the pure parts (Participant, ViewTracker, planRebalance) to the network
// and timers: it executes what they decide and feeds them what the network says.

import { randomUUID } from 'node:crypto';
import { ViewLeaderGroup } from '../lib/view-leader-group';
import { DhtError } from '../lib/errors';
import { call, UnreachableError } from '../lib/http-client';
import type { Logger } from '../lib/logger';
import {
  ServerApi,
  ViewLeaderApi,
  type DecisionResponse,
  type RebalancePhase,
  type ServerRef,
  type ServerStats,
  type View,
} from '../lib/messages';
import { copyStats } from './copy-progress';
import { ViewTracker, type ViewEffect } from './view-tracker';
import type { RpcServer } from '../lib/http-server';
import {
  BARRIER_POLL_MS,
  COPY_PROGRESS_REPORT_MS,
  DECISIONS_REMEMBERED_MAX,
  DECISION_RETRY_MS,
  PARTICIPANT_TICK_MS,
  PEER_TIMEOUT_MS,
  RECOVERY_STAGGER_MS,
  SERVER_VIEWLEADER_TIMEOUT_MS,
  TRANSFER_BATCH_KEYS_MAX,
  TRANSFER_BODY_BYTES_MAX,
  UNREACHABLE_WARNING_INTERVAL_MS,
  VERSION_MAX,
  VOUCH_TIMEOUT_MS,
} from '../lib/limits';
import {
  Participant,
  type AcceptAnswer,
  type Apply,
  type PeerSend,
  type Step,
  type ViewContext,
} from './participant';
import { refuseNewWork, refuseRead } from './admission';
import {
  clearParticipantState,
  readParticipantState,
  writeParticipantChanges,
} from './participant-records';
import { Rebalancer } from './rebalancer';
import { ServerMetrics } from './metrics';
import { healthStatus, type HealthProblem, type ServerHealth } from '../lib/messages';
import type { ProcessMetrics } from '../lib/metrics';
import {
  copyOfWrite,
  isTombstone,
  putCopyIfNewer,
  sameCopy,
  type Store,
  type Versioned,
} from './store';
import { claimOfCommit, claimOfCopy, claimsToVouch, unbacked, type Claim } from './version-claims';

/** Where a durable server keeps its ID (server/main.ts reads it at start). */
export const META_TABLE = 'meta';
export const SERVER_ID_RECORD = 'server-id';

export interface StorageServerConfig {
  /** The ID to start with: a durable server's stored one (resumed), or a new one. */
  readonly serverId: string;
  /**
   * Keeps its data across restarts (a data directory): when the view leader has expelled its ID,
   * it joins again with a new one and offers what it holds, instead of staying out.
   */
  readonly durable: boolean;
  readonly viewLeaders: readonly string[];
  readonly heartbeatIntervalMs: number;
  readonly prepareTimeoutMs: number;
}

export class StorageServer {
  /** Known once listening: exactly the `listening on` address. */
  private address = '';
  private readonly tracker = new ViewTracker();
  /** The servers of the last view installed, for their addresses (the tracker keeps IDs only). */
  private viewServers: readonly ServerRef[] = [];
  /** The view leader's members; the one that answered last is asked first. */
  private readonly viewLeaders: ViewLeaderGroup;
  private heartbeatInFlight = false;
  /** When the last heartbeat was sent (monotonic): copy progress is reported at least as often. */
  private heartbeatSentMs = Number.NEGATIVE_INFINITY;
  /** Since when no view leader has answered, and when that was last logged. */
  private viewLeaderLost: { sinceMs: number; warnedMs: number } | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Set while transactions are pending (see `tickWhilePending`). */
  private participantTimer: NodeJS.Timeout | undefined;
  private serverId: string;
  /** Keys whose decided commit the store refused to write (see `apply`). */
  private readonly unapplied = new Set<string>();
  private participant: Participant;
  private rebalancer: Rebalancer;
  private readonly metrics: ServerMetrics;
  /** Set by `stop` (SIGINT/SIGTERM): /health answers 503 from then on. */
  private stopping = false;

  constructor(
    private readonly config: StorageServerConfig,
    private readonly store: Store,
    private readonly logger: Logger,
    processMetrics: ProcessMetrics,
  ) {
    this.serverId = config.serverId;
    this.metrics = new ServerMetrics(processMetrics, () => ({
      keys: store.size,
      tombstones: store.tombstones,
      epoch: this.tracker.epoch,
      inView: this.inView,
      rebalancing: this.tracker.rebalancing,
      pendingTransactions: this.participant.pendingCount,
      storageFailed: store.failed !== undefined,
    }));
    this.viewLeaders = new ViewLeaderGroup(config.viewLeaders, SERVER_VIEWLEADER_TIMEOUT_MS);
    this.participant = this.newParticipant();
    // What this server had promised, accepted and decided before a restart (empty when new).
    this.participant.restore(readParticipantState(store), performance.now());
    this.rebalancer = this.newRebalancer();
  }

  private newParticipant(): Participant {
    return new Participant({
      selfId: this.serverId,
      prepareTimeoutMs: this.config.prepareTimeoutMs,
      decisionRetryMs: DECISION_RETRY_MS,
      recoveryStaggerMs: RECOVERY_STAGGER_MS,
      decisionsRememberedMax: DECISIONS_REMEMBERED_MAX,
    });
  }

  private newRebalancer(): Rebalancer {
    return new Rebalancer({
      selfId: this.serverId,
      store: this.store,
      logger: this.logger,
      unsettledTransactions: () => this.participant.unsettledCount,
      copiesSent: (copies) => this.metrics.pushed(copies),
    });
  }

  /**
   * The view leader expelled this durable server's ID (it was away longer than the failure
   * timeout): join again as a new server. The old ID's protocol state goes: its transactions are
   * decided by the replicas still in the view, which never count the old ID again. The data stay,
   * and the next plan offers every key to its replicas (none is vouched for a new ID), so the
   * rebalance copies only what they lack.
   */
  private async rejoinWithNewId(): Promise<void> {
    const previous = this.serverId;
    this.serverId = randomUUID();
    clearParticipantState(this.store);
    this.store.putRecord(META_TABLE, SERVER_ID_RECORD, this.serverId);
    await this.store.flush();
    this.participant = this.newParticipant();
    this.rebalancer = this.newRebalancer();
    this.logger.warn(
      { previous, serverId: this.serverId },
      'expelled: joining again with a new ID',
    );
  }

  start(address: string): void {
    this.address = address;
    void this.heartbeat();
    this.timers.push(setInterval(() => void this.heartbeat(), this.config.heartbeatIntervalMs));
    this.tickWhilePending(); // transactions restored from the data directory
    // While copying, the view leader hears the progress every COPY_PROGRESS_REPORT_MS, also
    // with a long --heartbeat-interval (an extra heartbeat changes nothing but the lease).
    this.timers.push(
      setInterval(() => {
        const due = performance.now() - this.heartbeatSentMs >= COPY_PROGRESS_REPORT_MS;
        if (due && this.tracker.progress.state === 'copying') void this.heartbeat();
      }, COPY_PROGRESS_REPORT_MS / 4),
    );
  }

  /** What the operator's view shows of this server (counts only, never a key). */
  private stats(): ServerStats {
    const progress = this.rebalancer.progress;
    return {
      keys: this.store.size,
      heartbeatIntervalMs: Math.max(1, Math.round(this.config.heartbeatIntervalMs)),
      copy: progress === undefined ? undefined : copyStats(progress, performance.now()),
    };
  }

  stop(): void {
    this.stopping = true;
    for (const timer of this.timers) clearInterval(timer);
    clearInterval(this.participantTimer);
  }

  /** In the view this server installed (and not expelled since). */
  private get inView(): boolean {
    return this.tracker.viewIds.has(this.serverId);
  }

  /**
   * `GET /health`: 503 while the server cannot take writes for its keys: storage failed, not in
   * a view (not yet, or expelled), or shutting down. A rebalancing is normal operation: it says
   * so, with 200.
   */
  health(): ServerHealth {
    const problems: HealthProblem[] = [];
    if (this.stopping) problems.push({ reason: 'shutting_down', message: 'shutting down' });
    const failed = this.store.failed;
    if (failed !== undefined) {
      problems.push({
        reason: 'storage_failed',
        message: `a write to the data directory failed (${failed.message}); reads are served, changes refused until restarted`,
      });
    }
    if (!this.inView) {
      problems.push({
        reason: 'not_in_view',
        message:
          this.tracker.epoch < 0
            ? 'not yet in a view: no heartbeat acknowledged by the view leader'
            : `not in the view of epoch ${this.tracker.epoch}`,
      });
    }
    return {
      status: healthStatus(problems),
      process: 'server',
      address: this.address,
      problems,
      serverId: this.serverId,
      epoch: this.tracker.epoch < 0 ? null : this.tracker.epoch,
      inView: this.inView,
      rebalancing: this.tracker.rebalancing,
      keys: this.store.size,
      pendingTransactions: this.participant.pendingCount,
    };
  }

  routes(rpc: RpcServer): void {
    const { store } = this;
    rpc
      .route(ServerApi.print, ({ text }) => {
        process.stderr.write(`${text}\n`);
        return {};
      })
      .route(ServerApi.set, async ({ key, value }) => {
        this.admitNewWork();
        const version = store.versionOf(key) + 1;
        // Not reached in practice: above VERSION_CLAIM_MAX a key climbs one write at a time
        // (lib/limits.ts), and 2^52 writes of one key take longer than any cluster lives.
        if (version > VERSION_MAX) {
          throw new DhtError('rejected', 'the key has no version left', 'version_out_of_reach');
        }
        store.put(key, value, version);
        await store.flush();
        return {};
      })
      .route(ServerApi.get, ({ key }) => liveValue(store, key))
      .route(ServerApi.queryAllKeys, () => ({ keys: [...store.keys()].sort() }))
      .route(ServerApi.status, () => ({
        serverId: this.serverId,
        address: this.address,
        epoch: this.tracker.epoch,
        rebalancing: this.tracker.rebalancing,
        keyCount: store.size,
        pendingTransactions: this.participant.pendingCount,
        copy: this.stats().copy,
      }))
      .route(ServerApi.prepare, async (request) => {
        this.noticeEpoch(request.epoch);
        this.admitNewWork();
        const vote = this.participant.prepare(
          request,
          {
            epoch: this.tracker.epoch,
            rebalancing: this.tracker.rebalancing,
            leased: this.leased(),
            currentVersion: store.versionOf(request.key),
          },
          performance.now(),
        );
        try {
          await this.persist();
        } catch (err) {
          // The yes never left: abort it here, or the key would stay busy with nobody to decide.
          if (vote.vote === 'yes') this.participant.abort(request.txid, request.key);
          throw err;
        }
        if (vote.vote === 'no') throw vote.error;
        this.tickWhilePending();
        this.metrics.transaction('prepared');
        return vote;
      })
      .route(ServerApi.accept, async ({ txid, key, serverId, ballot, outcome }) => {
        this.checkServerId(serverId);
        this.noticeEpoch(ballot.epoch);
        this.admitNewWork();
        if (outcome.state === 'committed') {
          await this.refuseUnbacked([claimOfCommit(key, outcome.version)]);
        }
        this.participant.accept(txid, key, ballot, outcome, this.viewContext());
        await this.persist();
        this.participant.acceptSynced(txid, outcome);
        return {};
      })
      .route(ServerApi.commit, async ({ txid, key, version }) => {
        await this.refuseUnbacked([claimOfCommit(key, version)]);
        // The contract: a committed value is on disk before it is acknowledged. Either this
        // replica's synced acceptance of the commit already makes it so (the participant says
        // why), or the commit's own records are synced first.
        const onDisk = this.participant.commitSyncedAsAccepted(txid, version);
        const apply = this.participant.commit(txid, key, version);
        if (apply !== undefined) this.metrics.transaction('committed');
        const applied = apply === undefined || this.apply(apply, txid);
        if (onDisk) this.persistSoon();
        else await this.persist();
        if (!applied) {
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
      .route(ServerApi.abort, async ({ txid, key, ballot }) => {
        // The abort of a transaction unknown here writes a fence: new work, which a stalled disk
        // refuses (anyone can send such aborts, each one more write waiting for the disk).
        if (!this.participant.holdsPrepared(txid)) this.admitNewWork();
        const pending = this.participant.isPending(key);
        this.participant.abort(txid, key, ballot);
        // Decided here by this message (not a repeat, nor a fence of a transaction never prepared).
        if (pending && !this.participant.isPending(key)) this.metrics.transaction('aborted');
        await this.persist();
        return {};
      })
      .route(ServerApi.decision, async ({ txid, key, serverId, ballot }) => {
        this.checkServerId(serverId);
        this.noticeEpoch(ballot.epoch);
        this.admitNewWork();
        const answer = this.participant.promise(txid, key, ballot, this.viewContext());
        await this.persist();
        return answer;
      })
      .route(ServerApi.read, ({ key, epoch, serverId }) => {
        this.checkServerId(serverId);
        this.noticeEpoch(epoch);
        const refusal = refuseRead(epoch, {
          epoch: this.tracker.epoch,
          rebalancing: this.tracker.rebalancing,
          leased: this.leased(),
          keyPending: this.participant.refusesReads(key) || this.unapplied.has(key),
        });
        if (refusal !== undefined) throw refusal;
        return liveValue(store, key);
      })
      .route(
        ServerApi.transfer,
        async ({ epoch, sourceId, entries }) => {
          this.refuseOlderEpoch(epoch);
          this.admitNewWork();
          await this.refuseUnbacked(
            entries.map((e) => claimOfCopy(e.key, e.version)),
            this.serversInView().filter((s) => s.id === sourceId),
          );
          let stored = 0;
          for (const e of entries) {
            if (!putCopyIfNewer(store, e.key, copyOfWrite(e))) continue;
            this.rebalancer.noteReceived(e.key, epoch);
            stored++;
          }
          await store.flush(); // the sender may delete its copy once this is acknowledged
          this.metrics.received(stored);
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

  /**
   * Refuses a request whose versions go beyond what this server takes on a request's word
   * (server/version-claims.ts) unless a voucher holds each such key at least at the claimed
   * version: 400 `invalid` / `version_out_of_reach` when no voucher holds it, 503 `retry` with the
   * same reason when one could not be asked (its sender tries again). Nothing is stored either
   * way. Honest traffic gets here only after a forged claim near VERSION_CLAIM_MAX; then the key's
   * replicas, or a transfer's source, vouch.
   */
  private async refuseUnbacked(
    claims: readonly Claim[],
    vouchers: readonly ServerRef[] = this.serversInView(),
  ): Promise<void> {
    const toVouch = claimsToVouch(claims, (key) => this.store.versionOf(key));
    if (toVouch.length === 0) return;
    const refuse = (kind: 'invalid' | 'retry', claim: Claim, why: string): DhtError =>
      new DhtError(
        kind,
        `version ${claim.version} of key ${JSON.stringify(claim.key)} is beyond what this server takes on a request's word, and ${why}`,
        'version_out_of_reach',
      );
    // Honest senders cap a batch at this many keys; more would turn one request into a flood of
    // questions to the vouchers.
    if (toVouch.length > TRANSFER_BATCH_KEYS_MAX) {
      throw refuse('invalid', toVouch[0], `${toVouch.length} such keys are too many at once`);
    }
    const epoch = this.tracker.epoch;
    if (vouchers.length === 0 || epoch < 0) {
      throw refuse('invalid', toVouch[0], 'no server of its view can vouch for it');
    }
    let silent = 0;
    const held = await Promise.all(
      vouchers.map(async (voucher): Promise<ReadonlySet<string>> => {
        try {
          // An offer answers exactly "which of these do you lack or hold older", and stores nothing.
          const { missing } = await call(
            voucher.address,
            ServerApi.offer,
            { epoch, entries: toVouch },
            { timeoutMs: VOUCH_TIMEOUT_MS },
          );
          const lacking = new Set(missing);
          return new Set(toVouch.map((c) => c.key).filter((key) => !lacking.has(key)));
        } catch (err) {
          if (!(err instanceof DhtError)) throw err;
          silent++;
          return new Set();
        }
      }),
    );
    const rest = unbacked(toVouch, held);
    if (rest.length === 0) return;
    throw silent > 0
      ? refuse('retry', rest[0], `${silent} of its view's servers could not be asked`)
      : refuse('invalid', rest[0], 'no server of its view holds it');
  }

  /** The other servers of this server's current view (none while it has no view). */
  private serversInView(): ServerRef[] {
    const ids = this.tracker.viewIds;
    return this.viewServers.filter((s) => ids.has(s.id) && s.id !== this.serverId);
  }

  /** See ViewTracker.holdsLease; without it, ask the view leader now rather than at the next beat. */
  private leased(): boolean {
    const leased = this.tracker.holdsLease(performance.now());
    if (!leased) void this.heartbeat();
    return leased;
  }

  private checkServerId(serverId: string): void {
    if (serverId !== this.serverId) {
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

  /** Refuses new work while the writes waiting for a sync are at their bound (a stalled disk). */
  private admitNewWork(): void {
    const refusal = refuseNewWork(this.store.busy);
    if (refusal !== undefined) throw refusal;
  }

  /**
   * A request from a newer epoch (a prepare, a read, a rebalancing transfer): learn the view now
   * rather than at the next heartbeat, which may be up to --heartbeat-interval away.
   */
  private noticeEpoch(epoch: number): void {
    if (epoch > this.tracker.epoch) void this.heartbeat();
  }

  private viewContext(): ViewContext {
    return { epoch: this.tracker.epoch, viewIds: this.tracker.viewIds };
  }

  /**
   * Store a committed write (a value, or a delete's tombstone); false when the held copy is newer
   * or differs (logged, not stored).
   */
  private apply(apply: Apply, txid: string): boolean {
    const { key, version } = apply;
    const held = this.store.copyOf(key);
    // Already there (the same copy at the same version, say a local set of the same bytes).
    if (held !== undefined && sameCopy(held, apply)) return true;
    let stored: boolean;
    try {
      stored = putCopyIfNewer(this.store, key, apply);
    } catch (err) {
      // Decided, but the store refused the write (a failed disk): reads of the key would serve
      // the older copy, so they are refused until a restart recovers the transaction.
      this.unapplied.add(key);
      throw err;
    }
    if (!stored) {
      this.logger.warn(
        { key, version, held: this.store.versionOf(key), txid },
        'commit older than held copy',
      );
    }
    return stored;
  }

  /**
   * Tick the participant every PARTICIPANT_TICK_MS while it has pending transactions. Only a yes
   * vote (and a restart's restore) makes one pending, so the prepare route calls this after each.
   */
  private tickWhilePending(): void {
    if (this.participantTimer !== undefined || this.stopping) return;
    if (this.participant.pendingCount === 0) return;
    this.participantTimer = setInterval(() => this.tickParticipant(), PARTICIPANT_TICK_MS);
  }

  private tickParticipant(): void {
    if (this.participant.pendingCount === 0) {
      clearInterval(this.participantTimer);
      this.participantTimer = undefined;
      return;
    }
    // No new ballot while writes wait for a stalled disk: each would queue more of them.
    if (this.store.busy) return;
    void this.carryOut(this.participant.tick(performance.now(), this.viewContext()));
  }

  /**
   * Write what the participant changed (and anything else written since), and wait until it is
   * durable: nothing it promised, accepted or decided may be told to anyone before that.
   */
  private async persist(): Promise<void> {
    const changes = this.participant.takeChanges();
    try {
      writeParticipantChanges(this.store, changes);
    } catch (err) {
      // A failed disk refused them (all of them: a failure is noticed between turns, never in
      // the middle of one step's writes). Kept, as the participant still holds them.
      this.participant.keepChanges(changes);
      throw err;
    }
    await this.store.flush();
  }

  /**
   * Queue what the participant changed for the next sync without waiting for it: for changes
   * whose answer does not depend on them being durable. A refused write is taken again by the
   * next `persist`.
   */
  private persistSoon(): void {
    const changes = this.participant.takeChanges();
    try {
      writeParticipantChanges(this.store, changes);
    } catch (err) {
      this.participant.keepChanges(changes);
      this.logger.warn({ err: String(err) }, 'transaction records left for the next sync');
    }
  }

  /**
   * Apply and log what the participant decided; once durable, let reads of those keys in and send
   * what it asks to send. If the records cannot be synced, the keys stay unread until a restart
   * recovers them (the decision may be undone by it).
   */
  private async carryOut(step: Step): Promise<void> {
    // The participant that decided: a rejoin with a new ID may replace it during the persist.
    const { participant } = this;
    try {
      for (const r of step.resolutions) {
        if (r.apply !== undefined) this.apply(r.apply, r.txid);
        this.metrics.resolvedByTermination(r.outcome.state);
        this.logger.info({ txid: r.txid, outcome: r.outcome, why: r.why }, 'transaction resolved');
      }
      await this.persist();
    } catch (err) {
      this.logger.error({ err: String(err) }, 'could not make the transaction state durable');
      return;
    }
    participant.resolutionsSynced(step.resolutions);
    for (const send of step.sends) void this.sendToPeer(send);
  }

  /** One recovery message to another replica; its answer goes back into the participant. */
  private async sendToPeer(send: PeerSend): Promise<void> {
    const { txid, key, target } = send;
    const options = { timeoutMs: PEER_TIMEOUT_MS };
    try {
      switch (send.type) {
        case 'promise': {
          let answer: DecisionResponse | 'unreachable';
          try {
            answer = await call(
              target.address,
              ServerApi.decision,
              { txid, key, serverId: target.id, ballot: send.ballot },
              options,
            );
            // The replicas named in a prepare are the coordinator's word, so this "peer" may be
            // anyone: a committed version in its answer is a claim like a commit's.
            const claimed = committedVersionIn(answer);
            if (claimed !== undefined) await this.refuseUnbacked([claimOfCommit(key, claimed)]);
          } catch (err) {
            if (!(err instanceof DhtError)) throw err;
            if (err.reason === 'version_out_of_reach') {
              this.logger.warn({ txid, key, target, err: err.message }, 'recovery answer ignored');
            }
            answer = 'unreachable';
          }
          await this.carryOut(this.participant.onPromise(txid, target, send.ballot, answer));
          return;
        }
        case 'accept': {
          let answer: AcceptAnswer = 'accepted';
          try {
            await call(
              target.address,
              ServerApi.accept,
              { txid, key, serverId: target.id, ballot: send.ballot, outcome: send.outcome },
              options,
            );
          } catch (err) {
            if (!(err instanceof DhtError)) throw err;
            answer = err instanceof UnreachableError ? 'unreachable' : 'refused';
          }
          await this.carryOut(this.participant.onAccepted(txid, target, send.ballot, answer));
          return;
        }
        case 'learn':
          // Best effort: a target that misses it learns the outcome by its own recovery.
          if (send.outcome.state === 'committed') {
            await call(
              target.address,
              ServerApi.commit,
              { txid, key, version: send.outcome.version },
              options,
            );
          } else {
            await call(
              target.address,
              ServerApi.abort,
              { txid, key, ballot: send.ballot },
              options,
            );
          }
          return;
      }
    } catch (err) {
      if (!(err instanceof DhtError)) throw err;
      this.logger.debug({ txid, target: target.address, err: err.message }, 'peer message failed');
    }
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
    const sentAtMs = performance.now(); // the lease counts from here: earlier is the safe side
    this.heartbeatSentMs = sentAtMs;
    try {
      const ack = await this.viewLeaders.call(
        ViewLeaderApi.heartbeat,
        {
          serverId: this.serverId,
          address: this.address,
          epoch: this.tracker.reportedEpoch,
          stats: this.stats(),
        },
        { waitMs: SERVER_VIEWLEADER_TIMEOUT_MS },
      );
      if (this.viewLeaderLost !== undefined) {
        const downMs = Math.round(performance.now() - this.viewLeaderLost.sinceMs);
        this.logger.info(
          { address: this.viewLeaders.current, downMs },
          'view leader reachable again',
        );
        this.viewLeaderLost = undefined;
      }
      this.tracker.renewLease(sentAtMs, ack.leaseMs);
      await this.execute(this.tracker.onAck(ack.view));
    } catch (err) {
      if (!(err instanceof DhtError)) throw err;
      // `unknown`: a view leader member took it and could not tell whether it was recorded
      // (lib/view-leader-group.ts); not an acknowledgment, the next heartbeat asks again.
      if (err.kind === 'unavailable' || err.kind === 'unknown' || err instanceof UnreachableError) {
        this.noteViewLeaderLost(err.message);
        return;
      }
      // Logged and left to the next heartbeat, which asks again: only `server_expired` is
      // final. `address_in_use` (the view leader found another live server answering at this
      // address) clears once that server stops answering there.
      this.logger.error(
        { err: err.message, reason: err.reason },
        'heartbeat rejected by the view leader',
      );
      if (err.reason === 'server_expired') {
        this.tracker.onExpelled();
        if (this.config.durable) await this.rejoinWithNewId();
      }
    }
  }

  /** `why`: the last failure, in the warning (a typo'd address, a server given as view leader). */
  private noteViewLeaderLost(why: string): void {
    const nowMs = performance.now();
    const lost = (this.viewLeaderLost ??= { sinceMs: nowMs, warnedMs: -Infinity });
    if (nowMs - lost.warnedMs >= UNREACHABLE_WARNING_INTERVAL_MS) {
      lost.warnedMs = nowMs;
      this.logger.warn(
        {
          viewLeaders: this.viewLeaders.addresses.length,
          downMs: Math.round(nowMs - lost.sinceMs),
          err: why,
        },
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
        case 'cleanup': {
          const dropped = await this.rebalancer.cleanup(
            effect.drop,
            () => this.tracker.epoch === effect.epoch,
          );
          this.metrics.dropped(dropped);
          this.logger.info({ epoch: effect.epoch, keysDropped: dropped }, 'rebalance done');
          break;
        }
        case 'report':
          await this.report(effect.epoch, effect.phase);
          break;
      }
    }
  }

  private install(view: View, run: number): void {
    this.viewServers = view.servers;
    this.logger.info({ epoch: view.epoch, servers: view.servers.length }, 'view installed');
    this.participant.epochChanged(performance.now());
    this.copyPhase(view, run).catch((err: unknown) => {
      // A refused store write (a failed disk): the next view or restart copies again.
      this.logger.error({ err: String(err), epoch: view.epoch }, 'copy phase failed');
    });
  }

  /** Copy, report `copied`, then wait at the barrier (the view leader's placement). */
  private async copyPhase(view: View, run: number): Promise<void> {
    const report = await this.rebalancer.copy(view, () => this.tracker.isCurrentRun(run));
    if (report === undefined) return; // a newer view took over
    const effects = this.tracker.onCopied(run, report.drop);
    if (effects.length === 0) return; // superseded after the last transfer
    this.metrics.copyPhaseDone();
    this.logger.info(
      {
        epoch: view.epoch,
        keysPushed: report.keysPushed,
        keysOffered: report.keysOffered,
        valuesSent: report.valuesSent,
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
    try {
      await this.viewLeaders.call(
        ViewLeaderApi.rebalanceDone,
        { serverId: this.serverId, epoch, phase, stats: this.stats() },
        { waitMs: SERVER_VIEWLEADER_TIMEOUT_MS },
      );
      this.tracker.onReported(epoch, phase);
    } catch (err) {
      // The tracker keeps it unreported: sent again with the next heartbeat acknowledgment.
      this.logger.warn({ err: String(err), epoch, phase }, 'could not report rebalance progress');
    }
  }
}

/** The live value of `key` for a read; a tombstone reads as absent (reason `key_deleted`). */
function liveValue(store: Store, key: string): Versioned {
  const copy = store.copyOf(key);
  if (copy === undefined) throw new DhtError('not_found', 'key not found');
  if (isTombstone(copy)) {
    throw new DhtError('not_found', `key deleted (version ${copy.version})`, 'key_deleted');
  }
  return { value: copy.value, version: copy.version };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The commit version a recovery answer vouches for, if any. */
function committedVersionIn(answer: DecisionResponse): number | undefined {
  if (answer.state === 'committed') return answer.version;
  if (answer.state === 'promised' && answer.accepted?.outcome.state === 'committed') {
    return answer.accepted.outcome.version;
  }
  return undefined;
}
