// The termination protocol under every interleaving we can generate: the simulated cluster of
// test/support/core-harness.ts, where each server has its own clock and installs views at its own
// pace, messages are delivered in any order, lost, duplicated or timed out, and servers and
// coordinators crash or pause. After every step: no two replicas decide a transaction
// differently, and no coordinator reported anything the replicas contradict. A failing seed is
// named in the error and replays exactly.

import {
  heal,
  NEMESIS_DEFAULT,
  randomStep,
  settled,
  SimCluster,
  type Nemesis,
  type SimTransaction,
} from '../support/core-harness';
import { Random } from '../support/random';

const TIMEOUT_MS = 5000;
/** How many phase-structured runs (see "duels built phase by phase"). */
const PHASE_SEEDS = 1000;

/** Deliver every message in flight matching `match`, in order, until none is left. */
function deliverAll(cluster: SimCluster, match: (text: string) => boolean = () => true): void {
  for (let guard = 0; guard < 1000; guard++) {
    const i = cluster.inFlight.findIndex(
      (e, index) => cluster.deliverable().includes(index) && match(describeEnvelope(e)),
    );
    if (i < 0) return;
    cluster.deliver(i);
    cluster.checkInvariants();
  }
  throw new Error('messages kept coming');
}

function describeEnvelope(e: SimCluster['inFlight'][number]): string {
  const r = e.call.request;
  return `${e.type} ${r.kind} ${e.call.caller}->${e.call.target}`;
}

function outcomes(cluster: SimCluster, tx: SimTransaction): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of cluster.nodes) {
    const o = n.participant.outcomeOf(tx.txid);
    out[n.ref.id] =
      o === undefined
        ? 'undecided'
        : o.state === 'committed'
          ? `committed v${o.version}`
          : 'aborted';
  }
  return out;
}

describe('a commit answered before its own records are synced (its acceptance is)', () => {
  test('the replica crashes before the next sync: restarted on its disk, it recovers the commit', () => {
    const cluster = new SimCluster(3, {}, 'scheduled');
    const syncAll = (): void => {
      for (const id of cluster.unsyncedNodes()) cluster.sync(id);
    };
    const tx = cluster.begin('k', 'v1', ['s0', 's1', 's2']);
    deliverAll(cluster, (t) => t.startsWith('request prepare'));
    syncAll(); // the votes are durable and answered
    deliverAll(cluster, (t) => t.startsWith('reply prepare'));
    deliverAll(cluster, (t) => t.startsWith('request accept'));
    syncAll(); // the acceptances are durable and answered
    deliverAll(cluster, (t) => t.startsWith('reply accept'));
    deliverAll(cluster, (t) => t.startsWith('request commit'));
    deliverAll(cluster, (t) => t.startsWith('reply commit'));
    expect(tx.coordinator.outcome).toEqual({ type: 'committed', version: 1 });
    expect(cluster.commitsAnsweredBeforeSync).toBe(3);
    expect(cluster.node('s0').disk.store.get('k')).toBeUndefined(); // not synced yet

    cluster.crash('s0');
    cluster.restart('s0');
    expect(cluster.commitsRecoveredAfterRestart).toBe(1);
    expect(outcomes(cluster, tx)).toMatchObject({ s0: 'undecided' });
    expect(cluster.node('s0').participant.isPending('k')).toBe(true); // reads refused meanwhile

    for (let round = 0; round < 10 && settledOutcome(cluster, tx, 's0') === 'undecided'; round++) {
      cluster.advance('s0', TIMEOUT_MS);
      syncAll();
      deliverAll(cluster);
      syncAll();
      deliverAll(cluster);
    }
    expect(outcomes(cluster, tx)).toEqual({
      s0: 'committed v1',
      s1: 'committed v1',
      s2: 'committed v1',
    });
    expect(cluster.node('s0').store.get('k')).toMatchObject({ value: 'v1', version: 1 });
  });
});

