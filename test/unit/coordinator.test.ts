// The 2PC coordinator's decision logic (client/coordinator.ts): votes and answers in, messages
// and the final outcome out. The coordinator owns ballot 0 of the transaction's Paxos: once every
// replica voted yes it asks each to accept the commit, and only once a majority accepted is the
// commit chosen and sent as the decision. Each test is a short script of inputs with the messages
// expected after each; the last block drives every combination and order of votes and of accept
// answers and checks the outcome against the rules.

import {
  Coordinator,
  type AckResult,
  type CoordinatorOptions,
  type CoordinatorOutcome,
  type Send,
  type VoteResult,
} from '../../client/coordinator';
import { AssertionError } from '../../lib/assert';
import { majority } from '../../lib/ballot';
import { DhtError, type ErrorKind, type ErrorReason } from '../../lib/errors';
import { COMMIT_DELIVERY_ATTEMPTS } from '../../lib/limits';

const yes = (version: number): VoteResult => ({ type: 'yes', version });
const no = (kind: 'retry' | 'aborted', reason: ErrorReason): VoteResult => ({
  type: 'no',
  error: new DhtError(kind, `refused: ${reason}`, reason),
});
const EPOCH_MISMATCH = no('retry', 'epoch_mismatch');
const ID_MISMATCH = no('retry', 'server_id_mismatch');
const REBALANCING = no('retry', 'rebalancing');
const KEY_BUSY = no('aborted', 'key_busy');
const REFUSED: VoteResult = { type: 'unreachable', transport: 'refused' };
const TIMEOUT: VoteResult = { type: 'unreachable', transport: 'timeout' };
const BROKEN: VoteResult = { type: 'unreachable', transport: 'broken' };

const OK: AckResult = { type: 'ok' };
const ACK_REFUSED: AckResult = { type: 'unreachable', transport: 'refused' };
const ACK_TIMEOUT: AckResult = { type: 'unreachable', transport: 'timeout' };
const ACK_BROKEN: AckResult = { type: 'unreachable', transport: 'broken' };
const ackError = (kind: ErrorKind, reason?: ErrorReason): AckResult => ({
  type: 'error',
  error: new DhtError(kind, `refused: ${reason ?? kind}`, reason),
});
/** Accept answers a participant gives (server/participant.ts, accept). */
const SUPERSEDED = ackError('rejected', 'ballot_superseded'); // a recovery ballot was promised
const EPOCH_MOVED = ackError('retry', 'epoch_mismatch'); // the replica is in another epoch
const GONE = ackError('aborted', 'transaction_unknown'); // not prepared there (any more)
const DECIDED = ackError('rejected', 'transaction_unknown'); // decided otherwise there
const BAD_VERSION = ackError('invalid', 'bad_request');
const SERVER_ERROR = ackError('unknown'); // may or may not have been done

const accept = (replica: number, version: number): Send => ({ type: 'accept', replica, version });
const commit = (replica: number, version: number): Send => ({ type: 'commit', replica, version });
const abort = (replica: number): Send => ({ type: 'abort', replica });
const acceptAll = (n: number, version: number): Send[] =>
  Array.from({ length: n }, (_, r) => accept(r, version));
const commitAll = (n: number, version: number): Send[] =>
  Array.from({ length: n }, (_, r) => commit(r, version));

/** The outcome as plain data: 'committed vN' or the failure's kind (and reason). */
function summary(outcome: CoordinatorOutcome | undefined): string | undefined {
  if (outcome === undefined) return undefined;
  if (outcome.type === 'committed') return `committed v${outcome.version}`;
  expect(outcome.error).toBeInstanceOf(DhtError);
  return outcome.error.reason === undefined
    ? outcome.error.kind
    : `${outcome.error.kind} ${outcome.error.reason}`;
}

function started(n: number, options?: CoordinatorOptions): Coordinator {
  const c = new Coordinator(n, options);
  expect(c.start()).toEqual(
    Array.from({ length: n }, (_, replica) => ({ type: 'prepare', replica })),
  );
  expect(c.outcome).toBeUndefined();
  return c;
}

/** Three replicas, all voted yes (versions 2, 5, 3): the accepts of commit v6 are out. */
function accepting(options?: CoordinatorOptions): Coordinator {
  const c = started(3, options);
  expect(c.onVote(0, yes(2))).toEqual([]);
  expect(c.onVote(1, yes(5))).toEqual([]);
  expect(c.onVote(2, yes(3))).toEqual(acceptAll(3, 6));
  expect(c.outcome).toBeUndefined();
  return c;
}

