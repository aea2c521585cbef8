// The durable store on a real LevelDB in real temporary directories: what is written, flushed and
// closed reads back after reopening; concurrent writers share syncs; a failed sync acknowledges
// nothing; a locked, foreign or corrupt directory is refused with a clear error.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SyncFailedError } from '../../lib/group-commit';
import { STORE_BATCH_OPS_MAX, STORE_QUEUE_OPS_MAX } from '../../lib/limits';
import { DurableStore, StoreOpenError } from '../../server/durable-store';

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-durable-store-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

const dataDir = (): string => path.join(root, 'data');

async function reopen(dir: string): Promise<DurableStore> {
  return DurableStore.open(dir);
}

/** The StoreOpenError `open` throws (fails the test if it opens). */
async function openError(dir: string): Promise<StoreOpenError> {
  try {
    const store = await DurableStore.open(dir);
    await store.close();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreOpenError);
    return err as StoreOpenError;
  }
  throw new Error(`${dir} opened`);
}

describe('what is flushed survives a reopen', () => {
  test('bucket entries, versions, deletes and record tables', async () => {
    const dir = dataDir();
    const store = await DurableStore.open(dir);
    expect(store.recovery).toMatchObject({ bucketKeys: 0, records: 0 });
    store.put('a', 'one', 1);
    store.put('b', 'two', 1);
    store.put('a', 'one again', 2);
    expect(store.putIfNewer('a', 'stale', 2)).toBe(false);
    expect(store.putIfNewer('c', 'three', 5)).toBe(true);
    store.delete('b');
    store.delete('never there');
    store.putRecord('prepared', 'tx1', JSON.stringify({ key: 'a', value: 'v' }));
    store.putRecord('decisions', 'tx0', '{"state":"aborted"}');
    store.putRecord('decisions', 'tx9', '{"state":"committed"}');
    store.deleteRecord('decisions', 'tx9');
    // Visible at once, before any sync.
    expect(store.get('a')).toEqual({ value: 'one again', version: 2 });
    expect(store.versionOf('b')).toBe(0);
    await store.flush();
    expect(store.unsyncedWrites).toBe(0);
    await store.close();

    const again = await reopen(dir);
    expect(new Map(again.entries())).toEqual(
      new Map([
        ['a', { value: 'one again', version: 2 }],
        ['c', { value: 'three', version: 5 }],
      ]),
    );
    expect(again.size).toBe(2);
    expect(again.getRecord('prepared', 'tx1')).toBe('{"key":"a","value":"v"}');
    expect([...again.records('decisions')]).toEqual([['tx0', '{"state":"aborted"}']]);
    expect([...again.records('no-such-table')]).toEqual([]);
    expect(again.recovery).toMatchObject({ bucketKeys: 2, records: 2, droppedRecords: [] });
    await again.close();
  });

  test('keys and values read back exactly: empty, large, non-ASCII, lone surrogates, colons', async () => {
    const dir = dataDir();
    const cases: [string, string][] = [
      ['empty value', ''],
      ['big', 'x'.repeat(1024 * 1024)],
      ['ключ 🔑', 'значение ✓'],
      ['lone \ud800 surrogate key', 'lone \udc00 surrogate value'],
      ['b:looks:like:a:prefix', '7:also'],
      ['12', '34j"x"'],
    ];
    const store = await DurableStore.open(dir);
    cases.forEach(([key, value], i) => store.put(key, value, i + 1));
    // Record keys come from requests as well (a key's last commit, a txid).
    cases.forEach(([key], i) => store.putRecord('last-commit', key, `{"n":${i}}`));
    await store.close(); // close flushes what is queued
    const again = await reopen(dir);
    cases.forEach(([key, value], i) => expect(again.get(key)).toEqual({ value, version: i + 1 }));
    expect(again.size).toBe(cases.length);
    cases.forEach(([key], i) => expect(again.getRecord('last-commit', key)).toBe(`{"n":${i}}`));
    expect([...again.records('last-commit')]).toHaveLength(cases.length);
    await again.close();
  });
});

