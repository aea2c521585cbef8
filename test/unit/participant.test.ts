// The 2PC participant (server/participant.ts) as a pure state machine: every transition, with
// time passed in as an argument and moved forward by hand. The last block runs short stories on
// the in-memory cluster of test/support/core-harness.ts: a coordinator (and a primary) dying at
// each point of the protocol, and the participants agreeing on the outcome without it.

import { AssertionError } from '../../lib/assert';
import { DhtError } from '../../lib/errors';
import type { DecisionResponse, PrepareRequest, ServerRef } from '../../lib/messages';
import { Participant, type PrepareContext, type Vote } from '../../server/participant';
import { CoreCluster, HARNESS_CONFIG } from '../support/core-harness';

const PREPARE_TIMEOUT_MS = 5000;
const DECISION_RETRY_MS = 500;
const EPOCH = 7;
const T0 = 1_000_000; // the clock is arbitrary; start away from 0 so "0" is never special

const ref = (id: string, port: number): ServerRef => ({ id, address: `127.0.0.1:${port}` });
const S0 = ref('s0', 38000); // the primary: the decision point
const S1 = ref('s1', 38001);
const S2 = ref('s2', 38002);
const REPLICAS = [S0, S1, S2];
const ALL_IN_VIEW: ReadonlySet<string> = new Set(['s0', 's1', 's2']);
const PRIMARY_GONE: ReadonlySet<string> = new Set(['s1', 's2']);

