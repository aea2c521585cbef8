// A simulated cluster for the pure 2PC cores (server/participant.ts, client/coordinator.ts), in
// the style of deterministic simulation testing: every process is a core with its own clock and
// its own view of the cluster, and every message is an envelope in flight that the test (or a
// seeded random scheduler) delivers, drops, duplicates or times out, in any order. Processes can
// crash, pause, resume and restart; the view leader's views are installed by each server at its
// own pace. No network, no timers, no real clock.
//
// Each server has a disk: what its shell synced (the participant's records and its bucket) and,
// apart, what it wrote but has not synced yet. As with the real group commit, an answer that
// needs its writes durable waits for the server's next sync, which is an event of its own
// (`syncs: 'scheduled'`: the scheduler picks when) or follows every step (`'immediate'`). A crash
// loses the unsynced writes and the answers waiting for them; a restart rebuilds the participant
// and the bucket from the disk alone, as server/startup.ts does.
//
// What the shell of a real server does (server/storage-server.ts) is mirrored here in `serve`
// and `carryOut`, so that the simulated server and the real one differ only in transport.
//
// `checkInvariants` states what must hold after every step: one outcome is ever chosen per
// transaction (a majority of a ballot's acceptors synced it, whether or not anyone learned it),
// no two replicas decide one transaction differently nor against what was chosen, nothing a
// coordinator reported contradicts the replicas' outcome, no two replicas hold different values at
// one version of a key (now or ever), every commit is applied at the version its decision names,
// every replica that acknowledged a commit has it on disk (decided, or accepted with the value
// prepared), and no replica of a write answers a read older than that write once a read returned
// it.
//
// Links between two processes can be slow (`slowLink`): what travels on them waits until the link
// recovers, then arrives in any order, as a congested or briefly partitioned connection holds its
// bytes. That is how a coordinator's accepts arrive after the prepare timeout, and how the
// answers to an older ballot's promises and accepts arrive after a newer ballot started.

import { Coordinator, type AckResult, type Send } from '../../client/coordinator';
import { refuseRead } from '../../server/admission';
import { compareBallots, coordinatorBallot, majority } from '../../lib/ballot';
import { assert } from '../../lib/assert';
import { DhtError } from '../../lib/errors';
import type {
  Accepted,
  Ballot,
  DecisionResponse,
  PrepareRequest,
  ServerRef,
  TxOutcome,
} from '../../lib/messages';
import {
  Participant,
  type Apply,
  type DecisionRecord,
  type LastCommitRecord,
  type ParticipantChange,
  type ParticipantConfig,
  type PeerSend,
  type PreparedRecord,
  type Step,
  type ViewContext,
} from '../../server/participant';
import type { Copy } from '../../server/store';
import type { Random } from './random';

export const HARNESS_CONFIG = {
  prepareTimeoutMs: 5000,
  decisionRetryMs: 500,
  recoveryStaggerMs: 100,
  decisionsRememberedMax: 100_000,
} as const satisfies Omit<ParticipantConfig, 'selfId'>;

const NO_EPOCH = -1;

/** A value, or a delete's tombstone, at its version (as server/store.ts holds it). */
export type Stored = Copy;

/** What a server's data directory holds once synced. */
export interface SimDisk {
  readonly prepared: Map<string, PreparedRecord>;
  readonly decided: Map<string, DecisionRecord>;
  readonly lastCommits: Map<string, LastCommitRecord>;
  readonly store: Map<string, Stored>;
}

/** A write handed to the store and not synced yet: lost if the process crashes. */
type UnsyncedWrite =
  | { readonly type: 'record'; readonly change: ParticipantChange }
  | { readonly type: 'copy'; readonly key: string; readonly copy: Stored };

export interface SimNode {
  readonly ref: ServerRef;
  participant: Participant;
  store: Map<string, Stored>;
  readonly disk: SimDisk;
  unsynced: UnsyncedWrite[];
  /** What the shell does once the writes so far are durable: answers, peer messages. */
  afterSync: (() => void)[];
  /** Commits this server acknowledged (txid -> version): each must be on its disk. */
  readonly commitsAcknowledged: Map<string, number>;
  /** This process's own clock: it never agrees with the others'. */
  nowMs: number;
  view: ViewContext;
  crashed: boolean;
  paused: boolean;
}

type Request =
  | { readonly kind: 'prepare'; readonly request: PrepareRequest }
  | {
      readonly kind: 'accept';
      readonly txid: string;
      readonly key: string;
      readonly ballot: Ballot;
      readonly outcome: TxOutcome;
    }
  | {
      readonly kind: 'commit';
      readonly txid: string;
      readonly key: string;
      readonly version: number;
    }
  | {
      readonly kind: 'abort';
      readonly txid: string;
      readonly key: string;
      readonly ballot?: Ballot;
    }
  | {
      readonly kind: 'promise';
      readonly txid: string;
      readonly key: string;
      readonly ballot: Ballot;
    };

/** A replicated read answered: which server, the key@version it returned, and its writer. */
export interface ServedRead {
  readonly server: string;
  readonly at: string;
  readonly content: string;
  readonly txid: string;
}

/** What a caller learns of one request. */
export type Reply =
  | { readonly type: 'ok'; readonly body: unknown }
  | { readonly type: 'error'; readonly error: DhtError }
  | { readonly type: 'unreachable'; readonly transport: 'refused' | 'timeout' };

interface Call {
  readonly id: number;
  readonly caller: string;
  readonly target: string;
  readonly request: Request;
  settled: boolean;
  /** A copy of this request reached its server already (the network duplicates envelopes). */
  delivered: boolean;
  /**
   * A copy of this request was refused (its server was down and nothing of it had arrived): the
   * caller was told it was certainly not processed, so no later copy of it may be.
   */
  refused: boolean;
  readonly onReply: (reply: Reply) => void;
}

export type Envelope =
  | { readonly type: 'request'; readonly call: Call }
  | { readonly type: 'reply'; readonly call: Call; readonly reply: Reply };

/** One setr: its coordinator, and what it finally reported. */
export interface SimTransaction {
  readonly txid: string;
  readonly key: string;
  /** The value written; null for a delr (a tombstone). */
  readonly value: string | null;
  readonly replicas: readonly ServerRef[];
  readonly coordinator: Coordinator;
  crashed: boolean;
}

