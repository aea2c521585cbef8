// The 2PC participant (server/participant.ts) as a pure state machine: every transition, with
// time and the view passed in as arguments and moved forward by hand. It plays three parts of the
// per-transaction Paxos that decides each setr: acceptor (promise, accept), learner (commit,
// abort) and proposer of recovery ballots (tick, epochChanged, onPromise, onAccepted). The
// ballots and quorums of lib/ballot.ts are tested first. The last block wires a few participants
// together by hand (the shell's job) to check that the parts fit.

import { AssertionError } from '../../lib/assert';
import {
  compareBallots,
  coordinatorBallot,
  describeBallot,
  majority,
  promiseQuorum,
} from '../../lib/ballot';
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
  type AcceptAnswer,
  type ParticipantConfig,
  type PeerSend,
  type PrepareContext,
  type Resolution,
  type Step,
  type ViewContext,
  type Vote,
  type ParticipantChange,
  type PreparedRecord,
  type DecisionRecord,
  type LastCommitRecord,
} from '../../server/participant';

const PREPARE_TIMEOUT_MS = 5000;
const DECISION_RETRY_MS = 500;
const RECOVERY_STAGGER_MS = 100;
const EPOCH = 7;
const NO_EPOCH = -1;
const T0 = 1_000_000; // the clock is arbitrary; start away from 0 so "0" is never special
const TIMEOUT_AT = T0 + PREPARE_TIMEOUT_MS;

const ref = (id: string, port: number): ServerRef => ({ id, address: `127.0.0.1:${port}` });
const S0 = ref('s0', 38000);
const S1 = ref('s1', 38001);
const S2 = ref('s2', 38002);
const REPLICAS = [S0, S1, S2];

function view(servers: readonly ServerRef[], epoch = EPOCH): ViewContext {
  return { epoch, viewIds: new Set(servers.map((s) => s.id)) };
}
const ALL = view(REPLICAS);
const EXPELLED: ViewContext = { epoch: NO_EPOCH, viewIds: new Set() };

const ballot = (round: number, slot: number, epoch = EPOCH): Ballot => ({ epoch, round, slot });
const B0 = coordinatorBallot(EPOCH);
const ABORTED: TxOutcome = { state: 'aborted' };
const committed = (version: number): TxOutcome => ({ state: 'committed', version });
const NOTHING: Step = { sends: [], resolutions: [] };
const PROMISED: DecisionResponse = { state: 'promised' };
const at = (b: Ballot, outcome: TxOutcome): Accepted => ({ ballot: b, outcome });

function participant(self: ServerRef = S1, config: Partial<ParticipantConfig> = {}): Participant {
  return new Participant({
    selfId: self.id,
    prepareTimeoutMs: PREPARE_TIMEOUT_MS,
    decisionRetryMs: DECISION_RETRY_MS,
    recoveryStaggerMs: RECOVERY_STAGGER_MS,
    decisionsRememberedMax: 100,
    ...config,
  });
}

function request(self: ServerRef, overrides: Partial<PrepareRequest> = {}): PrepareRequest {
  return {
    txid: 't1',
    key: 'k',
    value: 'v',
    epoch: EPOCH,
    serverId: self.id,
    replicas: REPLICAS,
    ...overrides,
  };
}

function context(overrides: Partial<PrepareContext> = {}): PrepareContext {
  return { epoch: EPOCH, rebalancing: false, leased: true, currentVersion: 3, ...overrides };
}

/**
 * A participant (s1 unless told) holding transaction t1 on key k, prepared at T0 in EPOCH with
 * version 3, among `replicas` (s0, s1, s2 unless told).
 */
function prepared(self: ServerRef = S1, replicas: readonly ServerRef[] = REPLICAS): Participant {
  const p = participant(self);
  expect(p.prepare(request(self, { replicas: [...replicas] }), context(), T0)).toEqual({
    vote: 'yes',
    version: 3,
  });
  return p;
}

/** 1 + the index among the replicas: the server's ballot slot. */
const slotOf = (self: ServerRef, replicas: readonly ServerRef[] = REPLICAS): number =>
  replicas.findIndex((r) => r.id === self.id) + 1;

/** When `self` first recovers t1 prepared at T0: the timeout plus its stagger. */
const recoveryAt = (self: ServerRef, replicas: readonly ServerRef[] = REPLICAS): number =>
  TIMEOUT_AT + (slotOf(self, replicas) - 1) * RECOVERY_STAGGER_MS;

const promiseSend = (target: ServerRef, b: Ballot, txid = 't1', key = 'k'): PeerSend => ({
  type: 'promise',
  txid,
  key,
  target,
  ballot: b,
});
const acceptSend = (target: ServerRef, b: Ballot, outcome: TxOutcome): PeerSend => ({
  type: 'accept',
  txid: 't1',
  key: 'k',
  target,
  ballot: b,
  outcome,
});
const learnSend = (target: ServerRef, b: Ballot, outcome: TxOutcome): PeerSend => ({
  type: 'learn',
  txid: 't1',
  key: 'k',
  target,
  ballot: b,
  outcome,
});

/** The Resolution expected for t1 on k (value v): with `apply` exactly when committed. */
function resolved(outcome: TxOutcome, txid = 't1', key = 'k'): Record<string, unknown> {
  const base = { txid, key, outcome, why: expect.any(String) };
  return outcome.state === 'committed'
    ? { ...base, apply: { key, value: 'v', version: outcome.version } }
    : base;
}