describe('group commit on the real engine', () => {
  test('200 concurrent writers share a handful of syncs, and all of them are on disk', async () => {
    const dir = dataDir();
    const store = await DurableStore.open(dir);
    const syncsBefore = store.syncs;
    // 200 requests, each writing then awaiting durability, as the server's handlers will.
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        await new Promise((resolve) => setImmediate(resolve, i)); // arrive over a few turns
        store.put(`k${i}`, `v${i}`, 1);
        await store.flush();
      }),
    );
    const syncs = store.syncs - syncsBefore;
    expect(syncs).toBeGreaterThanOrEqual(1);
    expect(syncs).toBeLessThanOrEqual(3);
    await store.close();
    const again = await reopen(dir);
    expect(again.size).toBe(200);
    await again.close();
  });

  test('sequential write-and-flush makes one sync each', async () => {
    const store = await DurableStore.open(dataDir());
    const before = store.syncs;
    for (let i = 0; i < 5; i++) {
      store.put(`k${i}`, 'v', 1);
      await store.flush();
    }
    expect(store.syncs - before).toBe(5);
    await store.close();
  });
});

describe("one turn's writes are one unit", () => {
  test('synced whole, in one batch, never split across two syncs by the batch bound', async () => {
    const batches: number[] = [];
    const store = await DurableStore.open(dataDir(), { beforeSync: (ops) => batches.push(ops) });
    // Two turns, as two steps of two requests: together more than one batch holds.
    for (let i = 0; i < STORE_BATCH_OPS_MAX - 100; i++) store.putRecord('first', `r${i}`, 'x');
    await Promise.resolve();
    for (let i = 0; i < 200; i++) store.putRecord('second', `r${i}`, 'x');
    await store.flush();
    // Split by the bound alone, the second unit's first 100 writes would ride with the first.
    expect(batches).toEqual([STORE_BATCH_OPS_MAX - 100, 200]);
    await store.close();
  });
});

describe('a stalled disk', () => {
  test('busy at the bound of writes waiting for a sync; writes past it are still taken, whole', async () => {
    const dir = dataDir();
    const store = await DurableStore.open(dir);
    // Queued in one turn, so no sync can take any of them meanwhile: as a stalled disk leaves them.
    for (let i = 0; i < STORE_QUEUE_OPS_MAX - 1; i++) store.putRecord('filler', `f${i}`, 'x');
    expect(store.busy).toBe(false);
    store.putRecord('filler', 'last', 'x');
    expect(store.busy).toBe(true);
    // What admitted work still has to write (a decision: its value and its records) is taken.
    store.put('k', 'v2', 2);
    store.putRecord('decided', 'tx2', 'committed');
    store.deleteRecord('filler', 'last');
    await store.flush();
    expect(store.busy).toBe(false);
    await store.close();

    const again = await reopen(dir);
    expect(again.get('k')).toEqual({ value: 'v2', version: 2 });
    expect(again.getRecord('decided', 'tx2')).toBe('committed');
    expect(again.getRecord('filler', 'last')).toBeUndefined();
    expect([...again.records('filler')]).toHaveLength(STORE_QUEUE_OPS_MAX - 1);
    await again.close();
  });
});

describe('a failed sync', () => {
  test('rejects the flush, acknowledges nothing, and refuses every later write', async () => {
    const dir = dataDir();
    let failNext = false;
    const store = await DurableStore.open(dir, {
      beforeSync: () => {
        if (failNext) throw new Error('EIO (injected)');
      },
    });
    store.put('durable', 'yes', 1);
    await store.flush();

    failNext = true;
    store.put('lost', 'never acknowledged', 1);
    store.putRecord('prepared', 'tx1', '{}');
    const flushes = [store.flush(), store.flush()];
    for (const flush of flushes) await expect(flush).rejects.toThrow(SyncFailedError);
    expect(store.failed).toBeInstanceOf(SyncFailedError);
    // Writes are refused from now on; reads go on from memory (the process keeps serving them).
    expect(store.get('durable')).toEqual({ value: 'yes', version: 1 });
    expect(() => store.put('more', 'x', 1)).toThrow(SyncFailedError);
    expect(store.failed).toMatchObject({ kind: 'unavailable', reason: 'storage_failed' });
    await expect(store.close()).rejects.toThrow(SyncFailedError);

    const again = await reopen(dir); // close released the directory despite the failure
    expect(again.get('durable')).toEqual({ value: 'yes', version: 1 });
    expect(again.get('lost')).toBeUndefined();
    expect(again.getRecord('prepared', 'tx1')).toBeUndefined();
    await again.close();
  });
});

describe('one process per directory', () => {
  test('a second open in this process fails with "locked"', async () => {
    const dir = dataDir();
    const store = await DurableStore.open(dir);
    const err = await openError(dir);
    expect(err.code).toBe('locked');
    expect(err.message).toContain(dir);
    expect(err.message).toMatch(/in use by another process/);
    await store.close();
    await (await reopen(dir)).close();
  });

  test('another process holding the directory locks it out until it dies (SIGKILL)', async () => {
    const dir = dataDir();
    await (await DurableStore.open(dir)).close();
    const holder = await holdLock(dir);
    try {
      expect((await openError(dir)).code).toBe('locked');
    } finally {
      await killByPid(holder);
    }
    // The kernel released the dead process's fcntl lock: no stale lock file to clean up.
    const store = await reopen(dir);
    await store.close();
  });
});