export class SimCluster {
  readonly nodes: SimNode[];
  /** The view leader's views, oldest first; the last is current. */
  readonly views: { epoch: number; ids: ReadonlySet<string> }[] = [];
  readonly inFlight: Envelope[] = [];
  readonly transactions: SimTransaction[] = [];
  readonly trace: string[] = [];
  /** Calls whose caller still waits for an answer, by ID (their envelopes may be lost). */
  private readonly waiting = new Map<number, Call>();
  private calls = 0;
  /** Restarts that found a commit acknowledged before its records were synced, undecided. */
  commitsRecoveredAfterRestart = 0;
  /** Commits answered before their own records were synced (their acceptance was). */
  commitsAnsweredBeforeSync = 0;
  restarts = 0;
  /** Links (`a|b`, either direction) whose envelopes wait until the link recovers. */
  readonly slowLinks = new Set<string>();
  /**
   * Every content ever synced at `key@version`, by any replica: the store keeps only the newest
   * copy, and two values at one version must be caught even after both were overwritten. Only
   * synced ones: a recovery whose own acceptance alone is a quorum (a lone replica) applies its
   * commit before that acceptance is synced, as server/storage-server.ts's carryOut does, and a
   * crash before the sync undoes both. That is harmless as long as nobody saw the value: the
   * reads' invariant (`readsServed`) checks that nobody did.
   */
  private readonly everAt = new Map<string, string>();
  /**
   * Every acceptance synced, by transaction and ballot: the outcome and who accepted it. Once a
   * majority of a ballot's acceptors have it on disk, that outcome is chosen, whether or not
   * anyone learned it yet; Paxos chooses one outcome per transaction, ever.
   */
  private readonly acceptances = new Map<
    string,
    Map<string, { readonly outcome: TxOutcome; readonly by: Set<string> }>
  >();
  /** Commits chosen at a recovery's ballot (found accepted on some replicas and completed). */
  commitsChosenByRecovery = 0;
  /** The outcome chosen for each transaction (a majority of some ballot's acceptors accepted it). */
  readonly chosen = new Map<string, { readonly outcome: TxOutcome; readonly ballot: Ballot }>();
  /** Answers to a promise or accept of an older ballot, heard after a newer one started. */
  staleBallotAnswers = 0;
  /** Replicated reads answered, and what each returned (a key no replica held is not listed). */
  readonly readsServed: ServedRead[] = [];
  /** Reads refused because a transaction on the key was undecided, or decided but not synced. */
  readsRefused = 0;
  /**
   * For each key, the newest version a read returned, as owed by each replica of the transaction
   * that wrote it (`key` -> server -> version): such a replica voted yes for that write and
   * refuses reads until it applied the decision, so it may never answer anything older after
   * (docs/design.md, "Linearizable reads").
   */
  private readonly readFloor = new Map<string, Map<string, number>>();
  /** Which transaction's commit wrote `key@version` (as applied), for the reads' invariant. */
  private readonly writerAt = new Map<string, string>();
  /**
   * Accepts held as they leave (`holdAcceptsLeaving`): the chance that each accept sent, by a
   * coordinator or a recovery, finds its link slow, and the randomness that decides.
   */
  private acceptHold: { readonly random: Random; readonly chance: number } | undefined;
  /** The newest ballot each server proposed for each transaction (`id txid`), to count those. */
  private readonly newestBallot = new Map<string, Ballot>();
  /**
   * Envelopes taken off the network one by one (`hold`) until released: a single answer that
   * arrives after its proposer started a newer ballot, while the rest of its link flows.
   */
  readonly held: Envelope[] = [];
  /**
   * What each proposer had accepted itself when its ballot's promises left (`id txid ballot`,
   * null: nothing), and which ballots heard a promise already: the first promise answered, with
   * the proposer's own, makes the phase-1 quorum of a three-replica transaction.
   */
  private readonly ownAcceptedAtBallot = new Map<string, Accepted | null>();
  /**
   * Phase-1 quorums (a proposer's own acceptance and the first promise to its newest ballot)
   * that held two different outcomes accepted: where choosing the highest-ballot one matters.
   */
  mixedPromiseQuorums = 0;
  /** ... of which the proposer's own acceptance was at the lower ballot (it must give way). */
  mixedQuorumsOwnLower = 0;
  /**
   * Promises to a proposer's newest ballot that arrived after the proposer itself promised a
   * higher ballot (another replica's): it must then not accept its own proposal.
   */
  promisesAfterHigherPromise = 0;

  constructor(
    count: number,
    private readonly config: Partial<typeof HARNESS_CONFIG> = {},
    /** When servers sync: after every step, or when the scheduler says (`sync`). */
    private readonly syncs: 'immediate' | 'scheduled' = 'immediate',
  ) {
    this.nodes = Array.from({ length: count }, (_, i) => {
      const ref = { id: `s${i}`, address: `127.0.0.1:${38000 + i}` };
      return {
        ref,
        participant: new Participant({ ...HARNESS_CONFIG, ...config, selfId: ref.id }),
        store: new Map<string, Stored>(),
        disk: {
          prepared: new Map(),
          decided: new Map(),
          lastCommits: new Map(),
          store: new Map(),
        },
        unsynced: [],
        afterSync: [],
        commitsAcknowledged: new Map<string, number>(),
        nowMs: 0,
        view: { epoch: NO_EPOCH, viewIds: new Set<string>() },
        crashed: false,
        paused: false,
      };
    });
    this.views.push({ epoch: 1, ids: new Set(this.nodes.map((n) => n.ref.id)) });
    for (const node of this.nodes) this.install(node.ref.id);
  }

  get currentView(): { epoch: number; ids: ReadonlySet<string> } {
    return this.views[this.views.length - 1];
  }

  node(id: string): SimNode {
    const found = this.nodes.find((n) => n.ref.id === id);
    if (found === undefined) throw new Error(`no node ${id}`);
    return found;
  }

  // ---- the view leader and the servers' views ---------------------------------------------------

  /** The view leader expels `id` (timed out or replaced): a new epoch without it. */
  expel(id: string): void {
    const ids = new Set(this.currentView.ids);
    if (!ids.delete(id)) return;
    this.views.push({ epoch: this.currentView.epoch + 1, ids });
    this.trace.push(`expel ${id} -> epoch ${this.currentView.epoch}`);
  }

