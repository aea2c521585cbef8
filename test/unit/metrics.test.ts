// The metrics of the RPC shell (lib/metrics.ts, lib/http-server.ts): one observation per request
// by endpoint and outcome, each /batch entry as its own endpoint, unknown paths as `other`, the
// unauthenticated counter, and GET /health's status from its body; and the view leader's health
// rule (viewleader/health.ts) as a table. Served on an OS-assigned loopback port, called with
// Node's fetch, and read back with the test's Prometheus text parser.

import * as z from 'zod/mini';
import { DhtError } from '../../lib/errors';
import { RpcServer, type ListeningServer } from '../../lib/http-server';
import { createLogger } from '../../lib/logger';
import { Health, type Endpoint, type MemberStatus } from '../../lib/messages';
import { countUnauthenticated, operatorRoutes, ProcessMetrics } from '../../lib/metrics';
import { aloneHealth, memberHealth } from '../../viewleader/health';
import { parsePrometheusText, sumOf, valueOf } from '../support/prometheus-text';

const Name = z.object({ name: z.string() });
const Echo: Endpoint<typeof Name, typeof Name> = {
  path: '/echo',
  request: Name,
  response: Name,
  readOnly: true,
};
const Missing: Endpoint<typeof Name, typeof Name> = {
  path: '/missing',
  request: Name,
  response: Name,
  readOnly: true,
};

let listening: ListeningServer;
let metrics: ProcessMetrics;
let healthy = true;

beforeAll(async () => {
  metrics = new ProcessMetrics('server');
  const rpc = new RpcServer(createLogger('test', 'silent'), metrics)
    .route(Echo, ({ name }) => ({ name }))
    .route(Missing, () => {
      throw new DhtError('not_found', 'key not found');
    });
  operatorRoutes(rpc.app, metrics, () => ({
    status: healthy ? 'ok' : 'unavailable',
    process: 'server',
    address: listening.address,
    problems: healthy ? [] : [{ reason: 'not_in_view', message: 'not yet in a view' }],
    serverId: 'id',
    epoch: null,
    inView: healthy,
    rebalancing: false,
    keys: 0,
    pendingTransactions: 0,
  }));
  listening = await rpc.listen('127.0.0.1', [0]);
});

afterAll(async () => {
  await new Promise((resolve) => listening.server.close(resolve));
});

