// A replicated view leader member's disk (viewleader/raft-store.ts) on a real LevelDB in temporary
// directories: entries, the hard state and a snapshot read back after reopening; a conflicting
// suffix is replaced (no entry of the old one survives past the new end); a snapshot deletes the
// entries it covers; a directory created for other members, or a lone view leader's, is refused.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { StoreOpenError } from '../../lib/level-dir';
import type { Entry, HardState, Snapshot } from '../../viewleader/raft';
import { RaftStore, type Command, type SnapshotState } from '../../viewleader/raft-store';
import { StateStore } from '../../viewleader/state-store';

const PEERS = ['127.0.0.1:39001', '127.0.0.1:39002', '127.0.0.1:39003'];

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-raft-store-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

const dataDir = (): string => path.join(root, 'member');

/** An entry whose command puts one record named after its index and term. */
function entry(index: number, term: number): Entry<Command> {
  return { index, term, command: [{ type: 'put', key: `k${index}`, value: `t${term}` }] };
}

function entries(from: number, to: number, term: number): Entry<Command>[] {
  return Array.from({ length: to - from + 1 }, (_, i) => entry(from + i, term));
}

const NO_CHANGE = { snapshot: null, entries: [], hardState: null } as const;

/** Reopen `dir` for PEERS: what a restarted member is handed. */
async function reopen(dir: string) {
  const { store, persisted } = await RaftStore.open(dir, PEERS);
  await store.close();
  return persisted;
}

/** The indexes of the entries on disk, read directly from LevelDB (covered ones included). */
async function entryKeysOnDisk(dir: string): Promise<number[]> {
  const db = new ClassicLevel<string, string>(dir, { valueEncoding: 'utf8' });
  await db.open();
  try {
    const keys = await db.keys({ gte: 'e:', lt: 'e;' }).all();
    return keys.map((k) => Number(k.slice(2)));
  } finally {
    await db.close();
  }
}

async function openError(dir: string, peers: readonly string[]): Promise<StoreOpenError> {
  try {
    const { store } = await RaftStore.open(dir, peers);
    await store.close();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreOpenError);
    return err as StoreOpenError;
  }
  throw new Error(`${dir} opened for ${peers.join(',')}`);
}

test('a new directory has nothing to hand back', async () => {
  const { store, persisted } = await RaftStore.open(dataDir(), PEERS);
  expect(persisted).toBeNull();
  await store.save(NO_CHANGE); // nothing to write: no batch
  await store.close();
  expect(await reopen(dataDir())).toBeNull();
});

test('entries, the hard state and a snapshot read back after reopening', async () => {
  const dir = dataDir();
  const { store } = await RaftStore.open(dir, PEERS);
  const hard: HardState = { term: 2, votedFor: PEERS[1], commitIndex: 3 };
  await store.save({ snapshot: null, entries: entries(1, 3, 1), hardState: null });
  await store.save({ snapshot: null, entries: entries(4, 5, 2), hardState: hard });
  await store.close();

  expect(await reopen(dir)).toEqual({
    hardState: hard,
    snapshot: null,
    entries: [...entries(1, 3, 1), ...entries(4, 5, 2)],
  });

  // A snapshot arriving from the leader replaces the whole log; later entries follow it.
  const again = await RaftStore.open(dir, PEERS);
  expect(again.persisted?.entries).toHaveLength(5);
  const snapshot: Snapshot<SnapshotState> = {
    lastIndex: 10,
    lastTerm: 3,
    state: [
      ['m:epoch', '7'],
      ['l:L', 'alice'],
    ],
  };
  const later: HardState = { term: 3, votedFor: null, commitIndex: 11 };
  await again.store.save({ snapshot, entries: [entry(11, 3)], hardState: later });
  await again.store.close();

  expect(await reopen(dir)).toEqual({ hardState: later, snapshot, entries: [entry(11, 3)] });
  expect(await entryKeysOnDisk(dir)).toEqual([11]);
});

test('a conflicting suffix is overwritten: every entry from the first new index on is replaced', async () => {
  const dir = dataDir();
  const { store } = await RaftStore.open(dir, PEERS);
  await store.save({ snapshot: null, entries: entries(1, 6, 1), hardState: null });
  // A new leader's log agrees up to 3 and has only 4 and 5 of its own term after it: the old
  // 4..6 go, 6 included, although nothing new is written at 6.
  await store.save({ snapshot: null, entries: entries(4, 5, 2), hardState: null });
  await store.close();

  expect((await reopen(dir))?.entries).toEqual([...entries(1, 3, 1), ...entries(4, 5, 2)]);
  expect(await entryKeysOnDisk(dir)).toEqual([1, 2, 3, 4, 5]);

  // And again after a reopen (the store learns its bounds from the disk): 2 onwards replaced.
  const again = await RaftStore.open(dir, PEERS);
  await again.store.save({ snapshot: null, entries: [entry(2, 3)], hardState: null });
  await again.store.close();
  expect((await reopen(dir))?.entries).toEqual([entry(1, 1), entry(2, 3)]);
  expect(await entryKeysOnDisk(dir)).toEqual([1, 2]);
});