  /**
   * `id` learns the current view at its heartbeat (an expelled server learns it is out; a
   * restarted one, `resuming`, learns the view that still lists it).
   */
  install(id: string, resuming = false): void {
    const node = this.node(id);
    const view = this.currentView;
    if (node.crashed || node.view.epoch === view.epoch) return;
    if (!resuming && node.view.epoch === NO_EPOCH && this.views.length > 1) return; // expelled
    node.view = view.ids.has(id)
      ? { epoch: view.epoch, viewIds: view.ids }
      : { epoch: NO_EPOCH, viewIds: new Set() };
    node.participant.epochChanged(node.nowMs);
    this.trace.push(`${id} installs epoch ${node.view.epoch}`);
  }

  // ---- processes ----------------------------------------------------------------------------------

  /** `id` dies: what it wrote but did not sync is lost. */
  crash(id: string): void {
    const node = this.node(id);
    node.crashed = true;
    node.unsynced = [];
    node.afterSync = [];
    this.trace.push(`crash ${id}`);
  }

  /**
   * A crashed `id` starts again on its data directory. It resumes its ID only if the view leader
   * still lists it (otherwise it would join with a new ID: another server, not simulated here).
   */
  restart(id: string): void {
    const node = this.node(id);
    if (!node.crashed || !this.currentView.ids.has(id)) return;
    node.participant = new Participant({ ...HARNESS_CONFIG, ...this.config, selfId: id });
    node.participant.restore(
      {
        prepared: node.disk.prepared,
        decided: node.disk.decided,
        lastCommits: node.disk.lastCommits,
      },
      node.nowMs,
    );
    node.store = new Map(node.disk.store);
    for (const [txid, version] of node.commitsAcknowledged) {
      if (node.participant.outcomeOf(txid) === undefined) {
        assert(node.participant.commitSyncedAsAccepted(txid, version), 'acknowledged on disk');
        this.commitsRecoveredAfterRestart++;
      }
    }
    node.crashed = false;
    node.paused = false;
    node.view = { epoch: NO_EPOCH, viewIds: new Set() };
    this.restarts++;
    this.trace.push(`restart ${id}`);
    this.install(id, true);
  }

  pause(id: string): void {
    this.node(id).paused = true;
    this.trace.push(`pause ${id}`);
  }

  resume(id: string): void {
    this.node(id).paused = false;
    this.trace.push(`resume ${id}`);
  }

  /** `id`'s clock moves on by `ms`; then its participant ticks (recoveries start). */
  advance(id: string, ms: number): void {
    const node = this.node(id);
    if (node.crashed || node.paused) return;
    node.nowMs += ms;
    this.carryOut(node, node.participant.tick(node.nowMs, node.view));
    this.syncIfImmediate(node);
  }

  /** Servers with writes or answers waiting for a sync. */
  unsyncedNodes(): string[] {
    return this.nodes
      .filter((n) => !n.crashed && !n.paused && (n.unsynced.length > 0 || n.afterSync.length > 0))
      .map((n) => n.ref.id);
  }

  /**
   * `id` syncs everything it wrote so far (group commit: in order, all together), then does what
   * waited for it: answers leave, peer messages go out.
   */
  sync(id: string): void {
    const node = this.node(id);
    if (node.crashed || node.paused) return;
    this.write(node);
    for (const w of node.unsynced) {
      if (w.type === 'copy') {
        const at = `${w.key}@${w.copy.version}`;
        const other = this.everAt.get(at);
        if (other !== undefined && other !== contentOf(w.copy)) {
          throw new Error(`two values synced at ${at}: ${other} and ${contentOf(w.copy)} (${id})`);
        }
        this.everAt.set(at, contentOf(w.copy));
        node.disk.store.set(w.key, w.copy);
        continue;
      }
      const { change } = w;
      switch (change.table) {
        case 'prepared':
          setOrDelete(node.disk.prepared, change.key, change.record);
          if (change.record?.accepted !== undefined) {
            this.noteAcceptance(id, change.key, change.record.accepted);
          }
          break;
        case 'decided':
          setOrDelete(node.disk.decided, change.key, change.record);
          break;
        case 'last-commit':
          setOrDelete(node.disk.lastCommits, change.key, change.record);
          break;
      }
    }
    node.unsynced = [];
    const waiting = node.afterSync;
    node.afterSync = [];
    for (const action of waiting) action();
  }

  /**
   * `id` has `accepted` on disk for `txid`. The acceptors of a ballot are the replicas its
   * proposer addressed: all of them for the coordinator's ballot 0, those in the view of the
   * ballot's epoch for a recovery's (server/participant.ts, `startBallot`).
   */
  private noteAcceptance(id: string, txid: string, accepted: Accepted): void {
    const tx = this.transactions.find((t) => t.txid === txid);
    assert(tx !== undefined, 'every prepared transaction was begun');
    const { ballot, outcome } = accepted;
    let byBallot = this.acceptances.get(txid);
    if (byBallot === undefined) this.acceptances.set(txid, (byBallot = new Map()));
    const text = ballotText(ballot);
    let at = byBallot.get(text);
    if (at === undefined) byBallot.set(text, (at = { outcome, by: new Set() }));
    if (describeOutcome(at.outcome) !== describeOutcome(outcome)) {
      throw new Error(`${txid}: two outcomes accepted at ${text}`);
    }
    at.by.add(id);
    const view = this.views.find((v) => v.epoch === ballot.epoch);
    assert(view !== undefined, 'a ballot names an epoch of the view leader');
    const acceptors = isCoordinatorBallot(ballot)
      ? tx.replicas.length
      : tx.replicas.filter((r) => view.ids.has(r.id)).length;
    if (at.by.size < majority(acceptors)) return;
    const before = this.chosen.get(txid);
    if (before === undefined) {
      this.chosen.set(txid, { outcome, ballot });
      if (outcome.state === 'committed' && !isCoordinatorBallot(ballot)) {
        this.commitsChosenByRecovery++;
      }
      this.trace.push(`${txid} chosen: ${describeOutcome(outcome)} at ${text}`);
    } else if (describeOutcome(before.outcome) !== describeOutcome(outcome)) {
      throw new Error(
        `${txid} chosen two ways: ${describeOutcome(before.outcome)} at ${ballotText(before.ballot)}, ${describeOutcome(outcome)} at ${text}`,
      );
    }
  }

  private syncIfImmediate(node: SimNode): void {
    if (this.syncs === 'immediate') this.sync(node.ref.id);
  }

