// Transport batching over real HTTP on loopback: the /batch endpoint of the RPC shell, and the
// client's per-address coalescing (lib/batching.ts). The server is an in-process RpcServer whose
// HTTP requests are counted as they arrive, so the test can see how many actually crossed the wire.

import http from 'node:http';
import type { Server } from 'node:http';
import { callBatched } from '../../lib/batching';
import { DhtError } from '../../lib/errors';
import { call } from '../../lib/http-client';
import { RpcServer } from '../../lib/http-server';
import { BATCH_ESTIMATED_BYTES_MAX, BATCH_PIPELINE_MAX } from '../../lib/limits';
import { createLogger } from '../../lib/logger';
import { ServerApi, TransportApi } from '../../lib/messages';

let server: Server;
let address: string;
const requestsByPath = new Map<string, number>();
let largestBatchBytes = 0;
/** The largest value allowed, of a character JSON escapes to six: a 6 MiB answer. */
const HUGE = '\u0001'.repeat(1024 * 1024);
const stored = new Map<string, string>();

beforeAll(async () => {
  const rpc = new RpcServer(createLogger('batching-test', 'silent'));
  // A toy bucket: keys 'k<n>' hold 'v<n>'; anything else is not found; 'slow' takes a while.
  rpc.route(ServerApi.get, async ({ key }) => {
    if (key === 'slow') await new Promise((resolve) => setTimeout(resolve, 50));
    if (key === 'huge') return { value: HUGE, version: 1 };
    if (!/^k\d+$/.test(key)) throw new DhtError('not_found', 'key not found');
    return { value: `v${key.slice(1)}`, version: 1 };
  });
  rpc.route(ServerApi.set, ({ key, value }) => {
    stored.set(key, value);
    return {};
  });
  const listening = await rpc.listen('127.0.0.1', [0]);
  // Counted as they arrive, before the RPC routes (served without express) or express see them.
  listening.server.prependListener('request', (req: http.IncomingMessage) => {
    requestsByPath.set(req.url ?? '', (requestsByPath.get(req.url ?? '') ?? 0) + 1);
    if (req.url === '/batch') {
      largestBatchBytes = Math.max(largestBatchBytes, Number(req.headers['content-length'] ?? 0));
    }
  });
  server = listening.server;
  address = listening.address;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => requestsByPath.clear());

test('/batch runs every entry through its route and answers each on its own', async () => {
  const { responses } = await call(address, TransportApi.batch, {
    requests: [
      { path: '/get', body: { key: 'k1' } },
      { path: '/get', body: { key: 'missing' } },
      { path: '/get', body: { key: '' } },
      { path: '/nope', body: {} },
      { path: '/batch', body: { requests: [] } },
    ],
  });
  expect(responses).toEqual([
    { status: 200, body: { value: 'v1', version: 1 } },
    { status: 404, body: { kind: 'not_found', error: 'key not found' } },
    { status: 400, body: expect.objectContaining({ kind: 'invalid', reason: 'bad_request' }) },
    { status: 404, body: expect.objectContaining({ kind: 'invalid', error: 'no endpoint /nope' }) },
    { status: 404, body: expect.objectContaining({ kind: 'invalid' }) },
  ]);
});

test('/batch refuses an empty or malformed batch with 400', async () => {
  for (const body of [{ requests: [] }, { requests: 'x' }, {}]) {
    const response = await fetch(`http://${address}/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(400);
  }
});

test('a lone call goes out on its own, with no batching delay', async () => {
  expect(await callBatched(address, ServerApi.get, { key: 'k7' })).toEqual({
    value: 'v7',
    version: 1,
  });
  expect(requestsByPath.get('/get')).toBe(1);
  expect(requestsByPath.get('/batch')).toBeUndefined();
});

test('concurrent calls share round trips, and each caller gets its own answer or error', async () => {
  const keys = Array.from({ length: 200 }, (_, i) => (i % 10 === 0 ? `missing${i}` : `k${i}`));
  const outcomes = await Promise.all(
    keys.map((key) =>
      callBatched(address, ServerApi.get, { key }).then(
        (answer) => answer.value,
        (err: DhtError) => err.kind,
      ),
    ),
  );
  expect(outcomes).toEqual(
    keys.map((key) => (key.startsWith('k') ? `v${key.slice(1)}` : 'not_found')),
  );
  const httpRequests = (requestsByPath.get('/get') ?? 0) + (requestsByPath.get('/batch') ?? 0);
  expect(requestsByPath.get('/get')).toBeLessThanOrEqual(BATCH_PIPELINE_MAX);
  expect(httpRequests).toBeLessThan(keys.length / 10);
});

test('a transport failure fails every call of the batch as unreachable', async () => {
  const closed = '127.0.0.1:1';
  const results = await Promise.all(
    Array.from({ length: 20 }, () =>
      callBatched(closed, ServerApi.get, { key: 'k1' }).then(
        () => 'answered',
        (err: DhtError) => err.kind,
      ),
    ),
  );
  expect(results).toEqual(Array.from({ length: 20 }, () => 'unavailable'));
});

test('large requests are batched by bytes too: each batch stays small, every request lands', async () => {
  const value = 'v'.repeat(1024 * 1024); // the largest value the contract allows
  const keys = Array.from({ length: 12 }, (_, i) => `big${i}`);
  // 12 MiB through the transport: the default 1 s per request is not what is tested here.
  await Promise.all(
    keys.map((key) => callBatched(address, ServerApi.set, { key, value }, { timeoutMs: 30_000 })),
  );
  expect(keys.every((key) => stored.get(key) === value)).toBe(true);
  expect(largestBatchBytes).toBeLessThanOrEqual(BATCH_ESTIMATED_BYTES_MAX + 64 * 1024);
});

test('answers are bounded too: reads of a huge value come back whole, over several batches', async () => {
  const answers = await Promise.all(
    Array.from({ length: 40 }, () =>
      callBatched(address, ServerApi.get, { key: 'huge' }, { timeoutMs: 30_000 }),
    ),
  );
  expect(answers.every((a) => a.value === HUGE)).toBe(true);
  expect(requestsByPath.get('/batch')).toBeGreaterThan(1);
}, 60_000);
