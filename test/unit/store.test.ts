// Tombstones in both stores (server/store.ts MemoryStore, server/durable-store.ts DurableStore on a
// real LevelDB): a delete is a copy at its version, ordered against values by version alone, so an
// older value never replaces it and a newer one does; reads, key lists and counts leave it out;
// rebalancing sees it (copyOf, copyKeys); only the cleanup's `delete` forgets it. The durable store
// also keeps it across a reopen. docs/design.md, "Delete and tombstones".

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DurableStore, StoreOpenError } from '../../server/durable-store';
import {
  copyOfWrite,
  MemoryStore,
  putCopyIfNewer,
  sameCopy,
  type Copy,
  type Store,
} from '../../server/store';

let root: string;
const opened: DurableStore[] = [];
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-store-'));
});
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  fs.rmSync(root, { recursive: true, force: true });
});

async function durable(): Promise<DurableStore> {
  const store = await DurableStore.open(path.join(root, 'data'));
  opened.push(store);
  return store;
}

/** Everything a caller can observe of one key and of the whole store. */
function observe(store: Store, key: string) {
  return {
    get: store.get(key),
    copy: store.copyOf(key),
    version: store.versionOf(key),
    keys: [...store.keys()].sort(),
    copyKeys: [...store.copyKeys()].sort(),
    entries: [...store.entries()].sort(),
    size: store.size,
    tombstones: store.tombstones,
  };
}

const STORES: [string, () => Promise<Store>][] = [
  ['MemoryStore', () => Promise.resolve(new MemoryStore())],
  ['DurableStore', durable],
];

describe.each(STORES)('%s: tombstones', (_name, open) => {
  test('a delete of a held value: reads see nothing, rebalancing sees the tombstone', async () => {
    const store = await open();
    store.put('k', 'v', 3);
    store.put('other', 'o', 1);
    expect(store.putTombstoneIfNewer('k', 4)).toBe(true);
    expect(observe(store, 'k')).toEqual({
      get: undefined,
      copy: { deleted: true, version: 4 },
      version: 4,
      keys: ['other'],
      copyKeys: ['k', 'other'],
      entries: [['other', { value: 'o', version: 1 }]],
      size: 1,
      tombstones: 1,
    });
  });

  test('a delete of a key never held stores a tombstone too (delr of a missing key)', async () => {
    const store = await open();
    expect(store.putTombstoneIfNewer('missing', 1)).toBe(true);
    expect(observe(store, 'missing')).toMatchObject({
      get: undefined,
      copy: { deleted: true, version: 1 },
      version: 1,
      keys: [],
      copyKeys: ['missing'],
      size: 0,
      tombstones: 1,
    });
  });

  test.each([
    ['older', 3],
    ['the same version', 4],
  ])('a value at %s does not replace a tombstone (the delete is never undone)', async (_, v) => {
    const store = await open();
    store.put('k', 'v', 3);
    store.putTombstoneIfNewer('k', 4);
    expect(store.putIfNewer('k', 'stale', v)).toBe(false);
    expect(putCopyIfNewer(store, 'k', { value: 'stale', version: v })).toBe(false);
    expect(observe(store, 'k')).toMatchObject({
      get: undefined,
      copy: { deleted: true, version: 4 },
      tombstones: 1,
    });
  });

  test('a newer value replaces a tombstone (setr after delr)', async () => {
    const store = await open();
    store.putTombstoneIfNewer('k', 4);
    expect(store.putIfNewer('k', 'again', 5)).toBe(true);
    expect(observe(store, 'k')).toEqual({
      get: { value: 'again', version: 5 },
      copy: { value: 'again', version: 5 },
      version: 5,
      keys: ['k'],
      copyKeys: ['k'],
      entries: [['k', { value: 'again', version: 5 }]],
      size: 1,
      tombstones: 0,
    });
  });

  test('a tombstone replaces only an older copy, and a newer tombstone an older one', async () => {
    const store = await open();
    store.put('k', 'v', 7);
    expect(store.putTombstoneIfNewer('k', 6)).toBe(false);
    expect(store.putTombstoneIfNewer('k', 7)).toBe(false);
    expect(store.get('k')).toEqual({ value: 'v', version: 7 });
    expect(store.putTombstoneIfNewer('k', 8)).toBe(true);
    expect(store.putTombstoneIfNewer('k', 8)).toBe(false);
    expect(putCopyIfNewer(store, 'k', { deleted: true, version: 9 })).toBe(true);
    expect(observe(store, 'k')).toMatchObject({
      copy: { deleted: true, version: 9 },
      tombstones: 1,
    });
  });

  test('a local put over a tombstone makes the key live again', async () => {
    const store = await open();
    store.putTombstoneIfNewer('k', 2);
    store.put('k', 'local', store.versionOf('k') + 1);
    expect(observe(store, 'k')).toMatchObject({
      get: { value: 'local', version: 3 },
      size: 1,
      tombstones: 0,
    });
  });

  test('delete (the rebalancing cleanup) forgets a tombstone altogether', async () => {
    const store = await open();
    store.putTombstoneIfNewer('k', 2);
    store.put('live', 'v', 1);
    store.delete('k');
    store.delete('k');
    store.delete('never held');
    expect(observe(store, 'k')).toEqual({
      get: undefined,
      copy: undefined,
      version: 0,
      keys: ['live'],
      copyKeys: ['live'],
      entries: [['live', { value: 'v', version: 1 }]],
      size: 1,
      tombstones: 0,
    });
  });

  test('counts stay exact through every transition', async () => {
    const store = await open();
    const model = new Map<string, Copy>();
    let version = 0;
    // Values and tombstones over three keys, in an order that visits every transition.
    const steps: [string, 'value' | 'tombstone' | 'forget'][] = [
      ['a', 'value'],
      ['a', 'tombstone'],
      ['b', 'tombstone'],
      ['b', 'tombstone'],
      ['a', 'value'],
      ['c', 'value'],
      ['c', 'tombstone'],
      ['b', 'forget'],
      ['c', 'forget'],
      ['a', 'tombstone'],
    ];
    for (const [key, step] of steps) {
      version++;
      if (step === 'value') {
        store.putIfNewer(key, `v${version}`, version);
        model.set(key, { value: `v${version}`, version });
      } else if (step === 'tombstone') {
        store.putTombstoneIfNewer(key, version);
        model.set(key, { deleted: true, version });
      } else {
        store.delete(key);
        model.delete(key);
      }
      const tombstones = [...model.values()].filter((c) => c.deleted === true).length;
      expect({ size: store.size, tombstones: store.tombstones }).toEqual({
        size: model.size - tombstones,
        tombstones,
      });
      expect(new Map([...store.copyKeys()].map((k) => [k, store.copyOf(k)]))).toEqual(model);
    }
  });
});

