// The rebalancer's bulk writes on a real LevelDB store: a cleanup that drops more keys than the
// store's write queue holds (STORE_QUEUE_OPS_MAX) is queued a chunk at a time, each chunk synced
// before the next, so the queue stays within its bound (it once failed with `storage_busy`
// half-way); and it stops at a newer view.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { STORE_QUEUE_OPS_MAX } from '../../lib/limits';
import { createLogger } from '../../lib/logger';
import { DurableStore } from '../../server/durable-store';
import { Rebalancer } from '../../server/rebalancer';

const KEYS = STORE_QUEUE_OPS_MAX + 3_000;

let root: string;
let store: DurableStore;
beforeEach(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-rebalancer-bulk-'));
  store = await DurableStore.open(path.join(root, 'data'));
  for (let i = 0; i < KEYS; i += 1000) {
    for (let j = i; j < Math.min(KEYS, i + 1000); j++) store.put(`key-${j}`, 'v', 1);
    await store.flush();
  }
});
afterEach(async () => {
  await store.close();
  fs.rmSync(root, { recursive: true, force: true });
});

function rebalancer(): Rebalancer {
  return new Rebalancer({
    selfId: 'self',
    store,
    logger: createLogger('test', 'silent'),
    unsettledTransactions: () => 0,
    copiesSent: () => {},
  });
}

test(`a cleanup of ${KEYS} keys (more than the write queue holds) drops them all, durably`, async () => {
  const drop = Array.from({ length: KEYS }, (_, i) => `key-${i}`);
  expect(await rebalancer().cleanup(drop, () => true)).toBe(KEYS);
  await store.flush();
  await store.close();
  store = await DurableStore.open(path.join(root, 'data'));
  expect([...store.copyKeys()]).toEqual([]);
});

test('a cleanup stops at the first chunk boundary after a newer view was installed', async () => {
  const drop = Array.from({ length: KEYS }, (_, i) => `key-${i}`);
  let current = true;
  const cleaning = rebalancer().cleanup(drop, () => current);
  current = false; // a newer view arrives while the first chunk syncs
  const dropped = await cleaning;
  expect(dropped).toBeGreaterThan(0);
  expect(dropped).toBeLessThan(KEYS);
  expect([...store.copyKeys()]).toHaveLength(KEYS - dropped); // the rest stay, as strays
});
