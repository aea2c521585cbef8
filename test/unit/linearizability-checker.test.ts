// The register linearizability checker (test/support/linearizability.ts) on hand-made histories:
// it must accept every linearizable history (or the integration tests would cry wolf) and reject
// the anomalies a replicated store can show (or they would prove nothing).

import { checkRegister, type Operation, type OperationOutcome } from '../support/linearizability';
import { uniform } from '../support/random';

const w = (
  value: string,
  start: number,
  end: number,
  outcome: OperationOutcome = 'ok',
): Operation => ({
  type: 'write',
  value,
  start,
  end,
  outcome,
});
const r = (
  value: string | null,
  start: number,
  end: number,
  outcome: OperationOutcome = 'ok',
): Operation => ({
  type: 'read',
  value,
  start,
  end,
  outcome,
});

/** A delete (delr): a write of "absent". */
const d = (start: number, end: number, outcome: OperationOutcome = 'ok'): Operation => ({
  type: 'delete',
  value: null,
  start,
  end,
  outcome,
});

function expectOk(history: Operation[], initial?: string | null): void {
  const result = checkRegister(history, { initial });
  expect(result).toEqual({ ok: true });
}

function expectRejected(history: Operation[], explanation: RegExp, initial?: string | null): void {
  const result = checkRegister(history, { initial });
  expect(result.ok).toBe(false);
  if (!result.ok) expect(result.explanation).toMatch(explanation);
}

describe('accepts linearizable histories', () => {
  test.each<[string, Operation[]]>([
    ['an empty history', []],
    ['a sequential write then read', [w('a', 0, 1), r('a', 2, 3)]],
    ['a read of the absent key before any write', [r(null, 0, 1), w('a', 2, 3), r('a', 4, 5)]],
    [
      'a read concurrent with a write sees the old value',
      [w('a', 0, 1), w('b', 2, 6), r('a', 3, 4)],
    ],
    [
      'a read concurrent with a write sees the new value',
      [w('a', 0, 1), w('b', 2, 6), r('b', 3, 4)],
    ],
    [
      'two concurrent writes ordered by what later reads saw',
      [w('a', 0, 5), w('b', 1, 4), r('a', 6, 7), r('a', 8, 9)],
    ],
    [
      'a read that returns before the write it saw has ended',
      [w('a', 0, 10), r('a', 1, 2), r('a', 3, 4)],
    ],
    ['failed reads are ignored', [w('a', 0, 1), r('zzz', 2, 3, 'fail'), r('a', 4, 5)]],
    ['a failed write that nobody saw', [w('a', 0, 1), w('b', 2, 3, 'fail'), r('a', 4, 5)]],
    ['an unknown write that took effect', [w('a', 0, 1), w('b', 2, 3, 'unknown'), r('b', 10, 11)]],
    [
      'an unknown write that never took effect',
      [w('a', 0, 1), w('b', 2, 3, 'unknown'), r('a', 10, 11)],
    ],
    [
      'an unknown write that took effect long after its client gave up',
      [w('a', 0, 1), w('b', 2, 3, 'unknown'), r('a', 10, 11), r('b', 20, 21)],
    ],
    [
      'overlapping writes and reads of four processes',
      [
        w('a', 0, 3),
        w('b', 1, 5),
        r('b', 2, 4),
        r('a', 3.5, 6), // a's write may come after b's
        w('c', 7, 9),
        r('c', 8, 10),
        r('c', 11, 12),
      ],
    ],
  ])('%s', (_name, history) => {
    expectOk(history);
  });

  test('an initial value', () => {
    expectOk([r('x', 0, 1), w('a', 2, 3), r('a', 4, 5)], 'x');
  });
});

