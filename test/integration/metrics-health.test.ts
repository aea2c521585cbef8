// GET /metrics and GET /health on real processes (docs/operations.md): the exposition parsed as
// Prometheus text, its counters moving after real operations (setr/getr/delr, /kv, a join and its
// rebalance), and /health answering 503 in real cases (a failed disk, a server no view leader
// took in, a replicated view leader member whose peers are all down).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Health, type ServerHealth, type ViewLeaderHealth } from '../../lib/messages';
import { startClusterInSlot, PORTS_PER_TEST, expectCode, type Cluster } from '../support/cluster';
import { httpRequest, type HttpReply } from '../support/http-request';
import { cleanupProcessesAfterAll, portBlock, startProcess, waitFor } from '../support/processes';
import { parsePrometheusText, sumOf, valueOf, type Exposition } from '../support/prometheus-text';
import { ViewLeaderMembers } from '../support/viewleader-group';

cleanupProcessesAfterAll();

const PORTS = portBlock(20);
const TEST_TIMEOUT_MS = 120_000;
const HTTP_TIMEOUT_MS = 5_000;

const dataRoots: string[] = [];
afterAll(() => {
  for (const dir of dataRoots) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-metrics-'));
  dataRoots.push(dir);
  return dir;
}

/** One request on its own connection (nothing kept alive towards processes killed later). */
function request(
  address: string,
  method: string,
  target: string,
  body?: string,
): Promise<HttpReply> {
  return httpRequest(address, target, { method, body, timeoutMs: HTTP_TIMEOUT_MS });
}

async function scrape(address: string): Promise<{ text: string; exposition: Exposition }> {
  const reply = await request(address, 'GET', '/metrics');
  expect(reply.status).toBe(200);
  expect(reply.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  return { text: reply.body, exposition: parsePrometheusText(reply.body) };
}

async function health(address: string): Promise<{ status: number; body: Health; text: string }> {
  const reply = await request(address, 'GET', '/health');
  expect(reply.contentType).toMatch(/^application\/json/);
  return { status: reply.status, body: Health.parse(JSON.parse(reply.body)), text: reply.body };
}

async function serverHealth(address: string): Promise<{ status: number; body: ServerHealth }> {
  const { status, body } = await health(address);
  if (body.process !== 'server') throw new Error(`${address} is not a server`);
  return { status, body };
}

async function viewLeaderHealth(
  address: string,
): Promise<{ status: number; body: ViewLeaderHealth }> {
  const { status, body } = await health(address);
  if (body.process !== 'viewleader') throw new Error(`${address} is not a view leader`);
  return { status, body };
}

/** The sum of `name{labels}` over every exposition (a cluster-wide counter). */
function total(
  expositions: readonly Exposition[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  return expositions.reduce((sum, e) => sum + sumOf(e, name, labels), 0);
}

async function scrapeAll(addresses: readonly string[]): Promise<Exposition[]> {
  return Promise.all(addresses.map(async (a) => (await scrape(a)).exposition));
}

function requests(endpoint: string, outcome: string): [string, Record<string, string>] {
  return ['dht_requests_seconds_count', { endpoint, outcome }];
}

function startCluster(slot: number, options: Parameters<typeof startClusterInSlot>[2]) {
  return startClusterInSlot(PORTS, slot, options);
}

describe('GET /metrics', () => {
  test(
    'counters move after setr, getr, delr and /kv; no key or value is shown',
    async () => {
      const cluster = await startCluster(0, { servers: 3, failureTimeoutS: 5 });
      const servers = [...cluster.servers.keys()];
      const view = await cluster.view();

      const before = await scrapeAll(servers);
      const key = 'metrics/secret-key-Ωmega';
      const value = 'secret-value-of-the-test';
      expectCode(await cluster.cli('setr', key, value), [0], 'setr');
      const read = await cluster.cli('getr', key);
      expectCode(read, [0], 'getr');
      expect(read.stdout).toBe(value);
      expectCode(await cluster.cli('delr', key), [0], 'delr');
      const after = await scrapeAll(servers);
      const delta = (name: string, labels: Record<string, string> = {}): number =>
        total(after, name, labels) - total(before, name, labels);

      // Two transactions (setr, delr), each prepared and committed on all three replicas, by the
      // coordinator: none needed the termination protocol.
      expect(delta('dht_transactions_total', { event: 'prepared' })).toBe(6);
      expect(delta('dht_transactions_total', { event: 'committed' })).toBe(6);
      expect(delta('dht_transactions_total', { event: 'aborted' })).toBe(0);
      expect(delta('dht_transactions_resolved_total')).toBe(0);
      expect(delta(...requests('/prepare', 'ok'))).toBe(6);
      expect(delta(...requests('/commit', 'ok'))).toBe(6);
      expect(delta(...requests('/read', 'ok'))).toBeGreaterThanOrEqual(1);
      // The delete is held as a tombstone on each replica; no live key is left.
      expect(total(after, 'dht_keys')).toBe(0);
      expect(total(after, 'dht_tombstones')).toBe(3);
      for (const e of after) {
        expect(valueOf(e, 'dht_epoch')).toBe(view.epoch);
        expect(valueOf(e, 'dht_in_view')).toBe(1);
        expect(valueOf(e, 'dht_process_info', { kind: 'server' })).toBe(1);
        // The runtime's own: event loop lag and process metrics.
        expect(e.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
        expect(e.types.get('process_cpu_seconds_total')).toBe('counter');
        // A histogram's +Inf bucket counts every observation.
        for (const s of e.samples.filter((x) => x.name === 'dht_requests_seconds_count')) {
          expect(sumOf(e, 'dht_requests_seconds_bucket', { ...s.labels, le: '+Inf' })).toBe(
            s.value,
          );
        }
      }

      // The /kv API: each request one observation, labelled by method and outcome.
      const kvServer = servers[0];
      const put = await request(kvServer, 'PUT', `/kv/${encodeURIComponent(key)}`, value);
      expect(put.status).toBe(204);
      const absent = await request(kvServer, 'GET', '/kv/metrics%2Fabsent');
      expect(absent.status).toBe(404);
      const nowhere = await request(kvServer, 'POST', '/no-such-endpoint');
      expect(nowhere.status).toBe(404);
      const kv = (await scrape(kvServer)).exposition;
      expect(valueOf(kv, ...requests('PUT /kv', 'ok'))).toBe(1);
      expect(valueOf(kv, ...requests('GET /kv', 'not_found'))).toBe(1);
      expect(valueOf(kv, ...requests('other', 'invalid'))).toBe(1);

      // The view leader: the view it serves and the requests it answered.
      const vl = await scrape(cluster.vl);
      expect(valueOf(vl.exposition, 'dht_epoch')).toBe(view.epoch);
      expect(valueOf(vl.exposition, 'dht_view_servers')).toBe(3);
      expect(valueOf(vl.exposition, 'dht_view_servers_joined_total')).toBe(3);
      expect(valueOf(vl.exposition, 'dht_viewleader_serving')).toBe(1);
      expect(valueOf(vl.exposition, 'dht_process_info', { kind: 'viewleader' })).toBe(1);
      expect(sumOf(vl.exposition, ...requests('/heartbeat', 'ok'))).toBeGreaterThan(0);

      // Open, and free of keys and values.
      const texts = [
        vl.text,
        ...(await Promise.all(servers.map(async (s) => (await scrape(s)).text))),
        ...(await Promise.all([cluster.vl, ...servers].map(async (a) => (await health(a)).text))),
      ];
      for (const text of texts) {
        expect(text).not.toContain('secret-key');
        expect(text).not.toContain('secret-value');
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'a join moves the epoch, and the rebalance counts the copies pushed and received',
    async () => {
      const cluster = await startCluster(1, { servers: 3, failureTimeoutS: 5 });
      const first = [...cluster.servers.keys()];
      const keys = Array.from({ length: 40 }, (_, i) => `join-${i}`);
      for (const k of keys) {
        const put = await request(first[i(k) % first.length], 'PUT', `/kv/${k}`, `v-${k}`);
        expect(put.status).toBe(204);
      }
      const epochBefore = valueOf((await scrape(cluster.vl)).exposition, 'dht_epoch');
      const before = await scrapeAll(first);

      const joiner = await cluster.startServer(3);
      const view = await cluster.settled(4, 60_000);
      expect(view.epoch).toBe(epochBefore + 1);
      const all = [...first, joiner.address];
      const after = await scrapeAll(all);

      const vl = (await scrape(cluster.vl)).exposition;
      expect(valueOf(vl, 'dht_epoch')).toBe(epochBefore + 1);
      expect(valueOf(vl, 'dht_view_servers_joined_total')).toBe(4);
      expect(valueOf(vl, 'dht_view_servers')).toBe(4);
      for (const e of after) expect(valueOf(e, 'dht_epoch')).toBe(view.epoch);

      // The joiner received its share from the others, and each copy it stored was pushed.
      const pushed =
        total(after, 'dht_rebalance_copies_pushed_total') -
        total(before, 'dht_rebalance_copies_pushed_total');
      const received =
        total(after, 'dht_rebalance_copies_received_total') -
        total(before, 'dht_rebalance_copies_received_total');
      const joinerReceived = valueOf(after[3], 'dht_rebalance_copies_received_total');
      expect(joinerReceived).toBeGreaterThan(0);
      expect(received).toBeGreaterThanOrEqual(joinerReceived);
      expect(pushed).toBeGreaterThanOrEqual(received);
      // Each server finished the copy phase of the new epoch.
      for (let s = 0; s < 3; s++) {
        expect(
          valueOf(after[s], 'dht_rebalance_copy_phases_total') -
            valueOf(before[s], 'dht_rebalance_copy_phases_total'),
        ).toBeGreaterThanOrEqual(1);
      }
      // The keys gauge is what the joiner holds.
      const held = await cluster.cli('--server', joiner.address, '--json', 'query_all_keys');
      const { keys: heldKeys } = JSON.parse(held.stdout) as { keys: string[] };
      expect(heldKeys.length).toBe(joinerReceived);
      expect(valueOf(after[3], 'dht_keys')).toBe(heldKeys.length);
    },
    TEST_TIMEOUT_MS,
  );
});

/** A small stable spread of keys over the servers the test writes through. */
function i(key: string): number {
  return Number(key.slice(key.lastIndexOf('-') + 1));
}

describe('GET /health', () => {
  test(
    '200 on a serving cluster; 503 once a server failed to write to its disk',
    async () => {
      const failFile = path.join(os.tmpdir(), `dht-metrics-fail-sync-${process.pid}`);
      fs.rmSync(failFile, { force: true });
      try {
        const cluster: Cluster = await startCluster(2, {
          servers: 1,
          failureTimeoutS: 10,
          dataRoot: tempDir(),
          env: { DHT_FAULT_SYNC_FAIL_FILE: failFile },
        });
        const [server] = [...cluster.servers.keys()];
        const view = await cluster.view();
        const healthy = await serverHealth(server);
        expect(healthy.status).toBe(200);
        expect(healthy.body).toMatchObject({
          status: 'ok',
          address: server,
          problems: [],
          epoch: view.epoch,
          inView: true,
          rebalancing: false,
        });
        const vl = await viewLeaderHealth(cluster.vl);
        expect(vl.status).toBe(200);
        expect(vl.body).toMatchObject({ status: 'ok', role: 'alone', epoch: view.epoch });

        fs.writeFileSync(failFile, 'every sync fails while this file exists');
        expectCode(await cluster.cli('setr', 'disk/full', 'v'), [1], 'setr while the disk fails');
        const failed = await waitFor('/health to say 503', async () => {
          const h = await serverHealth(server);
          return h.status === 503 ? h : undefined;
        });
        expect(failed.body.status).toBe('unavailable');
        expect(failed.body.problems.map((p) => p.reason)).toEqual(['storage_failed']);
        expect(failed.body.problems[0].message).toContain('injected sync failure');
        const metrics = (await scrape(server)).exposition;
        expect(valueOf(metrics, 'dht_storage_failed')).toBe(1);
        // The vote that needed the sync was refused: counted by its outcome, not as prepared.
        expect(valueOf(metrics, 'dht_transactions_total', { event: 'prepared' })).toBe(0);
        expect(
          sumOf(metrics, 'dht_requests_seconds_count', { endpoint: '/prepare' }),
        ).toBeGreaterThanOrEqual(1);
        expect(sumOf(metrics, ...requests('/prepare', 'ok'))).toBe(0);
      } finally {
        fs.rmSync(failFile, { force: true });
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    '503 on a server that no view leader has taken into a view',
    async () => {
      const nobody = PORTS.viewleader + 3 * PORTS_PER_TEST; // no view leader listens there
      const server = await startProcess('dht-server', [
        '--port',
        String(PORTS.viewleader + 3 * PORTS_PER_TEST + 1),
        '--viewleader',
        `127.0.0.1:${nobody}`,
        '--heartbeat-interval',
        '0.2',
      ]);
      const h = await serverHealth(server.address);
      expect(h.status).toBe(503);
      expect(h.body).toMatchObject({ status: 'unavailable', epoch: null, inView: false });
      expect(h.body.problems.map((p) => p.reason)).toEqual(['not_in_view']);
      const metrics = (await scrape(server.address)).exposition;
      expect(valueOf(metrics, 'dht_epoch')).toBe(-1);
      expect(valueOf(metrics, 'dht_in_view')).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'a replicated view leader: Raft metrics, and 503 on the member whose peers are all down',
    async () => {
      const base = PORTS.viewleader + 4 * PORTS_PER_TEST;
      const members = await ViewLeaderMembers.start([base, base + 1, base + 2], tempDir(), 5);
      const leader = await members.leader();
      // Every member knows the leader: healthy.
      for (const address of members.addresses) {
        const h = await waitFor(`${address} to know the leader`, async () => {
          const got = await viewLeaderHealth(address);
          return got.status === 200 ? got : undefined;
        });
        expect(h.body).toMatchObject({ status: 'ok', replicated: true, leader });
      }
      const onLeader = (await scrape(leader)).exposition;
      expect(valueOf(onLeader, 'dht_raft_role', { role: 'leader' })).toBe(1);
      expect(valueOf(onLeader, 'dht_raft_role', { role: 'follower' })).toBe(0);
      expect(valueOf(onLeader, 'dht_raft_term')).toBeGreaterThanOrEqual(1);
      expect(valueOf(onLeader, 'dht_raft_commit_index')).toBeGreaterThanOrEqual(1);
      expect(valueOf(onLeader, 'dht_raft_leader_known')).toBe(1);
      expect(valueOf(onLeader, 'dht_viewleader_serving')).toBe(1);
      const follower = members.addresses.find((a) => a !== leader)!;
      const onFollower = (await scrape(follower)).exposition;
      expect(valueOf(onFollower, 'dht_raft_role', { role: 'follower' })).toBe(1);
      expect(valueOf(onFollower, 'dht_viewleader_serving')).toBe(0);

      // The leader alone: it steps down once no majority answers (check-quorum), and knows no
      // leader from then on.
      for (const address of members.addresses) {
        if (address !== leader) await members.kill(address);
      }
      const down = await waitFor(
        `${leader} to report no leader`,
        async () => {
          const h = await viewLeaderHealth(leader);
          return h.status === 503 ? h : undefined;
        },
        30_000,
      );
      expect(down.body).toMatchObject({ status: 'unavailable', leader: null, replicated: true });
      expect(down.body.problems.map((p) => p.reason)).toEqual(['no_leader']);
      const alone = (await scrape(leader)).exposition;
      expect(valueOf(alone, 'dht_raft_leader_known')).toBe(0);
      expect(valueOf(alone, 'dht_raft_role', { role: 'leader' })).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});