describe('copies from the wire', () => {
  test('a value or a tombstone, exactly one', () => {
    expect(copyOfWrite({ value: 'v', version: 2 })).toEqual({ value: 'v', version: 2 });
    expect(copyOfWrite({ value: '', version: 2 })).toEqual({ value: '', version: 2 });
    expect(copyOfWrite({ deleted: true, version: 3 })).toEqual({ deleted: true, version: 3 });
    expect(() => copyOfWrite({ version: 1 })).toThrow(/value or a delete/);
    expect(() => copyOfWrite({ value: 'v', deleted: true, version: 1 })).toThrow(/no value/);
  });

  test.each<[string, Copy, Copy, boolean]>([
    ['the same value', { value: 'v', version: 1 }, { value: 'v', version: 1 }, true],
    ['two tombstones', { deleted: true, version: 1 }, { deleted: true, version: 1 }, true],
    ['another version', { value: 'v', version: 1 }, { value: 'v', version: 2 }, false],
    ['another value', { value: 'v', version: 1 }, { value: 'w', version: 1 }, false],
    ['a value and a tombstone', { value: '', version: 1 }, { deleted: true, version: 1 }, false],
  ])('sameCopy: %s', (_name, a, b, same) => {
    expect(sameCopy(a, b)).toBe(same);
    expect(sameCopy(b, a)).toBe(same);
  });
});

describe('DurableStore: tombstones on disk', () => {
  test('survive a reopen, counted in the recovery, and read back as tombstones', async () => {
    const dir = path.join(root, 'data');
    const store = await DurableStore.open(dir);
    store.put('deleted', 'old', 1);
    store.putTombstoneIfNewer('deleted', 2);
    store.putTombstoneIfNewer('never set', 1);
    store.put('revived', 'x', 1);
    store.putTombstoneIfNewer('revived', 2);
    store.putIfNewer('revived', 'back', 3);
    store.putTombstoneIfNewer('forgotten', 4);
    store.delete('forgotten');
    await store.flush();
    await store.close();

    const again = await DurableStore.open(dir);
    opened.push(again);
    expect(again.recovery).toMatchObject({ bucketKeys: 3, tombstones: 2 });
    expect(again.copyOf('deleted')).toEqual({ deleted: true, version: 2 });
    expect(again.copyOf('never set')).toEqual({ deleted: true, version: 1 });
    expect(again.get('revived')).toEqual({ value: 'back', version: 3 });
    expect(again.copyOf('forgotten')).toBeUndefined();
    expect([...again.keys()]).toEqual(['revived']);
    expect({ size: again.size, tombstones: again.tombstones }).toEqual({ size: 1, tombstones: 2 });
    // An older value arriving after the reopen (a replica that was away) changes nothing.
    expect(again.putIfNewer('deleted', 'old', 1)).toBe(false);
  });

  test('a tombstone is stored as `<version>d`; anything after the d is corrupt', async () => {
    const dir = path.join(root, 'data');
    const store = await DurableStore.open(dir);
    store.putTombstoneIfNewer('k', 12);
    store.put('j', 'v', 1);
    await store.close();

    const { ClassicLevel } = await import('classic-level');
    const db = new ClassicLevel<string, string>(dir, { valueEncoding: 'utf8' });
    expect(await db.get('b:k')).toBe('12d');
    expect(await db.get('b:j')).toBe('1:v');
    await db.put('b:j', '3dv');
    await db.close();
    const err = await DurableStore.open(dir).then(
      async (s) => {
        await s.close();
        throw new Error('opened');
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StoreOpenError);
    expect(err).toMatchObject({ code: 'corrupt', message: /unreadable bucket entry/ });
  });
});