function refusal(vote: Vote): { kind: string; reason: string | undefined } {
  if (vote.vote !== 'no') throw new Error(`expected a no vote, got ${JSON.stringify(vote)}`);
  expect(vote.error).toBeInstanceOf(DhtError);
  return { kind: vote.error.kind, reason: vote.error.reason };
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

function dhtError(fn: () => unknown): { kind: string; reason: string | undefined } {
  const err = thrown(fn);
  expect(err).toBeInstanceOf(DhtError);
  const e = err as DhtError;
  return { kind: e.kind, reason: e.reason };
}

/** What was accepted here, as a promise of `b` shows it (so `b` is promised from then on). */
function acceptedAt(p: Participant, b: Ballot): DecisionResponse {
  return p.promise('t1', 'k', b, view(REPLICAS, b.epoch));
}

// ---- ballots and quorums (lib/ballot.ts) --------------------------------------------------------

describe('ballots and quorums', () => {
  test("the coordinator's ballot is round 0, slot 0 of its epoch", () => {
    expect(coordinatorBallot(EPOCH)).toEqual({ epoch: EPOCH, round: 0, slot: 0 });
    expect(describeBallot(ballot(3, 2))).toBe(`${EPOCH}.3.2`);
  });

  test.each<[Ballot, Ballot]>([
    // Epoch first, whatever the round and slot ...
    [ballot(99, 3, 6), ballot(0, 0, 7)],
    [ballot(1, 1, 6), coordinatorBallot(7)],
    // ... then the round, whatever the slot ...
    [ballot(1, 3), ballot(2, 0)],
    [coordinatorBallot(EPOCH), ballot(1, 1)],
    // ... then the slot.
    [ballot(2, 1), ballot(2, 2)],
    [ballot(2, 2), ballot(2, 3)],
  ])('%j < %j', (low, high) => {
    expect(Math.sign(compareBallots(low, high))).toBe(-1);
    expect(Math.sign(compareBallots(high, low))).toBe(1);
  });

  test('equal ballots compare 0; sorting orders by epoch, round, slot', () => {
    expect(compareBallots(ballot(4, 2), ballot(4, 2))).toBe(0);
    const sorted = [
      coordinatorBallot(6),
      ballot(1, 1, 6),
      ballot(1, 2, 6),
      ballot(2, 1, 6),
      coordinatorBallot(7),
      ballot(1, 3),
      ballot(2, 1),
      ballot(2, 2),
      ballot(10, 1),
      ballot(0, 1, 8),
    ];
    const shuffled = [...sorted.slice(5), ...sorted.slice(0, 5)].reverse();
    expect(shuffled.sort(compareBallots)).toEqual(sorted);
  });

  test.each<[number, number, number]>([
    // [replicas, promise quorum, majority]
    [1, 1, 1],
    [2, 1, 2],
    [3, 2, 2],
    [4, 2, 3],
    [5, 3, 3],
  ])('%i replicas: %i promises, %i accepts', (n, promises, accepts) => {
    expect(promiseQuorum(n)).toBe(promises);
    expect(majority(n)).toBe(accepts);
  });

  test('any promise quorum meets any majority of a view holding a superset of the promisers', () => {
    // n replicas in all; an earlier view held m of them, every later view a subset of those.
    for (let n = 1; n <= 9; n++) {
      for (let m = 1; m <= n; m++) {
        expect(promiseQuorum(n) + majority(m)).toBeGreaterThan(m);
        expect(2 * majority(m)).toBeGreaterThan(m);
      }
    }
  });
});

// ---- prepare ----------------------------------------------------------------------------------

describe('prepare', () => {
  test('votes yes with the current version of the key, and holds the key', () => {
    const p = participant();
    expect(p.prepare(request(S1), context({ currentVersion: 41 }), T0)).toEqual({
      vote: 'yes',
      version: 41,
    });
    expect(p.isPending('k')).toBe(true);
    expect(p.pendingCount).toBe(1);
    expect(p.outcomeOf('t1')).toBeUndefined();
  });

  test('a duplicate prepare (same txid) is idempotent: the same yes, one pending transaction', () => {
    const p = prepared();
    // Whatever changed meanwhile, the vote already given stands.
    expect(p.prepare(request(S1), context({ currentVersion: 9 }), T0 + 10)).toEqual({
      vote: 'yes',
      version: 3,
    });
    expect(p.prepare(request(S1), context({ rebalancing: true }), T0 + 20)).toEqual({
      vote: 'yes',
      version: 3,
    });
    expect(p.pendingCount).toBe(1);
  });

  test('a duplicate prepare does not restart the prepare timeout', () => {
    const p = prepared(S0);
    p.prepare(request(S0), context(), TIMEOUT_AT - 1);
    expect(p.tick(TIMEOUT_AT, ALL).sends).toEqual([
      promiseSend(S1, ballot(1, 1)),
      promiseSend(S2, ballot(1, 1)),
    ]);
  });

  test.each<[string, Partial<PrepareRequest>, Partial<PrepareContext>, string]>([
    ['the epoch differs (request older)', { epoch: EPOCH - 1 }, {}, 'epoch_mismatch'],
    ['the epoch differs (request newer)', { epoch: EPOCH + 1 }, {}, 'epoch_mismatch'],
    [
      'the server ID differs (a restarted process)',
      { serverId: 'previous-life' },
      {},
      'server_id_mismatch',
    ],
    ['a rebalancing is under way', {}, { rebalancing: true }, 'rebalancing'],
    ['no lease (maybe expelled while paused)', {}, { leased: false }, 'lease_expired'],
  ])('refused with kind retry when %s', (_name, req, ctx, reason) => {
    const p = participant();
    expect(refusal(p.prepare(request(S1, req), context(ctx), T0))).toEqual({
      kind: 'retry',
      reason,
    });
    expect(p.isPending('k')).toBe(false);
    expect(p.pendingCount).toBe(0);
  });

  test('refused with kind aborted (key_busy) while another transaction holds the key', () => {
    const p = prepared();
    expect(refusal(p.prepare(request(S1, { txid: 't2', value: 'w' }), context(), T0 + 1))).toEqual({
      kind: 'aborted',
      reason: 'key_busy',
    });
    // The holder is untouched: it still commits.
    expect(p.commit('t1', 'k', 4)).toEqual({ key: 'k', value: 'v', version: 4 });
  });

  test('once the holder is decided, the key takes a new transaction', () => {
    const p = prepared();
    p.commit('t1', 'k', 4);
    expect(p.prepare(request(S1, { txid: 't2' }), context({ currentVersion: 4 }), T0 + 1)).toEqual({
      vote: 'yes',
      version: 4,
    });
  });

  test('transactions on different keys do not block each other', () => {
    const p = participant();
    const keys = ['a', 'b', 'c', 'key with spaces', 'ключ'];
    keys.forEach((key, i) => {
      expect(
        p.prepare(request(S1, { txid: `t${i}`, key }), context({ currentVersion: i }), T0),
      ).toEqual({
        vote: 'yes',
        version: i,
      });
    });
    expect(p.pendingCount).toBe(keys.length);
    expect(p.commit('t2', 'c', 10)).toEqual({ key: 'c', value: 'v', version: 10 });
    p.abort('t0', 'a');
    expect(keys.map((k) => p.isPending(k))).toEqual([false, true, false, true, true]);
    expect(p.pendingCount).toBe(3);
  });

  test.each<[string, (p: Participant) => void]>([
    ['committed', (p) => p.commit('t1', 'k', 4)],
    ['aborted', (p) => p.abort('t1', 'k')],
    [
      'aborted by a peer answering a recovery ballot',
      (p) => {
        p.tick(TIMEOUT_AT, ALL);
        p.onPromise('t1', S1, ballot(1, 1), { state: 'aborted' });
      },
    ],
    ['aborted as learned from a recovery ballot', (p) => p.abort('t1', 'k', ballot(1, 2))],
  ])('a prepare of a txid already %s is refused (kind aborted)', (_name, decide) => {
    const p = prepared(S0);
    decide(p);
    expect(refusal(p.prepare(request(S0), context(), TIMEOUT_AT + 1))).toEqual({
      kind: 'aborted',
      reason: 'transaction_unknown',
    });
    expect(p.isPending('k')).toBe(false);
  });

  test('a prepare at a server that is not one of the replicas named is refused (invalid)', () => {
    const p = participant(ref('s9', 38009));
    expect(dhtError(() => p.prepare(request(ref('s9', 38009)), context(), T0))).toEqual({
      kind: 'invalid',
      reason: 'bad_request',
    });
    expect(p.pendingCount).toBe(0);
  });

  test('a prepare naming one replica twice is refused (invalid)', () => {
    const p = participant();
    expect(
      dhtError(() => p.prepare(request(S1, { replicas: [S0, S1, S0] }), context(), T0)),
    ).toEqual({ kind: 'invalid', reason: 'bad_request' });
    expect(p.pendingCount).toBe(0);
  });

  test("the prepare promises the coordinator's ballot 0 of its epoch, nothing above", () => {
    const p = prepared();
    // Ballot 0 itself is still welcome (phase 2 of the coordinator) ...
    expect(() => p.accept('t1', 'k', B0, committed(4), ALL)).not.toThrow();
    // ... and any recovery ballot is above it.
    expect(p.promise('t1', 'k', ballot(1, 1), ALL)).toEqual({
      state: 'promised',
      accepted: { ballot: B0, outcome: committed(4) },
    });
  });
});

// ---- acceptor: phase 1 ------------------------------------------------------------------------

describe('promise (phase 1, acceptor)', () => {
  test('a prepared transaction promises a ballot of its epoch; nothing accepted yet', () => {
    const p = prepared();
    expect(p.promise('t1', 'k', ballot(1, 1), ALL)).toEqual({ state: 'promised' });
    expect(p.isPending('k')).toBe(true);
    expect(p.outcomeOf('t1')).toBeUndefined();
  });

  test('the answer carries what was accepted here, with its ballot', () => {
    const p = prepared();
    p.accept('t1', 'k', B0, committed(4), ALL);
    expect(p.promise('t1', 'k', ballot(1, 3), ALL)).toEqual({
      state: 'promised',
      accepted: { ballot: B0, outcome: committed(4) },
    });
    p.accept('t1', 'k', ballot(1, 3), ABORTED, ALL);
    expect(p.promise('t1', 'k', ballot(2, 1), ALL)).toEqual({
      state: 'promised',
      accepted: { ballot: ballot(1, 3), outcome: ABORTED },
    });
    expect(p.isPending('k')).toBe(true); // accepting decides nothing
  });

  test.each<[string, Ballot]>([
    ['a lower round', ballot(1, 3)],
    ['the same round, a lower slot', ballot(2, 1)],
    ["the coordinator's ballot 0", B0],
  ])('a ballot below the promised one (%s) is answered superseded', (_name, low) => {
    const p = prepared();
    expect(p.promise('t1', 'k', ballot(2, 2), ALL)).toEqual({ state: 'promised' });
    expect(p.promise('t1', 'k', low, ALL)).toEqual({
      state: 'superseded',
      promised: ballot(2, 2),
    });
    // The promise stands: a ballot between the two is refused too.
    expect(dhtError(() => p.accept('t1', 'k', low, ABORTED, ALL))).toEqual({
      kind: 'rejected',
      reason: 'ballot_superseded',
    });
  });

  test('the same ballot again is promised again (a resent request)', () => {
    const p = prepared();
    expect(p.promise('t1', 'k', ballot(1, 3), ALL)).toEqual({ state: 'promised' });
    expect(p.promise('t1', 'k', ballot(1, 3), ALL)).toEqual({ state: 'promised' });
  });

  test("a promise refuses the coordinator's later accept of ballot 0", () => {
    const p = prepared();
    p.promise('t1', 'k', ballot(1, 3), ALL);
    expect(dhtError(() => p.accept('t1', 'k', B0, committed(4), ALL))).toEqual({
      kind: 'rejected',
      reason: 'ballot_superseded',
    });
    expect(p.promise('t1', 'k', ballot(2, 1), ALL)).toEqual({ state: 'promised' });
  });

  test.each<[string, Ballot, ViewContext]>([
    ['an older epoch than this server (a proposer left behind)', ballot(5, 1), view(REPLICAS, 8)],
    ['a newer epoch than this server (not installed here yet)', ballot(1, 1, 8), ALL],
    ['a lower ballot of another epoch (epoch checked first)', ballot(0, 1, 6), ALL],
    ['any ballot while in no view', ballot(1, 1), EXPELLED],
  ])('a ballot of %s is refused (retry, epoch_mismatch); nothing promised', (_name, b, v) => {
    const p = prepared();
    expect(dhtError(() => p.promise('t1', 'k', b, v))).toEqual({
      kind: 'retry',
      reason: 'epoch_mismatch',
    });
    // Nothing was promised: ballot 0 is still accepted in the prepare epoch.
    expect(() => p.accept('t1', 'k', B0, committed(4), ALL)).not.toThrow();
  });

  test.each<[string, (p: Participant) => void, DecisionResponse]>([
    ['committed', (p) => p.commit('t1', 'k', 4), { state: 'committed', version: 4 }],
    ['aborted', (p) => p.abort('t1', 'k'), { state: 'aborted' }],
  ])('a transaction %s here answers its outcome, in any epoch and ballot', (_n, decide, answer) => {
    const p = prepared();
    decide(p);
    for (const [b, v] of [
      [ballot(1, 1), ALL],
      [B0, ALL],
      [ballot(9, 3, 3), view(REPLICAS, 99)],
      [ballot(1, 1, 99), EXPELLED],
    ] as const) {
      expect(p.promise('t1', 'k', b, v)).toEqual(answer);
    }
  });

  test('a transaction never prepared here answers aborted, in any epoch, and is fenced', () => {
    const p = participant();
    expect(p.promise('t1', 'k', ballot(1, 1, 3), view(REPLICAS, 12))).toEqual({
      state: 'aborted',
    });
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
    // The coordinator's late prepare is refused: it can never collect every yes.
    expect(refusal(p.prepare(request(S1), context(), T0 + 1))).toEqual({
      kind: 'aborted',
      reason: 'transaction_unknown',
    });
    expect(p.isPending('k')).toBe(false);
    expect(p.promise('t1', 'k', ballot(2, 2), ALL)).toEqual({ state: 'aborted' });
    expect(dhtError(() => p.accept('t1', 'k', B0, committed(1), ALL))).toEqual({
      kind: 'rejected',
      reason: 'transaction_unknown',
    });
  });

  test('a promise naming another key than the prepared one is refused (invalid); still prepared', () => {
    const p = prepared();
    expect(dhtError(() => p.promise('t1', 'other', ballot(1, 1), ALL))).toEqual({
      kind: 'invalid',
      reason: 'bad_request',
    });
    expect(p.isPending('k')).toBe(true);
    expect(p.promise('t1', 'k', ballot(1, 1), ALL)).toEqual({ state: 'promised' });
  });
});

// ---- acceptor: phase 2 ------------------------------------------------------------------------

describe('accept (phase 2, acceptor)', () => {
  test("the coordinator's commit at ballot 0 is accepted, not applied: the transaction stays pending", () => {
    const p = prepared();
    expect(p.accept('t1', 'k', B0, committed(4), ALL)).toBeUndefined();
    expect(p.isPending('k')).toBe(true);
    expect(p.outcomeOf('t1')).toBeUndefined();
    expect(acceptedAt(p, ballot(1, 1))).toEqual({
      state: 'promised',
      accepted: { ballot: B0, outcome: committed(4) },
    });
  });

  test('a repeated accept of the same ballot and value is harmless', () => {
    const p = prepared();
    p.accept('t1', 'k', B0, committed(4), ALL);
    expect(() => p.accept('t1', 'k', B0, committed(4), ALL)).not.toThrow();
    expect(acceptedAt(p, ballot(1, 1))).toEqual({
      state: 'promised',
      accepted: { ballot: B0, outcome: committed(4) },
    });
  });

  test('a higher ballot replaces what was accepted, and raises the promise', () => {
    const p = prepared();
    p.accept('t1', 'k', B0, committed(4), ALL);
    // No promise is needed first: phase 2 only needs a ballot at least the one promised.
    p.accept('t1', 'k', ballot(3, 2), ABORTED, ALL);
    expect(p.promise('t1', 'k', ballot(3, 1), ALL)).toEqual({
      state: 'superseded',
      promised: ballot(3, 2),
    });
    expect(acceptedAt(p, ballot(4, 1))).toEqual({
      state: 'promised',
      accepted: { ballot: ballot(3, 2), outcome: ABORTED },
    });
  });

  test('an accept at exactly the promised ballot is accepted', () => {
    const p = prepared();
    p.promise('t1', 'k', ballot(2, 3), ALL);
    expect(() => p.accept('t1', 'k', ballot(2, 3), ABORTED, ALL)).not.toThrow();
  });

  test.each<[string, Ballot]>([
    ["the coordinator's ballot 0", B0],
    ['a lower recovery ballot', ballot(2, 1)],
  ])('an accept below the promise (%s) is refused (rejected, ballot_superseded)', (_n, low) => {
    const p = prepared();
    p.accept('t1', 'k', ballot(1, 3), ABORTED, ALL);
    p.promise('t1', 'k', ballot(2, 2), ALL);
    expect(dhtError(() => p.accept('t1', 'k', low, committed(4), ALL))).toEqual({
      kind: 'rejected',
      reason: 'ballot_superseded',
    });
    // What was accepted is untouched.
    expect(acceptedAt(p, ballot(3, 1))).toEqual({
      state: 'promised',
      accepted: { ballot: ballot(1, 3), outcome: ABORTED },
    });
  });

  test.each<[string, Ballot, ViewContext]>([
    ['ballot 0 of the prepare epoch after this server moved on', B0, view(REPLICAS, EPOCH + 1)],
    ['a ballot of a newer epoch than this server', ballot(1, 1, EPOCH + 1), ALL],
    ['a ballot of an older epoch', ballot(4, 1, EPOCH - 1), ALL],
    ['any ballot while in no view', B0, EXPELLED],
  ])('%s is refused (retry, epoch_mismatch); nothing accepted', (_name, b, v) => {
    const p = prepared();
    expect(dhtError(() => p.accept('t1', 'k', b, committed(4), v))).toEqual({
      kind: 'retry',
      reason: 'epoch_mismatch',
    });
    expect(acceptedAt(p, ballot(1, 1))).toEqual({ state: 'promised' });
  });

  test.each([3, 2, 0])(
    'a commit version not above the voted version (%i) is refused (invalid); nothing accepted',
    (version) => {
      const p = prepared();
      expect(dhtError(() => p.accept('t1', 'k', B0, committed(version), ALL))).toEqual({
        kind: 'invalid',
        reason: 'bad_request',
      });
      expect(acceptedAt(p, ballot(1, 1))).toEqual({ state: 'promised' });
    },
  );

  test('an accept naming another key is refused (invalid); nothing accepted', () => {
    const p = prepared();
    expect(dhtError(() => p.accept('t1', 'other', B0, committed(4), ALL))).toEqual({
      kind: 'invalid',
      reason: 'bad_request',
    });
    expect(acceptedAt(p, ballot(1, 1))).toEqual({ state: 'promised' });
  });

  test('an accept of a transaction never prepared here is refused (aborted)', () => {
    const p = participant();
    expect(dhtError(() => p.accept('t1', 'k', B0, committed(4), ALL))).toEqual({
      kind: 'aborted',
      reason: 'transaction_unknown',
    });
    expect(p.isPending('k')).toBe(false);
  });

  test.each<[string, (p: Participant) => void, TxOutcome]>([
    ['committed', (p) => p.commit('t1', 'k', 4), committed(4)],
    ['aborted', (p) => p.abort('t1', 'k'), ABORTED],
  ])(
    'a transaction %s here accepts its own outcome again, at any ballot and epoch',
    (_n, decide, o) => {
      const p = prepared();
      decide(p);
      expect(() => p.accept('t1', 'k', B0, o, ALL)).not.toThrow();
      expect(() => p.accept('t1', 'k', ballot(5, 2, EPOCH + 3), o, EXPELLED)).not.toThrow();
      expect(p.outcomeOf('t1')).toEqual(o);
    },
  );

  test.each<[string, (p: Participant) => void, TxOutcome]>([
    ['aborted, a commit', (p) => p.abort('t1', 'k'), committed(4)],
    ['committed, an abort', (p) => p.commit('t1', 'k', 4), ABORTED],
    ['committed at v4, a commit at v5', (p) => p.commit('t1', 'k', 4), committed(5)],
  ])('a transaction %s is refused (rejected); the decision stands', (_n, decide, o) => {
    const p = prepared();
    decide(p);
    const before = p.outcomeOf('t1');
    expect(dhtError(() => p.accept('t1', 'k', ballot(1, 1), o, ALL))).toEqual({
      kind: 'rejected',
      reason: 'transaction_unknown',
    });
    expect(p.outcomeOf('t1')).toEqual(before);
  });
});

// ---- learner: commit --------------------------------------------------------------------------

describe('commit (the decision)', () => {
  test('applies the prepared value with the coordinator version', () => {
    const p = prepared();
    expect(p.commit('t1', 'k', 8)).toEqual({ key: 'k', value: 'v', version: 8 });
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 8 });
    expect(p.isPending('k')).toBe(false);
    expect(p.pendingCount).toBe(0);
  });

  test('a commit is the decision: applied whatever was accepted or promised here', () => {
    const p = prepared();
    p.accept('t1', 'k', ballot(1, 2), ABORTED, ALL);
    p.promise('t1', 'k', ballot(4, 3), ALL);
    expect(p.commit('t1', 'k', 4)).toEqual({ key: 'k', value: 'v', version: 4 });
  });

  test('a repeated commit is a no-op (nothing applied twice)', () => {
    const p = prepared();
    p.commit('t1', 'k', 4);
    expect(p.commit('t1', 'k', 4)).toBeUndefined();
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 4 });
  });

  test('a commit of an unknown txid throws kind aborted (transaction_unknown)', () => {
    const p = participant();
    expect(dhtError(() => p.commit('nope', 'k', 4))).toEqual({
      kind: 'aborted',
      reason: 'transaction_unknown',
    });
  });

  test('a commit of an aborted txid throws kind aborted', () => {
    const p = prepared();
    p.abort('t1', 'k');
    expect(dhtError(() => p.commit('t1', 'k', 4))).toEqual({
      kind: 'aborted',
      reason: 'transaction_unknown',
    });
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
  });

  test('a commit of a txid fenced by a promise throws kind aborted', () => {
    const p = participant();
    expect(p.promise('t1', 'k', ballot(1, 1), ALL)).toEqual({ state: 'aborted' });
    expect(dhtError(() => p.commit('t1', 'k', 4)).kind).toBe('aborted');
  });

  test('a commit naming another key is refused and leaves the transaction prepared', () => {
    const p = prepared();
    expect(dhtError(() => p.commit('t1', 'other', 4)).kind).toBe('aborted');
    expect(p.isPending('k')).toBe(true);
    expect(p.commit('t1', 'k', 4)).toEqual({ key: 'k', value: 'v', version: 4 });
  });

  test.each([3, 2, 0])(
    'a commit version not above the voted version (%i) is refused (invalid); still prepared',
    (v) => {
      const p = prepared();
      expect(dhtError(() => p.commit('t1', 'k', v))).toEqual({
        kind: 'invalid',
        reason: 'bad_request',
      });
      expect(p.isPending('k')).toBe(true);
      expect(p.commit('t1', 'k', 4)).toEqual({ key: 'k', value: 'v', version: 4 });
    },
  );

  test('a learned commit ends a recovery under way: its late answers change nothing', () => {
    const p = prepared(S0);
    p.tick(TIMEOUT_AT, ALL);
    p.commit('t1', 'k', 4);
    expect(p.onPromise('t1', S1, ballot(1, 1), PROMISED)).toEqual(NOTHING);
    expect(p.onAccepted('t1', S1, ballot(1, 1), 'accepted')).toEqual(NOTHING);
    expect(p.tick(TIMEOUT_AT + 100 * DECISION_RETRY_MS, ALL)).toEqual(NOTHING);
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 4 });
  });
});

