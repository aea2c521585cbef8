// The rebalancer's copy phase starts only once no transaction is unsettled here: none undecided,
// and none decided by a recovery whose records are not synced yet. A copy sent away before that
// could carry a value that a crash here undoes (a lone replica's recovery decides from an
// acceptance still in memory; docs/design.md, "Nothing is read before its choice is durable"):
// the receiver would keep the value of a transaction decided aborted.

import { createLogger } from '../../lib/logger';
import type { View } from '../../lib/messages';
import { Rebalancer } from '../../server/rebalancer';
import { MemoryStore } from '../../server/store';

const SELF = { id: 'self', address: '127.0.0.1:38100' };
const VIEW: View = {
  epoch: 2,
  servers: [SELF],
  rebalancing: true,
  placement: { epoch: 1, servers: [SELF] },
};

function rebalancer(unsettled: () => number): Rebalancer {
  const store = new MemoryStore();
  store.put('k', 'v', 1);
  return new Rebalancer({
    selfId: SELF.id,
    store,
    logger: createLogger('test', 'silent'),
    unsettledTransactions: unsettled,
    copiesSent: () => {},
  });
}

/** Resolves after `ms` of the event loop. */
const after = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('the copy phase waits while a transaction is unsettled, then plans', async () => {
  let unsettled = 1;
  let done = false;
  const copying = rebalancer(() => unsettled)
    .copy(VIEW, () => true)
    .then((report) => {
      done = true;
      return report;
    });
  await after(100); // several of the drain's polls
  expect(done).toBe(false);
  unsettled = 0;
  const report = await copying;
  expect(report).toMatchObject({ keysPushed: 0, valuesSent: 0, drop: [] });
});

test('a newer view ends the wait: nothing is planned for the old one', async () => {
  let current = true;
  const copying = rebalancer(() => 1).copy(VIEW, () => current);
  await after(50);
  current = false;
  expect(await copying).toBeUndefined();
});
