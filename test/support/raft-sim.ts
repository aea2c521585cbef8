// A deterministic simulated cluster for the Raft core (viewleader/raft), in the style of
// TigerBeetle's VOPR: every member is a RaftNode with its own shell, mirrored from what a real
// process does with a Ready (ready.ts): its own disk (only what it persisted survives a crash),
// its own state machine (rebuilt from the snapshot and the committed entries on restart), its
// own clock (each node ticks at its own pace), and a network that drops, duplicates, delays and
// reorders messages (or, in half the random runs, keeps each link in order, as a TCP connection
// does), partitions (both ways or one way), and holds messages for a paused node
// (SIGSTOP: it neither ticks nor receives, then resumes with everything it believed). Clients
// propose commands and do read-index reads. All choices come from one seeded Random, so a
// failing seed replays exactly.
//
// What must hold, checked as the events happen (`check*` methods, each failure an Error naming
// what broke):
// - election safety: at most one leader per term, over all history (§5.2);
// - log matching: an (index, term) names one entry, with one predecessor term, over all history
//   and all nodes, so equal (index, term) means equal prefixes (§5.3);
// - leader completeness: every committed entry is in the log of every leader of a later term
//   (§5.4);
// - state machine safety: no two nodes apply different entries at one index; every snapshot
//   holds exactly the entries applied before it (§5.4.3);
// - read linearizability: a read-index read returns a state that includes every command whose
//   proposal was acknowledged (committed and applied at the leader it was proposed to) before
//   the read began: the read's index is at least that command's (§6.4);
// - and the core's own assertions (term and commit never go back, one vote per term, ...).

import {
  APPEND_ENTRIES_MAX,
  RaftNode,
  type Entry,
  type HardState,
  type RaftMessage,
  type RaftStatus,
  type Ready,
  type Snapshot,
} from '../../viewleader/raft';
import { Random } from './random';

export interface Command {
  readonly kind: 'append';
  readonly value: string;
}

/**
 * The state machine: the identity of every applied entry, by index - 1 (its command's value, or
 * `noop@term`), so two states compare entry by entry.
 */
export type MachineState = readonly string[];

type Message = RaftMessage<Command, MachineState>;
type SimSnapshot = Snapshot<MachineState>;

export interface SimConfig {
  readonly members: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** A node compacts once it has applied this many entries past its snapshot. */
  readonly compactEvery: number;
  /** Entries per AppendEntries message (small: a new leader's no-op travels apart). */
  readonly appendEntriesMax: number;
  /**
   * Whether the shell saves the commit index. If not, a restarted node re-applies only its
   * snapshot and learns the rest from the leader: safety must not depend on it.
   */
  readonly persistCommitIndex: boolean;
}

export const SIM_CONFIG_DEFAULT: SimConfig = {
  members: 3,
  electionTicks: 10,
  heartbeatTicks: 1,
  compactEvery: 8,
  appendEntriesMax: APPEND_ENTRIES_MAX,
  persistCommitIndex: true,
};

/** What the network and the processes do wrong; chances are per message or per step. */
export interface Faults {
  readonly drop: number;
  readonly duplicate: number;
  /** A message takes 1 to this many steps to arrive. */
  readonly delayStepsMax: number;
  /** Chance that a node leaves its Ready for a later step (a crash then loses it). */
  readonly readyLag: number;
  readonly crash: number;
  readonly restart: number;
  /** At most this many nodes down at once. */
  readonly crashedMax: number;
  readonly pause: number;
  readonly resume: number;
  readonly partition: number;
  readonly oneWay: number;
  readonly heal: number;
  /** Chance per step that a node's clock changes pace. */
  readonly pace: number;
  readonly propose: number;
  readonly read: number;
}

export const FAULTS_NONE: Faults = {
  drop: 0,
  duplicate: 0,
  delayStepsMax: 1,
  readyLag: 0,
  crash: 0,
  restart: 0,
  crashedMax: 0,
  pause: 0,
  resume: 0,
  partition: 0,
  oneWay: 0,
  heal: 0,
  pace: 0,
  propose: 0,
  read: 0,
};

export const FAULTS_CHAOS: Faults = {
  drop: 0.05,
  duplicate: 0.03,
  delayStepsMax: 3,
  readyLag: 0.2,
  crash: 0.01,
  restart: 0.04,
  crashedMax: 2,
  pause: 0.01,
  resume: 0.04,
  partition: 0.008,
  oneWay: 0.008,
  heal: 0.025,
  pace: 0.01,
  propose: 0.3,
  read: 0.12,
};

/**
 * Crashes and losses five times as often: leaders die between replicating an old entry and
 * their own (Figure 8), followers lose most of what they are sent.
 */
export const FAULTS_STORM: Faults = {
  ...FAULTS_CHAOS,
  drop: 0.15,
  duplicate: 0.05,
  crash: 0.05,
  restart: 0.15,
  pause: 0.03,
  resume: 0.08,
  partition: 0.02,
  oneWay: 0.02,
  heal: 0.05,
};