describe('a promise is durable before it is answered', () => {
  test('an acceptor restarted after promising a recovery ballot still refuses the coordinator', () => {
    const cluster = new SimCluster(3, {}, 'scheduled');
    const syncAll = (): void => {
      for (const id of cluster.unsyncedNodes()) cluster.sync(id);
    };
    const tx = cluster.begin('k', 'v1', ['s0', 's1', 's2']);
    deliverAll(cluster, (t) => t.startsWith('request prepare'));
    syncAll();
    deliverAll(cluster, (t) => t.startsWith('reply prepare')); // the accepts of ballot 0 wait
    // s1 times out and recovers; only s2 promises (nothing accepted): s1 proposes abort.
    cluster.advance('s1', TIMEOUT_MS + 100);
    syncAll();
    deliverAll(cluster, (t) => t === 'request promise s1->s2');
    syncAll();
    deliverAll(cluster, (t) => t === 'reply promise s1->s2');
    syncAll(); // s1 accepted abort itself; its accepts are in flight
    // s2 crashes and restarts on its disk: its promise must still hold.
    cluster.crash('s2');
    cluster.restart('s2');
    // The coordinator's ballot-0 accepts reach s0 and s2, then s1's accept of abort reaches s2.
    deliverAll(
      cluster,
      (t) => t === 'request accept c:tx1->s0' || t === 'request accept c:tx1->s2',
    );
    syncAll();
    deliverAll(cluster, (t) => t.startsWith('reply accept c:'));
    deliverAll(cluster, (t) => t === 'request commit c:tx1->s0');
    syncAll();
    deliverAll(cluster, (t) => t === 'request accept s1->s2');
    syncAll();
    deliverAll(cluster, (t) => t === 'reply accept s1->s2'); // checkInvariants after each step
    expect(tx.coordinator.outcome).not.toEqual({ type: 'committed', version: 1 });
  });
});

describe("a lone replica's recovery is not read before it is durable", () => {
  test('a recovery decided from an acceptance still unsynced: its key is refused until the sync', () => {
    const cluster = new SimCluster(1, {}, 'scheduled');
    const tx = cluster.begin('k', 'v1', ['s0']);
    deliverAll(cluster, (t) => t.startsWith('request prepare'));
    cluster.sync('s0'); // the yes vote is durable and answered
    deliverAll(cluster, (t) => t.startsWith('reply prepare'));
    // The coordinator's accept of the commit arrives; its sync is still to come when the prepare
    // timeout fires, and s0, the whole quorum, recovers from that in-memory acceptance.
    deliverAll(cluster, (t) => t.startsWith('request accept'));
    cluster.advance('s0', TIMEOUT_MS + 100);
    expect(outcomes(cluster, tx)).toEqual({ s0: 'committed v1' });
    expect(cluster.node('s0').store.get('k')).toMatchObject({ value: 'v1', version: 1 });
    cluster.read('s0', 'k');
    expect(cluster.readsServed).toEqual([]);
    expect(cluster.readsRefused).toBe(1);

    // A crash before the sync loses both acceptances: restarted, s0 finds nothing accepted and
    // aborts. Had the read been answered, it would have shown a write that never happened.
    cluster.crash('s0');
    cluster.restart('s0');
    cluster.advance('s0', TIMEOUT_MS + 100);
    cluster.sync('s0');
    expect(outcomes(cluster, tx)).toEqual({ s0: 'aborted' });
    cluster.read('s0', 'k');
    expect(cluster.readsServed).toEqual([]); // nothing held: the key was never written
    cluster.checkInvariants();
  });

  test('once the sync is done, the recovered commit is read', () => {
    const cluster = new SimCluster(1, {}, 'scheduled');
    const tx = cluster.begin('k', 'v1', ['s0']);
    deliverAll(cluster, (t) => t.startsWith('request prepare'));
    cluster.sync('s0');
    deliverAll(cluster, (t) => t.startsWith('reply prepare'));
    deliverAll(cluster, (t) => t.startsWith('request accept'));
    cluster.advance('s0', TIMEOUT_MS + 100);
    cluster.sync('s0');
    cluster.read('s0', 'k');
    expect(cluster.readsServed).toEqual([
      { server: 's0', at: 'k@1', content: 'v1', txid: tx.txid },
    ]);
    cluster.crash('s0');
    cluster.restart('s0');
    expect(outcomes(cluster, tx)).toEqual({ s0: 'committed v1' });
    cluster.checkInvariants();
  });
});

function settledOutcome(cluster: SimCluster, tx: SimTransaction, id: string): string {
  return outcomes(cluster, tx)[id];
}