function participant(self: ServerRef = S1, decisionsRememberedMax = 100): Participant {
  return new Participant({
    selfId: self.id,
    prepareTimeoutMs: PREPARE_TIMEOUT_MS,
    decisionRetryMs: DECISION_RETRY_MS,
    decisionsRememberedMax,
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
  return { epoch: EPOCH, rebalancing: false, currentVersion: 3, ...overrides };
}

/** A participant (s1 unless told) holding transaction t1 on key k, prepared at T0 with version 3. */
function prepared(self: ServerRef = S1): Participant {
  const p = participant(self);
  expect(p.prepare(request(self), context(), T0)).toEqual({ vote: 'yes', version: 3 });
  return p;
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
    p.prepare(request(S0), context(), T0 + PREPARE_TIMEOUT_MS - 1);
    expect(p.tick(T0 + PREPARE_TIMEOUT_MS).resolutions).toHaveLength(1);
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
  });

  test.each<[string, (p: Participant) => void]>([
    ['committed', (p) => p.commit('t1', 'k', 4)],
    ['aborted', (p) => p.abort('t1', 'k')],
    [
      'aborted at the decision point on its timeout',
      (p) => p.answer('t1', T0 + PREPARE_TIMEOUT_MS),
    ],
  ])('a prepare of a txid already %s is refused (kind aborted)', (_name, decide) => {
    const p = prepared(S0);
    decide(p);
    expect(refusal(p.prepare(request(S0), context(), T0 + PREPARE_TIMEOUT_MS + 1))).toEqual({
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
});

// ---- commit -----------------------------------------------------------------------------------

describe('commit', () => {
  test('applies the prepared value with the coordinator version', () => {
    const p = prepared();
    expect(p.commit('t1', 'k', 8)).toEqual({ key: 'k', value: 'v', version: 8 });
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 8 });
    expect(p.isPending('k')).toBe(false);
    expect(p.pendingCount).toBe(0);
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

  test('a commit of a txid fenced by an answer throws kind aborted', () => {
    const p = participant();
    expect(p.answer('t1', T0)).toEqual({ state: 'aborted' });
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
});

// ---- abort ------------------------------------------------------------------------------------

describe('abort', () => {
  test('aborts a prepared transaction and frees its key; nothing is applied', () => {
    const p = prepared();
    p.abort('t1', 'k');
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
    expect(p.isPending('k')).toBe(false);
    expect(p.tick(T0 + 10 * PREPARE_TIMEOUT_MS)).toEqual({ asks: [], resolutions: [] });
  });

  test('is idempotent', () => {
    const p = prepared();
    p.abort('t1', 'k');
    expect(() => p.abort('t1', 'k')).not.toThrow();
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
  });

  test('of a txid never prepared here fences a late prepare', () => {
    const p = participant();
    p.abort('t1', 'k');
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
    expect(refusal(p.prepare(request(S1), context(), T0)).kind).toBe('aborted');
    expect(p.isPending('k')).toBe(false);
  });

  test('after a commit throws (kind rejected) and keeps the commit', () => {
    const p = prepared();
    p.commit('t1', 'k', 4);
    expect(dhtError(() => p.abort('t1', 'k'))).toEqual({
      kind: 'rejected',
      reason: 'transaction_unknown',
    });
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 4 });
  });

  // An abort naming another key than the prepared one is malformed: refused, nothing changes.
  test('an abort naming another key is refused and leaves the participant consistent', () => {
    const p = prepared(S0);
    expect(() => p.abort('t1', 'other')).toThrow(DhtError);
    expect(p.isPending('k')).toBe(true);
    expect(() => p.tick(T0 + PREPARE_TIMEOUT_MS)).not.toThrow();
  });
});

// ---- answer: termination queries from other participants ---------------------------------------

describe('answer', () => {
  test('a decided transaction answers its outcome', () => {
    const committed = prepared();
    committed.commit('t1', 'k', 4);
    expect(committed.answer('t1', T0)).toEqual({ state: 'committed', version: 4 });
    const aborted = prepared();
    aborted.abort('t1', 'k');
    expect(aborted.answer('t1', T0)).toEqual({ state: 'aborted' });
  });

  test('an unknown transaction answers aborted, and is fenced: a late prepare is refused', () => {
    const p = participant();
    expect(p.answer('t1', T0)).toEqual({ state: 'aborted' });
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
    expect(refusal(p.prepare(request(S1), context(), T0 + 1))).toEqual({
      kind: 'aborted',
      reason: 'transaction_unknown',
    });
    expect(p.answer('t1', T0 + 2)).toEqual({ state: 'aborted' });
  });

  test.each([0, PREPARE_TIMEOUT_MS - 1, PREPARE_TIMEOUT_MS, 100 * PREPARE_TIMEOUT_MS])(
    'a prepared non-decision-point answers prepared with its voted version (at +%i ms)',
    (after) => {
      const p = prepared(S1);
      expect(p.answer('t1', T0 + after)).toEqual({ state: 'prepared', current: 3 });
      expect(p.isPending('k')).toBe(true);
    },
  );

  test.each<[number, DecisionResponse]>([
    [0, { state: 'prepared', current: 3 }],
    [PREPARE_TIMEOUT_MS - 1, { state: 'prepared', current: 3 }],
    [PREPARE_TIMEOUT_MS, { state: 'aborted' }],
    [PREPARE_TIMEOUT_MS + 1, { state: 'aborted' }],
    [100 * PREPARE_TIMEOUT_MS, { state: 'aborted' }],
  ])('the decision point (replicas[0] is self) at +%i ms answers %j', (after, expected) => {
    const p = prepared(S0);
    expect(p.answer('t1', T0 + after)).toEqual(expected);
    expect(p.isPending('k')).toBe(expected.state === 'prepared');
    if (expected.state === 'aborted') {
      // The abort is final: the coordinator's late commit is refused.
      expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
      expect(dhtError(() => p.commit('t1', 'k', 4)).kind).toBe('aborted');
    }
  });
});

// ---- tick: the passage of time ------------------------------------------------------------------

describe('tick', () => {
  test.each([S0, S1, S2])('nothing happens before the prepare timeout (%j)', (self) => {
    const p = prepared(self);
    for (const after of [0, 1, PREPARE_TIMEOUT_MS / 2, PREPARE_TIMEOUT_MS - 1]) {
      expect(p.tick(T0 + after)).toEqual({ asks: [], resolutions: [] });
    }
    expect(p.isPending('k')).toBe(true);
  });

  test('the decision point aborts on its timeout and says so in a Resolution', () => {
    const p = prepared(S0);
    const { asks, resolutions } = p.tick(T0 + PREPARE_TIMEOUT_MS);
    expect(asks).toEqual([]);
    expect(resolutions).toEqual([
      { txid: 't1', key: 'k', outcome: { state: 'aborted' }, why: expect.any(String) },
    ]);
    expect(resolutions[0].apply).toBeUndefined();
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
    expect(p.isPending('k')).toBe(false);
    expect(p.tick(T0 + 2 * PREPARE_TIMEOUT_MS)).toEqual({ asks: [], resolutions: [] });
  });

  test.each([S1, S2])(
    'a non-primary (%j) asks every other replica, and again every decisionRetryMs',
    (self) => {
      const p = prepared(self);
      const others = REPLICAS.filter((r) => r.id !== self.id);
      const round = others.map((target) => ({ txid: 't1', key: 'k', target }));
      const at = T0 + PREPARE_TIMEOUT_MS;
      const script: [number, typeof round][] = [
        [at, round],
        [at + 1, []],
        [at + DECISION_RETRY_MS - 1, []],
        [at + DECISION_RETRY_MS, round],
        [at + DECISION_RETRY_MS + 1, []],
        [at + 2 * DECISION_RETRY_MS, round],
        // A late tick (the shell was busy) asks once, and the next round counts from it.
        [at + 10 * DECISION_RETRY_MS, round],
        [at + 11 * DECISION_RETRY_MS - 1, []],
        [at + 11 * DECISION_RETRY_MS, round],
      ];
      for (const [now, asks] of script) expect(p.tick(now)).toEqual({ asks, resolutions: [] });
      expect(p.isPending('k')).toBe(true);
    },
  );

  test('each transaction keeps its own clock', () => {
    const p = participant(S1);
    p.prepare(request(S1, { txid: 'a', key: 'ka' }), context(), T0);
    p.prepare(request(S1, { txid: 'b', key: 'kb' }), context(), T0 + 1000);
    p.prepare(
      request(S0, { txid: 'c', key: 'kc', serverId: 's1', replicas: [S1, S0, S2] }),
      context(),
      T0 + 2000,
    );
    const askedAbout = (now: number): string[] => [...new Set(p.tick(now).asks.map((a) => a.txid))];
    expect(askedAbout(T0 + PREPARE_TIMEOUT_MS)).toEqual(['a']);
    expect(askedAbout(T0 + PREPARE_TIMEOUT_MS + 1000)).toEqual(['a', 'b']);
    // c has s1 as its decision point: it is resolved, not asked about.
    const later = p.tick(T0 + PREPARE_TIMEOUT_MS + 2000);
    expect(later.resolutions.map((r) => r.txid)).toEqual(['c']);
    expect(p.outcomeOf('c')).toEqual({ state: 'aborted' });
  });

  test('a single-replica transaction (self is the decision point) aborts on its timeout', () => {
    const p = participant(S1);
    p.prepare(request(S1, { replicas: [S1] }), context(), T0);
    expect(p.tick(T0 + PREPARE_TIMEOUT_MS).resolutions.map((r) => r.outcome)).toEqual([
      { state: 'aborted' },
    ]);
  });
});

// ---- onAnswer: resolving a transaction among participants ----------------------------------------

describe('onAnswer', () => {
  /** s1 holding t1, past its timeout, having just sent a round of asks. */
  function asking(self: ServerRef = S1): Participant {
    const p = prepared(self);
    expect(p.tick(T0 + PREPARE_TIMEOUT_MS).asks).toHaveLength(2);
    return p;
  }

  test('an expelled server (not in the view itself) never commits on the peer rule', () => {
    const p = asking();
    const expelled: ReadonlySet<string> = new Set();
    expect(p.onAnswer('t1', S0, 'unreachable', expelled)).toBeUndefined();
    expect(p.isPending('k')).toBe(true);
  });

  test("once the primary left the view, a coordinator's abort is refused: the replicas decide", () => {
    const p = asking();
    let refused: unknown;
    try {
      p.abort('t1', 'k', PRIMARY_GONE);
    } catch (err) {
      refused = err;
    }
    expect(refused).toMatchObject({ kind: 'rejected', reason: 'decided_by_peers' });
    expect(p.isPending('k')).toBe(true);
    // The peers then decide as usual: here, every in-view peer prepared, so commit.
    p.onAnswer('t1', S0, 'unreachable', PRIMARY_GONE);
    const r = p.onAnswer('t1', S2, { state: 'prepared', current: 3 }, PRIMARY_GONE);
    expect(r?.outcome).toEqual({ state: 'committed', version: 4 });
  });

  test("with the primary in the view, a coordinator's abort is obeyed", () => {
    const p = asking();
    p.abort('t1', 'k', ALL_IN_VIEW);
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
  });

  test('a committed answer commits with that version', () => {
    const p = asking();
    const r = p.onAnswer('t1', S0, { state: 'committed', version: 9 }, ALL_IN_VIEW);
    expect(r).toEqual({
      txid: 't1',
      key: 'k',
      outcome: { state: 'committed', version: 9 },
      apply: { key: 'k', value: 'v', version: 9 },
      why: expect.any(String),
    });
    expect(p.outcomeOf('t1')).toEqual({ state: 'committed', version: 9 });
    expect(p.isPending('k')).toBe(false);
  });

  test('a committed answer from a peer (not the primary) commits too', () => {
    const p = asking();
    const r = p.onAnswer('t1', S2, { state: 'committed', version: 4 }, PRIMARY_GONE);
    expect(r?.apply).toEqual({ key: 'k', value: 'v', version: 4 });
  });

  test.each<[ServerRef, DecisionResponse]>([
    [S0, { state: 'aborted' }],
    [S2, { state: 'aborted' }],
  ])('an answer from %j of %j aborts', (from, answer) => {
    const p = asking();
    const r = p.onAnswer('t1', from, answer, ALL_IN_VIEW);
    expect(r).toEqual({
      txid: 't1',
      key: 'k',
      outcome: { state: 'aborted' },
      why: expect.any(String),
    });
    expect(r?.apply).toBeUndefined();
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
  });

  test.each<[string, DecisionResponse | 'unreachable']>([
    ['committed', { state: 'committed', version: 9 }],
    ['aborted', { state: 'aborted' }],
    ['prepared', { state: 'prepared', current: 3 }],
    ['unreachable', 'unreachable'],
  ])('a late answer (%s) after the decision changes nothing', (_name, answer) => {
    const p = asking();
    p.onAnswer('t1', S0, { state: 'aborted' }, ALL_IN_VIEW);
    expect(p.onAnswer('t1', S2, answer, PRIMARY_GONE)).toBeUndefined();
    expect(p.outcomeOf('t1')).toEqual({ state: 'aborted' });
  });

  test('an answer about a transaction never prepared here is ignored', () => {
    const p = participant();
    expect(p.onAnswer('t9', S0, { state: 'committed', version: 2 }, ALL_IN_VIEW)).toBeUndefined();
    expect(p.outcomeOf('t9')).toBeUndefined();
  });

  test('the primary still prepared (before its own timeout): wait', () => {
    const p = asking();
    expect(p.onAnswer('t1', S0, { state: 'prepared', current: 3 }, ALL_IN_VIEW)).toBeUndefined();
    expect(p.onAnswer('t1', S2, { state: 'prepared', current: 3 }, ALL_IN_VIEW)).toBeUndefined();
    expect(p.isPending('k')).toBe(true);
  });

  test('the primary unreachable but still in the view: wait (it may come back with the outcome)', () => {
    const p = asking();
    expect(p.onAnswer('t1', S0, 'unreachable', ALL_IN_VIEW)).toBeUndefined();
    expect(p.onAnswer('t1', S2, { state: 'prepared', current: 3 }, ALL_IN_VIEW)).toBeUndefined();
    expect(p.isPending('k')).toBe(true);
  });

  test.each<[number, number, number]>([
    // [own voted version, peer's current version, committed version]
    [3, 3, 4],
    [3, 7, 8],
    [3, 0, 4],
  ])(
    'primary unreachable and out of the view, every in-view peer prepared: commit (self v%i, peer v%i -> v%i)',
    (own, peer, expected) => {
      const p = participant(S1);
      p.prepare(request(S1), context({ currentVersion: own }), T0);
      p.tick(T0 + PREPARE_TIMEOUT_MS);
      expect(p.onAnswer('t1', S0, 'unreachable', PRIMARY_GONE)).toBeUndefined(); // s2 not heard yet
      const r = p.onAnswer('t1', S2, { state: 'prepared', current: peer }, PRIMARY_GONE);
      expect(r?.outcome).toEqual({ state: 'committed', version: expected });
      expect(r?.apply).toEqual({ key: 'k', value: 'v', version: expected });
    },
  );

  test('the same, with the answers in the other order', () => {
    const p = asking();
    expect(p.onAnswer('t1', S2, { state: 'prepared', current: 5 }, PRIMARY_GONE)).toBeUndefined();
    expect(p.onAnswer('t1', S0, 'unreachable', PRIMARY_GONE)?.outcome).toEqual({
      state: 'committed',
      version: 6,
    });
  });

  test('primary out of the view but a peer in the view unreachable: wait', () => {
    const p = asking();
    expect(p.onAnswer('t1', S0, 'unreachable', PRIMARY_GONE)).toBeUndefined();
    expect(p.onAnswer('t1', S2, 'unreachable', PRIMARY_GONE)).toBeUndefined();
    expect(p.isPending('k')).toBe(true);
  });

  test('primary and the other peer both out of the view: the survivor commits with its own version + 1', () => {
    const p = asking();
    const onlySelf = new Set(['s1']);
    expect(p.onAnswer('t1', S2, 'unreachable', onlySelf)).toBeUndefined(); // primary not heard yet
    expect(p.onAnswer('t1', S0, 'unreachable', onlySelf)?.outcome).toEqual({
      state: 'committed',
      version: 4,
    });
  });

  test('primary out of the view but it answered prepared this round: wait', () => {
    const p = asking();
    expect(p.onAnswer('t1', S0, { state: 'prepared', current: 3 }, PRIMARY_GONE)).toBeUndefined();
    expect(p.onAnswer('t1', S2, { state: 'prepared', current: 3 }, PRIMARY_GONE)).toBeUndefined();
  });

  test("each round starts afresh: a previous round's peer answer does not count", () => {
    const p = asking();
    expect(p.onAnswer('t1', S2, { state: 'prepared', current: 3 }, ALL_IN_VIEW)).toBeUndefined();
    expect(p.onAnswer('t1', S0, 'unreachable', ALL_IN_VIEW)).toBeUndefined();
    p.tick(T0 + PREPARE_TIMEOUT_MS + DECISION_RETRY_MS); // the next round; s0 has left the view
    expect(p.onAnswer('t1', S0, 'unreachable', PRIMARY_GONE)).toBeUndefined(); // s2 not heard this round
    expect(p.onAnswer('t1', S2, { state: 'prepared', current: 3 }, PRIMARY_GONE)?.outcome).toEqual({
      state: 'committed',
      version: 4,
    });
  });
});

// ---- epochChanged: a new view was installed ----------------------------------------------------

describe('epochChanged', () => {
  test('nothing pending: nothing to do', () => {
    expect(participant().epochChanged(T0)).toEqual([]);
  });

  test('the decision point aborts what it has not committed, and refuses the late commit', () => {
    const p = prepared(S0);
    const resolutions = p.epochChanged(T0 + 1);
    expect(resolutions).toEqual([
      { txid: 't1', key: 'k', outcome: { state: 'aborted' }, why: expect.any(String) },
    ]);
    expect(p.isPending('k')).toBe(false);
    expect(dhtError(() => p.commit('t1', 'k', 4)).kind).toBe('aborted');
    expect(p.answer('t1', T0 + 2)).toEqual({ state: 'aborted' });
  });

  test('a non-primary resolves nothing itself but asks at the next tick, before its timeout', () => {
    const p = prepared(S1);
    expect(p.epochChanged(T0 + 10)).toEqual([]);
    expect(p.isPending('k')).toBe(true);
    expect(p.tick(T0 + 10).asks.map((a) => a.target.id)).toEqual(['s0', 's2']);
    // Then the usual retry rhythm.
    expect(p.tick(T0 + 10 + DECISION_RETRY_MS - 1).asks).toEqual([]);
    expect(p.tick(T0 + 10 + DECISION_RETRY_MS).asks).toHaveLength(2);
  });

  test('mixed: each transaction by its own role', () => {
    const p = participant(S1);
    p.prepare(
      request(S1, { txid: 'primary-here', key: 'a', replicas: [S1, S0, S2] }),
      context(),
      T0,
    );
    p.prepare(request(S1, { txid: 'secondary-here', key: 'b' }), context(), T0);
    p.prepare(request(S1, { txid: 'committed', key: 'c', replicas: [S1, S2] }), context(), T0);
    p.commit('committed', 'c', 4);
    expect(p.epochChanged(T0 + 1).map((r) => r.txid)).toEqual(['primary-here']);
    expect(p.outcomeOf('committed')).toEqual({ state: 'committed', version: 4 });
    expect([p.isPending('a'), p.isPending('b'), p.isPending('c')]).toEqual([false, true, false]);
  });

  test('in the cluster: a view change mid-transaction aborts it everywhere, at once', () => {
    const c = new CoreCluster(3);
    const tx = c.begin('k', 'v1');
    for (const r of [0, 1, 2]) tx.deliver('prepare', r);
    for (const n of c.nodes) n.participant.epochChanged(c.nowMs);
    c.advance(0); // the next tick: s1 and s2 ask s0, which has aborted
    expect(c.outcomes(tx.txid)).toEqual({ s0: 'aborted', s1: 'aborted', s2: 'aborted' });
    tx.run(); // the coordinator's commit is refused by the primary: it aborts the rest
    const outcome = tx.coordinator.outcome;
    expect(outcome?.type === 'failed' ? outcome.error.kind : outcome?.type).toBe('aborted');
    expect(c.values('k')).toEqual({ s0: 'absent', s1: 'absent', s2: 'absent' });
  });
});

// ---- bounded memory -----------------------------------------------------------------------------

describe('decisions remembered', () => {
  test('real decisions and fences are bounded separately: made-up txids never evict a commit', () => {
    const max = 3;
    const p = participant(S1, max);
    p.prepare(request(S1, { txid: 'c1' }), context(), T0);
    p.commit('c1', 'k', 4);
    // Anyone can name unknown txids: each is fenced (aborted), in a set of its own.
    for (let i = 0; i < 50; i++) p.abort(`many-${i}`, 'k');
    p.answer('a3', T0);
    expect(p.outcomeOf('c1')).toEqual({ state: 'committed', version: 4 });
    expect(p.outcomeOf('many-46')).toBeUndefined();
    expect(p.outcomeOf('many-49')).toEqual({ state: 'aborted' });
    expect(p.outcomeOf('a3')).toEqual({ state: 'aborted' });
  });

  test('real decisions are bounded by decisionsRememberedMax, forgetting the oldest first', () => {
    const p = participant(S1, 2);
    for (const [i, key] of ['k1', 'k2', 'k3'].entries()) {
      p.prepare(request(S1, { txid: `c${i}`, key }), context(), T0);
      p.commit(`c${i}`, key, 4);
    }
    expect(p.outcomeOf('c0')).toBeUndefined();
    expect(p.outcomeOf('c2')).toEqual({ state: 'committed', version: 4 });
  });

  test("a forgotten commit is still answered as committed from the key's last commit", () => {
    const p = participant(S0, 1); // S0 is the primary: the decision point others ask
    p.prepare(request(S0, { txid: 'c1', key: 'k' }), context(), T0);
    p.commit('c1', 'k', 4);
    p.prepare(request(S0, { txid: 'c2', key: 'other' }), context(), T0);
    p.commit('c2', 'other', 5); // evicts c1 from the decision log
    expect(p.outcomeOf('c1')).toBeUndefined();
    expect(p.answer('c1', T0, 'k')).toEqual({ state: 'committed', version: 4 });
    // Without the key it cannot tell, and answers as for a transaction never prepared here.
    expect(p.answer('c9', T0, 'k')).toEqual({ state: 'aborted' });
  });

  test('a participant needs room for at least one decision and a positive timeout', () => {
    const config = {
      selfId: 's1',
      prepareTimeoutMs: 1,
      decisionRetryMs: 1,
      decisionsRememberedMax: 1,
    };
    expect(thrown(() => new Participant({ ...config, decisionsRememberedMax: 0 }))).toBeInstanceOf(
      AssertionError,
    );
    expect(thrown(() => new Participant({ ...config, prepareTimeoutMs: 0 }))).toBeInstanceOf(
      AssertionError,
    );
  });
});

// ---- scenarios on the in-memory cluster ---------------------------------------------------------

describe('scenarios (in-memory cluster: 3 replicas, s0 the primary)', () => {
  const TIMEOUT = HARNESS_CONFIG.prepareTimeoutMs;

  test('no failure: committed everywhere with one version', () => {
    const c = new CoreCluster(3);
    const tx = c.begin('k', 'v1');
    tx.run();
    expect(tx.coordinator.outcome).toEqual({ type: 'committed', version: 1 });
    expect(c.trace).toEqual([
      'prepare s0: yes v0',
      'prepare s1: yes v0',
      'prepare s2: yes v0',
      'commit v1 s0: ok',
      'commit v1 s1: ok',
      'commit v1 s2: ok',
    ]);
    expect(c.values('k')).toEqual({ s0: 'v1@v1', s1: 'v1@v1', s2: 'v1@v1' });
  });

  test('the coordinator dies after the prepares: all resolve to abort by timeout, and agree', () => {
    const c = new CoreCluster(3);
    const tx = c.begin('k', 'v1');
    tx.deliver('prepare', 0);
    tx.deliver('prepare', 1);
    tx.deliver('prepare', 2);
    expect(tx.pending).toEqual([{ type: 'commit', replica: 0, version: 1 }]);
    tx.crashCoordinator();
    c.advance(TIMEOUT - 1);
    expect(c.outcomes(tx.txid)).toEqual({ s0: 'undecided', s1: 'undecided', s2: 'undecided' });
    c.advance(1);
    expect(c.outcomes(tx.txid)).toEqual({ s0: 'aborted', s1: 'aborted', s2: 'aborted' });
    expect(c.values('k')).toEqual({ s0: 'absent', s1: 'absent', s2: 'absent' });
    // The key accepts writes again at once.
    const next = c.begin('k', 'v2');
    next.run();
    expect(next.coordinator.outcome).toEqual({ type: 'committed', version: 1 });
    expect(c.values('k')).toEqual({ s0: 'v2@v1', s1: 'v2@v1', s2: 'v2@v1' });
  });

  test('the coordinator dies mid-prepare: the prepared replicas abort, the unprepared one is fenced', () => {
    const c = new CoreCluster(3);
    const tx = c.begin('k', 'v1');
    tx.deliver('prepare', 1);
    tx.deliver('prepare', 2);
    tx.crashCoordinator();
    c.advance(TIMEOUT);
    // s1 and s2 ask s0, which never saw the transaction: it answers aborted and remembers it.
    expect(c.outcomes(tx.txid)).toEqual({ s0: 'aborted', s1: 'aborted', s2: 'aborted' });
  });

  test('the coordinator stalls past the timeout: its commit is refused and everyone aborts', () => {
    const c = new CoreCluster(3);
    const tx = c.begin('k', 'v1');
    for (const r of [0, 1, 2]) tx.deliver('prepare', r);
    c.advance(TIMEOUT); // everyone resolves abort meanwhile
    tx.run();
    expect(tx.coordinator.outcome).toEqual({
      type: 'failed',
      error: expect.objectContaining({ kind: 'aborted' }),
    });
    expect(c.outcomes(tx.txid)).toEqual({ s0: 'aborted', s1: 'aborted', s2: 'aborted' });
    expect(c.values('k')).toEqual({ s0: 'absent', s1: 'absent', s2: 'absent' });
  });

  test('the coordinator dies after the primary committed: the others learn commit from the primary', () => {
    const c = new CoreCluster(3);
    const seed = c.begin('k', 'v1');
    seed.run(); // the key already holds version 1
    const tx = c.begin('k', 'v2');
    for (const r of [0, 1, 2]) tx.deliver('prepare', r);
    tx.deliver('commit', 0);
    tx.crashCoordinator();
    expect(c.values('k')).toEqual({ s0: 'v2@v2', s1: 'v1@v1', s2: 'v1@v1' });
    c.advance(TIMEOUT);
    expect(c.outcomes(tx.txid)).toEqual({
      s0: 'committed v2',
      s1: 'committed v2',
      s2: 'committed v2',
    });
    expect(c.values('k')).toEqual({ s0: 'v2@v2', s1: 'v2@v2', s2: 'v2@v2' });
  });

  test('the coordinator dies after one secondary committed too: the last learns it', () => {
    const c = new CoreCluster(3);
    const tx = c.begin('k', 'v1');
    for (const r of [0, 1, 2]) tx.deliver('prepare', r);
    tx.deliver('commit', 0);
    tx.deliver('commit', 2);
    tx.crashCoordinator();
    c.settle();
    expect(c.outcomes(tx.txid)).toEqual({
      s0: 'committed v1',
      s1: 'committed v1',
      s2: 'committed v1',
    });
  });

  test('primary and coordinator die after the commit at the primary: survivors commit once it leaves the view', () => {
    const c = new CoreCluster(3);
    const tx = c.begin('k', 'v1');
    for (const r of [0, 1, 2]) tx.deliver('prepare', r);
    tx.deliver('commit', 0);
    tx.crashCoordinator();
    c.crash('s0');
    // While the primary is in the view, it may come back: the survivors keep asking.
    for (let i = 0; i < 10; i++) c.advance(i === 0 ? TIMEOUT : HARNESS_CONFIG.decisionRetryMs);
    expect(c.outcomes(tx.txid)).toEqual({ s1: 'undecided', s2: 'undecided' });
    c.leave('s0');
    c.advance(HARNESS_CONFIG.decisionRetryMs);
    // The same version the coordinator chose (1 + every vote), so the copies agree.
    expect(c.outcomes(tx.txid)).toEqual({ s1: 'committed v1', s2: 'committed v1' });
    expect(c.values('k')).toEqual({ s1: 'v1@v1', s2: 'v1@v1' });
  });

  // A coordinator that stalls after the votes while the primary dies and leaves the view: the
  // survivors commit on their own (as designed); the coordinator's commit to the dead primary is
  // refused, its aborts are rejected ("already committed"): it must not report 'retry'.
  test('a stalled coordinator whose primary died: survivors commit, the coordinator must not report retry', () => {
    const c = new CoreCluster(3);
    const tx = c.begin('k', 'v1');
    for (const r of [0, 1, 2]) tx.deliver('prepare', r);
    c.crash('s0');
    c.leave('s0');
    c.advance(TIMEOUT);
    expect(c.outcomes(tx.txid)).toEqual({ s1: 'committed v1', s2: 'committed v1' });
    tx.run(); // the coordinator wakes up: commit to s0 refused, aborts to s1 and s2 rejected
    expect(c.values('k')).toEqual({ s1: 'v1@v1', s2: 'v1@v1' });
    const outcome = tx.coordinator.outcome;
    expect(outcome?.type === 'failed' ? outcome.error.kind : outcome?.type).toBe('unknown');
  });

  test('a single-replica transaction whose coordinator dies aborts by timeout', () => {
    const c = new CoreCluster(1);
    const tx = c.begin('k', 'v1');
    tx.deliver('prepare', 0);
    tx.crashCoordinator();
    c.settle();
    expect(c.outcomes(tx.txid)).toEqual({ s0: 'aborted' });
  });

  test('two overlapping transactions on one key: at most one commits', () => {
    const c = new CoreCluster(3);
    const a = c.begin('k', 'a');
    const b = c.begin('k', 'b');
    // Interleave the prepares so each holds some replicas first.
    a.deliver('prepare', 0);
    b.deliver('prepare', 1);
    a.deliver('prepare', 1);
    b.deliver('prepare', 0);
    a.deliver('prepare', 2);
    b.deliver('prepare', 2);
    a.run();
    b.run();
    const outcomes = [a.coordinator.outcome, b.coordinator.outcome];
    expect(outcomes.filter((o) => o?.type === 'committed')).toHaveLength(0);
    expect(outcomes.map((o) => (o?.type === 'failed' ? o.error.kind : o?.type))).toEqual([
      'aborted',
      'aborted',
    ]);
    expect(c.nodes.map((n) => n.participant.pendingCount)).toEqual([0, 0, 0]);
    expect(c.values('k')).toEqual({ s0: 'absent', s1: 'absent', s2: 'absent' });
  });
});