/** What a run did: a harness that never crashes or partitions proves nothing. */
export interface SimStats {
  steps: number;
  ticks: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  /** Terms in which a leader was elected. */
  elections: number;
  /** Elections that made a different node leader than the previous one. */
  leaderChanges: number;
  crashes: number;
  /** Crashes between persisting a Ready and sending its messages. */
  crashesAfterPersist: number;
  restarts: number;
  pauses: number;
  partitions: number;
  snapshotsInstalled: number;
  compactions: number;
  proposed: number;
  acknowledged: number;
  readsStarted: number;
  readsCompleted: number;
  readsFailed: number;
  /** Reads accepted by a leader whose term some other node had already left. */
  staleLeaderReads: number;
  /** The highest index applied anywhere. */
  appliedMax: number;
}

function emptyStats(): SimStats {
  return {
    steps: 0,
    ticks: 0,
    delivered: 0,
    dropped: 0,
    duplicated: 0,
    elections: 0,
    leaderChanges: 0,
    crashes: 0,
    crashesAfterPersist: 0,
    restarts: 0,
    pauses: 0,
    partitions: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    proposed: 0,
    acknowledged: 0,
    readsStarted: 0,
    readsCompleted: 0,
    readsFailed: 0,
    staleLeaderReads: 0,
    appliedMax: 0,
  };
}

export function addStats(total: SimStats, run: SimStats): void {
  for (const key of Object.keys(total) as (keyof SimStats)[]) {
    total[key] = key === 'appliedMax' ? Math.max(total[key], run[key]) : total[key] + run[key];
  }
}

export function zeroStats(): SimStats {
  return emptyStats();
}

/** What a node saved: all that survives its crash. */
interface Disk {
  hardState: HardState;
  snapshot: SimSnapshot | null;
  entries: Entry<Command>[];
}

export class SimNode {
  raft: RaftNode<Command, MachineState> | null = null;
  disk: Disk = {
    hardState: { term: 0, votedFor: null, commitIndex: 0 },
    snapshot: null,
    entries: [],
  };
  /** The state machine (volatile: rebuilt at restart). */
  machine: string[] = [];
  /** The term of the last applied entry (a snapshot's lastTerm). */
  appliedTerm = 0;
  paused = false;
  /** Ticks per step; the clock accumulates it. */
  pace = 1;
  clock = 0;
  /** Bumped at each crash: what the old process had in memory (clients, reads) is gone. */
  incarnation = 0;
  /** Confirmed reads waiting for the state machine to reach their index. */
  readsToServe: { requestId: string; index: number }[] = [];

  constructor(
    readonly id: string,
    readonly jitter: Random,
  ) {}

  get up(): boolean {
    return this.raft !== null;
  }

  /** Up and not paused: it can tick and take messages. */
  get running(): boolean {
    return this.raft !== null && !this.paused;
  }
}

interface InFlight {
  readonly from: string;
  readonly to: string;
  readonly message: Message;
  readonly deliverAt: number;
}

interface PendingProposal {
  readonly node: string;
  readonly incarnation: number;
  readonly index: number;
  readonly term: number;
}

interface PendingRead {
  readonly node: string;
  readonly incarnation: number;
  /** The highest index acknowledged to any client before the read began. */
  readonly requiredIndex: number;
  readonly stale: boolean;
}

export class InvariantError extends Error {
  override name = 'InvariantError';
}

/** A number naming (index, term): numeric Map keys are much cheaper than strings. */
function entryKey(index: number, term: number): number {
  if (term >= 1_000_000) throw new Error('entryKey: term out of range');
  return index * 1_000_000 + term;
}

function identity(entry: Entry<Command>): string {
  return entry.command === null ? `noop@${entry.term}` : entry.command.value;
}

const TRACE_LINES_MAX = 400;

export class RaftSim {
  readonly nodes: SimNode[];
  private readonly byId: ReadonlyMap<string, SimNode>;
  readonly stats = emptyStats();
  faults: Faults = FAULTS_NONE;
  /** The faults of this run's chaotic phases (randomSim draws them). */
  chaos: Faults = FAULTS_CHAOS;
  /** Global steps so far: message delays are counted in them. */
  time = 0;
  network: InFlight[] = [];
  /** Directed links that lose everything: "from>to". */
  readonly blocked = new Set<string>();
  /**
   * Each link delivers in the order sent (as one TCP connection would), links interleaved at
   * random; otherwise any due message may overtake any other. randomSim picks one per run: FIFO
   * links let a paused process's old messages reach it before newer ones on the same link.
   */
  fifoLinks = false;
  /** Messages to lose on arrival (a scenario's scalpel, like etcd raft's interaction tests). */
  lose: ((from: string, to: string, message: Message) => boolean) | null = null;
  readonly trace: string[] = [];
  /** Reads completed so far, by request ID: the length of the state they returned. */
  readonly completedReads = new Map<string, number>();
  readonly failedReads = new Set<string>();