// ---- learner: abort ---------------------------------------------------------------------------

describe('a delete (delr): the same transaction, its commit writes a tombstone', () => {
  /** s1 holding t1, a delete of k, prepared at T0 with version 3. */
  function preparedDelete(): Participant {
    const p = participant(S1);
    const vote = p.prepare(request(S1, { value: undefined, deleted: true }), context(), T0);
    expect(vote).toEqual({ vote: 'yes', version: 3 });
    return p;
  }

  test('prepared like a set: votes the version held, holds the key', () => {
    const p = preparedDelete();
    expect(p.isPending('k')).toBe(true);
    expect(refusal(p.prepare(request(S1, { txid: 't2' }), context(), T0))).toEqual({
      kind: 'aborted',
      reason: 'key_busy',
    });
  });

  test('the commit applies a tombstone at the commit version, no value', () => {
    const p = preparedDelete();
    expect(p.commit('t1', 'k', 4)).toEqual({ key: 'k', deleted: true, version: 4 });
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 4 });
    expect(p.commit('t1', 'k', 4)).toBeUndefined();
  });

  test('a commit version not above the vote is refused, as for a set', () => {
    const p = preparedDelete();
    expect(dhtError(() => p.commit('t1', 'k', 3))).toEqual({
      kind: 'invalid',
      reason: 'bad_request',
    });
    expect(p.isPending('k')).toBe(true);
  });

  test('a recovery that chooses the commit applies the tombstone (Resolution.apply)', () => {
    const p = preparedDelete();
    p.accept('t1', 'k', B0, committed(4), ALL);
    p.tick(recoveryAt(S1), ALL);
    const B = ballot(1, 2);
    p.onPromise('t1', S0, B, PROMISED);
    const step = p.onAccepted('t1', S2, B, 'accepted');
    expect(step.resolutions).toEqual([
      { ...resolved(committed(4)), apply: { key: 'k', deleted: true, version: 4 } },
    ]);
  });

  test('an aborted delete applies nothing', () => {
    const p = preparedDelete();
    p.abort('t1', 'k');
    expect(p.outcomeOf('t1')).toEqual(ABORTED);
    expect(p.isPending('k')).toBe(false);
  });

  test('a prepare carrying both a value and a delete is a programmer error (the edge refuses it)', () => {
    const p = participant(S1);
    expect(thrown(() => p.prepare(request(S1, { deleted: true }), context(), T0))).toBeInstanceOf(
      AssertionError,
    );
    expect(p.isPending('k')).toBe(false);
  });
});