/** Three replicas, commit v6 chosen (replicas 0 and 1 accepted): the commits are out. */
function committing(): Coordinator {
  const c = accepting();
  expect(c.onAcceptAck(0, OK)).toEqual([]);
  expect(c.onAcceptAck(1, OK)).toEqual(commitAll(3, 6));
  return c;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

// ---- phase 2 of ballot 0: the accepts ----------------------------------------------------------

describe('all vote yes: accept the commit (ballot 0)', () => {
  test('every replica is asked to accept at once, at version 1 + max(votes); no outcome yet', () => {
    accepting();
  });

  test.each<[number[], number[], number]>([
    [[0, 1, 2], [0, 0, 0], 1],
    [[2, 1, 0], [4, 4, 4], 5],
    [[1, 2, 0], [1, 9, 3], 10],
    [[2, 0, 1], [7, 0, 0], 8],
  ])('votes in order %j with versions %j: accept at version %i', (order, versions, expected) => {
    const c = started(3);
    const sends = order.flatMap((r) => c.onVote(r, yes(versions[r])));
    expect(sends).toEqual(acceptAll(3, expected));
  });

  test('one accept is not a majority: nothing is sent, no outcome', () => {
    const c = accepting();
    expect(c.onAcceptAck(2, OK)).toEqual([]);
    expect(c.outcome).toBeUndefined();
  });

  test('one accept, then a timeout and a refusal: unknown, naming what each replica answered', () => {
    const c = accepting();
    c.onAcceptAck(0, ACK_TIMEOUT);
    c.onAcceptAck(1, OK);
    expect(c.onAcceptAck(2, SUPERSEDED)).toEqual([]);
    expect(summary(c.outcome)).toBe('unknown');
    expect(c.outcome?.type === 'failed' && c.outcome.error.message).toBe(
      'commit accepted by 1 of 3 replicas (timeout; ok; rejected: refused: ballot_superseded): the replicas decide',
    );
  });

  test.each([
    [0, 1],
    [0, 2],
    [1, 0],
    [1, 2],
    [2, 0],
    [2, 1],
  ])('accepted by %i then %i: chosen, the decision goes to every replica', (a, b) => {
    const c = accepting();
    expect(c.onAcceptAck(a, OK)).toEqual([]);
    expect(c.onAcceptAck(b, OK)).toEqual(commitAll(3, 6));
    expect(c.outcome).toBeUndefined();
  });

  test('chosen after a refusal: the refusing replica is sent the decision too', () => {
    const c = accepting();
    expect(c.onAcceptAck(0, SUPERSEDED)).toEqual([]);
    expect(c.onAcceptAck(1, OK)).toEqual([]);
    expect(c.onAcceptAck(2, OK)).toEqual(commitAll(3, 6));
  });

  test.each<[string, AckResult]>([
    ['accepted', OK],
    ['refused', SUPERSEDED],
    ['unreachable', ACK_TIMEOUT],
  ])('a late accept answer (%s) once chosen changes nothing', (_name, late) => {
    const c = committing();
    expect(c.onAcceptAck(2, late)).toEqual([]);
    expect(c.outcome).toBeUndefined();
    c.onCommitAck(0, OK);
    c.onCommitAck(1, OK);
    c.onCommitAck(2, OK);
    expect(summary(c.outcome)).toBe('committed v6');
  });

  test('a late accept answer after the outcome changes nothing', () => {
    const c = committing();
    for (const r of [0, 1, 2]) c.onCommitAck(r, OK);
    expect(summary(c.outcome)).toBe('committed v6');
    expect(c.onAcceptAck(2, SUPERSEDED)).toEqual([]);
    expect(summary(c.outcome)).toBe('committed v6');
  });
});

// ---- the decision: commit ----------------------------------------------------------------------

describe('commit chosen: the decision', () => {
  test('committed once every replica acknowledged, whatever the order', () => {
    const c = committing();
    expect(c.onCommitAck(2, OK)).toEqual([]);
    expect(c.outcome).toBeUndefined();
    expect(c.onCommitAck(0, OK)).toEqual([]);
    expect(c.outcome).toBeUndefined(); // one commit still unanswered
    expect(c.onCommitAck(1, OK)).toEqual([]);
    expect(summary(c.outcome)).toBe('committed v6');
  });

  /** Answers `ack` to a commit sent to `replica`, and to every resend it asks for. */
  function answerEveryResend(c: Coordinator, replica: number, ack: AckResult): number {
    let sends = 1;
    for (let next = c.onCommitAck(replica, ack); next.length > 0; sends++) {
      expect(next).toEqual([commit(replica, 6)]);
      next = c.onCommitAck(replica, ack);
    }
    return sends;
  }

  test.each<[string, AckResult, AckResult, AckResult]>([
    ['an error', ackError('aborted', 'transaction_unknown'), OK, OK],
    ['a newer copy held', OK, ackError('rejected', 'newer_copy_held'), OK],
    ['refused', OK, OK, ACK_REFUSED],
    ['a timeout', ACK_TIMEOUT, OK, OK],
    ['everything failing', ACK_BROKEN, ACK_REFUSED, ACK_TIMEOUT],
  ])(
    'a commit failing (%s): outcome unknown (chosen, not known applied), once every commit is answered',
    (_name, ack0, ack1, ack2) => {
      const c = committing();
      answerEveryResend(c, 0, ack0);
      answerEveryResend(c, 1, ack1);
      expect(c.outcome).toBeUndefined();
      answerEveryResend(c, 2, ack2);
      expect(summary(c.outcome)).toBe('unknown');
    },
  );

  test.each<[string, AckResult, number]>([
    ['a timeout', ACK_TIMEOUT, COMMIT_DELIVERY_ATTEMPTS],
    ['a broken connection', ACK_BROKEN, COMMIT_DELIVERY_ATTEMPTS],
    ['a refused connection (a dead process)', ACK_REFUSED, 1],
    ['an answered refusal', ackError('aborted', 'transaction_unknown'), 1],
  ])('a commit answered with %s is sent %i times in all', (_name, ack, attempts) => {
    const c = committing();
    expect(answerEveryResend(c, 1, ack)).toBe(attempts);
  });

  test('a lost answer, then the resent commit applied: committed, not unknown', () => {
    const c = committing();
    expect(c.onCommitAck(2, ACK_TIMEOUT)).toEqual([commit(2, 6)]);
    expect(c.onCommitAck(0, OK)).toEqual([]);
    expect(c.onCommitAck(1, OK)).toEqual([]);
    expect(c.outcome).toBeUndefined();
    expect(c.onCommitAck(2, OK)).toEqual([]);
    expect(summary(c.outcome)).toBe('committed v6');
  });
});

describe('primaryLearnsFirst', () => {
  test('the decision goes to the primary alone, then to the others once it answered', () => {
    const c = accepting({ primaryLearnsFirst: true });
    c.onAcceptAck(2, OK);
    expect(c.onAcceptAck(1, OK)).toEqual([commit(0, 6)]);
    expect(c.onCommitAck(0, OK)).toEqual([commit(1, 6), commit(2, 6)]);
    expect(c.outcome).toBeUndefined();
    expect(c.onCommitAck(2, OK)).toEqual([]);
    expect(c.outcome).toBeUndefined();
    expect(c.onCommitAck(1, OK)).toEqual([]);
    expect(summary(c.outcome)).toBe('committed v6');
  });

  test('the primary failing to acknowledge: the others still learn it; outcome unknown', () => {
    const c = accepting({ primaryLearnsFirst: true });
    c.onAcceptAck(0, OK);
    c.onAcceptAck(1, OK);
    expect(c.onCommitAck(0, ACK_REFUSED)).toEqual([commit(1, 6), commit(2, 6)]);
    c.onCommitAck(1, OK);
    c.onCommitAck(2, OK);
    expect(summary(c.outcome)).toBe('unknown');
  });

  test('a commit answer from another replica before the primary answered is a misuse', () => {
    const c = accepting({ primaryLearnsFirst: true });
    c.onAcceptAck(0, OK);
    c.onAcceptAck(1, OK);
    expect(thrown(() => c.onCommitAck(1, OK))).toBeInstanceOf(AssertionError);
  });

  test('off by default: every replica learns at once', () => {
    const c = accepting({});
    c.onAcceptAck(0, OK);
    expect(c.onAcceptAck(1, OK)).toEqual(commitAll(3, 6));
  });

  // A single replica is its own primary: learning "first" must still finish.
  test('a single replica with primaryLearnsFirst reaches its outcome', () => {
    const c = started(1, { primaryLearnsFirst: true });
    expect(c.onVote(0, yes(0))).toEqual([accept(0, 1)]);
    expect(c.onAcceptAck(0, OK)).toEqual([commit(0, 1)]);
    expect(c.onCommitAck(0, OK)).toEqual([]);
    expect(summary(c.outcome)).toBe('committed v1');
  });
});

// ---- commit not chosen -------------------------------------------------------------------------

describe('all vote yes, but no majority accepted', () => {
  // [name, outcome, answers of replicas 0, 1, 2 (in that order)]
  test.each<[string, string, AckResult[]]>([
    // None accepted and each certainly did not: nothing was applied, nor ever will be.
    [
      'all superseded (recovered on their timeout)',
      'aborted',
      [SUPERSEDED, SUPERSEDED, SUPERSEDED],
    ],
    ['all decided otherwise (recovered already)', 'aborted', [DECIDED, GONE, DECIDED]],
    ['superseded, malformed and gone', 'aborted', [SUPERSEDED, BAD_VERSION, GONE]],
    ['all in another epoch', 'retry', [EPOCH_MOVED, EPOCH_MOVED, EPOCH_MOVED]],
    ['one in another epoch, the others superseded', 'retry', [SUPERSEDED, EPOCH_MOVED, SUPERSEDED]],
    [
      'one never reached (refused), the others superseded',
      'retry',
      [SUPERSEDED, SUPERSEDED, ACK_REFUSED],
    ],
    ['none reached', 'retry', [ACK_REFUSED, ACK_REFUSED, ACK_REFUSED]],
    // One accepted, or may have: a recovery may still choose the commit.
    ['one accepted, two superseded', 'unknown', [OK, SUPERSEDED, SUPERSEDED]],
    ['one accepted, two in another epoch', 'unknown', [EPOCH_MOVED, OK, EPOCH_MOVED]],
    ['one accepted, two unreachable', 'unknown', [ACK_REFUSED, ACK_TIMEOUT, OK]],
    ['one timed out, two superseded', 'unknown', [SUPERSEDED, ACK_TIMEOUT, SUPERSEDED]],
    ['one broken, two never reached', 'unknown', [ACK_BROKEN, ACK_REFUSED, ACK_REFUSED]],
    [
      'one server error (kind unknown), two superseded',
      'unknown',
      [SUPERSEDED, SERVER_ERROR, SUPERSEDED],
    ],
    ['all timed out', 'unknown', [ACK_TIMEOUT, ACK_TIMEOUT, ACK_TIMEOUT]],
  ])('%s: %s after the last answer, nothing more sent', (_name, outcome, answers) => {
    const c = accepting();
    expect(c.onAcceptAck(0, answers[0])).toEqual([]);
    expect(c.onAcceptAck(1, answers[1])).toEqual([]);
    // No majority is possible any more, but the outcome waits for every answer.
    expect(c.outcome).toBeUndefined();
    expect(c.onAcceptAck(2, answers[2])).toEqual([]);
    expect(summary(c.outcome)).toBe(outcome);
  });
});

// ---- the abort path -----------------------------------------------------------------------------

describe('a vote other than yes', () => {
  // [name, votes in arrival order, aborts expected after each vote, outcome]
  test.each<[string, [number, VoteResult][], Send[][], string]>([
    [
      'epoch mismatch after a yes: abort the yes',
      [
        [0, yes(1)],
        [1, EPOCH_MISMATCH],
        [2, yes(1)],
      ],
      [[], [abort(0)], [abort(2)]],
      'retry epoch_mismatch',
    ],
    [
      'server ID mismatch first: later yes votes get an abort',
      [
        [2, ID_MISMATCH],
        [0, yes(0)],
        [1, yes(0)],
      ],
      [[], [abort(0)], [abort(1)]],
      'retry server_id_mismatch',
    ],
    [
      'rebalancing everywhere: nobody to abort',
      [
        [0, REBALANCING],
        [1, REBALANCING],
        [2, REBALANCING],
      ],
      [[], [], []],
      'retry rebalancing',
    ],
    [
      'key busy: outcome aborted',
      [
        [0, yes(3)],
        [1, yes(3)],
        [2, KEY_BUSY],
      ],
      [[], [], [abort(0), abort(1)]],
      'aborted key_busy',
    ],
    [
      'unreachable refused: never reached, no abort to it; outcome retry',
      [
        [0, yes(3)],
        [1, REFUSED],
        [2, yes(3)],
      ],
      [[], [abort(0)], [abort(2)]],
      'retry',
    ],
    [
      'unreachable timeout: it may have prepared, so it gets an abort too',
      [
        [0, yes(3)],
        [1, TIMEOUT],
        [2, yes(3)],
      ],
      [[], [abort(0), abort(1)], [abort(2)]],
      'retry',
    ],
    [
      'unreachable broken: likewise',
      [
        [1, BROKEN],
        [0, REFUSED],
        [2, KEY_BUSY],
      ],
      [[abort(1)], [], []],
      'retry',
    ],
    [
      'late votes after the abort decision: yes and timeout get an abort, no and refused do not',
      [
        [1, KEY_BUSY],
        [0, TIMEOUT],
        [2, yes(0)],
      ],
      [[], [abort(0)], [abort(2)]],
      'aborted key_busy',
    ],
    [
      'the first refusal names the outcome',
      [
        [0, KEY_BUSY],
        [1, EPOCH_MISMATCH],
        [2, REFUSED],
      ],
      [[], [], []],
      'aborted key_busy',
    ],
  ])('%s', (_name, votes, expectedAborts, expectedOutcome) => {
    const c = started(3);
    const aborted: number[] = [];
    votes.forEach(([replica, vote], i) => {
      const sends = c.onVote(replica, vote);
      expect(sends).toEqual(expectedAborts[i]);
      aborted.push(...sends.map((s) => s.replica));
    });
    // Every abort must be answered before the outcome is known.
    for (const replica of aborted) {
      expect(c.outcome).toBeUndefined();
      expect(c.onAbortAck(replica, OK)).toEqual([]);
    }
    expect(summary(c.outcome)).toBe(expectedOutcome);
  });

  test('a replica that was refused never hears from the coordinator again', () => {
    const c = started(3);
    expect(c.onVote(0, REFUSED)).toEqual([]);
    expect(c.onVote(1, yes(0))).toEqual([abort(1)]);
    expect(c.onVote(2, TIMEOUT)).toEqual([abort(2)]);
    c.onAbortAck(1, OK);
    c.onAbortAck(2, ACK_REFUSED);
    expect(summary(c.outcome)).toBe('retry');
  });

  test('the outcome waits for the last vote even when no abort is outstanding', () => {
    const c = started(3);
    c.onVote(0, KEY_BUSY);
    c.onVote(1, REFUSED);
    expect(c.outcome).toBeUndefined();
    c.onVote(2, EPOCH_MISMATCH);
    expect(summary(c.outcome)).toBe('aborted key_busy');
  });

  test.each<[string, AckResult]>([
    ['timeout', ACK_TIMEOUT],
    ['refused', ACK_REFUSED],
    ['an error other than rejected', ackError('aborted', 'transaction_unknown')],
  ])('a lost or failed abort (%s) is harmless: the cause stands', (_name, ack) => {
    const c = started(3);
    c.onVote(0, yes(0));
    c.onVote(1, yes(0));
    expect(c.onVote(2, KEY_BUSY)).toEqual([abort(0), abort(1)]);
    c.onAbortAck(0, ack);
    c.onAbortAck(1, ack);
    expect(summary(c.outcome)).toBe('aborted key_busy');
  });

  // A replica that refuses the coordinator's abort had a commit accepted: the coordinator never
  // proposed one, so something disagrees; "nothing applied" cannot be claimed.
  test.each<[string, AckResult, AckResult]>([
    ['both', ackError('rejected', 'commit_accepted'), ackError('rejected', 'transaction_unknown')],
    ['one', OK, ackError('rejected', 'commit_accepted')],
  ])('%s of the aborts refused (rejected): outcome unknown', (_name, ack0, ack2) => {
    const c = started(3);
    c.onVote(0, yes(0));
    expect(c.onVote(1, REFUSED)).toEqual([abort(0)]);
    expect(c.onVote(2, yes(0))).toEqual([abort(2)]);
    c.onAbortAck(0, ack0);
    expect(c.outcome).toBeUndefined();
    c.onAbortAck(2, ack2);
    expect(summary(c.outcome)).toBe('unknown');
  });
});

// ---- one and two replicas ---------------------------------------------------------------------

describe('a single replica', () => {
  test('yes, accepted, commit ok: committed', () => {
    const c = started(1);
    expect(c.onVote(0, yes(4))).toEqual([accept(0, 5)]);
    expect(c.onAcceptAck(0, OK)).toEqual([commit(0, 5)]);
    expect(c.outcome).toBeUndefined();
    expect(c.onCommitAck(0, OK)).toEqual([]);
    expect(summary(c.outcome)).toBe('committed v5');
  });

  test.each<[VoteResult, Send[], string]>([
    [KEY_BUSY, [], 'aborted key_busy'],
    [EPOCH_MISMATCH, [], 'retry epoch_mismatch'],
    [REFUSED, [], 'retry'],
    [TIMEOUT, [abort(0)], 'retry'],
  ])('vote %j: sends %j, outcome %s', (vote, sends, outcome) => {
    const c = started(1);
    expect(c.onVote(0, vote)).toEqual(sends);
    if (sends.length > 0) {
      expect(c.outcome).toBeUndefined();
      c.onAbortAck(0, OK);
    }
    expect(summary(c.outcome)).toBe(outcome);
  });

  test.each<[string, AckResult, string]>([
    ['superseded', SUPERSEDED, 'aborted'],
    ['gone', GONE, 'aborted'],
    ['in another epoch', EPOCH_MOVED, 'retry'],
    ['refused', ACK_REFUSED, 'retry'],
    ['timeout', ACK_TIMEOUT, 'unknown'],
    ['server error', SERVER_ERROR, 'unknown'],
  ])('accept answered %s: outcome %s with no further message', (_name, ack, outcome) => {
    const c = started(1);
    c.onVote(0, yes(0));
    expect(c.onAcceptAck(0, ack)).toEqual([]);
    expect(summary(c.outcome)).toBe(outcome);
  });

  test('commit ack failing: unknown', () => {
    const c = started(1);
    c.onVote(0, yes(0));
    c.onAcceptAck(0, OK);
    for (let attempt = 1; attempt < COMMIT_DELIVERY_ATTEMPTS; attempt++) {
      expect(c.onCommitAck(0, ACK_TIMEOUT)).toEqual([commit(0, 1)]);
    }
    expect(c.onCommitAck(0, ACK_TIMEOUT)).toEqual([]);
    expect(summary(c.outcome)).toBe('unknown');
  });
});

describe('two replicas: the commit is chosen only when both accepted', () => {
  test('both accept: committed', () => {
    const c = started(2);
    c.onVote(1, yes(1));
    expect(c.onVote(0, yes(0))).toEqual(acceptAll(2, 2));
    expect(c.onAcceptAck(1, OK)).toEqual([]);
    expect(c.onAcceptAck(0, OK)).toEqual(commitAll(2, 2));
  });

  test.each<[string, AckResult, string]>([
    ['superseded', SUPERSEDED, 'unknown'],
    ['unreachable', ACK_TIMEOUT, 'unknown'],
  ])('one accepts, the other %s: not chosen, outcome %s', (_name, other, outcome) => {
    const c = started(2);
    c.onVote(0, yes(0));
    c.onVote(1, yes(0));
    expect(c.onAcceptAck(0, OK)).toEqual([]);
    expect(c.onAcceptAck(1, other)).toEqual([]);
    expect(summary(c.outcome)).toBe(outcome);
  });

  test('neither accepts, both superseded: aborted', () => {
    const c = started(2);
    c.onVote(0, yes(0));
    c.onVote(1, yes(0));
    c.onAcceptAck(1, SUPERSEDED);
    c.onAcceptAck(0, SUPERSEDED);
    expect(summary(c.outcome)).toBe('aborted');
  });
});

// ---- protocol misuse is a programmer error -----------------------------------------------------

describe('assertions on protocol misuse', () => {
  const allYes = (c: Coordinator): void => {
    [0, 1, 2].forEach((r) => c.onVote(r, yes(0)));
  };
  const chosen = (c: Coordinator): void => {
    allYes(c);
    c.onAcceptAck(0, OK);
    c.onAcceptAck(1, OK);
  };

  test.each<[string, (c: Coordinator) => unknown]>([
    [
      'a second vote from one replica',
      (c) => {
        c.onVote(0, yes(0));
        return c.onVote(0, yes(0));
      },
    ],
    [
      'a second vote from one replica while aborting',
      (c) => {
        c.onVote(0, KEY_BUSY);
        return c.onVote(0, yes(0));
      },
    ],
    [
      'a vote again while accepting',
      (c) => {
        allYes(c);
        return c.onVote(1, yes(0));
      },
    ],
    [
      'a second accept answer from one replica',
      (c) => {
        allYes(c);
        c.onAcceptAck(2, SUPERSEDED);
        return c.onAcceptAck(2, OK);
      },
    ],
    [
      'a second accept answer from one replica, once chosen',
      (c) => {
        chosen(c);
        return c.onAcceptAck(1, OK);
      },
    ],
    ['a commit ack with no commit sent', (c) => c.onCommitAck(0, OK)],
    [
      'a commit ack while still accepting',
      (c) => {
        allYes(c);
        c.onAcceptAck(0, OK);
        return c.onCommitAck(0, OK);
      },
    ],
    ['an abort ack with no abort sent', (c) => c.onAbortAck(1, OK)],
    [
      'a second commit ack from one replica',
      (c) => {
        chosen(c);
        c.onCommitAck(0, OK);
        return c.onCommitAck(0, OK);
      },
    ],
    [
      'a commit ack answering an abort',
      (c) => {
        c.onVote(0, yes(0));
        c.onVote(1, KEY_BUSY);
        return c.onCommitAck(0, OK);
      },
    ],
    [
      'an abort ack answering an accept',
      (c) => {
        allYes(c);
        return c.onAbortAck(0, OK);
      },
    ],
    [
      'an abort ack answering a commit',
      (c) => {
        chosen(c);
        return c.onAbortAck(0, OK);
      },
    ],
    [
      'a second abort ack',
      (c) => {
        c.onVote(0, yes(0));
        c.onVote(1, KEY_BUSY);
        c.onAbortAck(0, OK);
        return c.onAbortAck(0, OK);
      },
    ],
  ])('%s', (_name, misuse) => {
    const c = started(3);
    expect(thrown(() => misuse(c))).toBeInstanceOf(AssertionError);
  });

  // An accept answer is only meaningful once accepts were sent (every vote yes).
  test.each<[string, (c: Coordinator) => unknown]>([
    ['while preparing', (c) => c.onAcceptAck(0, OK)],
    [
      'while aborting',
      (c) => {
        c.onVote(0, KEY_BUSY);
        return c.onAcceptAck(1, OK);
      },
    ],
  ])('an accept answer with no accept sent (%s)', (_name, misuse) => {
    const c = started(3);
    expect(thrown(() => misuse(c))).toBeInstanceOf(AssertionError);
  });

  test('start twice', () => {
    const c = started(3);
    expect(thrown(() => c.start())).toBeInstanceOf(AssertionError);
  });

  test('a transaction has at least one replica', () => {
    expect(thrown(() => new Coordinator(0))).toBeInstanceOf(AssertionError);
  });
});

// ---- exhaustively --------------------------------------------------------------------------------

function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) =>
    Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]),
  );
}