  // History, for the invariants.
  private readonly leaderOfTerm = new Map<number, string>();
  private lastLeader: string | null = null;
  /** entryKey(index, term) -> the entry's identity and its predecessor's term. */
  private readonly entryAt = new Map<number, { id: string; prevTerm: number }>();
  /** index - 1 -> the identity of the entry applied there (by anyone). */
  private readonly chosen: string[] = [];
  /** index - 1 -> the committed entry's term and the term in which it was seen committed. */
  private readonly committed: { term: number; commitTerm: number }[] = [];
  /** `${node}@${term}` leaders already checked for completeness. */
  private readonly leadersChecked = new Set<string>();
  private readonly proposals = new Map<string, PendingProposal>();
  private readonly reads = new Map<string, PendingRead>();
  private readonly valueIndex = new Map<string, number>();
  private ackedIndexMax = 0;
  private termMax = 0;
  private valueSeq = 0;
  private readSeq = 0;

  constructor(
    readonly config: SimConfig,
    private readonly random: Random,
    readonly tracing = false,
  ) {
    const ids = Array.from({ length: config.members }, (_, i) => `n${i + 1}`);
    this.nodes = ids.map((id, i) => new SimNode(id, new Random(random.seed * 31 + i + 1)));
    this.byId = new Map(this.nodes.map((node) => [node.id, node]));
    for (const node of this.nodes) this.start(node);
  }

  node(id: string): SimNode {
    const found = this.byId.get(id);
    if (found === undefined) throw new Error(`no node ${id}`);
    return found;
  }

  status(id: string): RaftStatus {
    const raft = this.node(id).raft;
    if (raft === null) throw new Error(`${id} is down`);
    return raft.status();
  }