  /**
   * From now on each accept leaves on a slow link with this chance: a coordinator's accepts land
   * on some replicas now and on the others late (refused by then: they promised a recovery), and
   * a recovery's phase 2 reaches some acceptors only, so that later ballots find different
   * outcomes accepted at different ballots.
   */
  holdAcceptsLeaving(random: Random, chance: number): void {
    this.acceptHold = { random, chance };
  }

  stopHoldingAccepts(): void {
    this.acceptHold = undefined;
  }

  private maybeHold(caller: string, target: string): void {
    if (this.acceptHold !== undefined && this.acceptHold.random.next() < this.acceptHold.chance) {
      this.slowLink(caller, target);
    }
  }

  // ---- transactions -------------------------------------------------------------------------------

  /**
   * A coordinator starts a setr (a delr when `value` is null) with the current view (or one it
   * cached: `epoch`).
   */
  begin(
    key: string,
    value: string | null,
    replicaIds: readonly string[],
    epoch?: number,
  ): SimTransaction {
    const replicas = replicaIds.map((id) => this.node(id).ref);
    const tx: SimTransaction = {
      txid: `tx${this.transactions.length + 1}`,
      key,
      value,
      replicas,
      coordinator: new Coordinator(replicas.length),
      crashed: false,
    };
    this.transactions.push(tx);
    const viewEpoch = epoch ?? this.currentView.epoch;
    this.trace.push(
      `begin ${tx.txid} ${key}=${value ?? '(delete)'} on ${replicaIds.join(',')} @${viewEpoch}`,
    );
    this.coordinatorSends(tx, viewEpoch, tx.coordinator.start());
    return tx;
  }

  crashCoordinator(tx: SimTransaction): void {
    tx.crashed = true;
    this.trace.push(`crash coordinator of ${tx.txid}`);
  }

  // ---- the network ------------------------------------------------------------------------------

  /**
   * Envelopes that can be delivered now (a paused process takes nothing in; a slow link holds
   * what travels on it).
   */
  deliverable(): number[] {
    const out: number[] = [];
    this.inFlight.forEach((e, i) => {
      const to = e.type === 'request' ? e.call.target : e.call.caller;
      if (this.isPaused(to)) return;
      if (this.slowLinks.size > 0 && this.isSlow(e.call.caller, e.call.target)) return;
      out.push(i);
    });
    return out;
  }

  /**
   * The link between `a` and `b` becomes slow: its envelopes wait (none is lost). Without `b`,
   * every link of `a` (its network is congested: a client on a bad connection, a server whose
   * NIC is saturated).
   */
  slowLink(a: string, b = '*'): void {
    this.slowLinks.add(linkOf(a, b));
    this.trace.push(`slow link ${a}-${b}`);
  }

  private isSlow(a: string, b: string): boolean {
    return (
      this.slowLinks.has(linkOf(a, b)) ||
      this.slowLinks.has(linkOf(a, '*')) ||
      this.slowLinks.has(linkOf(b, '*'))
    );
  }

  /** The link recovers: what waited on it may arrive now, late. */
  recoverLink(link: string): void {
    if (this.slowLinks.delete(link)) this.trace.push(`link ${link} recovers`);
  }

  /** Processes that can talk: the servers, and the coordinators still running. */
  processes(): string[] {
    const running = this.transactions
      .filter((t) => !t.crashed && t.coordinator.outcome === undefined)
      .map((t) => `c:${t.txid}`);
    return [...this.nodes.map((n) => n.ref.id), ...running];
  }

  deliver(index: number): void {
    const [envelope] = this.inFlight.splice(index, 1);
    const { call } = envelope;
    if (envelope.type === 'reply') {
      if (call.settled) return; // the caller timed out, or a duplicate's answer
      call.settled = true;
      this.waiting.delete(call.id);
      call.onReply(envelope.reply);
      return;
    }
    const node = this.node(call.target);
    if (call.refused) {
      this.trace.push(`drop copy of refused ${describe(call.request)}`);
      return;
    }
    // `refused` tells the caller its request was certainly not processed: true of a connection
    // refused, but not of a duplicate whose first copy was processed; the caller then sees the
    // connection break, which it cannot tell from a lost answer.
    if (node.crashed) {
      call.refused = !call.delivered;
      const reply: Reply = call.delivered
        ? { type: 'unreachable', transport: 'timeout' }
        : { type: 'unreachable', transport: 'refused' };
      this.trace.push(
        `${call.caller} -> ${call.target} ${describe(call.request)}: ${reply.transport}`,
      );
      this.inFlight.push({ type: 'reply', call, reply });
      return;
    }
    call.delivered = true;
    this.serve(node, call.request, (reply) => {
      this.trace.push(
        `${call.caller} -> ${call.target} ${describe(call.request)}: ${describeReply(reply)}`,
      );
      this.inFlight.push({ type: 'reply', call, reply });
    });
    this.syncIfImmediate(node);
  }

  drop(index: number): void {
    const [envelope] = this.inFlight.splice(index, 1);
    this.trace.push(`drop ${envelope.type} ${describe(envelope.call.request)}`);
  }

  duplicate(index: number): void {
    const envelope = this.inFlight[index];
    if (envelope.type === 'request') this.inFlight.push(envelope);
  }

  /** The caller of an outstanding call gives up on it (its request or reply may still travel). */
  timeOut(callId: number): void {
    const call = this.waiting.get(callId);
    if (call === undefined) return;
    call.settled = true;
    this.waiting.delete(callId);
    this.trace.push(`timeout ${call.caller} -> ${call.target} ${describe(call.request)}`);
    call.onReply({ type: 'unreachable', transport: 'timeout' });
  }

  /** Calls whose caller still waits. */
  outstanding(): number[] {
    return [...this.waiting.keys()];
  }

  /** The envelope at `index` waits, apart, until released (the rest of its link flows). */
  hold(index: number): void {
    const [envelope] = this.inFlight.splice(index, 1);
    this.held.push(envelope);
    this.trace.push(`hold ${envelope.type} ${describe(envelope.call.request)}`);
  }

  /** The held envelope at `index` travels again, late. */
  release(index: number): void {
    const [envelope] = this.held.splice(index, 1);
    this.inFlight.push(envelope);
    this.trace.push(`release ${envelope.type} ${describe(envelope.call.request)}`);
  }

  // ---- replicated reads ---------------------------------------------------------------------------