function combinations<T>(items: readonly T[], n: number): T[][] {
  if (n === 0) return [[]];
  return combinations(items, n - 1).flatMap((c) => items.map((item) => [...c, item]));
}

/** The rule, stated independently: the replica certainly did not accept. */
function certainlyNotAccepted(ack: AckResult): boolean {
  if (ack.type === 'ok') return false;
  if (ack.type === 'unreachable') return ack.transport === 'refused';
  return ack.error.kind !== 'unknown';
}

/** The rule for a commit not chosen, stated independently. */
function expectedFailure(answers: readonly AckResult[]): string {
  const accepted = answers.filter((a) => a.type === 'ok').length;
  if (accepted > 0 || !answers.every(certainlyNotAccepted)) return 'unknown';
  const aboutTheView = answers.some(
    (a) => a.type === 'unreachable' || (a.type === 'error' && a.error.kind === 'retry'),
  );
  return aboutTheView ? 'retry' : 'aborted';
}

describe('exhaustively: accept answers of three replicas, in every order', () => {
  const ANSWERS: [string, AckResult][] = [
    ['ok', OK],
    ['superseded', SUPERSEDED],
    ['epoch', EPOCH_MOVED],
    ['server error', SERVER_ERROR],
    ['refused', ACK_REFUSED],
    ['timeout', ACK_TIMEOUT],
  ];

  test('each outcome (committed / retry / aborted / unknown) follows the rules', () => {
    const failures: string[] = [];
    const tally: Record<string, number> = {};
    let runs = 0;
    for (const combination of combinations(ANSWERS, 3)) {
      for (const order of permutations(3)) {
        for (const primaryLearnsFirst of [false, true]) {
          runs++;
          const name = `${combination.map(([n]) => n).join(', ')} order ${order.join('')}${primaryLearnsFirst ? ' primary first' : ''}`;
          const problem = (what: string): void => {
            failures.push(`${name}: ${what}`);
          };
          const c = accepting({ primaryLearnsFirst });
          const answers = combination.map(([, a]) => a);
          const okTotal = answers.filter((a) => a.type === 'ok').length;
          let oks = 0;
          let commits: Send[] = [];
          order.forEach((replica, i) => {
            const sends = c.onAcceptAck(replica, answers[replica]);
            const wasChosen = oks >= majority(3);
            if (answers[replica].type === 'ok') oks++;
            const nowChosen = !wasChosen && oks >= majority(3);
            const expectedSends = !nowChosen
              ? []
              : primaryLearnsFirst
                ? [commit(0, 6)]
                : commitAll(3, 6);
            if (JSON.stringify(sends) !== JSON.stringify(expectedSends)) {
              problem(`answer ${i} sent ${JSON.stringify(sends)}`);
            }
            commits.push(...sends);
            const last = i === order.length - 1;
            if (c.outcome !== undefined && !(last && okTotal < majority(3))) {
              problem(`an outcome after answer ${i}`);
            }
          });
          if (okTotal >= majority(3)) {
            // The decision: every replica learns it (the primary first when asked).
            for (let i = 0; i < commits.length; i++) {
              const more = c.onCommitAck(commits[i].replica, OK);
              commits = [...commits, ...more];
            }
            if (commits.length !== 3) problem(`${commits.length} commits`);
            if (summary(c.outcome) !== 'committed v6') problem(`outcome ${summary(c.outcome)}`);
          } else {
            const expected = expectedFailure(answers);
            if (commits.length > 0) problem('a commit without a majority');
            if (summary(c.outcome) !== expected) {
              problem(`outcome ${summary(c.outcome)}, expected ${expected}`);
            }
          }
          const s = summary(c.outcome) ?? 'none';
          const kind = s.startsWith('committed') ? 'committed' : s;
          tally[kind] = (tally[kind] ?? 0) + 1;
        }
      }
    }
    expect(runs).toBe(6 ** 3 * 6 * 2);
    expect(failures).toEqual([]);
    // Every kind of outcome is reached.
    expect(Object.keys(tally).sort()).toEqual(['aborted', 'committed', 'retry', 'unknown']);
  });
});

