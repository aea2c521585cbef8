// The lock table as scenarios: grants, FIFO queues, releases, deadlocks, servers leaving.

import { AssertionError } from '../../lib/assert';
import { DEADLOCK_CYCLES_MAX, LockTable } from '../../viewleader/locks';

/** Run `get` steps in order; each step is [lock, requester]. */
function table(...gets: [string, string][]): LockTable {
  const locks = new LockTable();
  for (const [lock, requester] of gets) locks.get(lock, requester);
  return locks;
}

describe('lock_get', () => {
  test('a free lock is granted', () => {
    const locks = new LockTable();
    expect(locks.get('L', 'alice')).toEqual({ kind: 'granted' });
    expect(locks.holderOf('L')).toBe('alice');
  });

  test('the holder asking again is granted again, without queuing', () => {
    const locks = table(['L', 'alice']);
    expect(locks.get('L', 'alice')).toEqual({ kind: 'granted' });
    expect(locks.waitersOf('L')).toEqual([]);
    expect(locks.size).toBe(1);
  });

  test('others queue in FIFO order', () => {
    const locks = table(['L', 'alice']);
    expect(locks.get('L', 'bob')).toEqual({ kind: 'queued', position: 1, newCycles: [] });
    expect(locks.get('L', 'carol')).toEqual({ kind: 'queued', position: 2, newCycles: [] });
    expect(locks.waitersOf('L')).toEqual(['bob', 'carol']);
  });

  test('a waiter asking again is not queued twice and keeps its place', () => {
    const locks = table(['L', 'alice'], ['L', 'bob'], ['L', 'carol']);
    expect(locks.get('L', 'bob')).toEqual({ kind: 'queued', position: 1, newCycles: [] });
    expect(locks.get('L', 'carol')).toEqual({ kind: 'queued', position: 2, newCycles: [] });
    expect(locks.waitersOf('L')).toEqual(['bob', 'carol']);
    expect(locks.size).toBe(3);
  });

  test('locks are independent of each other', () => {
    const locks = table(['L', 'alice']);
    expect(locks.get('M', 'bob')).toEqual({ kind: 'granted' });
    expect(locks.get('M', 'alice')).toMatchObject({ kind: 'queued' });
  });
});

describe('lock_release', () => {
  test('the holder releases; the first waiter becomes the holder, in FIFO order', () => {
    const locks = table(['L', 'alice'], ['L', 'bob'], ['L', 'carol']);
    expect(locks.release('L', 'alice')).toEqual({
      kind: 'released',
      nextHolder: 'bob',
      newCycles: [],
    });
    expect(locks.get('L', 'bob')).toEqual({ kind: 'granted' });
    expect(locks.release('L', 'bob')).toMatchObject({ nextHolder: 'carol' });
    expect(locks.release('L', 'carol')).toMatchObject({ nextHolder: undefined });
    expect(locks.holderOf('L')).toBeUndefined();
    expect(locks.size).toBe(0);
  });

  test('a freed lock can be granted to anyone', () => {
    const locks = table(['L', 'alice']);
    locks.release('L', 'alice');
    expect(locks.get('L', 'dave')).toEqual({ kind: 'granted' });
  });

  test('a waiter releasing leaves the queue; the others keep their order', () => {
    const locks = table(['L', 'alice'], ['L', 'bob'], ['L', 'carol']);
    expect(locks.release('L', 'bob')).toEqual({ kind: 'dequeued' });
    expect(locks.holderOf('L')).toBe('alice');
    expect(locks.waitersOf('L')).toEqual(['carol']);
    expect(locks.release('L', 'alice')).toMatchObject({ nextHolder: 'carol' });
  });

  test.each([
    { case: 'a lock nobody holds', lock: 'nope', requester: 'alice' },
    { case: 'a lock held by someone else', lock: 'L', requester: 'carol' },
    { case: 'a lock already released', lock: 'M', requester: 'alice' },
  ])('releasing $case is refused and changes nothing', ({ lock, requester }) => {
    const locks = table(['L', 'alice'], ['L', 'bob'], ['M', 'alice']);
    locks.release('M', 'alice');
    expect(locks.release(lock, requester)).toEqual({ kind: 'not_held' });
    expect(locks.holderOf('L')).toBe('alice');
    expect(locks.waitersOf('L')).toEqual(['bob']);
  });

  test('a full table refuses new holds and new waiters, but not repeats', () => {
    const entriesMax = 10;
    const locks = new LockTable(entriesMax);
    for (let i = 0; i < entriesMax - 1; i++) locks.get(`L${i}`, 'alice');
    expect(locks.get('L0', 'bob')).toMatchObject({ kind: 'queued' }); // the last entry
    expect(locks.get('new', 'alice')).toEqual({ kind: 'table_full' });
    expect(locks.get('L1', 'bob')).toEqual({ kind: 'table_full' });
    expect(locks.get('L0', 'alice')).toEqual({ kind: 'granted' });
    expect(locks.get('L0', 'bob')).toMatchObject({ kind: 'queued' });
    locks.release('L5', 'alice');
    expect(locks.get('new', 'alice')).toEqual({ kind: 'granted' });
  });
});