describe('abort (the decision)', () => {
  test('aborts a prepared transaction and frees its key; nothing is applied, nothing recovered', () => {
    const p = prepared();
    p.abort('t1', 'k');
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
    expect(p.isPending('k')).toBe(false);
    expect(p.tick(T0 + 10 * PREPARE_TIMEOUT_MS, ALL)).toEqual(NOTHING);
  });

  test('is idempotent, with or without a ballot', () => {
    const p = prepared();
    p.abort('t1', 'k');
    expect(() => p.abort('t1', 'k')).not.toThrow();
    expect(() => p.abort('t1', 'k', ballot(3, 1))).not.toThrow();
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
  });

  test.each<[string, Ballot | undefined]>([
    ['without a ballot', undefined],
    ['with a ballot', ballot(2, 3)],
  ])('of a txid never prepared here (%s) fences a late prepare', (_name, b) => {
    const p = participant();
    p.abort('t1', 'k', b);
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
    expect(refusal(p.prepare(request(S1), context(), T0)).kind).toBe('aborted');
    expect(p.isPending('k')).toBe(false);
  });

  test.each<[string, Ballot | undefined]>([
    ['without a ballot', undefined],
    ['with a ballot', ballot(9, 3)],
  ])('after a commit (%s) throws (kind rejected) and keeps the commit', (_name, b) => {
    const p = prepared();
    p.commit('t1', 'k', 4);
    expect(dhtError(() => p.abort('t1', 'k', b))).toEqual({
      kind: 'rejected',
      reason: 'transaction_unknown',
    });
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 4 });
  });

  // An abort naming another key than the prepared one is malformed: refused, nothing changes.
  test('an abort naming another key is refused (invalid) and leaves the participant consistent', () => {
    const p = prepared(S0);
    expect(dhtError(() => p.abort('t1', 'other'))).toEqual({
      kind: 'invalid',
      reason: 'bad_request',
    });
    expect(p.isPending('k')).toBe(true);
    expect(p.tick(TIMEOUT_AT, ALL).sends).toHaveLength(2);
  });

  // Without a ballot: the coordinator's abort. It proposes commit or abort, never both, so a
  // commit accepted here means the abort is not the coordinator's decision to make any more.
  describe("without a ballot (the coordinator's)", () => {
    test.each<[string, Ballot]>([
      ["at the coordinator's ballot 0", B0],
      ['at a recovery ballot', ballot(2, 3)],
    ])('refused (rejected, commit_accepted) where a commit was accepted %s', (_name, b) => {
      const p = prepared();
      p.accept('t1', 'k', b, committed(4), ALL);
      expect(dhtError(() => p.abort('t1', 'k'))).toEqual({
        kind: 'rejected',
        reason: 'commit_accepted',
      });
      expect(p.isPending('k')).toBe(true);
      expect(p.outcomeOf('t1')).toBeUndefined();
    });

    test.each<[string, (p: Participant) => void]>([
      ['nothing happened since the prepare', () => undefined],
      ['a recovery ballot was promised', (p) => p.promise('t1', 'k', ballot(3, 2), ALL)],
      ['an abort was accepted', (p) => p.accept('t1', 'k', ballot(1, 3), ABORTED, ALL)],
    ])('obeyed when %s', (_name, before) => {
      const p = prepared();
      before(p);
      p.abort('t1', 'k');
      expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
      expect(p.isPending('k')).toBe(false);
    });
  });

  // With a ballot: abort was chosen at that ballot, so no commit accepted below it can be chosen.
  describe('with a ballot (learned from a recovery)', () => {
    test.each<[string, Ballot, Ballot, boolean]>([
      ['a commit accepted at ballot 0, abort learned at 1.2', B0, ballot(1, 2), true],
      ['a commit accepted at 1.1, abort learned at 1.2', ballot(1, 1), ballot(1, 2), true],
      ['a commit accepted at 1.3, abort learned at 2.1', ballot(1, 3), ballot(2, 1), true],
      ['a commit accepted in an older epoch', ballot(5, 3), ballot(1, 1, EPOCH + 1), true],
      ['a commit accepted at the same ballot', ballot(2, 2), ballot(2, 2), false],
      ['a commit accepted at a higher round', ballot(3, 1), ballot(2, 3), false],
      ['a commit accepted at a higher slot', ballot(2, 3), ballot(2, 2), false],
    ])('%s: aborted %p', (_name, acceptedAtBallot, abortBallot, aborts) => {
      const p = prepared();
      p.accept('t1', 'k', acceptedAtBallot, committed(4), ALL);
      if (aborts) {
        p.abort('t1', 'k', abortBallot);
        expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
        expect(p.isPending('k')).toBe(false);
      } else {
        expect(dhtError(() => p.abort('t1', 'k', abortBallot))).toEqual({
          kind: 'rejected',
          reason: 'commit_accepted',
        });
        expect(p.isPending('k')).toBe(true);
      }
    });

    test('nothing or an abort accepted: aborted, whatever the ballot and epoch', () => {
      const none = prepared();
      none.abort('t1', 'k', ballot(1, 1, EPOCH + 2));
      expect(none.outcomeOf('t1')).toEqual({ state: 'aborted' });
      const abortAccepted = prepared();
      abortAccepted.accept('t1', 'k', ballot(4, 3), ABORTED, ALL);
      abortAccepted.abort('t1', 'k', ballot(4, 3));
      expect(abortAccepted.outcomeOf('t1')).toEqual({ state: 'aborted' });
    });
  });
});

// ---- proposer: when a recovery ballot starts ----------------------------------------------------

describe('recovery: when a ballot starts (tick)', () => {
  test.each(REPLICAS)('nothing happens before the prepare timeout and stagger ($id)', (self) => {
    const p = prepared(self);
    for (const at of [T0, T0 + 1, T0 + PREPARE_TIMEOUT_MS / 2, recoveryAt(self) - 1]) {
      expect(p.tick(at, ALL)).toEqual(NOTHING);
    }
    expect(p.isPending('k')).toBe(true);
  });

  test.each([
    { self: S0, stagger: 0 },
    { self: S1, stagger: RECOVERY_STAGGER_MS },
    { self: S2, stagger: 2 * RECOVERY_STAGGER_MS },
  ])(
    '$self.id starts its first ballot $stagger ms after the prepare timeout, round 1 of the epoch',
    ({ self, stagger }) => {
      const p = prepared(self);
      expect(p.tick(TIMEOUT_AT + stagger - 1, ALL)).toEqual(NOTHING);
      const b = ballot(1, slotOf(self));
      expect(p.tick(TIMEOUT_AT + stagger, ALL)).toEqual({
        sends: REPLICAS.filter((r) => r !== self).map((target) => promiseSend(target, b)),
        resolutions: [],
      });
    },
  );

  test('with no stagger configured, every replica starts at the prepare timeout', () => {
    for (const self of REPLICAS) {
      const p = participant(self, { recoveryStaggerMs: 0 });
      p.prepare(request(self), context(), T0);
      expect(p.tick(TIMEOUT_AT - 1, ALL)).toEqual(NOTHING);
      expect(p.tick(TIMEOUT_AT, ALL).sends).toHaveLength(2);
    }
  });

  test('an undecided transaction gets a new, higher ballot every decisionRetryMs + stagger', () => {
    const p = prepared(S2); // slot 3: stagger 200 ms
    const first = recoveryAt(S2);
    const every = DECISION_RETRY_MS + 2 * RECOVERY_STAGGER_MS;
    const round = (r: number): Step => ({
      sends: [promiseSend(S0, ballot(r, 3)), promiseSend(S1, ballot(r, 3))],
      resolutions: [],
    });
    const script: [number, Step][] = [
      [first, round(1)],
      [first + 1, NOTHING],
      [first + every - 1, NOTHING],
      [first + every, round(2)],
      [first + every + 1, NOTHING],
      [first + 2 * every, round(3)],
      // A late tick (the shell was busy) starts one ballot, and the next counts from it.
      [first + 20 * every, round(4)],
      [first + 21 * every - 1, NOTHING],
      [first + 21 * every, round(5)],
    ];
    for (const [now, step] of script) expect(p.tick(now, ALL)).toEqual(step);
    expect(p.isPending('k')).toBe(true);
  });

  test('each transaction keeps its own clock and its own slot', () => {
    const p = participant(S1);
    p.prepare(request(S1, { txid: 'a', key: 'ka' }), context(), T0); // slot 2
    p.prepare(request(S1, { txid: 'b', key: 'kb' }), context(), T0 + 300); // slot 2
    // Slot 1 here: no stagger.
    p.prepare(request(S1, { txid: 'c', key: 'kc', replicas: [S1, S0, S2] }), context(), T0 + 500);
    const started = (now: number): string[] =>
      p.tick(now, ALL).sends.map((s) => `${s.txid} ${describeBallot(s.ballot)}`);
    expect(started(TIMEOUT_AT + 99)).toEqual([]);
    expect(started(TIMEOUT_AT + 100)).toEqual([`a ${EPOCH}.1.2`, `a ${EPOCH}.1.2`]);
    expect(started(TIMEOUT_AT + 400)).toEqual([`b ${EPOCH}.1.2`, `b ${EPOCH}.1.2`]);
    expect(started(TIMEOUT_AT + 500)).toEqual([`c ${EPOCH}.1.1`, `c ${EPOCH}.1.1`]);
    // a's second round: 100 + 500 + 100.
    expect(started(TIMEOUT_AT + 699)).toEqual([]);
    expect(started(TIMEOUT_AT + 700)).toEqual([`a ${EPOCH}.2.2`, `a ${EPOCH}.2.2`]);
  });

  test.each<[string, ViewContext]>([
    ['in no view (expelled)', EXPELLED],
    ['in a view that lists the others only', view([S0, S2])],
    ['in a newer view that lists the others only', view([S0, S2], EPOCH + 1)],
  ])('a server %s proposes nothing, ever', (_name, v) => {
    const p = prepared(S1);
    for (let i = 0; i < 10; i++) {
      expect(p.tick(recoveryAt(S1) + i * 10 * DECISION_RETRY_MS, v)).toEqual(NOTHING);
    }
    expect(p.isPending('k')).toBe(true);
    expect(p.outcomeOf('t1')).toBeUndefined();
  });

  test('three replicas, only this one left in the view: fewer than half, so no ballot ever starts', () => {
    const p = prepared(S1);
    for (let i = 0; i < 10; i++) {
      expect(p.tick(recoveryAt(S1) + i * 10 * DECISION_RETRY_MS, view([S1]))).toEqual(NOTHING);
    }
    expect(p.isPending('k')).toBe(true);
    // Once a peer is back in a view, it goes ahead (here: the next retry, in a new epoch).
    const next = recoveryAt(S1) + 100 * DECISION_RETRY_MS;
    expect(p.tick(next, view([S1, S2], EPOCH + 1)).sends).toEqual([
      promiseSend(S2, ballot(1, 2, EPOCH + 1)),
    ]);
  });

  test.each<[string, ViewContext, ServerRef[]]>([
    ['all three in the view', ALL, [S0, S2]],
    ['s2 out of the view', view([S0, S1]), [S0]],
    ['s0 out of the view', view([S1, S2]), [S2]],
  ])('three replicas, %s: phase 1 goes to the others in the view only', (_name, v, targets) => {
    const p = prepared(S1);
    expect(p.tick(recoveryAt(S1), v)).toEqual({
      sends: targets.map((t) => promiseSend(t, ballot(1, 2))),
      resolutions: [],
    });
  });

  test('a ballot in a later epoch starts at round 1 of that epoch, whatever rounds came before', () => {
    const p = prepared(S1);
    p.promise('t1', 'k', ballot(40, 3), ALL);
    expect(p.tick(recoveryAt(S1), ALL).sends[0]?.ballot).toEqual(ballot(41, 2));
    expect(p.tick(recoveryAt(S1) + 10_000, view(REPLICAS, EPOCH + 1)).sends[0]?.ballot).toEqual(
      ballot(1, 2, EPOCH + 1),
    );
  });

  // Epochs never go back (the view leader continues above every epoch a server reports to it):
  // a view older than a transaction's promise is stale, and nothing is proposed in it.
  test('no ballot starts in a view older than the promise held', () => {
    const p = prepared(S0, [S0]);
    p.epochChanged(T0 + 10);
    expect(p.tick(TIMEOUT_AT, view([S0], 1))).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
  });
});

