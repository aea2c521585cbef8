// The Raft core (viewleader/raft) in the simulated cluster of test/support/raft-sim.ts: first short
// stories, each a scenario from the paper with its expected outcome, then thousands of seeded
// random runs with every fault the harness has, checking election safety, log matching, leader
// completeness, state machine safety and read linearizability as they go, and progress once the
// faults stop. A failing seed prints the command that replays it (RAFT_SEED=n ...).

import { RaftNode, type Entry, type Persisted, type RaftConfig } from '../../viewleader/raft';
import {
  addStats,
  HEAL_STEPS_MAX,
  RaftSim,
  replayCommand,
  runSeed,
  SIM_CONFIG_DEFAULT,
  zeroStats,
  type RunOptions,
  type SimStats,
} from '../support/raft-sim';
import { Random } from '../support/random';

const ELECTION_TICKS = SIM_CONFIG_DEFAULT.electionTicks;

/** A cluster without faults: every message arrives the next step, every clock at pace 1. */
function calm(members: number, seed = 1): RaftSim {
  return new RaftSim({ ...SIM_CONFIG_DEFAULT, members }, new Random(seed));
}

/** A member of a, b, c driven by hand (no simulator): no jitter, so every timeout is exact. */
function handConfig(id: string): RaftConfig {
  return {
    id,
    peers: ['a', 'b', 'c'],
    electionTicks: ELECTION_TICKS,
    heartbeatTicks: 1,
    electionJitter: () => 0,
  };
}

/** `id` times out first and wins the election. */
function elect(sim: RaftSim, id: string): void {
  while (sim.node(id).raft?.role === 'follower') sim.tickNode(id, 1);
  sim.runUntil(() => sim.leader()?.id === id, 10, `${id} elected`);
}

function appliedEverywhere(sim: RaftSim, value: string, ids = sim.nodes.map((n) => n.id)): void {
  sim.runUntil(
    () => ids.every((id) => sim.node(id).machine.includes(value)),
    5 * ELECTION_TICKS,
    `${value} applied at ${ids.join(',')}`,
  );
}

function proposeAt(sim: RaftSim, id: string): string {
  const value = sim.propose(id);
  if (value === null) throw new Error(`${id} refused a proposal`);
  return value;
}