  /** The running leader of the highest term, if any. */
  leader(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const node of this.nodes) {
      const raft = node.raft;
      if (raft === null || node.paused) continue;
      if (raft.role === 'leader' && raft.term > bestTerm) {
        best = node;
        bestTerm = raft.term;
      }
    }
    return best;
  }

  log(line: string): void {
    if (!this.tracing) return;
    this.trace.push(`[${this.time}] ${line}`);
    if (this.trace.length > TRACE_LINES_MAX) this.trace.shift();
  }

  // ---- processes ----------------------------------------------------------------------------------

  private start(node: SimNode): void {
    const { config } = this;
    const disk = node.disk;
    node.raft = new RaftNode<Command, MachineState>(
      {
        id: node.id,
        peers: this.nodes.map((n) => n.id),
        electionTicks: config.electionTicks,
        heartbeatTicks: config.heartbeatTicks,
        electionJitter: () => node.jitter.int(0, config.electionTicks - 1),
        appendEntriesMax: config.appendEntriesMax,
      },
      {
        hardState: disk.hardState,
        snapshot: disk.snapshot,
        entries: [...disk.entries],
      },
    );
    // The state machine is rebuilt from the snapshot; the committed entries after it come in
    // the first Readies.
    node.machine = disk.snapshot === null ? [] : [...disk.snapshot.state];
    node.appliedTerm = disk.snapshot?.lastTerm ?? 0;
    if (disk.snapshot !== null) this.checkSnapshot(node, disk.snapshot);
    node.clock = 0;
    node.readsToServe = [];
  }

  crash(id: string, afterPersist = false): void {
    const node = this.node(id);
    if (node.raft === null) return;
    if (afterPersist && node.raft.hasReady()) {
      // Power lost after the disk write, before the sends.
      this.persist(node, node.raft.ready());
      this.stats.crashesAfterPersist++;
    }
    node.raft = null;
    node.machine = [];
    node.readsToServe = [];
    node.incarnation++;
    node.paused = false;
    this.stats.crashes++;
    this.log(`crash ${id}${afterPersist ? ' after persisting' : ''}`);
  }

  restart(id: string): void {
    const node = this.node(id);
    if (node.raft !== null) return;
    this.start(node);
    this.stats.restarts++;
    this.log(`restart ${id} term ${node.disk.hardState.term} vote ${node.disk.hardState.votedFor}`);
    this.afterEvent(node);
  }

  pause(id: string): void {
    const node = this.node(id);
    if (!node.up || node.paused) return;
    node.paused = true;
    this.stats.pauses++;
    this.log(`pause ${id}`);
  }

  resume(id: string): void {
    const node = this.node(id);
    if (!node.paused) return;
    node.paused = false;
    this.log(`resume ${id}`);
  }

  /** Cuts every link between the groups, both ways. */
  partition(groups: readonly (readonly string[])[]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const from of a) for (const to of b) this.blocked.add(`${from}>${to}`);
      }
    }
    this.stats.partitions++;
    this.log(`partition ${groups.map((g) => g.join(',')).join(' | ')}`);
  }

  /** `from` can no longer reach `to` (`to` still reaches `from`). */
  blockOneWay(from: string, to: string): void {
    this.blocked.add(`${from}>${to}`);
    this.stats.partitions++;
    this.log(`block ${from}>${to}`);
  }

  /** Isolates `id` from everyone, both ways. */
  isolate(id: string): void {
    this.partition([[id], this.nodes.map((n) => n.id).filter((other) => other !== id)]);
  }

  healNetwork(): void {
    this.blocked.clear();
    this.log('heal network');
  }

  // ---- clients ------------------------------------------------------------------------------------

  /** A client proposes a fresh value at `id`; the value if the node accepted it, else null. */
  propose(id: string): string | null {
    const node = this.node(id);
    if (!node.running || node.raft === null) return null;
    const value = `v${++this.valueSeq}`;
    const result = node.raft.propose({ kind: 'append', value });
    this.afterEvent(node);
    if (!result.ok) return null;
    this.proposals.set(value, {
      node: id,
      incarnation: node.incarnation,
      index: result.index,
      term: result.term,
    });
    this.stats.proposed++;
    this.log(`propose ${value} at ${id}: ${result.index}@${result.term}`);
    return value;
  }

  /** The value's index if acknowledged to its client (applied at the leader that took it). */
  acknowledged(value: string): boolean {
    return !this.proposals.has(value) && this.valueIndex.has(value);
  }

  /** A client starts a read at `id`; its request ID if the node took it, else null. */
  read(id: string): string | null {
    const node = this.node(id);
    if (!node.running || node.raft === null) return null;
    const requestId = `r${++this.readSeq}`;
    const term = node.raft.term;
    const result = node.raft.readIndex(requestId);
    this.afterEvent(node);
    if (!result.ok) return null;
    const stale = term < this.termMax;
    this.reads.set(requestId, {
      node: id,
      incarnation: node.incarnation,
      requiredIndex: this.ackedIndexMax,
      stale,
    });
    this.stats.readsStarted++;
    if (stale) this.stats.staleLeaderReads++;
    this.log(`read ${requestId} at ${id} (needs ${this.ackedIndexMax}${stale ? ', stale' : ''})`);
    return requestId;
  }

  // ---- time ---------------------------------------------------------------------------------------

  /** One global step: due messages arrive, clocks move, Readies are carried out. */
  step(): void {
    this.time++;
    this.stats.steps++;
    this.deliverDue();
    for (const node of this.nodes) {
      if (!node.running) continue;
      node.clock += node.pace;
      while (node.clock >= 1 && node.raft !== null) {
        node.clock -= 1;
        node.raft.tick();
        this.stats.ticks++;
        this.afterEvent(node);
      }
    }
    this.processReadies();
  }

  runSteps(count: number): void {
    for (let i = 0; i < count; i++) this.step();
  }

  /** Steps until `done` holds; throws if it does not within `stepsMax`. */
  runUntil(done: () => boolean, stepsMax: number, what = 'condition'): number {
    for (let i = 0; i < stepsMax; i++) {
      if (done()) return i;
      this.step();
    }
    if (done()) return stepsMax;
    throw new InvariantError(`${what} not reached within ${stepsMax} steps`);
  }

  /** Moves only `id`'s clock by `ticks` (e.g. to make it campaign first). */
  tickNode(id: string, ticks: number): void {
    const node = this.node(id);
    for (let i = 0; i < ticks && node.running && node.raft !== null; i++) {
      node.raft.tick();
      this.stats.ticks++;
      this.afterEvent(node);
    }
    this.processReadies();
  }

  private deliverDue(): void {
    const due: InFlight[] = [];
    const later: InFlight[] = [];
    /** FIFO links: links with an earlier message still on the way (`network` is in send order). */
    const behind = new Set<string>();
    for (const m of this.network) {
      const link = `${m.from}>${m.to}`;
      // A paused process's messages wait in its socket buffer.
      if (m.deliverAt <= this.time && !this.node(m.to).paused && !behind.has(link)) due.push(m);
      else {
        later.push(m);
        if (this.fifoLinks) behind.add(link);
      }
    }
    this.network = later;
    if (this.fifoLinks) {
      // Each link's messages in the order sent, the links interleaved at random.
      const queues = new Map<string, InFlight[]>();
      for (const m of due) {
        const link = `${m.from}>${m.to}`;
        const queue = queues.get(link);
        if (queue === undefined) queues.set(link, [m]);
        else queue.push(m);
      }
      const links = [...queues.values()];
      while (links.length > 0) {
        const i = this.random.int(0, links.length - 1);
        const m = links[i].shift();
        if (links[i].length === 0) links.splice(i, 1);
        if (m !== undefined) this.deliver(m);
      }
      return;
    }
    // Whatever is due arrives in any order.
    for (let i = due.length - 1; i > 0; i--) {
      const j = this.random.int(0, i);
      [due[i], due[j]] = [due[j], due[i]];
    }
    for (const m of due) this.deliver(m);
  }

  private deliver(m: InFlight): void {
    const node = this.node(m.to);
    if (
      node.raft === null ||
      this.blocked.has(`${m.from}>${m.to}`) ||
      (this.lose !== null && this.lose(m.from, m.to, m.message))
    ) {
      this.stats.dropped++;
      return;
    }
    this.stats.delivered++;
    if (this.tracing) this.log(`${m.from}->${m.to} ${describe(m.message)}`);
    node.raft.step(m.message);
    this.afterEvent(node);
  }

  private send(from: string, to: string, message: Message): void {
    const { faults, random } = this;
    if (random.next() < faults.drop) {
      this.stats.dropped++;
      return;
    }
    const copies = random.next() < faults.duplicate ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      this.network.push({
        from,
        to,
        message,
        deliverAt: this.time + random.int(1, faults.delayStepsMax),
      });
    }
  }

  // ---- the shell, mirrored ----------------------------------------------------------------------

  private processReadies(): void {
    for (const node of this.nodes) {
      if (!node.running || node.raft === null || !node.raft.hasReady()) continue;
      if (this.random.next() < this.faults.readyLag) continue;
      this.processReady(node);
    }
  }

  /** What a real shell does with a Ready, in ready.ts's order. */
  processReady(node: SimNode): void {
    const raft = node.raft;
    if (raft === null) return;
    const ready = raft.ready();
    // 1-3: persist (one atomic write here).
    this.persist(node, ready);
    this.checkDurable(node, ready.messages);
    // 4: send.
    for (const { to, message } of ready.messages) this.send(node.id, to, message);
    // 5: apply.
    if (ready.snapshot !== null) {
      this.checkSnapshot(node, ready.snapshot);
      node.machine = [...ready.snapshot.state];
      node.appliedTerm = ready.snapshot.lastTerm;
      this.stats.snapshotsInstalled++;
      this.log(`${node.id} installs snapshot @${ready.snapshot.lastIndex}`);
    }
    for (const entry of ready.committed) this.apply(node, entry, raft.term);
    // 6: reads.
    for (const { requestId, index } of ready.readStates) {
      const read = this.reads.get(requestId);
      if (read === undefined) throw new InvariantError(`unknown read ${requestId}`);
      if (read.node !== node.id) throw new InvariantError(`${requestId} confirmed elsewhere`);
      if (index < read.requiredIndex) {
        throw new InvariantError(
          `stale read ${requestId} at ${node.id}: index ${index}, but ${read.requiredIndex} ` +
            'was acknowledged before the read began',
        );
      }
      node.readsToServe.push({ requestId, index });
    }
    for (const requestId of ready.readsFailed) {
      this.reads.delete(requestId);
      this.failedReads.add(requestId);
      this.stats.readsFailed++;
    }
    this.serveReads(node);
    raft.advance();
    this.maybeCompact(node);
    this.afterEvent(node);
  }

  /**
   * The ordering rule (ready.ts): what a message promises is on disk before it leaves. A granted
   * vote is the saved vote of the saved term; an acknowledged entry is saved, with its term.
   */
  private checkDurable(node: SimNode, messages: Ready<Command, MachineState>['messages']): void {
    const { disk, raft } = node;
    for (const { to, message: m } of messages) {
      if (m.kind === 'pre_vote' || m.kind === 'pre_vote_reply') continue; // a future term
      if (m.term > disk.hardState.term) {
        throw new InvariantError(`${node.id} sends term ${m.term} before saving it`);
      }
      // A message of an older term is backed by the saved newer term (no second vote in it).
      if (m.term < disk.hardState.term) continue;
      if (m.kind === 'vote_reply' && m.granted && disk.hardState.votedFor !== to) {
        throw new InvariantError(`${node.id} grants its vote of term ${m.term} before saving it`);
      }
      if (m.kind === 'append_reply' && m.matchIndex > (disk.snapshot?.lastIndex ?? 0)) {
        const saved = disk.entries.find((e) => e.index === m.matchIndex);
        if (saved === undefined || saved.term !== raft?.log.term(m.matchIndex)) {
          throw new InvariantError(`${node.id} acknowledges ${m.matchIndex} before saving it`);
        }
      }
    }
  }

  private persist(node: SimNode, ready: Ready<Command, MachineState>): void {
    const disk = node.disk;
    if (ready.snapshot !== null) {
      disk.snapshot = ready.snapshot;
      disk.entries = [];
    }
    if (ready.entries.length > 0) {
      const from = ready.entries[0].index;
      disk.entries = disk.entries.filter((e) => e.index < from);
      const lastSaved =
        disk.entries[disk.entries.length - 1]?.index ?? disk.snapshot?.lastIndex ?? 0;
      if (from !== lastSaved + 1) {
        throw new InvariantError(`${node.id} would save entries from ${from} after ${lastSaved}`);
      }
      disk.entries.push(...ready.entries);
      this.checkEntries(node, ready.entries);
    }
    if (ready.hardState !== null) {
      if (ready.hardState.term < disk.hardState.term) {
        throw new InvariantError(`${node.id}'s saved term goes back`);
      }
      disk.hardState = this.config.persistCommitIndex
        ? ready.hardState
        : { ...ready.hardState, commitIndex: 0 };
    }
  }

  private apply(node: SimNode, entry: Entry<Command>, term: number): void {
    if (entry.index !== node.machine.length + 1) {
      throw new InvariantError(
        `${node.id} applies ${entry.index} after ${node.machine.length} (not in order)`,
      );
    }
    const id = identity(entry);
    const at = entry.index - 1;
    const other = this.chosen[at];
    if (other === undefined) {
      this.chosen[at] = id;
      if (entry.command !== null) this.valueIndex.set(entry.command.value, entry.index);
    } else if (other !== id) {
      throw new InvariantError(
        `state machine safety: ${node.id} applies ${id} at ${entry.index}, another node ${other}`,
      );
    }
    this.noteCommitted(entry, term);
    node.machine.push(id);
    node.appliedTerm = entry.term;
    if (entry.index > this.stats.appliedMax) this.stats.appliedMax = entry.index;
    if (entry.command !== null) {
      const proposal = this.proposals.get(entry.command.value);
      if (
        proposal !== undefined &&
        proposal.node === node.id &&
        proposal.incarnation === node.incarnation
      ) {
        if (proposal.index !== entry.index || proposal.term !== entry.term) {
          throw new InvariantError(
            `${entry.command.value} proposed at ${proposal.index}@${proposal.term}, ` +
              `applied at ${entry.index}@${entry.term}`,
          );
        }
        this.proposals.delete(entry.command.value);
        this.ackedIndexMax = Math.max(this.ackedIndexMax, entry.index);
        this.stats.acknowledged++;
      }
    }
  }

  private serveReads(node: SimNode): void {
    const waiting: { requestId: string; index: number }[] = [];
    for (const pending of node.readsToServe) {
      if (pending.index > node.machine.length) {
        waiting.push(pending);
        continue;
      }
      const read = this.reads.get(pending.requestId);
      if (read === undefined) throw new InvariantError(`unknown read ${pending.requestId}`);
      if (node.machine.length < read.requiredIndex) {
        throw new InvariantError(`stale read ${pending.requestId} served at ${node.id}`);
      }
      this.reads.delete(pending.requestId);
      this.completedReads.set(pending.requestId, node.machine.length);
      this.stats.readsCompleted++;
    }
    node.readsToServe = waiting;
  }

  private maybeCompact(node: SimNode): void {
    const raft = node.raft;
    if (raft === null) return;
    const applied = node.machine.length;
    if (applied - raft.log.snapshotIndex < this.config.compactEvery) return;
    const snapshot: SimSnapshot = {
      lastIndex: applied,
      lastTerm: node.appliedTerm,
      state: [...node.machine],
    };
    raft.compact(snapshot);
    node.disk.snapshot = snapshot;
    node.disk.entries = node.disk.entries.filter((e) => e.index > applied);
    this.stats.compactions++;
  }

  // ---- invariants ---------------------------------------------------------------------------------

  /** After every event at `node`: election safety, and completeness of a new leader. */
  private afterEvent(node: SimNode): void {
    const raft = node.raft;
    if (raft === null) return;
    const term = raft.term;
    if (term > this.termMax) this.termMax = term;
    if (raft.role !== 'leader') return;
    const holder = this.leaderOfTerm.get(term);
    if (holder === undefined) {
      this.leaderOfTerm.set(term, node.id);
      this.stats.elections++;
      if (this.lastLeader !== null && this.lastLeader !== node.id) this.stats.leaderChanges++;
      this.lastLeader = node.id;
      this.log(`${node.id} leads term ${term}`);
    } else if (holder !== node.id) {
      throw new InvariantError(`election safety: ${holder} and ${node.id} lead term ${term}`);
    }
    const key = `${node.id}@${term}`;
    if (!this.leadersChecked.has(key)) {
      this.leadersChecked.add(key);
      for (let index = 1; index <= this.committed.length; index++) {
        this.checkLeaderHas(node, term, index);
      }
    }
  }

  /** Log matching, for entries a node writes: (index, term) names one entry and one prefix. */
  private checkEntries(node: SimNode, entries: readonly Entry<Command>[]): void {
    const raft = node.raft;
    if (raft === null) return;
    let prevTerm = raft.log.term(entries[0].index - 1);
    if (prevTerm === undefined) {
      throw new InvariantError(`${node.id} saves entries after a hole at ${entries[0].index}`);
    }
    for (const entry of entries) {
      const key = entryKey(entry.index, entry.term);
      const id = identity(entry);
      const seen = this.entryAt.get(key);
      if (seen === undefined) {
        this.entryAt.set(key, { id, prevTerm });
      } else if (seen.id !== id || seen.prevTerm !== prevTerm) {
        throw new InvariantError(
          `log matching: ${node.id} holds ${id} (after term ${prevTerm}) at ` +
            `${entry.index}@${entry.term}, ` +
            `elsewhere ${seen.id} (after term ${seen.prevTerm})`,
        );
      }
      prevTerm = entry.term;
    }
  }

  /** Every in-memory log, entry by entry (log matching over whole logs). */
  checkLogs(): void {
    for (const node of this.nodes) {
      const raft = node.raft;
      if (raft === null) continue;
      const { log } = raft;
      if (log.lastIndex > log.snapshotIndex) {
        this.checkEntries(node, log.slice(log.snapshotIndex + 1, log.lastIndex + 1));
      }
    }
  }

  /** A snapshot holds exactly the entries applied (anywhere) up to its index. */
  private checkSnapshot(node: SimNode, snapshot: SimSnapshot): void {
    if (snapshot.state.length !== snapshot.lastIndex) {
      throw new InvariantError(`${node.id}'s snapshot @${snapshot.lastIndex} is malformed`);
    }
    for (let i = 0; i < snapshot.state.length; i++) {
      const other = this.chosen[i];
      if (other === undefined) {
        throw new InvariantError(`${node.id}'s snapshot holds ${i + 1}, never applied anywhere`);
      }
      if (other !== snapshot.state[i]) {
        throw new InvariantError(
          `state machine safety: ${node.id}'s snapshot holds ${snapshot.state[i]} at ${i + 1}, ` +
            `applied elsewhere: ${other}`,
        );
      }
    }
  }

  private noteCommitted(entry: Entry<Command>, commitTerm: number): void {
    const at = entry.index - 1;
    const known = this.committed[at];
    if (known !== undefined) {
      if (known.term !== entry.term) {
        throw new InvariantError(`two entries committed at ${entry.index}`);
      }
      return;
    }
    if (at !== this.committed.length) {
      throw new InvariantError(`committed ${entry.index} with a hole before it`);
    }
    this.committed.push({ term: entry.term, commitTerm });
    for (const node of this.nodes) {
      const raft = node.raft;
      if (raft !== null && raft.role === 'leader')
        this.checkLeaderHas(node, raft.term, entry.index);
    }
  }

  /** Leader completeness (§5.4): a leader of a later term holds every committed entry. */
  private checkLeaderHas(node: SimNode, term: number, index: number): void {
    const committed = this.committed[index - 1];
    const raft = node.raft;
    if (raft === null || committed.commitTerm >= term) return;
    if (index <= raft.log.snapshotIndex) return; // its snapshot holds it (checkSnapshot)
    const held = raft.log.term(index);
    if (held !== committed.term) {
      throw new InvariantError(
        `leader completeness: ${node.id} leads term ${term} without ${index}@${committed.term} ` +
          `(committed in term ${committed.commitTerm}); it holds ${held ?? 'nothing'} there`,
      );
    }
  }

  // ---- healing and liveness -------------------------------------------------------------------------

  /** The faults stop: everything resumes and restarts, the network is whole and reliable. */
  healAll(): void {
    this.faults = { ...FAULTS_NONE };
    this.healNetwork();
    for (const node of this.nodes) {
      if (node.paused) this.resume(node.id);
      if (!node.up) this.restart(node.id);
    }
  }

  /**
   * Liveness after healing: a value proposed now is applied on every node within `stepsMax`.
   * Returns the steps it took.
   */
  awaitProgress(stepsMax: number): number {
    const sentinels: string[] = [];
    let proposer: { node: string; term: number } | null = null;
    return this.runUntil(
      () => {
        const leader = this.leader();
        if (leader !== null && leader.raft !== null) {
          const term = leader.raft.term;
          if (proposer === null || proposer.node !== leader.id || proposer.term !== term) {
            const value = this.propose(leader.id);
            if (value !== null) {
              sentinels.push(value);
              proposer = { node: leader.id, term };
            }
          }
        }
        return sentinels.some((value) => {
          const index = this.valueIndex.get(value);
          return index !== undefined && this.nodes.every((n) => n.machine.length >= index);
        });
      },
      stepsMax,
      'progress after healing',
    );
  }

  // ---- the random scheduler -----------------------------------------------------------------------

  /** One step with random faults and clients (this.faults). */
  randomStep(): void {
    const { faults, random } = this;
    const ids = this.nodes.map((n) => n.id);
    const roll = (p: number): boolean => random.next() < p;
    if (roll(faults.propose)) {
      const leader = this.leader();
      this.propose(leader !== null && roll(0.8) ? leader.id : random.pick(ids));
    }
    // A process resumed in this step reads its socket buffer in this step: what was held for it
    // while it was paused, and any client request sent to it now, arrive together, in any order
    // (a read that arrives before the heartbeat replies of a round sent long ago).
    if (roll(faults.resume)) {
      const paused = this.nodes.filter((n) => n.paused);
      if (paused.length > 0) this.resume(random.pick(paused).id);
    }
    if (roll(faults.read)) {
      const leaders = this.nodes.filter((n) => n.running && n.raft?.role === 'leader');
      this.read(leaders.length > 0 && roll(0.8) ? random.pick(leaders).id : random.pick(ids));
    }
    const down = this.nodes.filter((n) => !n.up);
    if (roll(faults.crash) && down.length < faults.crashedMax) {
      // Leaders are the interesting victims: half the crashes pick one when there is one.
      const leader = this.leader();
      const up = this.nodes.filter((n) => n.up);
      if (up.length > 0) {
        const victim = leader !== null && roll(0.5) ? leader : random.pick(up);
        this.crash(victim.id, roll(0.3));
      }
    }
    if (down.length > 0 && roll(faults.restart)) this.restart(random.pick(down).id);
    if (roll(faults.pause)) {
      // A leader paused and resumed after others elected a new one is the interesting case (it
      // still believes it leads): half the pauses pick one when there is one, as crashes do.
      const leader = this.leader();
      const running = this.nodes.filter((n) => n.running);
      if (leader !== null && leader.running && roll(0.5)) this.pause(leader.id);
      else if (running.length > 0) this.pause(random.pick(running).id);
    }
    if (roll(faults.partition) && ids.length > 1) {
      const shuffled = [...ids];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = random.int(0, i);
        [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
      }
      const cut = random.int(1, shuffled.length - 1);
      this.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
    }
    if (roll(faults.oneWay) && ids.length > 1) {
      const from = random.pick(ids);
      const to = random.pick(ids.filter((id) => id !== from));
      this.blockOneWay(from, to);
    }
    if (roll(faults.heal)) this.healNetwork();
    if (roll(faults.pace)) {
      const node = random.pick(this.nodes);
      node.pace = 0.5 + random.next(); // from half to one and a half the nominal rate
    }
    this.step();
  }
}

