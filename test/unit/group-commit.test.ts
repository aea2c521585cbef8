// Group commit as scenarios, with a commit function the test finishes by hand: which writes share
// a sync, when each writer hears back, what a failed sync does, and the bounds.

import { DhtError } from '../../lib/errors';
import { GroupCommit, SyncFailedError, type GroupCommitConfig } from '../../lib/group-commit';

/** A sync the test ends: `syncs` lists every batch handed to it, in order. */
class FakeDisk {
  readonly syncs: string[][] = [];
  private pending: { resolve: () => void; reject: (err: Error) => void }[] = [];

  readonly sync = (ops: readonly string[]): Promise<void> => {
    this.syncs.push([...ops]);
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  };

  /** Finish the oldest sync in flight (there is at most one). */
  finish(): void {
    expect(this.pending).toHaveLength(1);
    this.pending.shift()!.resolve();
  }

  fail(message: string): void {
    expect(this.pending).toHaveLength(1);
    this.pending.shift()!.reject(new Error(message));
  }

  get inFlight(): number {
    return this.pending.length;
  }
}

function groupCommit(
  disk: FakeDisk,
  limits: Partial<GroupCommitConfig<string>> = {},
): GroupCommit<string> {
  return new GroupCommit<string>({
    sync: disk.sync,
    bytesOf: (op) => op.length,
    batchOpsMax: 100,
    batchBytesMax: 10_000,
    queueOpsMax: 1_000,
    queueBytesMax: 100_000,
    ...limits,
  });
}

/** Let setImmediate callbacks and promise reactions run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Which of `promises` have resolved / rejected so far. */
function track(promises: readonly Promise<void>[]): { done: boolean[]; failed: boolean[] } {
  const state = { done: promises.map(() => false), failed: promises.map(() => false) };
  promises.forEach((p, i) =>
    p.then(
      () => (state.done[i] = true),
      () => (state.failed[i] = true),
    ),
  );
  return state;
}

describe('sharing syncs', () => {
  test('writes issued together share one sync', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk);
    const writes = Array.from({ length: 50 }, (_, i) => group.write(`w${i}`));
    await settle();
    expect(disk.syncs).toHaveLength(1);
    expect(disk.syncs[0]).toHaveLength(50);
    disk.finish();
    await Promise.all(writes);
    expect(group.stats).toMatchObject({ syncs: 1, ops: 50, batchOpsLargest: 50 });
  });

  test('writes arriving during a sync share the next one, and wait for it', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk);
    const first = track([group.write('a')]);
    await settle();
    expect(disk.syncs).toEqual([['a']]);

    // 64 writers arrive while the first sync runs.
    const later = Array.from({ length: 64 }, (_, i) => group.write(`b${i}`));
    const laterState = track(later);
    await settle();
    expect(disk.inFlight).toBe(1); // still one sync at a time
    expect(disk.syncs).toHaveLength(1);

    disk.finish();
    await settle();
    expect(first.done).toEqual([true]);
    expect(laterState.done.some(Boolean)).toBe(false); // not acknowledged before their own sync
    expect(disk.syncs).toHaveLength(2);
    expect(disk.syncs[1]).toEqual(Array.from({ length: 64 }, (_, i) => `b${i}`));

    disk.finish();
    await Promise.all(later);
    expect(group.stats.syncs).toBe(2); // 65 writes, 2 syncs
  });

  test('flush waits for the newest batch and resolves at once when idle', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk);
    await group.flush(); // nothing queued
    void group.write('a');
    await settle();
    void group.write('b');
    const flushed = track([group.flush()]);
    disk.finish(); // 'a' durable, 'b' not yet
    await settle();
    expect(flushed.done).toEqual([false]);
    disk.finish();
    await settle();
    expect(flushed.done).toEqual([true]);
    expect(group.unsyncedOps).toBe(0);
  });
});