// ---- proposer: a ballot among three replicas ----------------------------------------------------

describe('recovery: three replicas (2 promises, then accepts from a majority of those in view)', () => {
  /** s1 (slot 2) past its timeout with every replica in view: round 1 under way. */
  function recovering(): Participant {
    const p = prepared(S1);
    expect(p.tick(recoveryAt(S1), ALL).sends).toHaveLength(2);
    return p;
  }
  const B = ballot(1, 2);

  test('nothing accepted anywhere: abort is proposed, chosen at 2 accepts, and learned by the others', () => {
    const p = recovering();
    // One promise and its own make two: phase 2 goes to both others (in the view).
    expect(p.onPromise('t1', S2, B, PROMISED)).toEqual({
      sends: [acceptSend(S0, B, ABORTED), acceptSend(S2, B, ABORTED)],
      resolutions: [],
    });
    expect(p.isPending('k')).toBe(true);
    // The second promise is late: phase 2 is under way already.
    expect(p.onPromise('t1', S0, B, PROMISED)).toEqual(NOTHING);
    // Its own accept and one more: chosen.
    expect(p.onAccepted('t1', S0, B, 'accepted')).toEqual({
      sends: [learnSend(S0, B, ABORTED), learnSend(S2, B, ABORTED)],
      resolutions: [resolved(ABORTED)],
    });
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
    expect(p.isPending('k')).toBe(false);
    // A late accept changes nothing.
    expect(p.onAccepted('t1', S2, B, 'accepted')).toEqual(NOTHING);
  });

  test('a commit accepted here at ballot 0 is proposed again; chosen, it is applied (Resolution.apply)', () => {
    const p = prepared(S1);
    p.accept('t1', 'k', B0, committed(4), ALL);
    p.tick(recoveryAt(S1), ALL);
    expect(p.onPromise('t1', S0, B, PROMISED).sends).toEqual([
      acceptSend(S0, B, committed(4)),
      acceptSend(S2, B, committed(4)),
    ]);
    const step = p.onAccepted('t1', S2, B, 'accepted');
    expect(step).toEqual({
      sends: [learnSend(S0, B, committed(4)), learnSend(S2, B, committed(4))],
      resolutions: [resolved(committed(4))],
    });
    expect(step.resolutions[0]?.apply).toEqual({ key: 'k', value: 'v', version: 4 });
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 4 });
  });

  test.each<[string, Accepted | undefined, Accepted | undefined, TxOutcome]>([
    // [name, accepted here, accepted at the promiser, expected proposal]
    ['nothing anywhere', undefined, undefined, ABORTED],
    ["a commit at the promiser's (ballot 0)", undefined, at(B0, committed(4)), committed(4)],
    ['a commit here (ballot 0)', at(B0, committed(4)), undefined, committed(4)],
    [
      "a commit here at 0, an abort at the promiser's at 1.3",
      at(B0, committed(4)),
      at(ballot(1, 3), ABORTED),
      ABORTED,
    ],
    [
      "an abort here at 1.3, a commit at the promiser's at 0",
      at(ballot(1, 3), ABORTED),
      at(B0, committed(4)),
      ABORTED,
    ],
    [
      "an abort here at 1.3, a commit at the promiser's at 2.1",
      at(ballot(1, 3), ABORTED),
      at(ballot(2, 1), committed(4)),
      committed(4),
    ],
  ])('highest accepted ballot wins: %s', (_name, here, atPeer, expected) => {
    const p = prepared(S1);
    if (here !== undefined) p.accept('t1', 'k', here.ballot, here.outcome, ALL);
    const b = p.tick(recoveryAt(S1), ALL).sends[0]?.ballot as Ballot;
    const answer: DecisionResponse =
      atPeer === undefined ? PROMISED : { state: 'promised', accepted: atPeer };
    expect(p.onPromise('t1', S0, b, answer).sends).toEqual([
      acceptSend(S0, b, expected),
      acceptSend(S2, b, expected),
    ]);
  });

  test('highest accepted ballot wins across epochs: epoch before round', () => {
    const p = prepared(S1);
    p.accept('t1', 'k', ballot(9, 1), ABORTED, ALL); // round 9 of epoch 7
    const later = view(REPLICAS, EPOCH + 2);
    p.epochChanged(T0 + 1);
    const b = ballot(1, 2, EPOCH + 2);
    expect(p.tick(T0 + 1 + RECOVERY_STAGGER_MS, later).sends[0]?.ballot).toEqual(b);
    const accepted = { ballot: ballot(1, 3, EPOCH + 1), outcome: committed(4) }; // round 1, epoch 8
    expect(p.onPromise('t1', S2, b, { state: 'promised', accepted }).sends).toEqual([
      acceptSend(S0, b, committed(4)),
      acceptSend(S2, b, committed(4)),
    ]);
  });

  test('no promise, or unreachable peers: nothing is proposed; the next round tries again', () => {
    const p = recovering();
    expect(p.onPromise('t1', S0, B, 'unreachable')).toEqual(NOTHING);
    expect(p.onPromise('t1', S2, B, 'unreachable')).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
    const next = recoveryAt(S1) + DECISION_RETRY_MS + RECOVERY_STAGGER_MS;
    expect(p.tick(next, ALL).sends).toEqual([
      promiseSend(S0, ballot(2, 2)),
      promiseSend(S2, ballot(2, 2)),
    ]);
    // Answers to the previous round no longer count.
    expect(p.onPromise('t1', S0, B, PROMISED)).toEqual(NOTHING);
    expect(p.onPromise('t1', S0, ballot(2, 2), PROMISED).sends).toHaveLength(2);
  });

  test('refused or unreachable accepts do not count: not chosen', () => {
    const p = recovering();
    p.onPromise('t1', S0, B, PROMISED);
    for (const answer of ['refused', 'unreachable'] as AcceptAnswer[]) {
      expect(p.onAccepted('t1', S0, B, answer)).toEqual(NOTHING);
      expect(p.onAccepted('t1', S2, B, answer)).toEqual(NOTHING);
    }
    expect(p.isPending('k')).toBe(true);
  });

  test('an accept answer before phase 2, or for another ballot, is ignored', () => {
    const p = recovering();
    expect(p.onAccepted('t1', S0, B, 'accepted')).toEqual(NOTHING); // phase 1 still
    p.onPromise('t1', S0, B, PROMISED);
    expect(p.onAccepted('t1', S0, ballot(1, 1), 'accepted')).toEqual(NOTHING);
    expect(p.onAccepted('t1', S0, B0, 'accepted')).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
    expect(p.onAccepted('t1', S0, B, 'accepted').resolutions).toEqual([resolved(ABORTED)]);
  });

  test('answers about a transaction not pending here are ignored', () => {
    const p = recovering();
    expect(p.onPromise('t9', S0, B, { state: 'committed', version: 2 })).toEqual(NOTHING);
    expect(p.onAccepted('t9', S0, B, 'accepted')).toEqual(NOTHING);
    expect(p.outcomeOf('t9')).toBeUndefined();
    expect(participant().onPromise('t1', S0, B, PROMISED)).toEqual(NOTHING);
  });

  test.each<[string, DecisionResponse]>([
    ['committed', { state: 'committed', version: 9 }],
    ['aborted', { state: 'aborted' }],
  ])('a peer that decided answers %s: that is the outcome, at once', (_name, answer) => {
    const p = recovering();
    const step = p.onPromise('t1', S2, B, answer);
    const outcome: TxOutcome =
      answer.state === 'committed' ? committed(answer.version) : { state: 'aborted' };
    // The peer knows already; the third replica learns it by its own recovery.
    expect(step).toEqual({ sends: [], resolutions: [resolved(outcome)] });
    expect(p.outcomeOf('t1')).toEqual(outcome);
    // Even an answer to an old round or in phase 2 is the outcome (a decided peer is final).
    const q = recovering();
    q.onPromise('t1', S0, B, PROMISED);
    expect(q.onPromise('t1', S2, ballot(0, 2), answer).resolutions).toEqual([resolved(outcome)]);
  });

  test('a superseded answer proposes nothing now; the next round goes above the ballot it names', () => {
    const p = recovering();
    expect(p.onPromise('t1', S0, B, { state: 'superseded', promised: ballot(5, 1) })).toEqual(
      NOTHING,
    );
    // A lower superseding ballot does not lower the bar.
    expect(p.onPromise('t1', S2, B, { state: 'superseded', promised: ballot(3, 3) })).toEqual(
      NOTHING,
    );
    const next = recoveryAt(S1) + DECISION_RETRY_MS + RECOVERY_STAGGER_MS;
    expect(p.tick(next, ALL).sends[0]?.ballot).toEqual(ballot(6, 2));
  });

  test('promised a higher ballot meanwhile (another proposer): no phase 2 of its own', () => {
    const p = recovering();
    expect(p.promise('t1', 'k', ballot(1, 3), ALL)).toEqual({ state: 'promised' });
    expect(p.onPromise('t1', S0, B, PROMISED)).toEqual(NOTHING);
    expect(p.onPromise('t1', S2, B, PROMISED)).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
    // It accepts the other proposer's value, and the next round of its own carries it.
    p.accept('t1', 'k', ballot(1, 3), ABORTED, ALL);
    const next = recoveryAt(S1) + DECISION_RETRY_MS + RECOVERY_STAGGER_MS;
    expect(p.tick(next, ALL).sends[0]?.ballot).toEqual(ballot(2, 2));
    expect(p.onPromise('t1', S0, ballot(2, 2), PROMISED).sends).toEqual([
      acceptSend(S0, ballot(2, 2), ABORTED),
      acceptSend(S2, ballot(2, 2), ABORTED),
    ]);
  });

  test('s2 out of the view: one promise from s0, then s0 must accept; both others learn', () => {
    const p = prepared(S1);
    const v = view([S0, S1]);
    expect(p.tick(recoveryAt(S1), v).sends).toEqual([promiseSend(S0, B)]);
    expect(p.onPromise('t1', S0, B, PROMISED)).toEqual({
      sends: [acceptSend(S0, B, ABORTED)],
      resolutions: [],
    });
    expect(p.onAccepted('t1', S0, B, 'accepted')).toEqual({
      sends: [learnSend(S0, B, ABORTED), learnSend(S2, B, ABORTED)],
      resolutions: [resolved(ABORTED)],
    });
  });

  test("only this replica in the view: no ballot, but a peer's decision is still learned", () => {
    const p = prepared(S1);
    expect(p.tick(recoveryAt(S1), view([S1]))).toEqual(NOTHING);
    expect(p.commit('t1', 'k', 4)).toEqual({ key: 'k', value: 'v', version: 4 });
  });
});