/** One message, briefly, for traces. */
export function describe(m: Message): string {
  switch (m.kind) {
    case 'pre_vote':
    case 'vote':
      return `${m.kind} t${m.term} last ${m.lastIndex}@${m.lastTerm}`;
    case 'pre_vote_reply':
    case 'vote_reply':
      return `${m.kind} t${m.term} ${m.granted ? 'yes' : 'no'}`;
    case 'append':
      return (
        `append t${m.term} after ${m.prevIndex}@${m.prevTerm} ` +
        `[${m.entries.map((e) => `${e.index}@${e.term}`).join(' ')}] commit ${m.commitIndex}`
      );
    case 'append_reply':
      return `append_reply t${m.term} match ${m.matchIndex}`;
    case 'append_reject':
      return `append_reject t${m.term} at ${m.rejectedIndex} hint ${m.hintIndex}@${m.hintTerm}`;
    case 'heartbeat':
      return `heartbeat t${m.term} commit ${m.commitIndex} round ${m.round}`;
    case 'heartbeat_reply':
      return `heartbeat_reply t${m.term} round ${m.round}`;
    case 'snapshot':
      return `snapshot t${m.term} @${m.snapshot.lastIndex}`;
    case 'higher_term':
      return `higher_term t${m.term}`;
  }
}

