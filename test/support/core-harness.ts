// An in-memory cluster for the pure 2PC cores (server/participant.ts, client/coordinator.ts):
// participants and one coordinator wired by direct calls, with controls a scenario test needs
// (deliver one message, crash a process, advance time, take a server out of the view). No
// network, no timers: time is `nowMs`, moved by `advance`. Every delivery is recorded in `trace`,
// so a scenario can state what happened as plain data.

import { Coordinator, type AckResult, type Send, type VoteResult } from '../../client/coordinator';
import { DhtError } from '../../lib/errors';
import type { PrepareRequest, ServerRef } from '../../lib/messages';
import { Participant, type ParticipantConfig, type Resolution } from '../../server/participant';

export interface Stored {
  readonly value: string;
  readonly version: number;
}

export interface CoreNode {
  readonly ref: ServerRef;
  readonly participant: Participant;
  readonly store: Map<string, Stored>;
  alive: boolean;
}

export const HARNESS_CONFIG = {
  prepareTimeoutMs: 5000,
  decisionRetryMs: 500,
  decisionsRememberedMax: 1000,
} as const satisfies Omit<ParticipantConfig, 'selfId'>;

/** A bound on every loop that waits for the cluster to settle (TIGER_STYLE). */
const SETTLE_ROUNDS_MAX = 1000;

export class CoreCluster {
  nowMs = 0;
  readonly epoch = 1;
  readonly nodes: CoreNode[];
  readonly viewIds: Set<string>;
  readonly trace: string[] = [];
  private transactionsBegun = 0;

  constructor(count: number, config: Partial<typeof HARNESS_CONFIG> = {}) {
    this.nodes = Array.from({ length: count }, (_, i) => {
      const ref = { id: `s${i}`, address: `127.0.0.1:${38000 + i}` };
      return {
        ref,
        participant: new Participant({ ...HARNESS_CONFIG, ...config, selfId: ref.id }),
        store: new Map<string, Stored>(),
        alive: true,
      };
    });
    this.viewIds = new Set(this.nodes.map((n) => n.ref.id));
  }

  node(id: string): CoreNode {
    const found = this.nodes.find((n) => n.ref.id === id);
    if (found === undefined) throw new Error(`no node ${id}`);
    return found;
  }

  /** A process stops: it answers nothing (connection refused) from now on. */
  crash(id: string): void {
    this.node(id).alive = false;
    this.trace.push(`crash ${id}`);
  }

  /** The view leader times a server out. */
  leave(id: string): void {
    this.viewIds.delete(id);
    this.trace.push(`leave ${id}`);
  }

  /** Start a transaction whose replicas are the given servers (primary first), all by default. */
  begin(key: string, value: string, replicaIds?: readonly string[]): CoreTransaction {
    const replicas = (replicaIds ?? this.nodes.map((n) => n.ref.id)).map((id) => this.node(id).ref);
    return new CoreTransaction(this, `tx${++this.transactionsBegun}`, key, value, replicas);
  }

  /** Move time forward and run one tick of every live participant, answering its queries. */
  advance(ms: number): void {
    this.nowMs += ms;
    for (const node of this.nodes) {
      if (!node.alive) continue;
      const { asks, resolutions } = node.participant.tick(this.nowMs);
      for (const r of resolutions) this.resolved(node, r);
      for (const ask of asks) {
        const target = this.node(ask.target.id);
        const answer = target.alive
          ? target.participant.answer(ask.txid, this.nowMs)
          : 'unreachable';
        const r = node.participant.onAnswer(ask.txid, ask.target, answer, this.viewIds);
        if (r !== undefined) this.resolved(node, r);
      }
    }
  }

  /** Advance in decision-retry steps until no live participant holds a pending transaction. */
  settle(): void {
    for (let round = 0; round < SETTLE_ROUNDS_MAX; round++) {
      if (this.nodes.every((n) => !n.alive || n.participant.pendingCount === 0)) return;
      this.advance(HARNESS_CONFIG.decisionRetryMs);
    }
    throw new Error('the cluster did not settle');
  }

