// The /batch route of the RPC shell (lib/http-server.ts): its entries run together, as the
// independent requests they are, so that handlers waiting for one disk sync share it; and its
// answer is bounded by dropping only the answers of read-only entries, which the client sends
// again. Served on an OS-assigned loopback port and called with Node's fetch.

import * as z from 'zod/mini';
import { BATCH_RESPONSE_CHARS_MAX } from '../../lib/limits';
import { createLogger } from '../../lib/logger';
import { RpcServer, type ListeningServer } from '../../lib/http-server';
import type { Endpoint } from '../../lib/messages';

const Name = z.object({ name: z.string() });
const Text = z.object({ text: z.string() });
const Count = z.object({ count: z.number() });

const BigRead: Endpoint<typeof Name, typeof Text> = {
  path: '/big_read',
  request: Name,
  response: Text,
  readOnly: true,
};
const Write: Endpoint<typeof Name, typeof Count> = {
  path: '/write',
  request: Name,
  response: Count,
  readOnly: false,
};

/** A read answer of a quarter of the batch bound: four of them and their JSON pass it. */
const READ_CHARS = BATCH_RESPONSE_CHARS_MAX / 4;

let listening: ListeningServer;
const writes: string[] = [];
/** Resolves every write waiting for "the sync". */
let syncNow: () => void = () => undefined;
let waitingForSync = 0;

beforeAll(async () => {
  const rpc = new RpcServer(createLogger('test', 'silent'))
    .route(BigRead, () => ({ text: 'x'.repeat(READ_CHARS) }))
    .route(Write, async ({ name }) => {
      writes.push(name);
      waitingForSync++;
      await new Promise<void>((resolve) => {
        const previous = syncNow;
        syncNow = () => {
          previous();
          resolve();
        };
      });
      return { count: writes.length };
    });
  listening = await rpc.listen('127.0.0.1', [0]);
});

afterAll(async () => {
  await new Promise((resolve) => listening.server.close(resolve));
});

async function batch(requests: { path: string; body: unknown }[]): Promise<unknown[]> {
  const response = await fetch(`http://${listening.address}/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ requests }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { responses: unknown[] }).responses;
}

test('every entry starts before any finishes: 40 writes wait for one sync together', async () => {
  writes.length = 0;
  waitingForSync = 0;
  const answer = batch(
    Array.from({ length: 40 }, (_, i) => ({ path: Write.path, body: { name: `w${i}` } })),
  );
  const deadline = Date.now() + 10_000;
  while (waitingForSync < 40 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  expect(waitingForSync).toBe(40); // all are waiting at once: none waited for another's sync
  syncNow();
  const responses = await answer;
  expect(responses).toHaveLength(40);
  expect(writes).toEqual(Array.from({ length: 40 }, (_, i) => `w${i}`)); // started in order
  for (const r of responses) expect(r).toEqual({ status: 200, body: { count: 40 } });
});

test('past the answer bound, read-only answers are dropped (batch_full), writes keep theirs', async () => {
  writes.length = 0;
  waitingForSync = 0;
  const requests = [
    ...Array.from({ length: 6 }, (_, i) => ({ path: BigRead.path, body: { name: `r${i}` } })),
    { path: Write.path, body: { name: 'late write' } },
  ];
  const answer = batch(requests);
  const deadline = Date.now() + 10_000;
  while (waitingForSync < 1 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  syncNow();
  const responses = (await answer) as { status: number; body: { reason?: string } }[];
  const full = responses.map((r) => r.body.reason === 'batch_full');
  // Four reads (and their JSON) pass the bound; the reads after them are dropped; the write that
  // changed state is answered all the same.
  expect(full).toEqual([false, false, false, false, true, true, false]);
  expect(responses[4].status).toBe(503);
  expect(responses[6]).toEqual({ status: 200, body: { count: 1 } });
  expect(writes).toEqual(['late write']);
});