/** A random cluster shape and clock paces for a seed. */
export function randomSim(seed: number, tracing = false, members?: number): RaftSim {
  const random = new Random(seed);
  const config: SimConfig = {
    ...SIM_CONFIG_DEFAULT,
    members: members ?? random.pick([3, 3, 5]),
    heartbeatTicks: random.pick([1, 1, 2]),
    compactEvery: random.int(4, 12),
    appendEntriesMax: random.pick([1, 2, 3, APPEND_ENTRIES_MAX]),
    persistCommitIndex: random.next() < 0.75,
  };
  const sim = new RaftSim(config, random, tracing);
  for (const node of sim.nodes) node.pace = 0.5 + random.next();
  sim.chaos = random.pick([FAULTS_CHAOS, FAULTS_CHAOS, FAULTS_STORM]);
  sim.fifoLinks = random.next() < 0.5;
  return sim;
}

/**
 * How long healing may take, in steps: five election rounds at the slowest clock. An election
 * timeout is at most 2 * electionTicks - 1 ticks (19), a clock at pace 0.5 ticks every other
 * step (38 steps); a round may fail (split vote, pre-vote refused in a follower's lease).
 */
export const HEAL_STEPS_MAX = 5 * 2 * (2 * SIM_CONFIG_DEFAULT.electionTicks);