describe('scenarios', () => {
  test('three nodes elect one leader; its no-op commits everywhere; heartbeats keep it', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    expect(sim.status('n1')).toMatchObject({ role: 'leader', term: 1, leader: 'n1' });
    sim.runSteps(3);
    for (const id of ['n2', 'n3']) {
      expect(sim.status(id)).toMatchObject({ role: 'follower', term: 1, leader: 'n1' });
    }
    expect(sim.nodes.map((n) => n.machine)).toEqual([['noop@1'], ['noop@1'], ['noop@1']]);
    sim.runSteps(20 * ELECTION_TICKS);
    expect(sim.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    expect(sim.stats.elections).toBe(1);
  });

  test("a leader partitioned away: a new leader is elected, the old leader's proposal never commits", () => {
    const sim = calm(3);
    elect(sim, 'n1');
    appliedEverywhere(sim, proposeAt(sim, 'n1'));

    sim.isolate('n1');
    const lost = proposeAt(sim, 'n1'); // n1 still believes it leads: accepted, never committed
    sim.runUntil(() => (sim.leader()?.id ?? 'n1') !== 'n1', 10 * ELECTION_TICKS, 'a new leader');
    const leader = sim.leader()?.id ?? '';
    expect(sim.status(leader).term).toBeGreaterThanOrEqual(2);
    // Check-quorum: n1 heard from nobody for an election timeout and stepped down. Pre-vote: its
    // own elections failed without raising its term.
    expect(sim.status('n1')).toMatchObject({ term: 1 });
    expect(sim.status('n1').role).not.toBe('leader');
    const kept = proposeAt(sim, leader);
    appliedEverywhere(sim, kept, ['n2', 'n3']);

    sim.healNetwork();
    appliedEverywhere(sim, kept);
    expect(sim.status('n1')).toMatchObject({
      role: 'follower',
      term: sim.status(leader).term,
      leader,
    });
    expect(sim.node('n1').machine).toEqual(sim.node(leader).machine);
    expect(sim.nodes.some((n) => n.machine.includes(lost))).toBe(false);
  });

  test('a follower far behind catches up through InstallSnapshot', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    sim.crash('n3');
    let last = '';
    for (let i = 0; i < 40; i++) {
      last = proposeAt(sim, 'n1');
      sim.runSteps(2);
    }
    appliedEverywhere(sim, last, ['n1', 'n2']);
    expect(sim.status('n1').snapshotIndex).toBeGreaterThan(SIM_CONFIG_DEFAULT.compactEvery);

    sim.restart('n3');
    appliedEverywhere(sim, last);
    expect(sim.stats.snapshotsInstalled).toBe(1);
    expect(sim.node('n3').machine).toEqual(sim.node('n1').machine);
    expect(sim.status('n1').progress?.n3).toMatchObject({ state: 'replicate' });
  });

  test('two of three down: a proposal does not commit; when one returns, it does', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    sim.runSteps(3);
    sim.crash('n2');
    sim.crash('n3');
    const value = proposeAt(sim, 'n1');
    sim.runSteps(10 * ELECTION_TICKS);
    expect(sim.node('n1').machine).not.toContain(value);
    expect(sim.status('n1')).toMatchObject({ commitIndex: 1, lastIndex: 2 });
    expect(sim.status('n1').role).not.toBe('leader'); // check-quorum

    sim.restart('n2');
    appliedEverywhere(sim, value, ['n1', 'n2']);
    // n2's log lacks the entry, so only n1 could win: the entry commits with n1's new no-op.
    expect(sim.leader()?.id).toBe('n1');
    expect(sim.acknowledged(value)).toBe(true);
  });

  test('Figure 8: an entry of an earlier term is not committed by counting its replicas', () => {
    // One entry per message, so that the new leader's no-op travels apart from the old entry.
    const sim = new RaftSim({ ...SIM_CONFIG_DEFAULT, appendEntriesMax: 1 }, new Random(8));
    elect(sim, 'n1');
    sim.runSteps(3);
    // n1 appends `old` at index 2 in term 1, alone, and crashes.
    sim.isolate('n1');
    const old = proposeAt(sim, 'n1');
    sim.runSteps(1);
    sim.crash('n1');
    sim.runSteps(1); // what it sent is lost at the partition
    sim.healNetwork();
    // x (n2 or n3) leads the next term; its no-op at index 2 reaches nobody before it crashes.
    sim.runUntil(() => sim.leader() !== null, 20 * ELECTION_TICKS, 'a leader without n1');
    const x = sim.leader()?.id ?? '';
    const y = x === 'n2' ? 'n3' : 'n2';
    sim.isolate(x);
    sim.crash(x);
    sim.runSteps(1);
    sim.healNetwork();
    // n1 returns and leads again (its log is ahead of y's). It copies `old` to y, making it a
    // majority, but once y holds it, y gets nothing of n1's own term: n1's no-op stays on n1.
    sim.lose = (from, to, m) =>
      from === 'n1' &&
      to === y &&
      m.kind === 'append' &&
      m.entries.some((e) => e.term > 1) &&
      sim.node(y).raft?.log.term(2) === 1;
    sim.restart('n1');
    sim.runUntil(
      () => (sim.leader()?.id === 'n1' && sim.status('n1').progress?.[y].matchIndex) === 2,
      20 * ELECTION_TICKS,
      `n1 leads and knows y holds old`,
    );
    sim.runSteps(3);
    expect(sim.status('n1')).toMatchObject({ role: 'leader', commitIndex: 1 });
    expect(sim.node('n1').machine).not.toContain(old);
    // Rightly so: x returns and leads (y votes for it: x's last term is later than y's), and
    // overwrites index 2. Had n1 committed `old`, this is where it would have been lost.
    sim.crash('n1');
    sim.runSteps(1);
    sim.lose = null;
    sim.restart(x);
    sim.runUntil(() => sim.leader()?.id === x, 20 * ELECTION_TICKS, `${x} leads`);
    sim.restart('n1');
    appliedEverywhere(sim, proposeAt(sim, x));
    expect(sim.nodes.some((n) => n.machine.includes(old))).toBe(false);
    expect(sim.node('n1').machine).toEqual(sim.node(x).machine);
  });

  test('a restarted node keeps its vote: no second vote in one term', () => {
    const c = new RaftNode<string, null>(handConfig('c'), null);
    c.step({ kind: 'vote', term: 1, from: 'a', lastIndex: 0, lastTerm: 0 });
    const ready = c.ready();
    expect(ready.hardState).toEqual({ term: 1, votedFor: 'a', commitIndex: 0 });
    expect(ready.messages).toEqual([
      { to: 'a', message: { kind: 'vote_reply', term: 1, from: 'c', granted: true } },
    ]);
    c.advance();

    const persisted: Persisted<string, null> = {
      hardState: ready.hardState ?? { term: 0, votedFor: null, commitIndex: 0 },
      snapshot: null,
      entries: [],
    };
    const restarted = new RaftNode<string, null>(handConfig('c'), persisted);
    expect(restarted.status()).toMatchObject({ role: 'follower', term: 1, votedFor: 'a' });
    restarted.step({ kind: 'vote', term: 1, from: 'b', lastIndex: 0, lastTerm: 0 });
    restarted.step({ kind: 'vote', term: 1, from: 'a', lastIndex: 0, lastTerm: 0 });
    expect(restarted.ready().messages).toEqual([
      { to: 'b', message: { kind: 'vote_reply', term: 1, from: 'c', granted: false } },
      { to: 'a', message: { kind: 'vote_reply', term: 1, from: 'c', granted: true } },
    ]);
  });

  test('a paused leader resumes: its read fails instead of returning stale state', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    appliedEverywhere(sim, proposeAt(sim, 'n1'));

    sim.pause('n1'); // SIGSTOP: no ticks, messages to it wait
    sim.runUntil(() => (sim.leader()?.id ?? 'n1') !== 'n1', 10 * ELECTION_TICKS, 'a new leader');
    const leader = sim.leader()?.id ?? '';
    const written = proposeAt(sim, leader);
    sim.runUntil(() => sim.acknowledged(written), 10, `${written} acknowledged`);

    sim.resume('n1');
    expect(sim.status('n1')).toMatchObject({ role: 'leader', term: 1 }); // it still believes
    const read = sim.read('n1');
    expect(read).not.toBeNull();
    sim.runSteps(5);
    // The heartbeat round never reaches a majority in term 1: the newer term comes back instead.
    expect(sim.failedReads.has(read ?? '')).toBe(true);
    expect(sim.completedReads.has(read ?? '')).toBe(false);
    expect(sim.status('n1')).toMatchObject({
      role: 'follower',
      term: sim.status(leader).term,
      leader,
    });

    const fresh = sim.read(leader);
    sim.runUntil(() => sim.completedReads.has(fresh ?? ''), 10, 'the read at the new leader');
    expect(sim.completedReads.get(fresh ?? '')).toBeGreaterThanOrEqual(
      sim.node(leader).machine.indexOf(written) + 1,
    );
  });

  test('reads share heartbeat rounds, and only a round sent after a read arrived confirms it', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    appliedEverywhere(sim, proposeAt(sim, 'n1'));
    // From here the messages are carried by hand, so the test decides what arrives when.
    const node = (id: string): RaftNode<unknown, unknown> => {
      const raft = sim.node(id).raft;
      if (raft === null) throw new Error(`${id} is down`);
      return raft as RaftNode<unknown, unknown>;
    };
    const leader = node('n1');
    const out = (id: string): ReturnType<RaftNode<unknown, unknown>['ready']> => {
      const ready = node(id).ready();
      node(id).advance();
      return ready;
    };
    const heartbeatRounds = (ready: ReturnType<typeof out>): number[] =>
      ready.messages.flatMap((e) => (e.message.kind === 'heartbeat' ? [e.message.round] : []));
    /** Each heartbeat of `ready` delivered to its follower; their replies, not delivered yet. */
    const repliesTo = (ready: ReturnType<typeof out>) =>
      ready.messages
        .filter((e) => e.message.kind === 'heartbeat')
        .flatMap((e) => {
          node(e.to).step(e.message);
          return out(e.to).messages.filter((r) => r.message.kind === 'heartbeat_reply');
        });
    const confirmed = (ready: ReturnType<typeof out>): string[] =>
      ready.readStates.map((r) => r.requestId);

    expect(leader.readIndex('r1')).toEqual({ ok: true });
    const first = out('n1');
    const [round] = heartbeatRounds(first);
    expect(heartbeatRounds(first)).toEqual([round, round]); // one round, to both followers
    const firstReplies = repliesTo(first); // sent now, before r2..r4 arrive; held on the way

    for (const id of ['r2', 'r3', 'r4']) expect(leader.readIndex(id)).toEqual({ ok: true });
    expect(heartbeatRounds(out('n1'))).toEqual([]); // a round is in flight: they wait for the next

    for (const reply of firstReplies) leader.step(reply.message);
    const second = out('n1');
    // The replies confirm r1, and not the reads that arrived after their heartbeats were sent
    // (a newer leader may have committed in between); the next round goes out for all of them.
    expect(confirmed(second)).toEqual(['r1']);
    expect(heartbeatRounds(second)).toEqual([round + 1, round + 1]);
    for (const reply of repliesTo(second)) leader.step(reply.message);
    expect(confirmed(out('n1'))).toEqual(['r2', 'r3', 'r4']);
  });

  test("a paused leader's held heartbeat replies confirm its earlier read, never one after", () => {
    const sim = calm(3);
    elect(sim, 'n1');
    appliedEverywhere(sim, proposeAt(sim, 'n1'));
    // No read before this one: its round is the first above 0.
    const replyToN1 = (): boolean =>
      sim.network.some(
        (m) => m.to === 'n1' && m.message.kind === 'heartbeat_reply' && m.message.round > 0,
      );
    const early = sim.read('n1');
    sim.runUntil(replyToN1, 5, 'the followers answered the round of the early read');
    sim.pause('n1'); // the replies wait in its socket buffer
    // The new term's messages never reach n1: only the held replies of term 1 will.
    sim.lose = (_from, to, m) => to === 'n1' && m.term > 1;
    sim.runUntil(() => (sim.leader()?.id ?? 'n1') !== 'n1', 10 * ELECTION_TICKS, 'a new leader');
    const written = proposeAt(sim, sim.leader()?.id ?? '');
    sim.runUntil(() => sim.acknowledged(written), 10, `${written} acknowledged`);

    sim.resume('n1');
    const late = sim.read('n1'); // arrives before the held replies are delivered
    expect(late).not.toBeNull();
    sim.runSteps(3 * ELECTION_TICKS);
    // The early read began before the write: its old state is linearizable, and the sim's
    // checker agrees. The late one must not be served by replies sent before it came: the next
    // round's replies never come back in term 1, and n1 steps down (check-quorum) instead.
    expect(sim.completedReads.has(early ?? '')).toBe(true);
    expect(sim.completedReads.has(late ?? '')).toBe(false);
    expect(sim.failedReads.has(late ?? '')).toBe(true);
    sim.lose = null;
  });

  test('pre-vote: a node cut off for long comes back without disturbing the leader', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    sim.isolate('n3');
    sim.runSteps(20 * ELECTION_TICKS);
    expect(sim.status('n3').term).toBe(1); // its pre-votes failed: it never started an election
    sim.healNetwork();
    appliedEverywhere(sim, proposeAt(sim, 'n1'));
    expect(sim.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    expect(sim.stats.elections).toBe(1);
  });

  test('one-way partition: a leader that cannot hear its followers steps down, another leads', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    sim.blockOneWay('n2', 'n1');
    sim.blockOneWay('n3', 'n1');
    sim.runUntil(() => sim.status('n1').role !== 'leader', 2 * ELECTION_TICKS, 'check-quorum');
    sim.runUntil(() => (sim.leader()?.id ?? 'n1') !== 'n1', 10 * ELECTION_TICKS, 'a new leader');
    const leader = sim.leader()?.id ?? '';
    const term = sim.status(leader).term;
    // n1 keeps asking for pre-votes; the others, hearing their leader, ignore them.
    sim.runSteps(20 * ELECTION_TICKS);
    expect(sim.status(leader)).toMatchObject({ role: 'leader', term });
    appliedEverywhere(sim, proposeAt(sim, leader), ['n2', 'n3']);
  });

  test('a follower that cannot hear the leader does not depose it: the others are in its lease', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    appliedEverywhere(sim, proposeAt(sim, 'n1'));
    sim.blockOneWay('n1', 'n3'); // n3 hears nothing from n1, but its log is as good as n2's
    sim.runSteps(20 * ELECTION_TICKS);
    // n3 asks for pre-votes again and again; n2, hearing n1, ignores them (check-quorum lease).
    expect(sim.status('n3')).toMatchObject({ term: 1, leader: null });
    expect(sim.status('n1')).toMatchObject({ role: 'leader', term: 1 });
    expect(sim.stats.elections).toBe(1);
  });

  test('a single member commits and reads on its own', () => {
    const sim = calm(1);
    sim.tickNode('n1', 2 * ELECTION_TICKS);
    expect(sim.status('n1')).toMatchObject({ role: 'leader', term: 1, commitIndex: 1 });
    const value = proposeAt(sim, 'n1');
    const read = sim.read('n1');
    sim.runSteps(1);
    expect(sim.node('n1').machine).toEqual(['noop@1', value]);
    expect(sim.completedReads.get(read ?? '')).toBe(2);
  });

  test('a restart resumes from what was persisted: same term, vote and log; state rebuilt', () => {
    const sim = calm(3);
    elect(sim, 'n1');
    let last = '';
    for (let i = 0; i < 12; i++) last = proposeAt(sim, 'n1');
    appliedEverywhere(sim, last);
    const before = sim.status('n2');
    const machine = [...sim.node('n2').machine];
    expect(before.snapshotIndex).toBeGreaterThan(0);

    sim.crash('n2');
    sim.restart('n2');
    expect(sim.status('n2')).toMatchObject({
      role: 'follower',
      term: before.term,
      votedFor: before.votedFor,
      lastIndex: before.lastIndex,
      snapshotIndex: before.snapshotIndex,
      appliedIndex: before.snapshotIndex,
    });
    // The state machine is the snapshot's; the next Ready re-applies the committed entries.
    expect(sim.node('n2').machine).toEqual(machine.slice(0, before.snapshotIndex));
    sim.processReady(sim.node('n2'));
    expect(sim.node('n2').machine).toEqual(machine);
  });

  test('a follower commits only what the append vouches for (Figure 2: min(leaderCommit, last new))', () => {
    const c = new RaftNode<string, null>(handConfig('c'), {
      // c holds an entry of term 2 that the leader of term 3 does not have at index 3.
      hardState: { term: 2, votedFor: null, commitIndex: 1 },
      snapshot: null,
      entries: [
        { index: 1, term: 1, command: null },
        { index: 2, term: 1, command: 'x' },
        { index: 3, term: 2, command: 'stale' },
      ],
    });
    // A late append of b's, carrying index 2 only, while b has committed its own index 3.
    c.step({
      kind: 'append',
      term: 3,
      from: 'b',
      prevIndex: 1,
      prevTerm: 1,
      entries: [{ index: 2, term: 1, command: 'x' }],
      commitIndex: 3,
    });
    expect(c.status()).toMatchObject({ commitIndex: 2, lastIndex: 3 });
    // Restarted without a snapshot: it applies from index 1 on, up to 2 and not 3.
    const ready = c.ready();
    expect(ready.committed.map((e) => e.command)).toEqual([null, 'x']);
    // It acknowledges 2, not its whole log: b does not hold 3@2, and counting c for index 3
    // would let b commit its own 3 on a replica that holds another entry there.
    expect(ready.messages).toEqual([
      { to: 'b', message: { kind: 'append_reply', term: 3, from: 'c', matchIndex: 2 } },
    ]);
  });

  test('a vote needs an up-to-date log, whatever the pre-vote said (§5.4.1)', () => {
    // b acknowledged 2@1 (committed with the leader of term 1), then restarted: out of any lease.
    // a passed its pre-vote earlier, among members that lacked 2@1; its vote request comes now.
    const b = new RaftNode<string, null>(handConfig('b'), {
      hardState: { term: 1, votedFor: null, commitIndex: 1 },
      snapshot: null,
      entries: [
        { index: 1, term: 1, command: null },
        { index: 2, term: 1, command: 'v' },
      ],
    });
    b.step({ kind: 'vote', term: 2, from: 'a', lastIndex: 1, lastTerm: 1 });
    b.step({ kind: 'vote', term: 2, from: 'c', lastIndex: 2, lastTerm: 1 });
    expect(b.ready().messages).toEqual([
      { to: 'a', message: { kind: 'vote_reply', term: 2, from: 'b', granted: false } },
      { to: 'c', message: { kind: 'vote_reply', term: 2, from: 'b', granted: true } },
    ]);
  });

  test.each([
    { kind: 'append_reply', term: 5, from: 'b', matchIndex: 1 },
    { kind: 'append_reject', term: 5, from: 'b', rejectedIndex: 1, hintIndex: 0, hintTerm: 0 },
    { kind: 'heartbeat_reply', term: 5, from: 'b', round: 1 },
    { kind: 'higher_term', term: 5, from: 'b' },
    { kind: 'vote_reply', term: 5, from: 'b', granted: false },
  ] as const)('a leader hearing a higher term in a reply ($kind) steps down (§5.1)', (reply) => {
    // a leads term 1 by hand: its election timeout, a pre-vote and a vote of b's.
    const a = new RaftNode<string, null>(handConfig('a'), null);
    for (let t = 0; t < ELECTION_TICKS; t++) a.tick();
    a.step({ kind: 'pre_vote_reply', term: 1, from: 'b', granted: true });
    a.step({ kind: 'vote_reply', term: 1, from: 'b', granted: true });
    expect(a.status()).toMatchObject({ role: 'leader', term: 1 });
    a.ready();
    a.advance();

    // b moved on to term 5 (say, it led there while a was paused): a must not lead on in 1.
    a.step(reply);
    expect(a.status()).toMatchObject({ role: 'follower', term: 5, leader: null });
    expect(a.ready().hardState).toMatchObject({ term: 5, votedFor: null });
    expect(a.propose('late')).toMatchObject({ ok: false });
  });

  test('a conflicting suffix: the Ready says to overwrite from the first conflicting index', () => {
    const c = new RaftNode<string, null>(handConfig('c'), null);
    const entry = (index: number, term: number, command: string | null): Entry<string> => ({
      index,
      term,
      command,
    });
    c.step({
      kind: 'append',
      term: 1,
      from: 'a',
      prevIndex: 0,
      prevTerm: 0,
      entries: [entry(1, 1, null), entry(2, 1, 'x'), entry(3, 1, 'y')],
      commitIndex: 1,
    });
    const first = c.ready();
    expect(first.entries.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(first.committed).toEqual([entry(1, 1, null)]);
    c.advance();
    // b leads term 2 without x and y: its entry 2 replaces them.
    c.step({
      kind: 'append',
      term: 2,
      from: 'b',
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(2, 2, null)],
      commitIndex: 1,
    });
    const second = c.ready();
    expect(second.hardState).toEqual({ term: 2, votedFor: null, commitIndex: 1 });
    expect(second.entries).toEqual([entry(2, 2, null)]); // delete stored entries >= 2, append
    expect(second.messages).toEqual([
      { to: 'b', message: { kind: 'append_reply', term: 2, from: 'c', matchIndex: 2 } },
    ]);
    expect(c.status()).toMatchObject({ lastIndex: 2, commitIndex: 1, leader: 'b' });
  });
});

