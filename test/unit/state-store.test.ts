// The view leader's data directory (viewleader/state-store.ts) on a real LevelDB in temporary
// directories: what is written and made durable reads back after reopening; a step that changed
// nothing costs no sync, concurrent steps share syncs; a failed sync is reported once and
// acknowledges nothing; a locked, foreign or corrupt directory is refused with a clear error.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { SyncFailedError } from '../../lib/group-commit';
import { StoreOpenError } from '../../lib/level-dir';
import { DurableStore } from '../../server/durable-store';
import { LockTable } from '../../viewleader/locks';
import { Membership } from '../../viewleader/membership';
import type { ViewLeaderChanges } from '../../viewleader/saved-state';
import { StateStore, type StateStoreOptions } from '../../viewleader/state-store';

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-state-store-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

const dataDir = (): string => path.join(root, 'viewleader');
const failures: Error[] = [];
const OPTIONS: StateStoreOptions = { onFailure: (err) => failures.push(err) };
beforeEach(() => failures.splice(0));

/** A view leader's cores over `store`: each `step` saves what changed, as the shell does. */
function cores(store: StateStore) {
  const membership = new Membership(1000);
  const locks = new LockTable();
  const step = (act: () => void): void => {
    act();
    const changes: ViewLeaderChanges = {
      membership: membership.takeChanges(),
      locks: locks.takeChanges(),
    };
    store.write(changes);
  };
  return { membership, locks, step };
}

async function openError(dir: string): Promise<StoreOpenError> {
  try {
    const { store } = await StateStore.open(dir, OPTIONS);
    await store.close();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreOpenError);
    return err as StoreOpenError;
  }
  throw new Error(`${dir} opened`);
}

test('a new directory is created and holds the state of a new view leader', async () => {
  const dir = path.join(root, 'a', 'b');
  const { store, snapshot } = await StateStore.open(dir, OPTIONS);
  expect(snapshot.membership.epoch).toBe(0);
  expect(snapshot.locks.locks).toEqual([]);
  expect(fs.existsSync(path.join(dir, 'CURRENT'))).toBe(true);
  await store.close();
});

test('what was made durable reads back after reopening', async () => {
  const dir = dataDir();
  const { store } = await StateStore.open(dir, OPTIONS);
  const { membership, locks, step } = cores(store);
  step(() => membership.heartbeat('a', '127.0.0.1:38000', 0));
  step(() => membership.heartbeat('b', '127.0.0.1:38001', 1));
  step(() => membership.rebalanceDone('a', 2, 'copied'));
  step(() => membership.tick(1002)); // a and b expire
  step(() => membership.heartbeat('c', '127.0.0.1:38002', 1003));
  step(() => locks.get('L', 'alice'));
  step(() => locks.get('L', 'bob'));
  await store.durable();
  await store.close();

  const reopened = await StateStore.open(dir, OPTIONS);
  expect(reopened.snapshot).toEqual({
    membership: membership.snapshot(),
    locks: locks.snapshot(),
  });
  await reopened.store.close();
});

test('a step that changed nothing costs no sync; concurrent steps share syncs', async () => {
  const { store } = await StateStore.open(dataDir(), OPTIONS);
  const { membership, locks, step } = cores(store);
  step(() => membership.heartbeat('a', '127.0.0.1:38000', 0));
  await store.durable();
  const syncs = store.syncs;
  for (let i = 1; i <= 100; i++) step(() => membership.heartbeat('a', '127.0.0.1:38000', i));
  await store.durable();
  expect(store.syncs).toBe(syncs);

  for (let i = 0; i < 100; i++) step(() => locks.get(`lock ${i}`, 'alice'));
  await store.durable();
  expect(store.syncs - syncs).toBeGreaterThanOrEqual(1);
  expect(store.syncs - syncs).toBeLessThanOrEqual(2); // written in one event-loop turn
  await store.close();
});

test('a failed sync is reported once, and nothing after it is acknowledged', async () => {
  let failNext = false;
  const { store } = await StateStore.open(dataDir(), {
    ...OPTIONS,
    beforeSync: () => {
      if (failNext) throw new Error('disk on fire');
    },
  });
  const { locks, step } = cores(store);
  step(() => locks.get('L', 'alice'));
  await store.durable();
  failNext = true;
  step(() => locks.get('M', 'alice'));
  await expect(store.durable()).rejects.toThrow(SyncFailedError);
  step(() => locks.get('N', 'alice'));
  await expect(store.durable()).rejects.toThrow(SyncFailedError);
  expect(failures).toHaveLength(1);
  expect(failures[0].message).toMatch(/disk on fire/);
  await expect(store.close()).rejects.toThrow(SyncFailedError);

  const reopened = await StateStore.open(dataDir(), OPTIONS);
  expect(reopened.snapshot.locks.locks.map((l) => l.lock)).toEqual(['L']);
  await reopened.store.close();
});

describe('unusable directories are refused clearly', () => {
  test('a directory another open holds (LevelDB lock)', async () => {
    const dir = dataDir();
    const { store } = await StateStore.open(dir, OPTIONS);
    const err = await openError(dir);
    expect(err.code).toBe('locked');
    expect(err.message).toContain(dir);
    await store.close();
  });

  test('a file where the directory should be', async () => {
    const file = path.join(root, 'a-file');
    fs.writeFileSync(file, 'x');
    const err = await openError(file);
    expect(err.code).toBe('unreadable');
    expect(err.message).toContain(file);
  });

  test("a server's data directory", async () => {
    const dir = dataDir();
    await (await DurableStore.open(dir)).close();
    const err = await openError(dir);
    expect(err.code).toBe('not_a_store');
    expect(err.message).toMatch(/format "dht-store 1", not "dht-viewleader 1"/);
  });

  test('garbage in CURRENT', async () => {
    const dir = dataDir();
    await (await StateStore.open(dir, OPTIONS)).store.close();
    fs.writeFileSync(path.join(dir, 'CURRENT'), 'garbage\n');
    expect(['corrupt', 'unreadable']).toContain((await openError(dir)).code);
  });

  test('a record that cannot be read', async () => {
    const dir = dataDir();
    await (await StateStore.open(dir, OPTIONS)).store.close();
    const db = new ClassicLevel<string, string>(dir);
    await db.put('member:"a"', '{"address":');
    await db.close();
    const err = await openError(dir);
    expect(err.code).toBe('corrupt');
    expect(err.message).toContain(dir);
    expect(err.message).toMatch(/unreadable member in record "member:\\"a\\""/);
  });
});