// ---- proposer: two replicas and one --------------------------------------------------------------

describe('recovery: two replicas (1 promise, accepts from every replica in view)', () => {
  const PAIR = [S0, S1];
  const B = ballot(1, 2);

  test('both in the view: phase 2 at once (its own promise suffices), but the other must accept', () => {
    const p = prepared(S1, PAIR);
    expect(p.tick(recoveryAt(S1, PAIR), view(PAIR))).toEqual({
      sends: [promiseSend(S0, B), acceptSend(S0, B, ABORTED)],
      resolutions: [],
    });
    expect(p.isPending('k')).toBe(true);
    expect(p.onPromise('t1', S0, B, PROMISED)).toEqual(NOTHING);
    expect(p.onAccepted('t1', S0, B, 'refused')).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
  });

  test('both in the view, the other accepts: chosen, and learned by the other', () => {
    const p = prepared(S1, PAIR);
    p.tick(recoveryAt(S1, PAIR), view(PAIR));
    expect(p.onAccepted('t1', S0, B, 'accepted')).toEqual({
      sends: [learnSend(S0, B, ABORTED)],
      resolutions: [resolved(ABORTED)],
    });
  });

  test('with a commit accepted here, the commit is proposed and, accepted by both, applied', () => {
    const p = prepared(S1, PAIR);
    p.accept('t1', 'k', B0, committed(4), view(PAIR));
    expect(p.tick(recoveryAt(S1, PAIR), view(PAIR)).sends).toEqual([
      promiseSend(S0, B),
      acceptSend(S0, B, committed(4)),
    ]);
    expect(p.onAccepted('t1', S0, B, 'accepted').resolutions).toEqual([resolved(committed(4))]);
  });

  test('the other left the view: the survivor decides alone, at once, and tells the other', () => {
    const p = prepared(S1, PAIR);
    expect(p.tick(recoveryAt(S1, PAIR), view([S1]))).toEqual({
      sends: [learnSend(S0, B, ABORTED)],
      resolutions: [resolved(ABORTED)],
    });
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
  });

  test('the other left the view, a commit accepted here: the survivor commits alone', () => {
    const p = prepared(S0, PAIR);
    p.accept('t1', 'k', B0, committed(4), view(PAIR));
    const b = ballot(1, 1, EPOCH + 1);
    p.epochChanged(T0 + 1);
    expect(p.tick(T0 + 1, view([S0], EPOCH + 1))).toEqual({
      sends: [learnSend(S1, b, committed(4))],
      resolutions: [resolved(committed(4))],
    });
  });

  test('this one left the view: nothing', () => {
    const p = prepared(S1, PAIR);
    expect(p.tick(recoveryAt(S1, PAIR), view([S0]))).toEqual(NOTHING);
  });
});

describe('recovery: a single replica', () => {
  test('decides alone at its timeout: abort when nothing was accepted, no message to send', () => {
    const p = prepared(S1, [S1]);
    expect(p.tick(TIMEOUT_AT - 1, ALL)).toEqual(NOTHING);
    expect(p.tick(TIMEOUT_AT, ALL)).toEqual({
      sends: [],
      resolutions: [resolved(ABORTED)],
    });
    expect(p.isPending('k')).toBe(false);
  });

  test('decides alone at its timeout: the commit accepted at ballot 0 is applied', () => {
    const p = prepared(S1, [S1]);
    p.accept('t1', 'k', B0, committed(4), ALL);
    expect(p.tick(TIMEOUT_AT, view([S1]))).toEqual({
      sends: [],
      resolutions: [resolved(committed(4))],
    });
  });

  test('expelled, it waits', () => {
    const p = prepared(S1, [S1]);
    expect(p.tick(TIMEOUT_AT, EXPELLED)).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
  });

  test('its decision is not read, nor counted settled, until the shell reports it synced', () => {
    // The coordinator's accept was taken in memory; its sync is still in flight when the
    // timeout fires, and the recovery decides from it alone: a crash now would undo it.
    const p = prepared(S1, [S1]);
    p.accept('t1', 'k', B0, committed(4), ALL);
    const step = p.tick(TIMEOUT_AT, view([S1]));
    expect(step.resolutions).toEqual([resolved(committed(4))]);
    expect(p.isPending('k')).toBe(false);
    expect(p.refusesReads('k')).toBe(true);
    expect(p.unsettledCount).toBe(1); // a copy phase waits for it too
    expect(p.refusesReads('other')).toBe(false);
    p.resolutionsSynced(step.resolutions);
    expect(p.refusesReads('k')).toBe(false);
    expect(p.unsettledCount).toBe(0);
  });

  test('two decisions on one key: reads wait for the sync of both', () => {
    const p = prepared(S1, [S1]);
    const first = p.tick(TIMEOUT_AT, view([S1])); // t1 aborted
    p.prepare(request(S1, { txid: 't2', replicas: [S1] }), context(), TIMEOUT_AT);
    const second = p.tick(TIMEOUT_AT + PREPARE_TIMEOUT_MS, view([S1]));
    expect(second.resolutions).toEqual([resolved(ABORTED, 't2')]);
    p.resolutionsSynced(first.resolutions);
    expect(p.refusesReads('k')).toBe(true);
    p.resolutionsSynced(second.resolutions);
    expect(p.refusesReads('k')).toBe(false);
  });
});

// ---- epochChanged: a new view was installed ----------------------------------------------------