describe('the reproductions of the review (issue 8), replayed in the simulation', () => {
  test('survivors on different views: one sees the primary gone, the other accepts the coordinator late', () => {
    // Primary s0, survivors s1 (fast heartbeat) and s2 (slow). Every replica votes yes, the
    // coordinator's accepts are held back, s0 is killed (a restart on its port has a new ID, so
    // the view leader evicts s0 at once).
    const cluster = new SimCluster(3);
    const tx = cluster.begin('k', 'v1', ['s0', 's1', 's2']);
    deliverAll(cluster, (t) => t.includes('prepare'));
    expect(tx.coordinator.outcome).toBeUndefined();
    cluster.crash('s0');
    cluster.expel('s0');
    cluster.install('s1'); // s1 is in epoch 2; s2 still in epoch 1
    cluster.advance('s1', TIMEOUT_MS + 1000); // s1 recovers: its promise to s2 is refused (epoch 1)
    deliverAll(cluster, (t) => !t.includes('c:'));
    expect(outcomes(cluster, tx)).toEqual({ s0: 'undecided', s1: 'undecided', s2: 'undecided' });

    // The coordinator wakes: only s2 (still in epoch 1) accepts ballot 0. No majority, and one
    // replica accepted, so the coordinator must not say "not done".
    deliverAll(cluster);
    expect(tx.coordinator.outcome).toMatchObject({ type: 'failed', error: { kind: 'unknown' } });

    // s2 learns the view; the next recovery finds the commit s2 accepted and completes it.
    cluster.install('s2');
    heal(cluster, new Random(1), 10_000);
    expect(settled(cluster)).toBe(true);
    expect(outcomes(cluster, tx)).toEqual({
      s0: 'undecided',
      s1: 'committed v1',
      s2: 'committed v1',
    });
    expect(cluster.node('s1').store.get('k')).toEqual(cluster.node('s2').store.get('k'));
  });

  test('a primary paused past the failure timeout resumes with its old view: no split', () => {
    const cluster = new SimCluster(3);
    const tx = cluster.begin('k', 'v1', ['s0', 's1', 's2']);
    deliverAll(cluster, (t) => t.includes('prepare'));
    cluster.pause('s0');
    cluster.expel('s0');
    cluster.install('s1');
    cluster.install('s2');
    // The survivors recover in epoch 2 without s0: nothing was accepted, so they choose abort.
    cluster.advance('s1', TIMEOUT_MS + 1000);
    cluster.advance('s2', TIMEOUT_MS + 1000);
    deliverAll(cluster, (t) => !t.includes('c:'));
    expect(outcomes(cluster, tx)).toMatchObject({ s1: 'aborted', s2: 'aborted' });

    // s0 resumes, still in epoch 1, and the coordinator's accepts arrive: s0 accepts, the
    // survivors refuse (they left epoch 1): the commit is never chosen. The survivors' decision
    // (abort at their ballot, which is above s0's accepted ballot 0) reaches s0 too.
    cluster.resume('s0');
    deliverAll(cluster);
    expect(tx.coordinator.outcome).toMatchObject({ type: 'failed', error: { kind: 'unknown' } });
    expect(outcomes(cluster, tx)).toEqual({ s0: 'aborted', s1: 'aborted', s2: 'aborted' });
    cluster.install('s0');
    expect(cluster.node('s0').view.epoch).toBe(-1);
  });

  test('lost aborts and a dead primary: the survivors cannot commit what the coordinator aborted', () => {
    const cluster = new SimCluster(3);
    cluster.node('s2').store.set('k', { value: 'held', version: 0 });
    const busy = cluster.begin('k', 'other', ['s2']); // s2 will vote no (key busy)
    deliverAll(cluster, (t) => t.includes('prepare') && t.includes(busy.txid));
    const tx = cluster.begin('k', 'v1', ['s0', 's1', 's2']);
    deliverAll(cluster, (t) => t.includes(`prepare c:${tx.txid}`) || t.startsWith('reply prepare'));
    // Every abort the coordinator sends is lost.
    for (let i = cluster.inFlight.length - 1; i >= 0; i--) {
      if (describeEnvelope(cluster.inFlight[i]).includes('abort')) cluster.drop(i);
    }
    for (const call of cluster.outstanding()) cluster.timeOut(call);
    expect(tx.coordinator.outcome).toMatchObject({ type: 'failed', error: { kind: 'aborted' } });
    cluster.crash('s0');
    cluster.expel('s0');
    heal(cluster, new Random(2), 10_000);
    expect(outcomes(cluster, tx)).toMatchObject({ s1: 'aborted' });
  });

  test('coordinator and primary both die after the votes: the survivors decide within one recovery', () => {
    const cluster = new SimCluster(3);
    const tx = cluster.begin('k', 'v1', ['s0', 's1', 's2']);
    deliverAll(cluster, (t) => t.includes('prepare'));
    cluster.crashCoordinator(tx);
    cluster.crash('s0'); // still in the view: no failure timeout has passed
    // One prepare timeout (plus the stagger) later, s1 and s2 decide on their own.
    cluster.advance('s1', TIMEOUT_MS + 100);
    cluster.advance('s2', TIMEOUT_MS + 200);
    deliverAll(cluster, (t) => !t.includes('c:'));
    expect(outcomes(cluster, tx)).toMatchObject({ s1: 'aborted', s2: 'aborted' });
  });

  test('the coordinator dies after a majority accepted: the survivors commit without the primary', () => {
    const cluster = new SimCluster(3);
    const tx = cluster.begin('k', 'v1', ['s0', 's1', 's2']);
    deliverAll(cluster, (t) => t.includes('prepare'));
    deliverAll(cluster, (t) => t.includes('accept') && !t.includes('s1'));
    cluster.crashCoordinator(tx);
    cluster.crash('s0');
    cluster.advance('s1', TIMEOUT_MS + 100);
    cluster.advance('s2', TIMEOUT_MS + 200);
    deliverAll(cluster, (t) => !t.includes('c:'));
    expect(outcomes(cluster, tx)).toMatchObject({ s1: 'committed v1', s2: 'committed v1' });
  });
});