  /**
   * A coordinator's `/read` of `key` at `id`, admitted as the shell admits it (server/admission.ts
   * with the participant's word on the key) and answered from memory, as the shell answers it.
   */
  read(id: string, key: string): void {
    const node = this.node(id);
    if (node.crashed || node.paused) return;
    const inView = node.view.epoch !== NO_EPOCH;
    const refusal = refuseRead(node.view.epoch, {
      epoch: node.view.epoch,
      rebalancing: !inView,
      leased: inView,
      keyPending: node.participant.refusesReads(key),
    });
    if (refusal !== undefined) {
      if (refusal.reason === 'key_busy') this.readsRefused++;
      return;
    }
    const held = node.store.get(key);
    const floor = this.readFloor.get(key)?.get(id) ?? 0;
    if ((held?.version ?? 0) < floor) {
      throw new Error(
        `a read of ${key} at ${id} returned v${held?.version ?? 0} (a replica of the v${floor} an earlier read returned)`,
      );
    }
    if (held === undefined) return;
    const at = `${key}@${held.version}`;
    const txid = this.writerAt.get(at);
    assert(txid !== undefined, 'every value held was applied by a commit');
    const writer = this.transactions.find((t) => t.txid === txid);
    assert(writer !== undefined, 'every commit was begun');
    let floors = this.readFloor.get(key);
    if (floors === undefined) this.readFloor.set(key, (floors = new Map()));
    for (const r of writer.replicas) {
      floors.set(r.id, Math.max(floors.get(r.id) ?? 0, held.version));
    }
    this.readsServed.push({ server: id, at, content: contentOf(held), txid });
    this.trace.push(`read ${key} at ${id}: ${contentOf(held)} v${held.version} (${txid})`);
  }

  // ---- what must always hold ----------------------------------------------------------------------

  checkInvariants(): void {
    for (const tx of this.transactions) {
      const decided = new Map<string, TxOutcome>();
      for (const node of this.nodes) {
        const outcome = node.participant.outcomeOf(tx.txid);
        if (outcome !== undefined) decided.set(node.ref.id, outcome);
      }
      const states = new Set([...decided.values()].map(describeOutcome));
      const chosen = this.chosen.get(tx.txid);
      if (chosen !== undefined) states.add(describeOutcome(chosen.outcome));
      if (states.size > 1) {
        const was = chosen === undefined ? '' : `, chosen ${describeOutcome(chosen.outcome)}`;
        throw new Error(`${tx.txid} decided two ways: ${JSON.stringify([...decided])}${was}`);
      }
      const reported = tx.coordinator.outcome;
      if (reported === undefined || states.size === 0) continue;
      const agreed = [...decided.values()][0] ?? chosen?.outcome;
      if (reported.type === 'committed') {
        if (agreed.state !== 'committed' || agreed.version !== reported.version) {
          throw new Error(
            `${tx.txid} reported committed v${reported.version}, replicas ${describeOutcome(agreed)}`,
          );
        }
      } else if (reported.error.kind !== 'unknown' && agreed.state === 'committed') {
        throw new Error(`${tx.txid} reported ${reported.error.kind}, but the replicas committed`);
      }
    }
    for (const node of this.nodes) {
      for (const [txid, version] of node.commitsAcknowledged) {
        const decided = node.disk.decided.get(txid);
        const accepted = node.disk.prepared.get(txid)?.accepted;
        const onDisk =
          (decided?.outcome.state === 'committed' && decided.outcome.version === version) ||
          (accepted?.outcome.state === 'committed' && accepted.outcome.version === version);
        if (!onDisk) {
          throw new Error(`${node.ref.id} acknowledged the commit of ${txid}, not on its disk`);
        }
      }
    }
    // What a read returned was committed, for good: its transaction is never decided otherwise
    // (a crash cannot undo it), and no other value is ever synced at its key@version.
    for (const read of this.readsServed) {
      for (const node of this.nodes) {
        if (node.participant.outcomeOf(read.txid)?.state === 'aborted') {
          throw new Error(
            `a read at ${read.server} returned ${read.content} (${read.txid}), aborted at ${node.ref.id}`,
          );
        }
      }
      const synced = this.everAt.get(read.at);
      if (synced !== undefined && synced !== read.content) {
        throw new Error(`a read returned ${read.content} at ${read.at}, ${synced} synced there`);
      }
    }
    const valueAt = new Map<string, string>();
    for (const node of this.nodes) {
      for (const [key, held] of node.store) {
        const at = `${key}@${held.version}`;
        const content = contentOf(held);
        const other = valueAt.get(at);
        if (other !== undefined && other !== content) {
          throw new Error(`two values at ${at}: ${other} and ${content}`);
        }
        valueAt.set(at, content);
      }
    }
  }

  // ---- the server shell, mirrored ------------------------------------------------------------------

  /**
   * As the real shell (server/storage-server.ts): an answer leaves once what it depends on is
   * synced, except a commit whose acceptance is synced already (the participant says why).
   */
  private serve(node: SimNode, request: Request, answer: (reply: Reply) => void): void {
    const { participant } = node;
    const afterSync = (reply: Reply, then?: () => void): void => {
      this.write(node);
      node.afterSync.push(() => {
        then?.();
        answer(reply);
      });
    };
    try {
      switch (request.kind) {
        case 'prepare': {
          const vote = participant.prepare(
            request.request,
            {
              epoch: node.view.epoch,
              rebalancing: node.view.epoch === NO_EPOCH,
              leased: node.view.epoch !== NO_EPOCH,
              currentVersion: node.store.get(request.request.key)?.version ?? 0,
            },
            node.nowMs,
          );
          afterSync(
            vote.vote === 'yes'
              ? { type: 'ok', body: vote.version }
              : { type: 'error', error: vote.error },
          );
          return;
        }
        case 'accept':
          participant.accept(request.txid, request.key, request.ballot, request.outcome, node.view);
          afterSync({ type: 'ok', body: undefined }, () =>
            participant.acceptSynced(request.txid, request.outcome),
          );
          return;
        case 'commit': {
          const onDisk = participant.commitSyncedAsAccepted(request.txid, request.version);
          const apply = participant.commit(request.txid, request.key, request.version);
          if (apply !== undefined) this.applyTo(node, request.txid, request.version, apply);
          const acknowledge = (): void => {
            node.commitsAcknowledged.set(request.txid, request.version);
          };
          if (onDisk) {
            this.write(node);
            this.commitsAnsweredBeforeSync++;
            acknowledge();
            answer({ type: 'ok', body: undefined });
          } else {
            afterSync({ type: 'ok', body: undefined }, acknowledge);
          }
          return;
        }
        case 'abort':
          participant.abort(request.txid, request.key, request.ballot);
          afterSync({ type: 'ok', body: undefined });
          return;
        case 'promise': {
          const body = participant.promise(request.txid, request.key, request.ballot, node.view);
          afterSync({ type: 'ok', body });
          return;
        }
      }
    } catch (err) {
      // A refusal changed nothing: it is answered at once, as the shell throws before syncing.
      if (err instanceof DhtError) answer({ type: 'error', error: err });
      else throw err;
    }
  }