describe('unusable directories are refused clearly', () => {
  test('a path that is a file', async () => {
    const file = path.join(root, 'a-file');
    fs.writeFileSync(file, 'x');
    const err = await openError(file);
    expect(err.code).toBe('unreadable');
    expect(err.message).toContain(file);
  });

  test('a directory holding other files', async () => {
    const dir = dataDir();
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'hello');
    const err = await openError(dir);
    expect(err.code).toBe('not_a_store');
    expect(err.message).toMatch(/no LevelDB database/);
    expect(fs.readdirSync(dir)).toEqual(['notes.txt']); // nothing created there
  });

  test('a LevelDB database that is not a dht store', async () => {
    const dir = dataDir();
    const { ClassicLevel } = await import('classic-level');
    const other = new ClassicLevel<string, string>(dir);
    await other.put('someone else', 'data');
    await other.close();
    expect((await openError(dir)).code).toBe('not_a_store');
  });

  test('a damaged CURRENT file', async () => {
    const dir = dataDir();
    await (await DurableStore.open(dir)).close();
    fs.writeFileSync(path.join(dir, 'CURRENT'), 'garbage\n');
    const err = await openError(dir);
    expect(['corrupt', 'unreadable']).toContain(err.code);
    expect(err.message).toContain(`cannot open the LevelDB database in ${dir}`);
  });

  test('a log with a corrupt record in the middle: refused, now and at the next start', async () => {
    const dir = dataDir();
    const store = await DurableStore.open(dir);
    for (let i = 0; i < 1000; i++) store.put(`key${i}`, 'v'.repeat(100), 1);
    await store.close(); // a small database stays in the log: recovery replays it
    const log = fs.readdirSync(dir).find((name) => name.endsWith('.log'));
    expect(log).toBeDefined();
    const logPath = path.join(dir, log!);
    const fd = fs.openSync(logPath, 'r+');
    fs.writeSync(fd, Buffer.alloc(64, 0xa5), 0, 64, Math.floor(fs.statSync(logPath).size / 2));
    fs.closeSync(fd);

    const first = await openError(dir);
    expect(first.code).toBe('corrupt');
    expect(first.message).toMatch(/dropped corrupt log records/);
    expect(fs.readFileSync(path.join(dir, 'CORRUPTION'), 'utf8')).toMatch(/Corruption/);
    // LevelDB has rewritten its log by now; the marker keeps the refusal.
    const second = await openError(dir);
    expect(second.code).toBe('corrupt');
    expect(second.message).toMatch(/remove that file/);

    const accepted = await DurableStore.open(dir, { acceptDroppedRecords: true });
    expect(accepted.size).toBeLessThan(1000);
    expect(fs.existsSync(path.join(dir, 'CORRUPTION'))).toBe(false);
    await accepted.close();
  });

  test('a log cut short at its end (a crash mid-write) is not corruption', async () => {
    const dir = dataDir();
    const store = await DurableStore.open(dir);
    for (let i = 0; i < 100; i++) {
      store.put(`key${i}`, 'v'.repeat(100), 1);
      await store.flush(); // one sync, one log record each
    }
    await store.close();
    const log = path.join(
      dir,
      fs.readdirSync(dir).find((name) => name.endsWith('.log'))!,
    );
    fs.truncateSync(log, fs.statSync(log).size - 50);
    const again = await reopen(dir);
    expect(again.size).toBe(99); // the torn last batch is gone, nothing else
    expect(again.get('key98')).toBeDefined();
    await again.close();
  });
});

// ---- another process -------------------------------------------------------------------------------

/** A node process that opens `dir` with LevelDB (as a second server would) and keeps it open. */
async function holdLock(dir: string): Promise<ChildProcess> {
  const script = `
    const { ClassicLevel } = require('classic-level');
    const db = new ClassicLevel(process.argv[1]);
    db.open().then(() => console.log('open'), (err) => { console.error(err); process.exit(1); });
    process.stdin.on('end', () => process.exit(0)).resume();
  `;
  const child = spawn(process.execPath, ['-e', script, dir], {
    cwd: path.resolve(__dirname, '..', '..'),
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`lock holder exited (${code})`)));
  });
  return child;
}

async function killByPid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  process.kill(child.pid!, 'SIGKILL');
  await exited;
}