describe('epochChanged', () => {
  const NEXT = view(REPLICAS, EPOCH + 1);

  test('nothing pending: nothing to do', () => {
    const p = participant();
    expect(p.epochChanged(T0)).toBeUndefined();
    expect(p.tick(T0, NEXT)).toEqual(NOTHING);
  });

  test('decides nothing by itself', () => {
    const p = prepared(S0);
    expect(p.epochChanged(T0 + 10)).toBeUndefined();
    expect(p.isPending('k')).toBe(true);
    expect(p.outcomeOf('t1')).toBeUndefined();
    // The coordinator's ballot 0 is dead here now (another epoch), but a decision is obeyed.
    expect(dhtError(() => p.accept('t1', 'k', B0, committed(4), NEXT)).kind).toBe('retry');
    expect(p.commit('t1', 'k', 4)).toEqual({ key: 'k', value: 'v', version: 4 });
  });

  test.each([
    { self: S0, stagger: 0 },
    { self: S1, stagger: RECOVERY_STAGGER_MS },
    { self: S2, stagger: 2 * RECOVERY_STAGGER_MS },
  ])(
    '$self.id recovers at once in the new epoch, staggered by $stagger ms, long before the prepare timeout',
    ({ self, stagger }) => {
      const p = prepared(self);
      const at = T0 + 10;
      p.epochChanged(at);
      if (stagger > 0) expect(p.tick(at + stagger - 1, NEXT)).toEqual(NOTHING);
      const b = ballot(1, slotOf(self), EPOCH + 1);
      expect(p.tick(at + stagger, NEXT)).toEqual({
        sends: REPLICAS.filter((r) => r !== self).map((t) => promiseSend(t, b)),
        resolutions: [],
      });
      // Then the usual rhythm.
      const every = DECISION_RETRY_MS + stagger;
      expect(p.tick(at + stagger + every - 1, NEXT)).toEqual(NOTHING);
      expect(p.tick(at + stagger + every, NEXT).sends[0]?.ballot).toEqual(
        ballot(2, slotOf(self), EPOCH + 1),
      );
    },
  );

  test('the ballot of the old epoch is dropped: its late answers count for nothing', () => {
    const p = prepared(S1);
    const old = ballot(1, 2);
    p.tick(recoveryAt(S1), ALL);
    p.epochChanged(recoveryAt(S1) + 1);
    expect(p.onPromise('t1', S0, old, PROMISED)).toEqual(NOTHING);
    expect(p.onPromise('t1', S2, old, PROMISED)).toEqual(NOTHING);
    expect(p.onAccepted('t1', S0, old, 'accepted')).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
    // But a decided peer's answer is the outcome, whatever the epoch.
    expect(p.onPromise('t1', S2, old, { state: 'aborted' }).resolutions).toEqual([
      resolved(ABORTED),
    ]);
  });

  test('in phase 2 of the old epoch: dropped too, no decision from its accepts', () => {
    const p = prepared(S1);
    const old = ballot(1, 2);
    p.tick(recoveryAt(S1), ALL);
    p.onPromise('t1', S0, old, PROMISED);
    p.epochChanged(recoveryAt(S1) + 1);
    expect(p.onAccepted('t1', S0, old, 'accepted')).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
    // The new epoch's ballot finds its own accepted abort (old epoch) and proposes it again.
    const b = ballot(1, 2, EPOCH + 1);
    expect(p.tick(recoveryAt(S1) + 1 + RECOVERY_STAGGER_MS, NEXT).sends[0]?.ballot).toEqual(b);
    expect(p.onPromise('t1', S0, b, PROMISED).sends).toEqual([
      acceptSend(S0, b, ABORTED),
      acceptSend(S2, b, ABORTED),
    ]);
  });

  test('each pending transaction by its own slot; decided ones untouched', () => {
    const p = participant(S1);
    p.prepare(request(S1, { txid: 'first', key: 'a', replicas: [S1, S0, S2] }), context(), T0);
    p.prepare(request(S1, { txid: 'second', key: 'b' }), context(), T0);
    p.prepare(request(S1, { txid: 'done', key: 'c', replicas: [S1, S2] }), context(), T0);
    p.commit('done', 'c', 4);
    p.epochChanged(T0 + 1);
    const txids = (now: number): string[] => [
      ...new Set(p.tick(now, NEXT).sends.map((s) => s.txid)),
    ];
    expect(txids(T0 + 1)).toEqual(['first']);
    expect(txids(T0 + 1 + RECOVERY_STAGGER_MS)).toEqual(['second']);
    expect(p.outcomeOf('done')).toEqual({ state: 'committed', version: 4 });
    expect([p.isPending('a'), p.isPending('b'), p.isPending('c')]).toEqual([true, true, false]);
  });

  test('a new view without this server: recovery is scheduled, but nothing is proposed', () => {
    const p = prepared(S1);
    p.epochChanged(T0 + 1);
    expect(p.tick(T0 + 1 + RECOVERY_STAGGER_MS, view([S0, S2], EPOCH + 1))).toEqual(NOTHING);
    expect(p.tick(T0 + 1 + RECOVERY_STAGGER_MS, EXPELLED)).toEqual(NOTHING);
    expect(p.isPending('k')).toBe(true);
  });
});

// ---- bounded memory -----------------------------------------------------------------------------

describe('decisions remembered', () => {
  test('real decisions and fences are bounded separately: made-up txids never evict a commit', () => {
    const max = 3;
    const p = participant(S1, { decisionsRememberedMax: max });
    p.prepare(request(S1, { txid: 'c1' }), context(), T0);
    p.commit('c1', 'k', 4);
    // Anyone can name unknown txids: each is fenced (aborted), in a set of its own.
    for (let i = 0; i < 50; i++) p.abort(`many-${i}`, 'k');
    p.promise('a3', 'k', ballot(1, 1), ALL);
    expect(p.outcomeOf('c1')).toEqual({ state: 'committed', version: 4 });
    expect(p.outcomeOf('many-47')).toBeUndefined();
    expect(p.outcomeOf('many-48')).toEqual({ state: 'aborted' });
    expect(p.outcomeOf('many-49')).toEqual({ state: 'aborted' });
    expect(p.outcomeOf('a3')).toEqual({ state: 'aborted' });
  });

  test('real decisions are bounded by decisionsRememberedMax, forgetting the oldest first', () => {
    const p = participant(S1, { decisionsRememberedMax: 2 });
    for (const [i, key] of ['k1', 'k2', 'k3'].entries()) {
      p.prepare(request(S1, { txid: `c${i}`, key }), context(), T0);
      p.commit(`c${i}`, key, 4);
    }
    expect(p.outcomeOf('c0')).toBeUndefined();
    expect(p.outcomeOf('c1')).toEqual({ state: 'committed', version: 4 });
    expect(p.outcomeOf('c2')).toEqual({ state: 'committed', version: 4 });
  });

  test('decisions reached by recovery count towards the same bound', () => {
    const p = participant(S1, { decisionsRememberedMax: 1 });
    p.prepare(request(S1, { txid: 'r1', key: 'k1', replicas: [S1] }), context(), T0);
    p.prepare(request(S1, { txid: 'r2', key: 'k2', replicas: [S1] }), context(), T0 + 1);
    p.tick(TIMEOUT_AT + 1, ALL);
    expect(p.outcomeOf('r1')).toBeUndefined();
    expect(p.outcomeOf('r2')).toEqual({ state: 'aborted' });
  });

  test("a forgotten commit is still answered as committed from the key's last commit", () => {
    const p = participant(S0, { decisionsRememberedMax: 1 });
    p.prepare(request(S0, { txid: 'c1', key: 'k' }), context(), T0);
    p.commit('c1', 'k', 4);
    p.prepare(request(S0, { txid: 'c2', key: 'other' }), context(), T0);
    p.commit('c2', 'other', 5); // evicts c1 from the decision log
    expect(p.outcomeOf('c1')).toBeUndefined();
    expect(p.promise('c1', 'k', ballot(1, 2), ALL)).toEqual({ state: 'committed', version: 4 });
    // In any epoch, like any decided transaction.
    expect(p.promise('c1', 'k', ballot(1, 2, 99), EXPELLED)).toEqual({
      state: 'committed',
      version: 4,
    });
    // Under another key it cannot tell, and answers as for a transaction never prepared here.
    expect(p.promise('c1', 'other', ballot(1, 2), ALL)).toEqual({ state: 'aborted' });
    expect(p.promise('c9', 'k', ballot(1, 2), ALL)).toEqual({ state: 'aborted' });
  });

  test('a participant needs room for one decision, positive timeouts and a stagger of 0 or more', () => {
    const config: ParticipantConfig = {
      selfId: 's1',
      prepareTimeoutMs: 1,
      decisionRetryMs: 1,
      recoveryStaggerMs: 0,
      decisionsRememberedMax: 1,
    };
    expect(() => new Participant(config)).not.toThrow();
    for (const bad of [
      { decisionsRememberedMax: 0 },
      { prepareTimeoutMs: 0 },
      { decisionRetryMs: 0 },
      { recoveryStaggerMs: -1 },
    ]) {
      expect(thrown(() => new Participant({ ...config, ...bad }))).toBeInstanceOf(AssertionError);
    }
  });
});

// ---- the parts together: acceptors and proposers wired by hand -----------------------------------