describe('random runs (seeded; a failure prints the command that replays it)', () => {
  const only = process.env.RAFT_SEED;
  if (only !== undefined) {
    test(`seed ${only} alone, traced`, () => {
      const options: RunOptions = {
        chaosSteps: Number(process.env.RAFT_STEPS ?? 250),
        cycles: Number(process.env.RAFT_CYCLES ?? 1),
        tracing: true,
      };
      const { sim, healStepsMax } = runSeed(Number(only), options);
      console.log(replayCommand(Number(only), options), { healStepsMax, ...sim.stats });
    });
    return;
  }

  /** Runs the seeds, adding up what they went through. */
  function explore(seeds: readonly number[], options: RunOptions): SimStats & { heal: number } {
    const total = zeroStats();
    let heal = 0;
    for (const seed of seeds) {
      const { sim, healStepsMax } = runSeed(seed, options);
      addStats(total, sim.stats);
      heal = Math.max(heal, healStepsMax);
    }
    return { ...total, heal };
  }

  /** The faults the runs must have gone through, or the checks proved little. */
  function expectVariety(total: SimStats, runs: number): void {
    expect(total.elections).toBeGreaterThan(runs);
    expect(total.leaderChanges).toBeGreaterThan(runs / 10);
    expect(total.crashes).toBeGreaterThan(runs / 10);
    expect(total.crashesAfterPersist).toBeGreaterThan(0);
    expect(total.restarts).toBeGreaterThan(runs / 10);
    expect(total.pauses).toBeGreaterThan(runs / 10);
    expect(total.partitions).toBeGreaterThan(runs / 10);
    expect(total.snapshotsInstalled).toBeGreaterThan(runs / 10);
    expect(total.duplicated).toBeGreaterThan(runs);
    expect(total.dropped).toBeGreaterThan(runs);
    expect(total.acknowledged).toBeGreaterThan(runs * 10);
    expect(total.readsCompleted).toBeGreaterThan(runs);
    expect(total.readsFailed).toBeGreaterThan(0);
    expect(total.staleLeaderReads).toBeGreaterThan(0);
  }

  const seeds = (first: number, count: number): number[] =>
    Array.from({ length: count }, (_, i) => first + i);

  test('2,000 short runs (250 steps of faults, then healing): safe, and live once healed', () => {
    const total = explore(seeds(1, 2000), { chaosSteps: 250, cycles: 1 });
    expectVariety(total, 2000);
    expect(total.heal).toBeLessThanOrEqual(HEAL_STEPS_MAX);
  });

  test('20 long runs (8 cycles of 500 steps of faults, each healed): safe and live', () => {
    const total = explore(seeds(1_000_001, 20), { chaosSteps: 500, cycles: 8 });
    expectVariety(total, 20);
    expect(total.appliedMax).toBeGreaterThan(500);
  });
});