interface Exploration {
  readonly servers: number;
  readonly seeds: number;
  readonly steps: number;
  readonly nemesis: Nemesis;
  /** Check that every decidable transaction is decided once the faults stop. */
  readonly live: boolean;
  /** The keys written (default two: contention); more keys, fewer votes of no. */
  readonly keys?: readonly string[];
  /** How many transactions a run begins at most (default 6). */
  readonly transactionsMax?: number;
  /** The chance that each accept leaves on a slow link (`SimCluster.holdAcceptsLeaving`). */
  readonly holdAccepts?: number;
}

/** What the runs went through, so that a test cannot pass by exploring nothing. */
interface Coverage {
  committed: number;
  definitelyFailed: number;
  unknown: number;
  recovered: number;
  restarts: number;
  /** Commits answered before their own records were synced (their acceptance was). */
  commitsAnsweredBeforeSync: number;
  /** Answers to an older ballot's promises or accepts, heard after a newer ballot started. */
  staleBallotAnswers: number;
  /** Replicated reads answered with a value, and refused for an undecided or unsynced key. */
  readsServed: number;
  readsRefused: number;
  /** Commits chosen at a recovery's ballot rather than the coordinator's. */
  commitsChosenByRecovery: number;
}

function explore({
  servers,
  seeds,
  steps,
  nemesis,
  live,
  keys = ['a', 'b'],
  transactionsMax = 6,
  holdAccepts = 0,
}: Exploration): Coverage {
  const coverage: Coverage = {
    committed: 0,
    definitelyFailed: 0,
    unknown: 0,
    recovered: 0,
    restarts: 0,
    commitsAnsweredBeforeSync: 0,
    staleBallotAnswers: 0,
    readsServed: 0,
    readsRefused: 0,
    commitsChosenByRecovery: 0,
  };
  for (let seed = 1; seed <= seeds; seed++) {
    const random = new Random(seed * 7919 + servers);
    const cluster = new SimCluster(servers, {}, 'scheduled');
    // (Only when asked: the other runs keep their random sequences, seed for seed.)
    if (holdAccepts > 0) cluster.holdAcceptsLeaving(random, holdAccepts);
    try {
      for (let step = 0; step < steps; step++) {
        if (random.next() < 0.03 && cluster.transactions.length < transactionsMax) {
          beginRandom(cluster, random, keys);
        }
        randomStep(cluster, random, nemesis);
        cluster.checkInvariants();
      }
      heal(cluster, random, live ? 20_000 : 2000);
      if (live) expect(settled(cluster)).toBe(true);
      for (const tx of cluster.transactions) {
        const o = tx.coordinator.outcome;
        if (o?.type === 'committed') coverage.committed++;
        else if (o?.error.kind === 'unknown') coverage.unknown++;
        else if (o !== undefined) coverage.definitelyFailed++;
      }
      coverage.recovered += cluster.trace.filter((t) => t.includes('recovered at ballot')).length;
      coverage.restarts += cluster.restarts;
      coverage.commitsAnsweredBeforeSync += cluster.commitsAnsweredBeforeSync;
      coverage.staleBallotAnswers += cluster.staleBallotAnswers;
      coverage.readsServed += cluster.readsServed.length;
      coverage.readsRefused += cluster.readsRefused;
      coverage.commitsChosenByRecovery += cluster.commitsChosenByRecovery;
    } catch (err) {
      const tail = cluster.trace.slice(-40).join('\n  ');
      throw new Error(`seed ${seed} (servers ${servers}): ${String(err)}\n  ${tail}`);
    }
  }
  return coverage;
}