describe('acceptors and proposers wired together', () => {
  interface Node {
    readonly p: Participant;
    view: ViewContext;
  }

  /** Three replicas, each holding t1 prepared at T0 in EPOCH with version 3. */
  function cluster(): Record<string, Node> {
    return Object.fromEntries(REPLICAS.map((s) => [s.id, { p: prepared(s), view: ALL }]));
  }

  /**
   * Delivers what `from` asks to send, and every answer and message that follows, in order, the
   * way the server shell does (a refused request answers 'unreachable' or 'refused'). Messages
   * matching `lost` are dropped. Returns every resolution, by server.
   */
  function pump(
    nodes: Record<string, Node>,
    from: string,
    first: Step,
    lost: (from: string, send: PeerSend) => boolean = () => false,
  ): Record<string, TxOutcome[]> {
    const resolutions: Record<string, TxOutcome[]> = {};
    const note = (id: string, rs: readonly Resolution[]): void => {
      for (const r of rs) (resolutions[id] ??= []).push(r.outcome);
    };
    const queue: [string, PeerSend][] = first.sends.map((s) => [from, s]);
    note(from, first.resolutions);
    const carry = (id: string, step: Step): void => {
      note(id, step.resolutions);
      queue.push(...step.sends.map((s): [string, PeerSend] => [id, s]));
    };
    while (queue.length > 0) {
      const [sender, send] = queue.shift() as [string, PeerSend];
      if (lost(sender, send)) continue;
      const target = nodes[send.target.id];
      const proposer = nodes[sender];
      switch (send.type) {
        case 'promise': {
          let answer: DecisionResponse | 'unreachable';
          try {
            answer = target.p.promise(send.txid, send.key, send.ballot, target.view);
          } catch (err) {
            if (!(err instanceof DhtError)) throw err;
            answer = 'unreachable';
          }
          carry(sender, proposer.p.onPromise(send.txid, send.target, send.ballot, answer));
          break;
        }
        case 'accept': {
          let answer: AcceptAnswer = 'accepted';
          try {
            target.p.accept(send.txid, send.key, send.ballot, send.outcome, target.view);
          } catch (err) {
            if (!(err instanceof DhtError)) throw err;
            answer = 'refused';
          }
          carry(sender, proposer.p.onAccepted(send.txid, send.target, send.ballot, answer));
          break;
        }
        case 'learn':
          try {
            if (send.outcome.state === 'committed') {
              const apply = target.p.commit(send.txid, send.key, send.outcome.version);
              if (apply !== undefined) (resolutions[send.target.id] ??= []).push(send.outcome);
            } else {
              target.p.abort(send.txid, send.key, send.ballot);
              (resolutions[send.target.id] ??= []).push(send.outcome);
            }
          } catch (err) {
            if (!(err instanceof DhtError)) throw err;
          }
          break;
      }
    }
    return resolutions;
  }

  const outcomes = (nodes: Record<string, Node>): Record<string, TxOutcome | undefined> =>
    Object.fromEntries(Object.entries(nodes).map(([id, n]) => [id, n.p.outcomeOf('t1')]));

  test.each(REPLICAS)(
    'a commit accepted by a majority at ballot 0 survives the coordinator: $id recovers it',
    (recoverer) => {
      // s0 and s1 accepted; whichever promise reaches the recoverer (the other may be lost).
      const others = REPLICAS.filter((r) => r !== recoverer);
      for (const lostPeer of [undefined, ...others]) {
        const nodes = cluster();
        nodes.s0.p.accept('t1', 'k', B0, committed(4), ALL);
        nodes.s1.p.accept('t1', 'k', B0, committed(4), ALL);
        const step = nodes[recoverer.id].p.tick(recoveryAt(recoverer), ALL);
        pump(nodes, recoverer.id, step, (_f, s) => s.type === 'promise' && s.target === lostPeer);
        expect(outcomes(nodes)).toEqual({ s0: committed(4), s1: committed(4), s2: committed(4) });
      }
    },
  );

  test('a commit accepted by one replica only may end either way, but the same everywhere', () => {
    // s0 accepted the coordinator's commit; s2 recovers hearing s1 first (nothing accepted).
    const nodes = cluster();
    nodes.s0.p.accept('t1', 'k', B0, committed(4), ALL);
    const step = nodes.s2.p.tick(recoveryAt(S2), ALL);
    const order = pump(nodes, 's2', step, (_f, s) => s.type === 'promise' && s.target === S0);
    expect(order.s2).toEqual([ABORTED]);
    // s0 learns abort at ballot 1.3, above the commit it accepted at ballot 0.
    expect(outcomes(nodes)).toEqual({ s0: ABORTED, s1: ABORTED, s2: ABORTED });
    // The coordinator's late accept is refused everywhere: it can no longer reach a majority.
    for (const n of Object.values(nodes)) {
      expect(dhtError(() => n.p.accept('t1', 'k', B0, committed(4), ALL)).kind).toBe('rejected');
    }

    // Hearing s0 first, s2 proposes the commit instead.
    const other = cluster();
    other.s0.p.accept('t1', 'k', B0, committed(4), ALL);
    pump(other, 's2', other.s2.p.tick(recoveryAt(S2), ALL));
    expect(outcomes(other)).toEqual({ s0: committed(4), s1: committed(4), s2: committed(4) });
  });

  test('duelling proposers: the higher ballot wins; every replica ends with one outcome', () => {
    const nodes = cluster();
    nodes.s0.p.accept('t1', 'k', B0, committed(4), ALL);
    // s1 and s2 both start before either hears the other (same round, different slots).
    const s1Step = nodes.s1.p.tick(recoveryAt(S1), ALL);
    const s2Step = nodes.s2.p.tick(recoveryAt(S2), ALL);
    expect(s1Step.sends[0]?.ballot).toEqual(ballot(1, 2));
    expect(s2Step.sends[0]?.ballot).toEqual(ballot(1, 3));
    // s1 hears s0's promise (and s2's superseded) but its accepts are lost; s2 then runs.
    expect(pump(nodes, 's1', s1Step, (_f, s) => s.type === 'accept')).toEqual({});
    expect(pump(nodes, 's2', s2Step)).toEqual({
      s2: [committed(4)],
      s0: [committed(4)],
      s1: [committed(4)],
    });
    expect(outcomes(nodes)).toEqual({ s0: committed(4), s1: committed(4), s2: committed(4) });
  });

  test('a proposer left behind in an old epoch gets no promise from replicas that moved on', () => {
    const nodes = cluster();
    nodes.s0.view = view([S0, S1], EPOCH + 1);
    nodes.s1.view = view([S0, S1], EPOCH + 1);
    nodes.s0.p.epochChanged(T0 + 1);
    nodes.s1.p.epochChanged(T0 + 1);
    // s2 still believes in EPOCH with everyone in it: its ballot 7.1.3 is refused by both.
    const stale = nodes.s2.p.tick(recoveryAt(S2), ALL);
    expect(pump(nodes, 's2', stale)).toEqual({});
    expect(outcomes(nodes)).toEqual({ s0: undefined, s1: undefined, s2: undefined });
    // The survivors of the new epoch decide, and tell s2.
    pump(nodes, 's0', nodes.s0.p.tick(T0 + 1, nodes.s0.view));
    expect(outcomes(nodes)).toEqual({ s0: ABORTED, s1: ABORTED, s2: ABORTED });
  });

  test('two replicas: the one that accepted nothing proposes abort; the commit was not chosen', () => {
    // s0 accepted the coordinator's commit, s1 did not (its accept is late): commit needs both.
    const PAIR = [S0, S1];
    const nodes: Record<string, Node> = {
      s0: { p: prepared(S0, PAIR), view: view(PAIR) },
      s1: { p: prepared(S1, PAIR), view: view(PAIR) },
    };
    nodes.s0.p.accept('t1', 'k', B0, committed(4), view(PAIR));
    pump(nodes, 's1', nodes.s1.p.tick(recoveryAt(S1, PAIR), view(PAIR)));
    expect(outcomes(nodes)).toEqual({ s0: ABORTED, s1: ABORTED });
  });
});

// ---- durability: what a restarted participant takes back ------------------------------------------

describe('durable state (takeChanges, restore, keepChanges)', () => {
  /** The records a shell would hold after writing every change so far (as participant-records). */
  function applyChanges(
    tables: Map<string, Map<string, unknown>>,
    changes: readonly ParticipantChange[],
  ): void {
    for (const c of changes) {
      let rows = tables.get(c.table);
      if (rows === undefined) tables.set(c.table, (rows = new Map()));
      if (c.record === undefined) rows.delete(c.key);
      else rows.set(c.key, JSON.parse(JSON.stringify(c.record)));
    }
  }

  function restored(tables: Map<string, Map<string, unknown>>, self = S1): Participant {
    const p = participant(self);
    const rows = <T>(t: string) => [...(tables.get(t) ?? new Map<string, T>())] as [string, T][];
    p.restore(
      {
        prepared: rows<PreparedRecord>('prepared'),
        decided: rows<DecisionRecord>('decided'),
        lastCommits: rows<LastCommitRecord>('last-commit'),
      },
      T0 + 50,
    );
    return p;
  }

  test('a restart keeps votes, promises, acceptances, decisions, fences and last commits', () => {
    const tables = new Map<string, Map<string, unknown>>();
    const p = participant(S1);
    // t1: prepared, then promised a recovery ballot and accepted a commit at it.
    expect(p.prepare(request(S1), context(), T0).vote).toBe('yes');
    p.promise('t1', 'k', ballot(2, 1), ALL);
    p.accept('t1', 'k', ballot(2, 1), committed(4), ALL);
    // t2: prepared and committed; t3: prepared and aborted; t4: never prepared, fenced.
    p.prepare(request(S1, { txid: 't2', key: 'k2' }), context(), T0);
    p.commit('t2', 'k2', 4);
    p.prepare(request(S1, { txid: 't3', key: 'k3' }), context(), T0);
    p.abort('t3', 'k3');
    p.promise('t4', 'k4', ballot(1, 1), ALL);
    applyChanges(tables, p.takeChanges());
    expect(p.takeChanges()).toEqual([]); // taken once

    const q = restored(tables);
    expect(q.isPending('k')).toBe(true);
    expect(q.outcomeOf('t2')).toEqual(committed(4));
    expect(q.outcomeOf('t3')).toEqual(ABORTED);
    expect(q.outcomeOf('t4')).toEqual(ABORTED);
    // The promise holds: a lower ballot is refused; what was accepted is reported.
    expect(q.promise('t1', 'k', ballot(1, 3), ALL)).toEqual({
      state: 'superseded',
      promised: ballot(2, 1),
    });
    expect(q.promise('t1', 'k', ballot(3, 3), ALL)).toEqual({
      state: 'promised',
      accepted: at(ballot(2, 1), committed(4)),
    });
    // A late prepare of the fenced transaction is still refused.
    expect(q.prepare(request(S1, { txid: 't4', key: 'k4' }), context(), T0).vote).toBe('no');
  });

  test('a promise alone (nothing accepted) is a change to write: a restart still refuses lower ballots', () => {
    const tables = new Map<string, Map<string, unknown>>();
    const p = participant(S1);
    p.prepare(request(S1), context(), T0);
    applyChanges(tables, p.takeChanges());
    expect(p.promise('t1', 'k', ballot(2, 3), ALL)).toEqual(PROMISED);
    applyChanges(tables, p.takeChanges()); // what the shell syncs before it answers the promise
    const q = restored(tables);
    // The coordinator's late accept at ballot 0 must still be refused after the restart.
    expect(dhtError(() => q.accept('t1', 'k', B0, committed(4), ALL))).toEqual({
      kind: 'rejected',
      reason: 'ballot_superseded',
    });
  });

  test('a restored undecided transaction is recovered at once (staggered), not after a timeout', () => {
    const tables = new Map<string, Map<string, unknown>>();
    const p = participant(S1);
    p.prepare(request(S1), context(), T0);
    applyChanges(tables, p.takeChanges());
    const q = restored(tables);
    // s1 is slot 2: one stagger after the restore, well before a prepare timeout.
    expect(q.tick(T0 + 50 + RECOVERY_STAGGER_MS, ALL).sends).toHaveLength(2);
  });

  test('a decision removes the prepared record; changes not written are taken again', () => {
    const tables = new Map<string, Map<string, unknown>>();
    const p = participant(S1);
    p.prepare(request(S1), context(), T0);
    applyChanges(tables, p.takeChanges());
    p.commit('t1', 'k', 4);
    const changes = p.takeChanges();
    p.keepChanges(changes); // the store refused them
    const again = p.takeChanges();
    expect(again).toEqual(changes);
    applyChanges(tables, again);
    expect(tables.get('prepared')?.size).toBe(0);
    expect(restored(tables).outcomeOf('t1')).toEqual(committed(4));
  });
});

describe('a commit answered before its records are synced (acceptSynced, commitSyncedAsAccepted)', () => {
  test('only the synced acceptance of that very commit, at that version, counts', () => {
    const p = prepared(S1);
    p.accept('t1', 'k', B0, committed(4), ALL);
    expect(p.commitSyncedAsAccepted('t1', 4)).toBe(false); // not synced yet
    p.acceptSynced('t1', committed(4));
    expect(p.commitSyncedAsAccepted('t1', 4)).toBe(true);
    expect(p.commitSyncedAsAccepted('t1', 5)).toBe(false); // another version is not on disk
  });

  test('an older acceptance synced while a newer one of another outcome is not: nothing counts', () => {
    // The rule itself (honest peers cannot produce this order): the sync of the abort accepted at
    // 1.3 completes after a commit at 2.1 was accepted, which is not synced yet.
    const p = prepared(S1);
    p.accept('t1', 'k', ballot(1, 3), ABORTED, ALL);
    p.accept('t1', 'k', ballot(2, 1), committed(4), ALL);
    p.acceptSynced('t1', ABORTED);
    expect(p.commitSyncedAsAccepted('t1', 4)).toBe(false);
    p.acceptSynced('t1', committed(4));
    expect(p.commitSyncedAsAccepted('t1', 4)).toBe(true);
  });
});