describe('deadlocks', () => {
  test('none in a table without waiters, nor in a chain', () => {
    expect(table(['L', 'a'], ['M', 'b']).deadlocks()).toEqual([]);
    expect(table(['L', 'a'], ['M', 'b'], ['L', 'b'], ['N', 'c'], ['M', 'c']).deadlocks()).toEqual(
      [],
    );
  });

  test('two requesters each waiting for the other: the second get reports the cycle', () => {
    const locks = table(['L1', 'bob'], ['L2', 'alice']);
    expect(locks.get('L2', 'bob')).toEqual({ kind: 'queued', position: 1, newCycles: [] });
    expect(locks.get('L1', 'alice')).toEqual({
      kind: 'queued',
      position: 1,
      newCycles: [['alice', 'bob']],
    });
    expect(locks.deadlocks()).toEqual([['alice', 'bob']]);
    // Asking again reports nothing new: the cycle is already known.
    expect(locks.get('L1', 'alice')).toMatchObject({ newCycles: [] });
  });

  test('a cycle of three, reported once, starting at its smallest name', () => {
    // c holds L1, a holds L2, b holds L3; a waits for c, b for a, c for b.
    const locks = table(['L1', 'c'], ['L2', 'a'], ['L3', 'b'], ['L1', 'a'], ['L2', 'b']);
    expect(locks.get('L3', 'c')).toMatchObject({ newCycles: [['a', 'c', 'b']] });
    expect(locks.deadlocks()).toEqual([['a', 'c', 'b']]);
  });

  test('several cycles come out in a deterministic order', () => {
    const locks = table(['L1', 'a'], ['L2', 'b'], ['L3', 'c'], ['L4', 'd']);
    for (const [lock, requester] of [
      ['L2', 'a'],
      ['L1', 'b'],
      ['L4', 'c'],
      ['L3', 'd'],
      ['L3', 'b'],
      ['L2', 'c'],
    ]) {
      locks.get(lock, requester);
    }
    expect(locks.deadlocks()).toEqual([
      ['a', 'b'],
      ['b', 'c'],
      ['c', 'd'],
    ]);
  });

  test('releasing a waiter breaks the cycle', () => {
    const locks = table(['L1', 'bob'], ['L2', 'alice'], ['L2', 'bob'], ['L1', 'alice']);
    locks.release('L1', 'alice');
    expect(locks.deadlocks()).toEqual([]);
  });

  test('a promotion can close a cycle, and the release reports it', () => {
    // carol holds M and waits for L; after alice hands L to bob, carol waits for bob, who waits
    // for M (held by carol).
    const locks = table(['L', 'alice'], ['M', 'carol'], ['L', 'bob'], ['L', 'carol'], ['M', 'bob']);
    expect(locks.deadlocks()).toEqual([]);
    expect(locks.release('L', 'alice')).toEqual({
      kind: 'released',
      nextHolder: 'bob',
      newCycles: [['bob', 'carol']],
    });
  });

  test('the number of cycles reported is bounded', () => {
    // Everyone holds a lock and waits for everyone else's: far more cycles than the bound.
    const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const locks = table(...names.map((n): [string, string] => [`L${n}`, n]));
    for (const waiter of names) {
      for (const holder of names) if (waiter !== holder) locks.get(`L${holder}`, waiter);
    }
    expect(locks.deadlocks()).toHaveLength(DEADLOCK_CYCLES_MAX);
  });
});

describe('a server leaving the view', () => {
  test('its locks are released to their first waiters and it leaves every queue', () => {
    const locks = table(
      ['L1', 'srv-1'],
      ['L2', '127.0.0.1:38000'], // the same server, by address
      ['L3', 'alice'],
      ['L1', 'alice'],
      ['L1', 'bob'],
      ['L2', 'bob'],
      ['L3', 'srv-1'],
      ['L3', 'carol'],
    );
    const outcome = locks.releaseAll(new Set(['srv-1', '127.0.0.1:38000']));
    expect(outcome.released).toEqual([
      { lock: 'L1', requester: 'srv-1', nextHolder: 'alice' },
      { lock: 'L2', requester: '127.0.0.1:38000', nextHolder: 'bob' },
    ]);
    expect(outcome.dequeued).toEqual([{ lock: 'L3', requester: 'srv-1' }]);
    expect(locks.waitersOf('L1')).toEqual(['bob']);
    expect(locks.holderOf('L3')).toBe('alice');
    expect(locks.waitersOf('L3')).toEqual(['carol']);
    expect(locks.size).toBe(5);
  });

  test('a departed waiter is never promoted, even when next in line', () => {
    const locks = table(['L', 'srv-1'], ['L', 'srv-2'], ['L', 'alice']);
    const outcome = locks.releaseAll(new Set(['srv-1', 'srv-2']));
    expect(outcome.released).toEqual([{ lock: 'L', requester: 'srv-1', nextHolder: 'alice' }]);
    expect(locks.holderOf('L')).toBe('alice');
  });

  test('a lock whose holder and waiters all left becomes free', () => {
    const locks = table(['L', 'srv-1'], ['L', 'srv-1b']);
    locks.releaseAll(new Set(['srv-1', 'srv-1b']));
    expect(locks.holderOf('L')).toBeUndefined();
    expect(locks.size).toBe(0);
  });

  test('nothing happens to the locks of others', () => {
    const locks = table(['L', 'alice'], ['L', 'bob']);
    expect(locks.releaseAll(new Set(['srv-9']))).toEqual({
      released: [],
      dequeued: [],
      newCycles: [],
    });
    expect(locks.waitersOf('L')).toEqual(['bob']);
  });
});