  /** Each live node's outcome of a transaction, by node ID. */
  outcomes(txid: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const n of this.nodes) {
      if (!n.alive) continue;
      const o = n.participant.outcomeOf(txid);
      out[n.ref.id] =
        o === undefined
          ? 'undecided'
          : o.state === 'committed'
            ? `committed v${o.version}`
            : 'aborted';
    }
    return out;
  }

  /** Each live node's copy of a key, by node ID. */
  values(key: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const n of this.nodes) {
      if (!n.alive) continue;
      const held = n.store.get(key);
      out[n.ref.id] = held === undefined ? 'absent' : `${held.value}@v${held.version}`;
    }
    return out;
  }

  applyTo(node: CoreNode, key: string, value: string, version: number): void {
    const held = node.store.get(key);
    if (held === undefined || held.version < version) node.store.set(key, { value, version });
  }

  private resolved(node: CoreNode, r: Resolution): void {
    this.trace.push(`${node.ref.id} resolves ${r.outcome.state} (${r.why})`);
    if (r.apply !== undefined) this.applyTo(node, r.apply.key, r.apply.value, r.apply.version);
  }
}

/** One setr: the coordinator and the messages it has sent but that were not delivered yet. */
export class CoreTransaction {
  readonly coordinator: Coordinator;
  /** Sent, not yet delivered, in the order sent. */
  pending: Send[];
  private coordinatorAlive = true;

  constructor(
    private readonly cluster: CoreCluster,
    readonly txid: string,
    readonly key: string,
    readonly value: string,
    readonly replicas: readonly ServerRef[],
  ) {
    this.coordinator = new Coordinator(replicas.length);
    this.pending = this.coordinator.start();
  }

  /** Deliver the first pending message matching `type` (and `replica`), feed back the answer. */
  deliver(type: Send['type'], replica?: number): void {
    const i = this.pending.findIndex(
      (s) => s.type === type && (replica === undefined || s.replica === replica),
    );
    if (i < 0) throw new Error(`no pending ${type} ${replica ?? ''}`);
    const [send] = this.pending.splice(i, 1);
    this.execute(send);
  }

  /** Deliver everything, including what the answers cause, until nothing is pending. */
  run(): void {
    for (let round = 0; round < SETTLE_ROUNDS_MAX && this.pending.length > 0; round++) {
      const send = this.pending.shift();
      if (send !== undefined) this.execute(send);
    }
  }

  /** The coordinator dies: nothing pending is ever delivered. */
  crashCoordinator(): void {
    this.coordinatorAlive = false;
    this.pending = [];
    this.cluster.trace.push('crash coordinator');
  }

  private execute(send: Send): void {
    if (!this.coordinatorAlive) throw new Error('a dead coordinator sends nothing');
    const node = this.cluster.node(this.replicas[send.replica].id);
    let next: Send[];
    switch (send.type) {
      case 'prepare': {
        const vote = this.vote(node);
        this.cluster.trace.push(`prepare ${node.ref.id}: ${describeVote(vote)}`);
        next = this.coordinator.onVote(send.replica, vote);
        break;
      }
      case 'commit': {
        const ack = this.ack(node, () => {
          const apply = node.participant.commit(this.txid, this.key, send.version);
          if (apply !== undefined)
            this.cluster.applyTo(node, apply.key, apply.value, apply.version);
        });
        this.cluster.trace.push(`commit v${send.version} ${node.ref.id}: ${ack.type}`);
        next = this.coordinator.onCommitAck(send.replica, ack);
        break;
      }
      case 'abort': {
        const ack = this.ack(node, () => node.participant.abort(this.txid, this.key));
        this.cluster.trace.push(`abort ${node.ref.id}: ${ack.type}`);
        next = this.coordinator.onAbortAck(send.replica, ack);
        break;
      }
    }
    this.pending.push(...next);
  }

  private vote(node: CoreNode): VoteResult {
    if (!node.alive) return { type: 'unreachable', transport: 'refused' };
    const request: PrepareRequest = {
      txid: this.txid,
      key: this.key,
      value: this.value,
      epoch: this.cluster.epoch,
      serverId: node.ref.id,
      replicas: [...this.replicas],
    };
    const held = node.store.get(this.key);
    const vote = node.participant.prepare(
      request,
      { epoch: this.cluster.epoch, rebalancing: false, currentVersion: held?.version ?? 0 },
      this.cluster.nowMs,
    );
    return vote.vote === 'yes'
      ? { type: 'yes', version: vote.version }
      : { type: 'no', error: vote.error };
  }

  private ack(node: CoreNode, send: () => void): AckResult {
    if (!node.alive) return { type: 'unreachable', transport: 'refused' };
    try {
      send();
      return { type: 'ok' };
    } catch (err) {
      if (err instanceof DhtError) return { type: 'error', error: err };
      throw err;
    }
  }
}

function describeVote(vote: VoteResult): string {
  switch (vote.type) {
    case 'yes':
      return `yes v${vote.version}`;
    case 'no':
      return `no ${vote.error.reason ?? vote.error.kind}`;
    case 'unreachable':
      return `unreachable ${vote.transport}`;
  }
}