function expectVariety(coverage: Coverage, servers = 3): void {
  expect(coverage.committed).toBeGreaterThan(0);
  expect(coverage.definitelyFailed).toBeGreaterThan(0);
  expect(coverage.recovered).toBeGreaterThan(0);
  if (servers > 1) expect(coverage.unknown).toBeGreaterThan(0);
  expect(coverage.restarts).toBeGreaterThan(0);
}

/**
 * A setr on one of two keys, on up to 3 servers of a view (maybe a cached, older one); every
 * fourth transaction is a delr instead (a tombstone, at its version like a value).
 */
function beginRandom(cluster: SimCluster, random: Random, keys: readonly string[]): void {
  const views = cluster.views;
  const view = random.next() < 0.8 ? views[views.length - 1] : random.pick(views);
  const ids = [...view.ids];
  for (let i = ids.length - 1; i > 0; i--) {
    const j = random.int(0, i);
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  const replicas = ids.slice(0, Math.min(3, ids.length));
  const key = random.pick(keys);
  const n = cluster.transactions.length + 1;
  cluster.begin(key, n % 4 === 0 ? null : `${key}${n}`, replicas, view.epoch);
}

describe('random interleavings (seeded; a failure names its seed)', () => {
  test.each([1, 2, 3, 4])(
    '%i servers, one failure at a time: safe, and everything decidable is decided',
    (servers) => {
      expectVariety(
        explore({ servers, seeds: 600, steps: 250, nemesis: NEMESIS_DEFAULT, live: true }),
        servers,
      );
    },
  );

  test('3 servers, two failures (a crash and an expulsion, or two of either): never unsafe', () => {
    const coverage = explore({
      servers: 3,
      seeds: 800,
      steps: 250,
      nemesis: { ...NEMESIS_DEFAULT, crash: 0.02, expel: 0.02, failuresMax: 2 },
      live: false,
    });
    expectVariety(coverage);
  });

  test('crashes and restarts on the disk, with syncs as events of their own: nothing acknowledged is lost', () => {
    const coverage = explore({
      servers: 3,
      seeds: 300,
      steps: 300,
      nemesis: { ...NEMESIS_DEFAULT, crash: 0.03, restart: 0.05, failuresMax: 1 },
      live: true,
    });
    expectVariety(coverage);
    expect(coverage.commitsAnsweredBeforeSync).toBeGreaterThan(0);
  });

  test('a storm: many losses, timeouts, pauses and late views', () => {
    const coverage = explore({
      servers: 3,
      seeds: 400,
      steps: 500,
      nemesis: {
        ...NEMESIS_DEFAULT,
        drop: 0.08,
        duplicate: 0.05,
        timeout: 0.06,
        pause: 0.05,
        install: 0.05,
      },
      live: true,
    });
    expectVariety(coverage);
  });
});

/**
 * Recoveries that duel: slow links hold a coordinator's accepts past the prepare timeout and the
 * answers to a ballot until newer ballots started; clocks move on together, so several replicas
 * start ballots at once; a server dies right after it promised or accepted; views lag. Different
 * outcomes then get accepted at different ballots on different replicas, which is where the
 * choice of the highest accepted ballot, the promise quorum and the ballot checks on answers
 * matter.
 */
const NEMESIS_DUEL: Nemesis = {
  ...NEMESIS_DEFAULT,
  drop: 0.02,
  timeout: 0.02,
  crash: 0.005,
  restart: 0.03,
  expel: 0.02,
  install: 0.06,
  slowLink: 0.05,
  partition: 0.01,
  recoverLink: 0.03,
  advanceAll: 0.06,
  crashAfterAnswer: 0.03,
};

describe('duelling recoveries (seeded; a failure names its seed)', () => {
  test('3 servers, two keys: slow links and partitions, clocks together, crashes after an answer', () => {
    const coverage = explore({
      servers: 3,
      seeds: 400,
      steps: 300,
      nemesis: NEMESIS_DUEL,
      live: true,
    });
    expectVariety(coverage);
    expect(coverage.staleBallotAnswers).toBeGreaterThan(0);
  });

  test('4 servers, three keys, fewer losses: more commits, on replicas that voted different versions', () => {
    // Fewer losses and timeouts and less contention let more transactions reach their accepts
    // and commit, so replicas that missed a commit (not among its three) vote lower versions.
    const coverage = explore({
      servers: 4,
      seeds: 400,
      steps: 300,
      nemesis: {
        ...NEMESIS_DUEL,
        drop: 0.01,
        timeout: 0.01,
        pause: 0.01,
        install: 0.08,
        crashCoordinator: 0.005,
      },
      live: true,
      keys: ['a', 'b', 'c'],
      transactionsMax: 10,
    });
    expectVariety(coverage, 4);
    expect(coverage.staleBallotAnswers).toBeGreaterThan(0);
  });
});

/**
 * Accepts held as they leave: each accept, a coordinator's or a recovery's, finds its link slow
 * with some chance, so a commit lands on some replicas and not the others before the prepare
 * timeout, recoveries find it on some and not others, and a recovery's phase 2 reaches some of
 * its acceptors only. Many keys (few votes of no) and four servers (one failure still leaves
 * three replicas, so a recovery needs another's promise) keep transactions reaching phase 2.
 */
describe('accepts held as they leave (seeded; a failure names its seed)', () => {
  test('4 servers, six keys: split acceptances, duelling recoveries, late answers', () => {
    const coverage = explore({
      servers: 4,
      seeds: 300,
      steps: 300,
      nemesis: {
        ...NEMESIS_DEFAULT,
        drop: 0.01,
        timeout: 0.01,
        crash: 0.005,
        restart: 0.03,
        expel: 0.01,
        install: 0.08,
        crashCoordinator: 0.003,
        slowLink: 0.01,
        recoverLink: 0.03,
        advanceAll: 0.08,
        crashAfterAnswer: 0.02,
      },
      live: true,
      keys: ['a', 'b', 'c', 'd', 'e', 'f'],
      transactionsMax: 8,
      holdAccepts: 0.4,
    });
    expectVariety(coverage, 4);
    expect(coverage.staleBallotAnswers).toBeGreaterThan(0);
    expect(coverage.commitsChosenByRecovery).toBeGreaterThan(0);
  });
});

/**
 * Reads amid recoveries: coordinators read keys at any live replica while transactions commit,
 * recover and crash with writes unsynced. Whatever a read returned must stay committed (a
 * restart on the disk can never decide its transaction aborted). With one or two replicas in
 * the view a recovery's quorum is the proposer alone, deciding from an acceptance that may not
 * be synced yet: the reads of that key wait for the sync.
 */
describe('reads amid recoveries (seeded; a failure names its seed)', () => {
  const NEMESIS_READS: Nemesis = {
    ...NEMESIS_DEFAULT,
    crash: 0.03,
    restart: 0.05,
    sync: 0.1,
    slowLink: 0.03,
    recoverLink: 0.03,
    read: 0.15,
    expel: 0.03,
  };

  // Two servers may both fail (one expelled, the other crashed and restarted alone): the lone
  // survivor then recovers with itself as the quorum. Three may not: two gone block a decision.
  test.each([
    [1, 1],
    [2, 2],
    [3, 1],
  ])('%i servers, %i failures: what a read returned is never undone', (servers, failuresMax) => {
    const coverage = explore({
      servers,
      seeds: 600,
      steps: 250,
      nemesis: { ...NEMESIS_READS, failuresMax },
      live: true,
    });
    expectVariety(coverage, servers);
    expect(coverage.readsServed).toBeGreaterThan(0);
    expect(coverage.readsRefused).toBeGreaterThan(0);
  });
});

/**
 * Phase-structured runs: the random step-by-step scheduler above almost never builds a promise
 * quorum that holds two different outcomes accepted, which is the only place where a recovery's
 * choice of value matters (the highest ballot's, never its own or the first heard), nor a
 * proposer that hears its quorum after it promised a higher ballot, nor an answer to an older
 * ballot counted for a newer one. These runs build such histories on purpose, with the choices
 * still seeded: every transaction is prepared (all vote yes), the coordinator's commit lands on
 * some replicas only, then all replicas recover together, in rounds, with some answers held until
 * newer ballots started, proposers cut off or crashed right after they decide, and the view
 * changing between rounds on some servers only. The invariants of `checkInvariants` (one outcome
 * chosen, one decided) are the oracle.
 */
describe('duels built phase by phase (seeded; a failure names its seed)', () => {
  const RETRY_MS = 500;

  /** What the phase-structured runs went through (summed over the runs). */
  interface PhaseCoverage {
    /** Promise quorums holding two different outcomes accepted. */
    mixedPromiseQuorums: number;
    /** ... where the proposer's own acceptance was the lower ballot's. */
    mixedQuorumsOwnLower: number;
    /** Promises to a ballot heard after its proposer promised a higher one. */
    promisesAfterHigherPromise: number;
    /** Answers to a ballot heard after its proposer started a newer one. */
    staleBallotAnswers: number;
    commitsChosenByRecovery: number;
    /** Servers that installed a new view with transactions undecided. */
    epochChangesMidBallot: number;
    /** Proposers crashed or cut off right after they decided. */
    decidedThenCutOff: number;
  }

  function shuffled<T>(random: Random, items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = random.int(0, i);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }

  /** `id txid` of every decision taken so far, to see who just decided. */
  function decisions(cluster: SimCluster): Set<string> {
    const out = new Set<string>();
    for (const node of cluster.nodes) {
      for (const tx of cluster.transactions) {
        if (node.participant.outcomeOf(tx.txid) !== undefined) out.add(`${node.ref.id} ${tx.txid}`);
      }
    }
    return out;
  }

  function phaseRun(seed: number, coverage: PhaseCoverage): void {
    const random = new Random(seed * 7919 + 23);
    // Four or five servers and three replicas a transaction: a recovery's quorum is its proposer
    // and one other, and one server can be expelled while every transaction keeps a quorum.
    const servers = random.int(4, 5);
    const cluster = new SimCluster(servers, {}, 'scheduled');
    const ids = cluster.nodes.map((n) => n.ref.id);
    const syncAll = (): void => {
      for (const id of cluster.unsyncedNodes()) cluster.sync(id);
    };
    try {
      // 1. Transactions on distinct keys (every vote a yes: each one reaches its accepts).
      const count = random.int(1, 4);
      for (let i = 0; i < count; i++) {
        cluster.begin(`k${i}`, `v${i}`, shuffled(random, ids).slice(0, 3));
      }
      // 2. The votes, without faults.
      deliverAll(cluster, (t) => t.startsWith('request prepare'));
      syncAll();
      deliverAll(cluster, (t) => t.startsWith('reply prepare'));
      // The coordinator's accepts: some held on slow links (they arrive late, amid recoveries),
      // the others accepted, and synced on some acceptors only (a crash loses the others').
      const holdAccepts = random.pick([0.3, 0.5, 0.7]);
      for (let i = cluster.inFlight.length - 1; i >= 0; i--) {
        if (describeEnvelope(cluster.inFlight[i]).startsWith('request accept')) {
          if (random.next() < holdAccepts) cluster.hold(i);
        }
      }
      deliverAll(cluster, (t) => t.startsWith('request accept'));
      for (const id of ids) if (random.next() < 0.7) cluster.sync(id);
      cluster.checkInvariants();
      // Half the coordinators die here: their replicas alone decide.
      for (const tx of cluster.transactions) if (random.next() < 0.5) cluster.crashCoordinator(tx);

      // 3-5. Rounds of recoveries: clocks move on together (past the prepare timeout, then the
      // retry interval), so the replicas' ballots duel; each round runs until nothing moves.
      let crashes = 0;
      let expelled = false;
      const rounds = random.int(2, 4);
      for (let round = 0; round < rounds; round++) {
        // A new view between rounds, installed by some servers now and the others later: the
        // ballots under way on the ones that install it die mid-ballot.
        if (!expelled && random.next() < 0.25) {
          expelled = true;
          cluster.expel(random.pick(ids));
          for (const node of cluster.nodes) {
            if (node.participant.pendingCount > 0) coverage.epochChangesMidBallot++;
            if (random.next() < 0.5) cluster.install(node.ref.id);
          }
        } else if (expelled) {
          for (const id of ids) if (random.next() < 0.5) cluster.install(id);
        }
        for (const id of ids) if (random.next() < 0.5) cluster.restart(id);
        // Some held answers and slow links come back: late, to proposers on newer ballots.
        for (let i = cluster.held.length - 1; i >= 0; i--) {
          if (random.next() < 0.5) cluster.release(i);
        }
        for (const link of [...cluster.slowLinks]) {
          if (random.next() < 0.5) cluster.recoverLink(link);
        }
        const ms = round === 0 ? TIMEOUT_MS : RETRY_MS;
        for (const id of shuffled(random, ids)) {
          if (round === 0 || random.next() < 0.8) cluster.advance(id, ms + random.int(0, 300));
        }
        const holdChance = random.pick([0.1, 0.2, 0.35]);
        for (let step = 0; step < 300; step++) {
          const before = decisions(cluster);
          const deliverable = cluster.deliverable();
          const unsynced = cluster.unsyncedNodes();
          if (deliverable.length === 0 && unsynced.length === 0) break;
          if (random.next() < 0.02) {
            // Newer ballots start while the older ones' answers are still on their way.
            for (const id of shuffled(random, ids)) {
              cluster.advance(id, RETRY_MS + random.int(0, 300));
            }
          } else if (unsynced.length > 0 && (deliverable.length === 0 || random.next() < 0.3)) {
            const id = random.pick(unsynced);
            cluster.sync(id); // its promises, accepts and answers leave
            if (crashes < 2 && random.next() < 0.05) {
              crashes++;
              cluster.crash(id);
            }
          } else {
            // Any message, a request or an answer, may be the one held past newer ballots.
            const i = random.pick(deliverable);
            if (random.next() < holdChance) cluster.hold(i);
            else cluster.deliver(i);
          }
          // A proposer that just decided dies (its decision and learns lost if unsynced) or is
          // cut off (its learns wait): the others must finish without hearing of its choice.
          for (const decided of decisions(cluster)) {
            if (before.has(decided)) continue;
            const id = decided.split(' ')[0];
            const roll = random.next();
            if (roll < 0.2 && crashes < 2) {
              crashes++;
              coverage.decidedThenCutOff++;
              cluster.crash(id);
            } else if (roll < 0.4) {
              coverage.decidedThenCutOff++;
              cluster.slowLink(id);
            }
          }
          cluster.checkInvariants();
        }
      }
      // What is still held arrives last; then the faults stop (at most one server is out for
      // good: every transaction keeps a quorum) and everything must be decided.
      while (cluster.held.length > 0) {
        cluster.release(random.int(0, cluster.held.length - 1));
        const deliverable = cluster.deliverable();
        if (deliverable.length > 0) cluster.deliver(random.pick(deliverable));
        cluster.checkInvariants();
      }
      heal(cluster, random, 20_000);
      expect(settled(cluster)).toBe(true);
    } catch (err) {
      const tail = cluster.trace.slice(-60).join('\n  ');
      throw new Error(`seed ${seed}: ${String(err)}\n  ${tail}`);
    }
    coverage.mixedPromiseQuorums += cluster.mixedPromiseQuorums;
    coverage.mixedQuorumsOwnLower += cluster.mixedQuorumsOwnLower;
    coverage.promisesAfterHigherPromise += cluster.promisesAfterHigherPromise;
    coverage.staleBallotAnswers += cluster.staleBallotAnswers;
    coverage.commitsChosenByRecovery += cluster.commitsChosenByRecovery;
  }

  test('4-5 servers, three replicas: split acceptances, duelling rounds, stale answers, a view change', () => {
    const coverage: PhaseCoverage = {
      mixedPromiseQuorums: 0,
      mixedQuorumsOwnLower: 0,
      promisesAfterHigherPromise: 0,
      staleBallotAnswers: 0,
      commitsChosenByRecovery: 0,
      epochChangesMidBallot: 0,
      decidedThenCutOff: 0,
    };
    for (let seed = 1; seed <= PHASE_SEEDS; seed++) phaseRun(seed, coverage);
    // The situations the recovery's rules exist for were built, many times over.
    expect(coverage.mixedPromiseQuorums).toBeGreaterThan(0);
    expect(coverage.mixedQuorumsOwnLower).toBeGreaterThan(0);
    expect(coverage.promisesAfterHigherPromise).toBeGreaterThan(0);
    expect(coverage.staleBallotAnswers).toBeGreaterThan(0);
    expect(coverage.commitsChosenByRecovery).toBeGreaterThan(0);
    expect(coverage.epochChangesMidBallot).toBeGreaterThan(0);
    expect(coverage.decidedThenCutOff).toBeGreaterThan(0);
  });
});