export interface RunOptions {
  /** Steps of faults per cycle. */
  readonly chaosSteps: number;
  /** Cycles of faults then healing; after each, progress is required. */
  readonly cycles: number;
  readonly tracing?: boolean;
}

export interface RunResult {
  readonly sim: RaftSim;
  /** The longest healing took (steps until a new value was applied everywhere). */
  readonly healStepsMax: number;
}

/** The command line that replays one run. */
export function replayCommand(seed: number, options: RunOptions): string {
  return (
    `RAFT_SEED=${seed} RAFT_STEPS=${options.chaosSteps} RAFT_CYCLES=${options.cycles} ` +
    'npx jest test/unit/raft.test.ts'
  );
}

/**
 * One seeded run: cycles of `chaosSteps` random steps with faults, each followed by healing,
 * which must lead to progress within HEAL_STEPS_MAX. The invariants are checked as it goes (log
 * matching over whole logs after every step). A failure names the seed and how to replay it.
 */
export function runSeed(seed: number, options: RunOptions): RunResult {
  const sim = randomSim(seed, options.tracing === true);
  let healStepsMax = 0;
  try {
    for (let cycle = 0; cycle < options.cycles; cycle++) {
      sim.faults = sim.chaos;
      for (let step = 0; step < options.chaosSteps; step++) {
        sim.randomStep();
        sim.checkLogs();
      }
      sim.healAll();
      healStepsMax = Math.max(healStepsMax, sim.awaitProgress(HEAL_STEPS_MAX));
      sim.checkLogs();
    }
    return { sim, healStepsMax };
  } catch (err) {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    const trace = sim.tracing ? `\n${sim.trace.join('\n')}` : '';
    throw new Error(
      `seed ${seed} failed at step ${sim.time}: ${message}\nreplay: ${replayCommand(seed, options)}` +
        trace,
      { cause: err },
    );
  }
}