describe('durability: snapshot, restore and the change log', () => {
  const restart = (locks: LockTable): LockTable => LockTable.restore(locks.snapshot());

  test('held locks and their queues come back in FIFO order', () => {
    const locks = table(['L', 'alice'], ['L', 'bob'], ['L', 'carol'], ['M', 'dave'], ['M', 'bob']);
    locks.release('L', 'bob');
    locks.get('L', 'bob'); // back at the end of the queue
    const restored = restart(locks);
    expect(restored.snapshot()).toEqual(locks.snapshot());
    expect(restored.holderOf('L')).toBe('alice');
    expect(restored.waitersOf('L')).toEqual(['carol', 'bob']);
    expect(restored.holderOf('M')).toBe('dave');
    expect(restored.waitersOf('M')).toEqual(['bob']);
    expect(restored.size).toBe(locks.size);
    expect(restored.takeChanges()).toEqual([]); // restoring is not a change
  });

  test('after a restore, the holder still holds and the first waiter is next', () => {
    const restored = restart(table(['L', 'alice'], ['L', 'bob'], ['L', 'carol']));
    expect(restored.get('L', 'alice')).toEqual({ kind: 'granted' });
    expect(restored.get('L', 'carol')).toEqual({ kind: 'queued', position: 2, newCycles: [] });
    expect(restored.release('L', 'alice')).toMatchObject({ kind: 'released', nextHolder: 'bob' });
    // A waiter queued after the restore goes behind the restored ones, also at the next restore.
    restored.get('L', 'erin');
    expect(restart(restored).waitersOf('L')).toEqual(['carol', 'erin']);
  });

  test('what the change log records: holds, queuing, handovers, frees', () => {
    const locks = new LockTable();
    locks.get('L', 'alice');
    locks.get('L', 'bob');
    locks.get('L', 'alice'); // repeats change nothing
    locks.get('L', 'bob');
    expect(locks.takeChanges()).toEqual([
      { kind: 'held', lock: 'L', holder: 'alice' },
      { kind: 'queued', lock: 'L', waiter: { requester: 'bob', seq: 0 } },
    ]);
    locks.release('L', 'alice');
    expect(locks.takeChanges()).toEqual([
      { kind: 'dequeued', lock: 'L', requester: 'bob' },
      { kind: 'held', lock: 'L', holder: 'bob' },
    ]);
    locks.release('L', 'bob');
    expect(locks.takeChanges()).toEqual([{ kind: 'freed', lock: 'L' }]);
    locks.release('L', 'bob'); // not held: nothing
    locks.deadlocks();
    expect(locks.takeChanges()).toEqual([]);
  });

  test('a server leaving: its queue places and its locks are recorded as they go', () => {
    const locks = table(['L', 'srv'], ['L', 'alice'], ['M', 'bob'], ['M', 'srv']);
    locks.takeChanges();
    locks.releaseAll(new Set(['srv']));
    expect(locks.takeChanges()).toEqual([
      { kind: 'dequeued', lock: 'M', requester: 'srv' },
      { kind: 'dequeued', lock: 'L', requester: 'alice' },
      { kind: 'held', lock: 'L', holder: 'alice' },
    ]);
  });

  test.each([
    [
      'a lock saved twice',
      [
        { lock: 'L', holder: 'a', waiters: [] },
        { lock: 'L', holder: 'b', waiters: [] },
      ],
    ],
    [
      'the holder queued on its own lock',
      [{ lock: 'L', holder: 'a', waiters: [{ requester: 'a', seq: 0 }] }],
    ],
    [
      'a waiter queued twice',
      [
        {
          lock: 'L',
          holder: 'a',
          waiters: [
            { requester: 'b', seq: 0 },
            { requester: 'b', seq: 1 },
          ],
        },
      ],
    ],
    [
      'a queue out of order',
      [
        {
          lock: 'L',
          holder: 'a',
          waiters: [
            { requester: 'b', seq: 5 },
            { requester: 'c', seq: 4 },
          ],
        },
      ],
    ],
  ])('an inconsistent snapshot is refused: %s', (_what, saved) => {
    expect(() => LockTable.restore({ locks: saved })).toThrow(AssertionError);
  });
});