  /** The participant's changes are handed to the store (not synced yet). */
  private write(node: SimNode): void {
    for (const change of node.participant.takeChanges()) {
      node.unsynced.push({ type: 'record', change });
    }
  }

  private carryOut(node: SimNode, step: Step): void {
    for (const r of step.resolutions) {
      this.trace.push(`${node.ref.id} resolves ${describeOutcome(r.outcome)} (${r.why})`);
      if (r.apply !== undefined) {
        assert(r.outcome.state === 'committed', 'only a commit is applied');
        this.applyTo(node, r.txid, r.outcome.version, r.apply);
      }
    }
    // What it promised, accepted or decided is durable before anyone hears of it, or reads it.
    this.write(node);
    if (step.sends.length > 0 || step.resolutions.length > 0) {
      node.afterSync.push(() => {
        node.participant.resolutionsSynced(step.resolutions);
        for (const send of step.sends) this.peerSend(node, send);
      });
    }
  }

  private peerSend(node: SimNode, send: PeerSend): void {
    const { txid, key, target } = send;
    const proposed = `${node.ref.id} ${txid}`;
    const stale = (ballot: Ballot): void => {
      const newest = this.newestBallot.get(proposed);
      if (newest !== undefined && compareBallots(ballot, newest) < 0) this.staleBallotAnswers++;
    };
    switch (send.type) {
      case 'promise':
        {
          const newest = this.newestBallot.get(proposed);
          if (newest === undefined || compareBallots(send.ballot, newest) > 0) {
            this.newestBallot.set(proposed, send.ballot);
          }
          const at = `${proposed} ${ballotText(send.ballot)}`;
          if (!this.ownAcceptedAtBallot.has(at)) {
            this.ownAcceptedAtBallot.set(at, this.latestRecord(node, txid)?.accepted ?? null);
          }
        }
        this.send(
          node.ref.id,
          target.id,
          { kind: 'promise', txid, key, ballot: send.ballot },
          (reply) => {
            if (node.crashed) return;
            stale(send.ballot);
            if (reply.type === 'ok') {
              this.notePromise(node, txid, send.ballot, reply.body as DecisionResponse);
            }
            const answer =
              reply.type === 'ok' ? (reply.body as DecisionResponse) : ('unreachable' as const);
            this.carryOut(node, node.participant.onPromise(txid, target, send.ballot, answer));
            this.syncIfImmediate(node);
          },
        );
        return;
      case 'accept':
        this.maybeHold(node.ref.id, target.id);
        this.send(
          node.ref.id,
          target.id,
          { kind: 'accept', txid, key, ballot: send.ballot, outcome: send.outcome },
          (reply) => {
            if (node.crashed) return;
            stale(send.ballot);
            const answer =
              reply.type === 'ok' ? 'accepted' : reply.type === 'error' ? 'refused' : 'unreachable';
            this.carryOut(node, node.participant.onAccepted(txid, target, send.ballot, answer));
            this.syncIfImmediate(node);
          },
        );
        return;
      case 'learn':
        this.send(
          node.ref.id,
          target.id,
          send.outcome.state === 'committed'
            ? { kind: 'commit', txid, key, version: send.outcome.version }
            : { kind: 'abort', txid, key, ballot: send.ballot },
          () => undefined,
        );
        return;
    }
  }

  /**
   * A promise to `ballot` reaches its proposer: count the phase-1 quorums worth counting (see
   * `mixedPromiseQuorums`). Only the first answer to the proposer's newest ballot: with three
   * replicas, it and the proposer's own make the quorum.
   */
  private notePromise(node: SimNode, txid: string, ballot: Ballot, answer: DecisionResponse): void {
    if (answer.state !== 'promised') return;
    const proposed = `${node.ref.id} ${txid}`;
    const newest = this.newestBallot.get(proposed);
    if (newest === undefined || compareBallots(ballot, newest) !== 0) return;
    const at = `${proposed} ${ballotText(ballot)}`;
    const own = this.ownAcceptedAtBallot.get(at);
    if (own === undefined) return; // answered already (or a proposer before a restart)
    this.ownAcceptedAtBallot.delete(at);
    const promised = this.latestRecord(node, txid)?.promised;
    if (promised !== undefined && compareBallots(promised, ballot) > 0) {
      this.promisesAfterHigherPromise++;
    }
    const theirs = answer.accepted;
    if (own === null || theirs === undefined) return;
    if (describeOutcome(own.outcome) === describeOutcome(theirs.outcome)) return;
    this.mixedPromiseQuorums++;
    if (compareBallots(own.ballot, theirs.ballot) < 0) this.mixedQuorumsOwnLower++;
  }

  /** `node`'s newest prepared record of `txid`, written (handed to its store) or synced. */
  private latestRecord(node: SimNode, txid: string): PreparedRecord | undefined {
    for (let i = node.unsynced.length - 1; i >= 0; i--) {
      const w = node.unsynced[i];
      if (w.type === 'record' && w.change.table === 'prepared' && w.change.key === txid) {
        return w.change.record;
      }
    }
    return node.disk.prepared.get(txid);
  }