test('saveSnapshot deletes the entries it covers and keeps the later ones', async () => {
  const dir = dataDir();
  const { store } = await RaftStore.open(dir, PEERS);
  await store.save({
    snapshot: null,
    entries: entries(1, 8, 1),
    hardState: { term: 1, votedFor: PEERS[0], commitIndex: 8 },
  });
  const snapshot: Snapshot<SnapshotState> = { lastIndex: 5, lastTerm: 1, state: [['k5', 't1']] };
  await store.saveSnapshot(snapshot);
  // Appends after the snapshot go on from 9; a later snapshot covers what is left.
  await store.save({ snapshot: null, entries: entries(9, 10, 2), hardState: null });
  await store.close();

  expect(await entryKeysOnDisk(dir)).toEqual([6, 7, 8, 9, 10]);
  expect(await reopen(dir)).toEqual({
    hardState: { term: 1, votedFor: PEERS[0], commitIndex: 8 },
    snapshot,
    entries: [...entries(6, 8, 1), ...entries(9, 10, 2)],
  });

  const again = await RaftStore.open(dir, PEERS);
  const whole: Snapshot<SnapshotState> = { lastIndex: 10, lastTerm: 2, state: [] };
  await again.store.saveSnapshot(whole);
  await again.store.save({ snapshot: null, entries: [entry(11, 2)], hardState: null });
  await again.store.close();
  expect(await entryKeysOnDisk(dir)).toEqual([11]);
  expect((await reopen(dir))?.entries).toEqual([entry(11, 2)]);
});

test('entries a crash left behind a snapshot are not handed back', async () => {
  // As if the process died between saving a snapshot and deleting what it covers: the snapshot
  // is written directly, the entries stay.
  const dir = dataDir();
  const { store } = await RaftStore.open(dir, PEERS);
  await store.save({ snapshot: null, entries: entries(1, 4, 1), hardState: null });
  await store.close();
  const db = new ClassicLevel<string, string>(dir, { valueEncoding: 'utf8' });
  await db.open();
  await db.put('r:snapshot', JSON.stringify({ lastIndex: 2, lastTerm: 1, state: [] }));
  await db.close();

  const persisted = await reopen(dir);
  expect(persisted?.snapshot?.lastIndex).toBe(2);
  expect(persisted?.entries).toEqual(entries(3, 4, 1));
});

test.each([
  ['other members', ['127.0.0.1:39001', '127.0.0.1:39002', '127.0.0.1:39004']],
  ['five members of which these are three', [...PEERS, '127.0.0.1:39004', '127.0.0.1:39005']],
])('a directory created for these members is refused for %s', async (_, others) => {
  const dir = dataDir();
  const { store } = await RaftStore.open(dir, PEERS);
  await store.save({ snapshot: null, entries: [entry(1, 1)], hardState: null });
  await store.close();

  const err = await openError(dir, others);
  expect(err.code).toBe('not_a_store');
  expect(err.message).toContain(dir);
  expect(err.message).toContain(JSON.stringify([...PEERS].sort()));
  expect(err.message).toContain('refusing');
  // The refusal changed nothing: the right members still open it, with its log.
  expect((await reopen(dir))?.entries).toEqual([entry(1, 1)]);
});

test('the same members in another order open the directory', async () => {
  const dir = dataDir();
  const { store } = await RaftStore.open(dir, PEERS);
  await store.save({ snapshot: null, entries: [entry(1, 1)], hardState: null });
  await store.close();
  const { store: again, persisted } = await RaftStore.open(dir, [...PEERS].reverse());
  await again.close();
  expect(persisted?.entries).toEqual([entry(1, 1)]);
});

test("a lone view leader's directory is refused, and a member's is refused by a lone view leader", async () => {
  const lone = path.join(root, 'lone');
  const { store } = await StateStore.open(lone, { onFailure: () => undefined });
  await store.close();
  const err = await openError(lone, PEERS);
  expect(err.code).toBe('not_a_store');
  expect(err.message).toContain('dht-viewleader 1');

  const member = dataDir();
  const opened = await RaftStore.open(member, PEERS);
  await opened.store.close();
  await expect(StateStore.open(member, { onFailure: () => undefined })).rejects.toThrow(
    /dht-viewleader-raft 1/,
  );
});

test('a directory open in one member cannot be opened by another', async () => {
  const dir = dataDir();
  const { store } = await RaftStore.open(dir, PEERS);
  try {
    expect((await openError(dir, PEERS)).code).toBe('locked');
  } finally {
    await store.close();
  }
});