describe('queued writes nobody waits for', () => {
  test('ask for no sync: they ride on the next one a write or a flush asks for', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk, { lazySyncMs: 60_000 });
    group.queue('tidy 1');
    group.queue('tidy 2');
    await settle();
    expect(disk.syncs).toEqual([]); // nobody asked
    const vote = group.write('vote');
    await settle();
    expect(disk.syncs).toEqual([['tidy 1', 'tidy 2', 'vote']]);
    disk.finish();
    await vote;

    group.queue('tidy 3');
    const flushed = group.flush(); // asks for everything queued before it
    await settle();
    expect(disk.syncs[1]).toEqual(['tidy 3']);
    disk.finish();
    await flushed;
    await group.close();
  });

  test('do not start a sync of their own after one finishes: the next ask takes them along', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk, { lazySyncMs: 60_000 });
    const first = group.write('vote 1');
    await settle();
    group.queue('commit 1'); // arrives during the sync of vote 1
    disk.finish();
    await first;
    await settle();
    expect(disk.inFlight).toBe(0); // no sync started for the commit alone
    const second = group.write('vote 2');
    await settle();
    expect(disk.syncs).toEqual([['vote 1'], ['commit 1', 'vote 2']]);
    disk.finish();
    await second;
    await group.close();
  });

  test('are synced on their own once lazySyncMs has passed without an ask', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk, { lazySyncMs: 20 });
    group.queue('tidy');
    await settle();
    expect(disk.syncs).toEqual([]);
    const deadline = Date.now() + 5_000;
    while (disk.syncs.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(disk.syncs).toEqual([['tidy']]);
    disk.finish();
    await group.flush();
    await group.close();
  });

  test('close syncs them', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk, { lazySyncMs: 60_000 });
    group.queue('tidy');
    const closed = group.close();
    await settle();
    expect(disk.syncs).toEqual([['tidy']]);
    disk.finish();
    await closed;
  });
});

describe('a failed sync', () => {
  test('rejects every writer of its batch and of the batches behind it; nothing is acknowledged', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk, { batchOpsMax: 2 });
    const first = [group.write('a'), group.write('b')];
    await settle();
    const queued = [group.write('c'), group.write('d'), group.write('e')]; // two more batches
    const state = track([...first, ...queued]);
    disk.fail('EIO');
    await settle();
    expect(state.done).toEqual([false, false, false, false, false]);
    expect(state.failed).toEqual([true, true, true, true, true]);
    await expect(first[0]).rejects.toThrow(SyncFailedError);
    await expect(queued[2]).rejects.toThrow(/storage sync failed, no write acknowledged: EIO/);
    expect(disk.syncs).toHaveLength(1); // the queued batches were never synced
  });

  test('is final: later writes throw at once, flush and close reject', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk);
    void group.write('a');
    await settle();
    disk.fail('disk gone');
    await settle();
    expect(group.failed).toBeInstanceOf(SyncFailedError);
    expect(() => group.write('b')).toThrow(SyncFailedError);
    await expect(group.flush()).rejects.toThrow(SyncFailedError);
    await expect(group.close()).rejects.toThrow(SyncFailedError);
    expect(disk.syncs).toHaveLength(1);
  });

  test('a sync function that throws synchronously fails like one that rejects', async () => {
    const group = new GroupCommit<string>({
      sync: () => {
        throw new Error('boom');
      },
      bytesOf: (op) => op.length,
      batchOpsMax: 10,
      batchBytesMax: 100,
      queueOpsMax: 10,
      queueBytesMax: 100,
    });
    await expect(group.write('a')).rejects.toThrow(/boom/);
  });
});

describe('bounds', () => {
  test('a batch holds at most batchOpsMax ops and batchBytesMax bytes', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk, { batchOpsMax: 3, batchBytesMax: 10 });
    void group.write('x'); // starts the first sync alone
    await settle();
    for (const op of ['1', '2', '3', '4', 'aaaaaa', 'bbbbbb']) void group.write(op);
    const flushed = group.flush();
    for (let i = 0; i < 4; i++) {
      disk.finish();
      await settle();
    }
    await flushed;
    expect(disk.syncs).toEqual([['x'], ['1', '2', '3'], ['4', 'aaaaaa'], ['bbbbbb']]);
  });

  test('a full queue refuses the write at once with retry/storage_busy, queuing nothing', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk, { batchOpsMax: 2, queueOpsMax: 4 });
    void group.write('in flight');
    await settle();
    for (let i = 0; i < 4; i++) void group.write(`q${i}`);
    let refused: unknown;
    try {
      void group.write('one too many');
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(DhtError);
    expect(refused).toMatchObject({ kind: 'retry', reason: 'storage_busy' });
    expect(group.stats.queuedOps).toBe(4);
    expect(group.unsyncedOps).toBe(5);
  });

  test('the queue is bounded in bytes, but one op larger than the queue is taken alone', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk, { batchBytesMax: 10, queueBytesMax: 20 });
    void group.write('in flight');
    await settle();
    const big = 'x'.repeat(50);
    const alone = group.write(big); // the queue is empty: taken
    expect(() => group.write('y')).toThrow(/storage queue full/);
    disk.finish();
    await settle();
    disk.finish();
    await alone;
    expect(disk.syncs[1]).toEqual([big]);
  });

  test('close waits for queued writes and refuses new ones', async () => {
    const disk = new FakeDisk();
    const group = groupCommit(disk);
    const write = group.write('a');
    const closed = track([group.close()]);
    expect(() => group.write('b')).toThrow(/closed/);
    await settle();
    expect(closed.done).toEqual([false]);
    disk.finish();
    await write;
    await settle();
    expect(closed.done).toEqual([true]);
  });
});