  private coordinatorSends(tx: SimTransaction, epoch: number, sends: readonly Send[]): void {
    if (tx.crashed) return;
    for (const send of sends) {
      const replica = tx.replicas[send.replica];
      const caller = `c:${tx.txid}`;
      const { txid, key } = tx;
      const onAck =
        (handle: (ack: AckResult) => Send[]) =>
        (reply: Reply): void => {
          if (tx.crashed) return;
          const ack: AckResult = reply.type === 'ok' ? { type: 'ok' } : reply;
          this.coordinatorSends(tx, epoch, handle(ack));
        };
      switch (send.type) {
        case 'prepare':
          this.send(
            caller,
            replica.id,
            {
              kind: 'prepare',
              request: {
                txid,
                key,
                ...(tx.value === null ? { deleted: true as const } : { value: tx.value }),
                epoch,
                serverId: replica.id,
                replicas: [...tx.replicas],
              },
            },
            (reply) => {
              if (tx.crashed) return;
              const vote =
                reply.type === 'ok'
                  ? { type: 'yes' as const, version: reply.body as number }
                  : reply.type === 'error'
                    ? { type: 'no' as const, error: reply.error }
                    : reply;
              this.coordinatorSends(tx, epoch, tx.coordinator.onVote(send.replica, vote));
            },
          );
          break;
        case 'accept':
          this.maybeHold(caller, replica.id);
          this.send(
            caller,
            replica.id,
            {
              kind: 'accept',
              txid,
              key,
              ballot: coordinatorBallot(epoch),
              outcome: { state: 'committed', version: send.version },
            },
            onAck((ack) => tx.coordinator.onAcceptAck(send.replica, ack)),
          );
          break;
        case 'commit':
          this.send(
            caller,
            replica.id,
            { kind: 'commit', txid, key, version: send.version },
            onAck((ack) => tx.coordinator.onCommitAck(send.replica, ack)),
          );
          break;
        case 'abort':
          this.send(
            caller,
            replica.id,
            { kind: 'abort', txid, key },
            onAck((ack) => tx.coordinator.onAbortAck(send.replica, ack)),
          );
          break;
      }
    }
  }

  private send(
    caller: string,
    target: string,
    request: Request,
    onReply: (r: Reply) => void,
  ): void {
    const call: Call = {
      id: ++this.calls,
      caller,
      target,
      request,
      settled: false,
      delivered: false,
      refused: false,
      onReply,
    };
    this.waiting.set(call.id, call);
    this.inFlight.push({ type: 'request', call });
  }

  private isPaused(id: string): boolean {
    if (id.startsWith('c:')) return false;
    return this.node(id).paused;
  }

  /**
   * `txid`'s commit, decided at `version`, is applied. It must be applied at that version (every
   * replica at the coordinator's choice, whatever it voted: replicas that voted different
   * versions would otherwise hold one transaction's value at different versions).
   */
  private applyTo(node: SimNode, txid: string, version: number, { key, ...copy }: Apply): void {
    if (copy.version !== version) {
      throw new Error(
        `${node.ref.id} applied ${txid} at ${key}@${copy.version}, decided at v${version}`,
      );
    }
    this.writerAt.set(`${key}@${copy.version}`, txid);
    const held = node.store.get(key);
    if (held === undefined || held.version < copy.version) {
      node.store.set(key, copy);
      node.unsynced.push({ type: 'copy', key, copy });
    }
  }
}

// ---- a seeded random scheduler --------------------------------------------------------------------

export interface Nemesis {
  /** Chance per step of each fault; the rest of the steps deliver messages or move clocks. */
  readonly drop: number;
  readonly duplicate: number;
  readonly timeout: number;
  readonly crash: number;
  /** A crashed server still in the view starts again on its disk. */
  readonly restart: number;
  readonly pause: number;
  readonly expel: number;
  readonly install: number;
  readonly crashCoordinator: number;
  /** A server with writes waiting syncs them (with `syncs: 'scheduled'`). */
  readonly sync: number;
  /** At most this many servers crash or are expelled in one run. */
  readonly failuresMax: number;
  /**
   * A link between two processes (servers, coordinators) becomes slow: its envelopes wait. A
   * coordinator's accepts then arrive past the prepare timeout, amid recoveries.
   */
  readonly slowLink?: number;
  /**
   * The network partitions: the processes split in two sides at random, and every link across is
   * slow (say, a coordinator that reaches one replica while the others time out and recover).
   */
  readonly partition?: number;
  /**
   * A slow link recovers, or (half the time) the network heals entirely: what waited arrives
   * late (a coordinator's accepts amid recoveries, answers to ballots long superseded).
   */
  readonly recoverLink?: number;
  /**
   * Time passes for every server together (each clock a little off), so that replicas time out
   * close together and their recoveries duel, instead of one at a time.
   */
  readonly advanceAll?: number;
  /** How far clocks move together at most (short steps: ballots complete between ticks). */
  readonly advanceAllMsMax?: number;
  /**
   * Chance that a server dies right after a sync let its answers out: it promised or accepted,
   * said so, and is gone (one of the `failuresMax`).
   */
  readonly crashAfterAnswer?: number;
  /** A coordinator reads a key at a live server (a getr's `/read`): what it returns must hold. */
  readonly read?: number;
}

export const NEMESIS_DEFAULT: Nemesis = {
  drop: 0.04,
  duplicate: 0.03,
  timeout: 0.04,
  crash: 0.01,
  restart: 0.01,
  pause: 0.02,
  expel: 0.015,
  install: 0.1,
  crashCoordinator: 0.01,
  sync: 0.15,
  failuresMax: 1,
};

