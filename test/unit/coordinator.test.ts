// The 2PC coordinator's decision logic (client/coordinator.ts): votes and acknowledgments in,
// messages and the final outcome out. Each test is a short script of inputs with the messages
// expected after each; the last block drives every combination and order of votes for one to
// three replicas and checks the protocol's invariants on each run.

import {
  Coordinator,
  type AckResult,
  type CoordinatorOutcome,
  type Send,
  type VoteResult,
} from '../../client/coordinator';
import { AssertionError } from '../../lib/assert';
import { DhtError, type ErrorReason } from '../../lib/errors';

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
const ackError = (kind: 'aborted' | 'rejected', reason: ErrorReason): AckResult => ({
  type: 'error',
  error: new DhtError(kind, `commit refused: ${reason}`, reason),
});

const commit = (replica: number, version: number): Send => ({ type: 'commit', replica, version });
const abort = (replica: number): Send => ({ type: 'abort', replica });

/** The outcome as plain data: 'committed vN' or the failure's kind (and reason). */
function summary(outcome: CoordinatorOutcome | undefined): string | undefined {
  if (outcome === undefined) return undefined;
  if (outcome.type === 'committed') return `committed v${outcome.version}`;
  expect(outcome.error).toBeInstanceOf(DhtError);
  return outcome.error.reason === undefined
    ? outcome.error.kind
    : `${outcome.error.kind} ${outcome.error.reason}`;
}

function started(n: number): Coordinator {
  const c = new Coordinator(n);
  expect(c.start()).toEqual(
    Array.from({ length: n }, (_, replica) => ({ type: 'prepare', replica })),
  );
  expect(c.outcome).toBeUndefined();
  return c;
}

/** Three replicas, all voted yes (versions 2, 5, 3): the commit to the primary is out. */
function committingPrimary(): Coordinator {
  const c = started(3);
  expect(c.onVote(0, yes(2))).toEqual([]);
  expect(c.onVote(1, yes(5))).toEqual([]);
  expect(c.onVote(2, yes(3))).toEqual([commit(0, 6)]);
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

// ---- the commit path --------------------------------------------------------------------------

describe('all vote yes', () => {
  test('commit goes to the primary first (only the primary), version 1 + max(votes)', () => {
    const c = committingPrimary();
    expect(c.outcome).toBeUndefined();
  });

  test.each<[number[], number[], number]>([
    [[0, 1, 2], [0, 0, 0], 1],
    [[2, 1, 0], [4, 4, 4], 5],
    [[1, 2, 0], [1, 9, 3], 10],
    [[2, 0, 1], [7, 0, 0], 8],
  ])('votes in order %j with versions %j commit at version %i', (order, versions, expected) => {
    const c = started(3);
    const sends = order.flatMap((r) => c.onVote(r, yes(versions[r])));
    expect(sends).toEqual([commit(0, expected)]);
  });

  test('once the primary acknowledges, the rest get the commit in parallel with the same version', () => {
    const c = committingPrimary();
    expect(c.onCommitAck(0, OK)).toEqual([commit(1, 6), commit(2, 6)]);
    expect(c.outcome).toBeUndefined();
    expect(c.onCommitAck(2, OK)).toEqual([]);
    expect(c.outcome).toBeUndefined(); // one commit still unanswered
    expect(c.onCommitAck(1, OK)).toEqual([]);
    expect(summary(c.outcome)).toBe('committed v6');
  });

  test('primary commit refused as rejected (decided, not applied): outcome unknown, no abort', () => {
    const c = committingPrimary();
    expect(c.onCommitAck(0, ackError('rejected', 'newer_copy_held'))).toEqual([]);
    expect(c.outcome?.type === 'failed' ? c.outcome.error.kind : c.outcome?.type).toBe('unknown');
  });

  test.each<[string, AckResult]>([
    [
      'refused with an error (it aborted on its timeout)',
      ackError('aborted', 'transaction_unknown'),
    ],
  ])('primary commit %s: abort the others, outcome aborted', (_name, ack) => {
    const c = committingPrimary();
    expect(c.onCommitAck(0, ack)).toEqual([abort(1), abort(2)]);
    expect(c.outcome).toBeUndefined();
    expect(c.onAbortAck(1, OK)).toEqual([]);
    expect(c.outcome).toBeUndefined();
    expect(c.onAbortAck(2, ACK_TIMEOUT)).toEqual([]); // a lost abort is harmless
    expect(summary(c.outcome)).toBe('aborted transaction_unknown');
  });

  test('primary commit unreachable (refused: never reached): abort the others, outcome retry', () => {
    const c = committingPrimary();
    expect(c.onCommitAck(0, ACK_REFUSED)).toEqual([abort(1), abort(2)]);
    expect(c.onAbortAck(2, OK)).toEqual([]);
    expect(c.onAbortAck(1, OK)).toEqual([]);
    expect(summary(c.outcome)).toBe('retry');
  });

  // A participant that resolved the transaction on its own meanwhile (primary out of the view,
  // every peer prepared: it commits) answers the abort with 'rejected' (already committed): the
  // outcome is no longer "nothing done". The scenario in participant.test.ts shows the race.
  test.each<[string, AckResult, AckResult]>([
    [
      'both',
      ackError('rejected', 'transaction_unknown'),
      ackError('rejected', 'transaction_unknown'),
    ],
    ['one', OK, ackError('rejected', 'transaction_unknown')],
  ])(
    'primary commit refused, then %s of the aborts rejected as already committed: outcome unknown',
    (_name, ack1, ack2) => {
      const c = committingPrimary();
      expect(c.onCommitAck(0, ACK_REFUSED)).toEqual([abort(1), abort(2)]);
      c.onAbortAck(1, ack1);
      expect(c.outcome).toBeUndefined();
      c.onAbortAck(2, ack2);
      expect(summary(c.outcome)).toBe('unknown');
    },
  );

  test.each<[string, AckResult]>([
    ['timeout', ACK_TIMEOUT],
    ['broken', ACK_BROKEN],
  ])('primary commit %s: outcome unknown at once, and no further message', (_name, ack) => {
    const c = committingPrimary();
    expect(c.onCommitAck(0, ack)).toEqual([]);
    expect(summary(c.outcome)).toBe('unknown');
  });

  test.each<[string, AckResult, AckResult]>([
    ['an error', ackError('aborted', 'transaction_unknown'), OK],
    ['refused', ACK_REFUSED, OK],
    ['a timeout', OK, ACK_TIMEOUT],
    ['two failures', ACK_BROKEN, ACK_REFUSED],
  ])(
    'a commit to the rest failing (%s): outcome unknown, once every commit is answered',
    (_name, ack1, ack2) => {
      const c = committingPrimary();
      c.onCommitAck(0, OK);
      expect(c.onCommitAck(1, ack1)).toEqual([]);
      expect(c.outcome).toBeUndefined();
      expect(c.onCommitAck(2, ack2)).toEqual([]);
      expect(summary(c.outcome)).toBe('unknown');
    },
  );
});

// ---- the abort path ---------------------------------------------------------------------------

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
});