describe('rejects non-linearizable histories', () => {
  test('a stale read after a newer read completed', () => {
    // b's write is still in flight, but once one read saw b, no later read may see a again.
    expectRejected([w('a', 0, 1), w('b', 2, 10), r('b', 3, 4), r('a', 5, 6)], /not linearizable/);
  });

  test('a stale read after the newer write completed', () => {
    expectRejected([w('a', 0, 1), w('b', 2, 3), r('a', 4, 5)], /not linearizable/);
  });

  test('a read of the absent key after a write completed (a lost write)', () => {
    expectRejected([w('a', 0, 1), r(null, 2, 3)], /not linearizable/);
  });

  test('a read of a value never written', () => {
    expectRejected([w('a', 0, 1), r('ghost', 2, 3)], /never written/);
  });

  test('a read of a value whose write failed', () => {
    expectRejected([w('a', 0, 1), w('b', 2, 3, 'fail'), r('b', 4, 5)], /write that failed/);
  });

  test('a read that returned before its write began', () => {
    expectRejected([r('a', 0, 1), w('a', 2, 3)], /before its write began/);
  });

  test('an unknown write seen, then unseen', () => {
    expectRejected(
      [w('a', 0, 1), w('b', 2, 3, 'unknown'), r('b', 4, 5), r('a', 6, 7)],
      /not linearizable/,
    );
  });

  test('two sequential reads that disagree on the order of two concurrent writes', () => {
    // Process 1 sees a then b, process 2 (later) sees b then a: no single order explains both.
    expectRejected(
      [w('a', 0, 20), w('b', 0, 20), r('a', 1, 2), r('b', 3, 4), r('a', 5, 6)],
      /not linearizable/,
    );
  });

  test('the explanation names the operations that cannot come next', () => {
    const result = checkRegister([
      { type: 'write', value: 'a', start: 0, end: 1, outcome: 'ok', process: 'w1' },
      { type: 'write', value: 'b', start: 2, end: 3, outcome: 'ok', process: 'w2' },
      { type: 'read', value: 'a', start: 4, end: 5, outcome: 'ok', process: 'r1' },
    ]);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.explanation).toContain('r1: read "a"');
      expect(result.explanation).toContain('register holds "b"');
    }
  });

  test('written values must be unique', () => {
    expect(() => checkRegister([w('a', 0, 1), w('a', 2, 3)])).toThrow(/unique/);
  });
});

describe('deletes: a delete writes "absent", a not_found read observes it', () => {
  test.each<[string, Operation[]]>([
    ['a delete, then a read of the absent key', [w('a', 0, 1), d(2, 3), r(null, 4, 5)]],
    ['a delete of a key that never existed', [d(0, 1), r(null, 2, 3)]],
    ['a set after a delete', [w('a', 0, 1), d(2, 3), w('b', 4, 5), r('b', 6, 7)]],
    [
      'a read concurrent with a delete sees the old value or absent',
      [w('a', 0, 1), d(2, 10), r('a', 3, 4), r(null, 5, 6), r(null, 11, 12)],
    ],
    ['several deletes (all write the same "absent")', [d(0, 1), w('a', 2, 3), d(4, 5), d(6, 7)]],
    ['an unknown delete that took effect', [w('a', 0, 1), d(2, 3, 'unknown'), r(null, 10, 11)]],
    ['an unknown delete that never took effect', [w('a', 0, 1), d(2, 3, 'unknown'), r('a', 9, 10)]],
    ['a failed delete that nobody saw', [w('a', 0, 1), d(2, 3, 'fail'), r('a', 4, 5)]],
    [
      'a delete and a set concurrent: either order, as later reads show',
      [w('a', 0, 1), d(2, 8), w('b', 3, 7), r(null, 9, 10)],
    ],
    ['the same, the other way round', [w('a', 0, 1), d(2, 8), w('b', 3, 7), r('b', 9, 10)]],
  ])('accepted: %s', (_name, history) => {
    expectOk(history);
  });

  test('accepted: a delete of the initial value', () => {
    expectOk([r('x', 0, 1), d(2, 3), r(null, 4, 5)], 'x');
  });

  test('rejected: a value read after the delete completed (the delete undone)', () => {
    expectRejected([w('a', 0, 1), d(2, 3), r('a', 4, 5)], /not linearizable/);
  });

  test('rejected: absent, then the deleted value again', () => {
    expectRejected([w('a', 0, 10), d(0, 10), r(null, 11, 12), r('a', 13, 14)], /not linearizable/);
  });

  test.each<[string, Operation[]]>([
    ['no delete at all', [r(null, 0, 1)]],
    ['only a failed delete', [d(0, 1, 'fail'), r(null, 2, 3)]],
    ['the delete began after the read ended', [r(null, 0, 1), d(2, 3)]],
  ])('rejected: the initial value read as absent with %s', (_name, history) => {
    expectRejected(history, /no delete could have removed it/, 'x');
  });

  test('a delete writes null, and only a delete', () => {
    expect(() =>
      checkRegister([{ type: 'delete', value: 'a', start: 0, end: 1, outcome: 'ok' }]),
    ).toThrow(/absent/);
  });
});