function post(path: string, body: unknown): Promise<Response> {
  return fetch(`http://${listening.address}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function exposition() {
  const res = await fetch(`http://${listening.address}/metrics`);
  expect(res.status).toBe(200);
  return parsePrometheusText(await res.text());
}

const count = (endpoint: string, outcome: string) =>
  ['dht_requests_seconds_count', { endpoint, outcome }] as const;

test('each request, and each /batch entry, is one observation by endpoint and outcome', async () => {
  expect((await post('/echo', { name: 'a' })).status).toBe(200);
  expect((await post('/missing', { name: 'a' })).status).toBe(404);
  expect((await post('/echo', { name: 7 })).status).toBe(400);
  expect((await post('/no_such_path', {})).status).toBe(404);
  const batch = await post('/batch', {
    requests: [
      { path: '/echo', body: { name: 'b' } },
      { path: '/echo', body: { name: 'c' } },
      { path: '/missing', body: { name: 'd' } },
      { path: '/unknown_entry', body: {} },
    ],
  });
  expect(batch.status).toBe(200);
  // The wire format of a batch answer is unchanged: status and body only.
  expect(await batch.json()).toEqual({
    responses: [
      { status: 200, body: { name: 'b' } },
      { status: 200, body: { name: 'c' } },
      {
        status: 404,
        body: expect.objectContaining({ kind: 'not_found' }) as unknown,
      },
      { status: 404, body: expect.objectContaining({ kind: 'invalid' }) as unknown },
    ],
  });

  const e = await exposition();
  expect(valueOf(e, ...count('/echo', 'ok'))).toBe(3);
  expect(valueOf(e, ...count('/echo', 'invalid'))).toBe(1);
  expect(valueOf(e, ...count('/missing', 'not_found'))).toBe(2);
  expect(valueOf(e, ...count('/batch', 'ok'))).toBe(1);
  // Paths nobody serves share one label, whatever they are.
  expect(valueOf(e, ...count('other', 'invalid'))).toBe(2);
  expect(e.samples.some((s) => s.labels.endpoint === '/no_such_path')).toBe(false);
  expect(e.types.get('dht_requests_seconds')).toBe('histogram');
  expect(sumOf(e, 'dht_requests_seconds_sum')).toBeGreaterThan(0);
});

test('the unauthenticated counter, for the authentication check', async () => {
  countUnauthenticated(metrics, '/echo');
  countUnauthenticated(metrics, '/echo');
  countUnauthenticated(metrics, '/made/up');
  countUnauthenticated(undefined, '/echo'); // a process without metrics: nothing to count
  const e = await exposition();
  expect(valueOf(e, 'dht_requests_unauthenticated_total', { endpoint: '/echo' })).toBe(2);
  expect(valueOf(e, 'dht_requests_unauthenticated_total', { endpoint: 'other' })).toBe(1);
});

test('GET /health: 200 when its body says ok, 503 otherwise', async () => {
  healthy = true;
  const ok = await fetch(`http://${listening.address}/health`);
  expect(ok.status).toBe(200);
  expect(Health.parse(await ok.json()).status).toBe('ok');
  healthy = false;
  const down = await fetch(`http://${listening.address}/health`);
  expect(down.status).toBe(503);
  const body = Health.parse(await down.json());
  expect(body.problems.map((p) => p.reason)).toEqual(['not_in_view']);
});

const served = { epoch: 4, servers: 3, rebalancing: false, locks: 0, storageFailed: false };

test.each([
  ['serving', { served, storageFailure: undefined, stopping: false }, 200, []],
  [
    'starting',
    { served: undefined, storageFailure: undefined, stopping: false },
    503,
    ['starting'],
  ],
  [
    'storage failed',
    { served, storageFailure: 'disk full', stopping: false },
    503,
    ['storage_failed'],
  ],
  ['shutting down', { served, storageFailure: undefined, stopping: true }, 503, ['shutting_down']],
])('a view leader alone, %s', (_what, facts, status, reasons) => {
  const h = aloneHealth({ address: '127.0.0.1:39000', ...facts });
  expect(h.status === 'ok' ? 200 : 503).toBe(status);
  expect(h.problems.map((p) => p.reason)).toEqual(reasons);
  expect(h.role).toBe('alone');
});

function member(role: MemberStatus['role'], leader: string | null): MemberStatus {
  return {
    address: 'a:1',
    role,
    term: 3,
    leader,
    commitIndex: 9,
    appliedIndex: 9,
    lastIndex: 9,
    snapshotIndex: 0,
    epoch: 2,
    replicated: true,
  };
}

test.each([
  ['the leader', member('leader', 'a:1'), false, 200, []],
  ['a follower that knows the leader', member('follower', 'b:1'), false, 200, []],
  ['a follower that knows no leader', member('follower', null), false, 503, ['no_leader']],
  ['a candidate', member('candidate', null), false, 503, ['no_leader']],
  ['a member whose log is not read yet', undefined, false, 503, ['starting']],
  ['the leader shutting down', member('leader', 'a:1'), true, 503, ['shutting_down']],
])('a view leader member: %s', (_what, status, stopping, code, reasons) => {
  const h = memberHealth({ address: 'a:1', status, stopping });
  expect(h.status === 'ok' ? 200 : 503).toBe(code);
  expect(h.problems.map((p) => p.reason)).toEqual(reasons);
  expect(h.replicated).toBe(true);
});