describe('exhaustively: votes for 1 to 3 replicas, in every order, with accept answers', () => {
  const VOTES: [string, VoteResult][] = [
    ['yes v0', yes(0)],
    ['yes v4', yes(4)],
    ['epoch', EPOCH_MISMATCH],
    ['busy', KEY_BUSY],
    ['refused', REFUSED],
    ['timeout', TIMEOUT],
  ];
  const ACCEPT_ANSWERS: AckResult[] = [OK, SUPERSEDED, ACK_REFUSED, ACK_TIMEOUT, OK];

  function mayHavePrepared(v: VoteResult): boolean {
    return v.type === 'yes' || (v.type === 'unreachable' && v.transport !== 'refused');
  }

  /** Drives one run; returns a description of any broken invariant (or nothing). */
  function run(
    votes: readonly VoteResult[],
    order: readonly number[],
    answers: readonly AckResult[],
    options: CoordinatorOptions,
  ): string[] {
    const n = votes.length;
    const broken: string[] = [];
    const c = new Coordinator(n, options);
    const outstanding: Send[] = [];
    const sent: Send[] = [];
    const acceptAnswers: AckResult[] = [];
    const send = (sends: Send[]): void => {
      sent.push(...sends);
      outstanding.push(...sends);
    };
    c.start();
    for (const r of order) {
      if (c.outcome !== undefined) broken.push('outcome before every vote was in');
      send(c.onVote(r, votes[r]));
    }
    // Answer in sending order; the i-th accept of the run is answered answers[i].
    while (outstanding.length > 0) {
      const next = outstanding.shift() as Send;
      switch (next.type) {
        case 'accept': {
          const answer = answers[acceptAnswers.length % answers.length];
          acceptAnswers.push(answer);
          const oksBefore = acceptAnswers.slice(0, -1).filter((a) => a.type === 'ok').length;
          const sends = c.onAcceptAck(next.replica, answer);
          if (sends.length > 0 && oksBefore + (answer.type === 'ok' ? 1 : 0) < majority(n)) {
            broken.push('a commit before a majority accepted');
          }
          send(sends);
          break;
        }
        case 'commit':
          send(c.onCommitAck(next.replica, OK));
          break;
        case 'abort':
          send(c.onAbortAck(next.replica, OK));
          break;
        case 'prepare':
          broken.push('a prepare after start');
          break;
      }
      if (c.outcome !== undefined && outstanding.some((s) => s.type !== 'accept')) {
        broken.push('outcome with a commit or abort unanswered');
      }
    }
    const outcome = c.outcome;
    if (outcome === undefined) return [...broken, 'no outcome once every message is answered'];

    const allYes = votes.every((v) => v.type === 'yes');
    const accepts = sent.filter((s) => s.type === 'accept');
    const commits = sent.filter((s) => s.type === 'commit');
    const aborts = sent.filter((s) => s.type === 'abort');
    const version = 1 + Math.max(...votes.map((v) => (v.type === 'yes' ? v.version : 0)));
    if (new Set(sent.map((s) => `${s.type}${s.replica}`)).size !== sent.length) {
      broken.push('a message sent twice');
    }
    if (!allYes && accepts.length + commits.length > 0) broken.push('a commit without every yes');
    if (allYes && accepts.length !== n) broken.push('an accept missing');
    if (aborts.length > 0 && accepts.length > 0) broken.push('both accept and abort');
    if ([...accepts, ...commits].some((s) => s.version !== version)) {
      broken.push('a wrong version');
    }
    if (commits.length > 0 && commits.length !== n) broken.push('the decision not sent to all');
    if (options.primaryLearnsFirst === true && commits.length > 0 && commits[0].replica !== 0) {
      broken.push('the first commit is not to the primary');
    }
    for (const a of aborts) {
      if (!mayHavePrepared(votes[a.replica])) {
        broken.push(`an abort to replica ${a.replica}, which cannot have prepared`);
      }
    }
    const kind = outcome.type === 'committed' ? 'committed' : outcome.error.kind;
    if (!allYes) {
      // Every replica that may have prepared hears the abort.
      votes.forEach((v, r) => {
        if (mayHavePrepared(v) && !aborts.some((a) => a.replica === r)) {
          broken.push(`replica ${r} never hears the abort`);
        }
      });
      if (kind !== 'retry' && kind !== 'aborted') broken.push(`an abort ends ${kind}`);
    } else if (acceptAnswers.filter((a) => a.type === 'ok').length >= majority(n)) {
      if (kind !== 'committed') broken.push(`chosen, all applied, yet ${kind}`);
      if (outcome.type === 'committed' && outcome.version !== version) broken.push('version');
    } else {
      const expected = expectedFailure(acceptAnswers);
      if (kind !== expected) broken.push(`not chosen: ${kind}, expected ${expected}`);
    }
    return broken;
  }

  test('every combination of votes, every arrival order and several answer patterns keep the invariants', () => {
    const failures: string[] = [];
    let runs = 0;
    for (let n = 1; n <= 3; n++) {
      const optionSets: CoordinatorOptions[] = [{}, { primaryLearnsFirst: true }];
      for (const options of optionSets) {
        for (const combination of combinations(VOTES, n)) {
          for (const order of permutations(n)) {
            for (let shift = 0; shift < ACCEPT_ANSWERS.length; shift++) {
              const answers = [...ACCEPT_ANSWERS.slice(shift), ...ACCEPT_ANSWERS.slice(0, shift)];
              runs++;
              for (const problem of run(
                combination.map(([, v]) => v),
                order,
                answers,
                options,
              )) {
                failures.push(
                  `${combination.map(([name]) => name).join(', ')} order ${order.join('')}` +
                    ` shift ${shift} ${JSON.stringify(options)}: ${problem}`,
                );
              }
            }
          }
        }
      }
    }
    expect(runs).toBe(ACCEPT_ANSWERS.length * (2 * 6 + 2 * 36 * 2 + 2 * 216 * 6));
    expect(failures).toEqual([]);
  });
});