/** One random step; false when nothing at all can happen any more. */
export function randomStep(cluster: SimCluster, random: Random, nemesis: Nemesis): boolean {
  const live = cluster.nodes.filter((n) => !n.crashed);
  const failures = cluster.nodes.filter(
    (n) => n.crashed || !cluster.currentView.ids.has(n.ref.id),
  ).length;
  const roll = random.next();
  let p = 0;
  const deliverable = cluster.deliverable();
  if (deliverable.length > 0 && roll < (p += nemesis.drop)) {
    cluster.drop(random.pick(deliverable));
  } else if (deliverable.length > 0 && roll < (p += nemesis.duplicate)) {
    cluster.duplicate(random.pick(deliverable));
  } else if (roll < (p += nemesis.timeout) && cluster.outstanding().length > 0) {
    cluster.timeOut(random.pick(cluster.outstanding()));
  } else if (
    roll < (p += nemesis.crash) &&
    failures < nemesis.failuresMax &&
    (live.length > 1 || (live.length === 1 && nemesis.restart > 0))
  ) {
    cluster.crash(random.pick(live).ref.id);
  } else if (roll < (p += nemesis.restart) && live.length < cluster.nodes.length) {
    cluster.restart(random.pick(cluster.nodes.filter((n) => n.crashed)).ref.id);
  } else if (roll < (p += nemesis.pause) && live.length > 0) {
    const node = random.pick(live);
    if (node.paused) cluster.resume(node.ref.id);
    else cluster.pause(node.ref.id);
  } else if (roll < (p += nemesis.expel) && failures < nemesis.failuresMax) {
    const inView = [...cluster.currentView.ids];
    if (inView.length > 1) cluster.expel(random.pick(inView));
  } else if (roll < (p += nemesis.install)) {
    cluster.install(random.pick(cluster.nodes).ref.id);
  } else if (roll < (p += nemesis.crashCoordinator)) {
    const running = cluster.transactions.filter(
      (t) => !t.crashed && t.coordinator.outcome === undefined,
    );
    if (running.length > 0) cluster.crashCoordinator(random.pick(running));
  } else if (roll < (p += nemesis.sync) && cluster.unsyncedNodes().length > 0) {
    const id = random.pick(cluster.unsyncedNodes());
    cluster.sync(id);
    // (No extra draw when unused: the other runs keep their random sequences, seed for seed.)
    const crashes = (nemesis.crashAfterAnswer ?? 0) > 0;
    const answered = crashes && cluster.nodes.length > 1 && failures < nemesis.failuresMax;
    if (answered && random.next() < (nemesis.crashAfterAnswer ?? 0)) cluster.crash(id);
  } else if ((nemesis.slowLink ?? 0) > 0 && roll < (p += nemesis.slowLink ?? 0)) {
    // Mostly a link that carries something now (a coordinator's accepts, a ballot's promises).
    if (cluster.inFlight.length > 0 && random.next() < 0.7) {
      const { call } = random.pick(cluster.inFlight);
      cluster.slowLink(call.caller, call.target);
    } else {
      const a = random.pick(cluster.processes());
      const b = random.pick(cluster.processes());
      // Sometimes every link of one process (a client or server whose network is congested).
      if (a === b || random.next() < 0.4) cluster.slowLink(a);
      else cluster.slowLink(a, b);
    }
  } else if ((nemesis.partition ?? 0) > 0 && roll < (p += nemesis.partition ?? 0)) {
    const processes = cluster.processes();
    const side = new Set(processes.filter(() => random.next() < 0.5));
    for (const a of side) {
      for (const b of processes) if (!side.has(b)) cluster.slowLink(a, b);
    }
  } else if (cluster.slowLinks.size > 0 && roll < (p += nemesis.recoverLink ?? 0)) {
    if (random.next() < 0.5) cluster.recoverLink(random.pick([...cluster.slowLinks]));
    else for (const link of [...cluster.slowLinks]) cluster.recoverLink(link);
  } else if ((nemesis.advanceAll ?? 0) > 0 && roll < (p += nemesis.advanceAll ?? 0)) {
    const ms = random.int(50, nemesis.advanceAllMsMax ?? 3000);
    for (const node of cluster.nodes) cluster.advance(node.ref.id, ms + random.int(0, 200));
  } else if ((nemesis.read ?? 0) > 0 && roll < (p += nemesis.read ?? 0) && live.length > 0) {
    const keys = [...new Set(cluster.transactions.map((t) => t.key))];
    if (keys.length > 0) cluster.read(random.pick(live).ref.id, random.pick(keys));
  } else if (deliverable.length > 0 && random.next() < 0.8) {
    cluster.deliver(random.pick(deliverable));
  } else {
    cluster.advance(random.pick(cluster.nodes).ref.id, random.int(50, 3000));
  }
  return true;
}

/**
 * The faults stop: paused processes resume, crashed servers restart (or are expelled if the view
 * leader dropped them already), every server installs
 * the current view, and messages flow until every transaction that can be decided is.
 */
export function heal(cluster: SimCluster, random: Random, stepsMax: number): void {
  cluster.stopHoldingAccepts();
  while (cluster.held.length > 0) cluster.release(cluster.held.length - 1);
  for (const link of [...cluster.slowLinks]) cluster.recoverLink(link);
  for (const node of cluster.nodes) {
    if (node.paused) cluster.resume(node.ref.id);
    // A crashed server still in the view comes back on its disk; one already out stays out.
    if (node.crashed) cluster.restart(node.ref.id);
    if (node.crashed) cluster.expel(node.ref.id);
  }
  for (let step = 0; step < stepsMax; step++) {
    for (const node of cluster.nodes) cluster.install(node.ref.id);
    for (const id of cluster.unsyncedNodes()) cluster.sync(id);
    const deliverable = cluster.deliverable();
    if (deliverable.length > 0) cluster.deliver(random.pick(deliverable));
    else
      for (const node of cluster.nodes)
        cluster.advance(node.ref.id, HARNESS_CONFIG.decisionRetryMs);
    cluster.checkInvariants();
    if (settled(cluster)) return;
  }
}

/** Every live server in the view has decided every transaction it prepared, where decidable. */
export function settled(cluster: SimCluster): boolean {
  return cluster.nodes.every(
    (n) => n.crashed || n.view.epoch === NO_EPOCH || n.participant.pendingCount === 0,
  );
}

function describe(request: Request): string {
  switch (request.kind) {
    case 'prepare':
      return `prepare ${request.request.txid}@${request.request.epoch}`;
    case 'accept':
      return `accept ${request.txid} ${ballotText(request.ballot)} ${describeOutcome(request.outcome)}`;
    case 'commit':
      return `commit ${request.txid} v${request.version}`;
    case 'abort':
      return `abort ${request.txid}${request.ballot === undefined ? '' : ` ${ballotText(request.ballot)}`}`;
    case 'promise':
      return `promise ${request.txid} ${ballotText(request.ballot)}`;
  }
}

function describeReply(reply: Reply): string {
  if (reply.type === 'ok') {
    return reply.body === undefined ? 'ok' : `ok ${JSON.stringify(reply.body)}`;
  }
  return reply.type === 'error'
    ? `${reply.error.kind}/${reply.error.reason ?? ''}`
    : reply.transport;
}

export function describeOutcome(o: TxOutcome): string {
  return o.state === 'committed' ? `committed v${o.version}` : 'aborted';
}

function isCoordinatorBallot(b: Ballot): boolean {
  return b.round === 0 && b.slot === 0;
}

function ballotText(b: Ballot): string {
  return `b${b.epoch}.${b.round}.${b.slot}`;
}

function contentOf(copy: Stored): string {
  return copy.deleted === true ? '(deleted)' : copy.value;
}

/** A link is named by its two ends, in either direction. */
function linkOf(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function setOrDelete<V>(map: Map<string, V>, key: string, value: V | undefined): void {
  if (value === undefined) map.delete(key);
  else map.set(key, value);
}