describe('random histories', () => {
  /**
   * Simulate a correct register: each process issues operations one after another, each taking
   * effect at a random instant inside its interval; some writes end unknown or failed.
   */
  function linearizableHistory(
    seed: number,
    processes: number,
    opsPerProcess: number,
    /** The share of writes that are deletes instead. */
    deleteShare = 0,
  ): Operation[] {
    const random = uniform(seed);
    type Pending = { op: Omit<Operation, 'value'> & { value: string | null }; at: number };
    const pending: Pending[] = [];
    let written = 0;
    for (let p = 0; p < processes; p++) {
      let t = random() * 5;
      for (let i = 0; i < opsPerProcess; i++) {
        const start = t;
        const end = start + 0.5 + random() * 10;
        const at = start + random() * (end - start);
        const isWrite = random() < 0.5;
        const roll = random();
        const outcome: OperationOutcome =
          !isWrite || roll < 0.85 ? 'ok' : roll < 0.93 ? 'unknown' : 'fail';
        const isDelete = isWrite && deleteShare > 0 && random() < deleteShare;
        const value = isWrite && !isDelete ? `v${written++}` : null;
        const type = isDelete ? 'delete' : isWrite ? 'write' : 'read';
        pending.push({ op: { type, value, start, end, outcome, process: `p${p}` }, at });
        t = end + random() * 2;
        if (outcome === 'unknown') break; // a killed client issues nothing more
      }
    }
    // Replay the effects in order of their instants; reads learn their value.
    pending.sort((a, b) => a.at - b.at);
    let current: string | null = null;
    return pending.map(({ op }) => {
      if (op.type !== 'read') {
        // An unknown write takes effect half of the time; a failed one never.
        if (op.outcome === 'ok' || (op.outcome === 'unknown' && random() < 0.5)) current = op.value;
        return op;
      }
      return { ...op, value: current };
    });
  }

  test.each([1, 2, 3, 4, 5, 6, 7, 8])(
    'a simulated correct register is accepted (seed %i)',
    (seed) => {
      const history = linearizableHistory(seed, 5, 40);
      expect(checkRegister(history)).toEqual({ ok: true });
    },
  );

  test.each([1, 2, 3, 4, 5, 6])(
    'a simulated correct register with deletes is accepted (seed %i)',
    (seed) => {
      const history = linearizableHistory(seed, 5, 40, 0.3);
      expect(history.some((o) => o.type === 'delete' && o.outcome === 'ok')).toBe(true);
      expect(history.some((o) => o.type === 'read' && o.value === null && o.start > 20)).toBe(true);
      expect(checkRegister(history)).toEqual({ ok: true });
    },
  );

  test('a deleted value coming back, planted in a long correct history with deletes, is found', () => {
    const history = linearizableHistory(7, 4, 50, 0.3);
    const lastEnd = Math.max(...history.filter((o) => o.outcome !== 'unknown').map((o) => o.end));
    const resurrected = history.find((o) => o.type === 'write' && o.outcome === 'ok');
    expect(resurrected).toBeDefined();
    history.push(
      { type: 'delete', value: null, start: lastEnd + 1, end: lastEnd + 2, outcome: 'ok' },
      {
        type: 'read',
        value: resurrected!.value,
        start: lastEnd + 3,
        end: lastEnd + 4,
        outcome: 'ok',
        process: 'late',
      },
    );
    const result = checkRegister(history);
    expect(result.ok).toBe(false);
  });

  test('a stale read planted in a long correct history is found', () => {
    const history = linearizableHistory(42, 4, 50);
    // After the last write that completed, a fresh read must not see the absent key.
    const lastEnd = Math.max(
      ...history.filter((o) => o.type === 'write' && o.outcome === 'ok').map((o) => o.end),
    );
    history.push({
      type: 'read',
      value: null,
      start: lastEnd + 1,
      end: lastEnd + 2,
      outcome: 'ok',
      process: 'late',
    });
    const result = checkRegister(history);
    expect(result.ok).toBe(false);
  });
});