// ---- a single replica -------------------------------------------------------------------------

describe('a single replica', () => {
  test('yes, commit ok: committed', () => {
    const c = started(1);
    expect(c.onVote(0, yes(4))).toEqual([commit(0, 5)]);
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

  test.each<[AckResult, string]>([
    [ackError('aborted', 'transaction_unknown'), 'aborted transaction_unknown'],
    [ACK_REFUSED, 'retry'],
    [ACK_TIMEOUT, 'unknown'],
  ])('commit ack %j: outcome %s with no further message', (ack, outcome) => {
    const c = started(1);
    c.onVote(0, yes(0));
    expect(c.onCommitAck(0, ack)).toEqual([]);
    expect(summary(c.outcome)).toBe(outcome);
  });
});

// ---- protocol misuse is a programmer error -----------------------------------------------------

describe('assertions on protocol misuse', () => {
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
    ['a commit ack with no commit sent', (c) => c.onCommitAck(0, OK)],
    ['an abort ack with no abort sent', (c) => c.onAbortAck(1, OK)],
    [
      'a commit ack from a secondary before the primary acknowledged',
      (c) => {
        [0, 1, 2].forEach((r) => c.onVote(r, yes(0)));
        return c.onCommitAck(1, OK);
      },
    ],
    [
      'a second commit ack from the primary',
      (c) => {
        [0, 1, 2].forEach((r) => c.onVote(r, yes(0)));
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
      'an abort ack answering a commit',
      (c) => {
        [0, 1, 2].forEach((r) => c.onVote(r, yes(0)));
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

  test('start twice', () => {
    const c = started(3);
    expect(thrown(() => c.start())).toBeInstanceOf(AssertionError);
  });

  test('a transaction has at least one replica', () => {
    expect(thrown(() => new Coordinator(0))).toBeInstanceOf(AssertionError);
  });
});

// ---- every vote combination, in every order ----------------------------------------------------

describe('exhaustively, for 1 to 3 replicas', () => {
  const VOTES: [string, VoteResult][] = [
    ['yes v0', yes(0)],
    ['yes v4', yes(4)],
    ['epoch', EPOCH_MISMATCH],
    ['busy', KEY_BUSY],
    ['refused', REFUSED],
    ['timeout', TIMEOUT],
  ];
  const ACKS: AckResult[] = [
    OK,
    ackError('aborted', 'transaction_unknown'),
    ACK_REFUSED,
    ACK_TIMEOUT,
  ];

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

  /** Drives one run; returns a description of any broken invariant (or nothing). */
  function run(
    votes: readonly VoteResult[],
    order: readonly number[],
    acks: readonly AckResult[],
  ): string[] {
    const n = votes.length;
    const broken: string[] = [];
    const c = new Coordinator(n);
    const outstanding: Send[] = [];
    const sent: Send[] = [];
    const accept = (sends: Send[]): void => {
      sent.push(...sends);
      outstanding.push(...sends);
    };
    c.start();
    for (const r of order) {
      if (c.outcome !== undefined) broken.push('outcome before every vote was in');
      accept(c.onVote(r, votes[r]));
    }
    // Answer in arrival order; the i-th ack of the run uses acks[i % acks.length].
    for (let i = 0; outstanding.length > 0; i++) {
      if (c.outcome !== undefined) broken.push('outcome with messages unanswered');
      const send = outstanding.shift() as Send;
      const ack = send.type === 'abort' ? OK : acks[i % acks.length];
      accept(
        send.type === 'commit' ? c.onCommitAck(send.replica, ack) : c.onAbortAck(send.replica, ack),
      );
    }
    const outcome = c.outcome;
    if (outcome === undefined) return [...broken, 'no outcome once every message is answered'];

    const allYes = votes.every((v) => v.type === 'yes');
    const commits = sent.filter((s) => s.type === 'commit');
    const aborts = sent.filter((s) => s.type === 'abort');
    if (!allYes && commits.length > 0) broken.push('a commit without every yes');
    if (commits.length > 0 && commits[0].replica !== 0)
      broken.push('the first commit is not to the primary');
    const expectedVersion = 1 + Math.max(...votes.map((v) => (v.type === 'yes' ? v.version : 0)));
    if (commits.some((s) => s.type === 'commit' && s.version !== expectedVersion))
      broken.push('a wrong version');
    if (new Set(sent.map((s) => `${s.type}${s.replica}`)).size !== sent.length)
      broken.push('a message sent twice');
    if (commits.some((s) => aborts.some((a) => a.replica === s.replica)))
      broken.push('commit and abort to one replica');
    for (const a of aborts) {
      const v = votes[a.replica];
      if (v.type === 'no' || (v.type === 'unreachable' && v.transport === 'refused')) {
        broken.push(`an abort to replica ${a.replica}, which cannot have prepared`);
      }
    }
    if (!allYes) {
      // Every replica that may have prepared hears the abort.
      votes.forEach((v, r) => {
        const mayHavePrepared =
          v.type === 'yes' || (v.type === 'unreachable' && v.transport !== 'refused');
        if (mayHavePrepared && !aborts.some((a) => a.replica === r))
          broken.push(`replica ${r} never hears the abort`);
      });
      if (outcome.type === 'committed') broken.push('committed without every yes');
      else if (outcome.error.kind !== 'retry' && outcome.error.kind !== 'aborted')
        broken.push('an abort ends neither retry nor aborted');
    }
    if (outcome.type === 'committed' && commits.length !== n)
      broken.push('committed without a commit to everyone');
    return broken;
  }

  test('every combination of votes, every arrival order and several ack patterns keep the invariants', () => {
    const failures: string[] = [];
    let runs = 0;
    for (let n = 1; n <= 3; n++) {
      for (const combination of combinations(VOTES, n)) {
        for (const order of permutations(n)) {
          for (let shift = 0; shift < ACKS.length; shift++) {
            const acks = [...ACKS.slice(shift), ...ACKS.slice(0, shift)];
            runs++;
            for (const problem of run(
              combination.map(([, v]) => v),
              order,
              acks,
            )) {
              failures.push(
                `${combination.map(([name]) => name).join(', ')} order ${order.join('')}: ${problem}`,
              );
            }
          }
        }
      }
    }
    expect(runs).toBe(4 * (6 + 36 * 2 + 216 * 6));
    expect(failures).toEqual([]);
  });
});
