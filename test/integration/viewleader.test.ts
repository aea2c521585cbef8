// The view leader as a real process, driven over HTTP: here the test plays the servers that
// heartbeat, report rebalancing done and take locks.

import net from 'node:net';
import { DhtError } from '../../lib/errors';
import { call } from '../../lib/http-client';
import { VIEWLEADER_PORT_FIRST, VIEWLEADER_PORT_LAST } from '../../lib/limits';
import { ViewLeaderApi, type View } from '../../lib/messages';
import {
  cleanupProcessesAfterAll,
  portBlock,
  startProcess,
  startWatched,
  waitFor,
  type Proc,
  type Watched,
} from '../support/processes';

cleanupProcessesAfterAll();

const PORTS = portBlock(1);
const FAILURE_TIMEOUT_S = 0.5;
const HEARTBEAT_INTERVAL_MS = 100;
/** Addresses of pretend servers: nothing listens there, the view leader never calls them. */
const serverAddress = (i: number): string => `127.0.0.1:${PORTS.server(i)}`;

function startViewLeader(extraArgs: string[] = []): Promise<Proc> {
  return startProcess('dht-viewleader', ['--port', String(PORTS.viewleader), ...extraArgs]);
}

async function heartbeat(leader: Proc, serverId: string, i: number): Promise<number> {
  const ack = await call(leader.address, ViewLeaderApi.heartbeat, {
    serverId,
    address: serverAddress(i),
  });
  expect(ack.view.epoch).toBe(ack.epoch);
  return ack.epoch;
}

/** A pretend server that keeps heartbeating until stopped. */
function keepHeartbeating(leader: Proc, serverId: string, i: number): () => void {
  const timer = setInterval(() => {
    heartbeat(leader, serverId, i).catch(() => undefined);
  }, HEARTBEAT_INTERVAL_MS);
  return () => clearInterval(timer);
}

const queryServers = (leader: { address: string }): Promise<View> =>
  call(leader.address, ViewLeaderApi.queryServers, {});
const lockGet = async (leader: Proc, lock: string, requester: string): Promise<boolean> =>
  (await call(leader.address, ViewLeaderApi.lockGet, { lock, requester })).granted;
const lockRelease = (leader: Proc, lock: string, requester: string): Promise<object> =>
  call(leader.address, ViewLeaderApi.lockRelease, { lock, requester });
const rebalanceDone = (leader: Proc, serverId: string, epoch: number): Promise<object> =>
  call(leader.address, ViewLeaderApi.rebalanceDone, { serverId, epoch, phase: 'done' });

/** The error a call is refused with: kind and reason, as the client would see them. */
async function refusal(promise: Promise<unknown>): Promise<{ kind: string; reason?: string }> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof DhtError) return { kind: err.kind, reason: err.reason };
    throw err;
  }
  throw new Error('expected the call to be refused');
}

// ---- processes run to their end (usage errors, --help, a taken port, signals) -------------------

function run(args: string[]): Watched {
  return startWatched('dht-viewleader', args);
}

describe('the process', () => {
  test.each(['SIGTERM', 'SIGINT'] as const)(
    'prints exactly one stdout line, `listening on HOST:PORT`, and exits 0 on %s',
    async (signal) => {
      const leader = run(['--port', String(PORTS.viewleader), '--in-memory']);
      await waitFor('the listening line', () =>
        leader.stdout().includes('\n') ? true : undefined,
      );
      await queryServers({ address: `127.0.0.1:${PORTS.viewleader}` });
      leader.child.kill(signal);
      expect(await leader.exited).toBe(0);
      expect(leader.stdout()).toBe(`listening on 127.0.0.1:${PORTS.viewleader}\n`);
      expect(leader.stderr()).toContain('shutting down');
    },
  );

  test('--help prints the usage and exits 0', async () => {
    const help = run(['--help']);
    expect(await help.exited).toBe(0);
    for (const flag of [
      '--host',
      '--port',
      '--failure-timeout',
      '--log-level',
      '--data-dir',
      '--in-memory',
    ]) {
      expect(help.stdout()).toContain(flag);
    }
  });

  test.each([
    { args: ['--bogus'], message: 'Unknown argument: bogus' },
    { args: ['stray'], message: 'Unknown argument: stray' },
    { args: ['--failure-timeout', '0'], message: '--failure-timeout must be a positive number' },
    { args: ['--failure-timeout', 'soon'], message: '--failure-timeout must be a positive number' },
    { args: ['--port', '70000'], message: '--port must be an integer from 0 to 65535' },
    { args: ['--port'], message: 'Not enough arguments following: port' },
    { args: ['--log-level', 'loud'], message: 'log-level' },
    { args: ['--data-dir'], message: 'Not enough arguments following: data-dir' },
    { args: ['--data-dir', ''], message: '--data-dir must name a directory' },
    {
      args: ['--data-dir', 'somewhere', '--in-memory'],
      message: 'Arguments data-dir and in-memory are mutually exclusive',
    },
  ])('$args is a usage error: a clear message and exit 2', async ({ args, message }) => {
    const bad = run(args);
    expect(await bad.exited).toBe(2);
    expect(bad.stdout()).toBe('');
    expect(bad.stderr()).toContain(message);
  });

  test('without --port it takes the first free port of the range; a taken --port fails', async () => {
    // Hold the range's first port (if nobody else does) so that the scan must move past it.
    const blocker = net.createServer();
    await new Promise<void>((resolve) => {
      blocker.once('error', () => resolve());
      blocker.listen(VIEWLEADER_PORT_FIRST, '127.0.0.1', () => resolve());
    });
    try {
      const leader = await startProcess('dht-viewleader', []);
      expect(leader.port).toBeGreaterThan(VIEWLEADER_PORT_FIRST);
      expect(leader.port).toBeLessThanOrEqual(VIEWLEADER_PORT_LAST);
      expect(leader.address).toBe(`127.0.0.1:${leader.port}`);

      const second = run(['--port', String(leader.port)]);
      expect(await second.exited).not.toBe(0);
      expect(second.stdout()).toBe('');
      expect(second.stderr()).toContain(`no free port on 127.0.0.1 in ${leader.port}`);
    } finally {
      blocker.close();
    }
  });
});

// ---- membership ---------------------------------------------------------------------------------

describe('membership', () => {
  test('a silent server leaves after --failure-timeout, is rejected forever, a new ID joins', async () => {
    const leader = await startViewLeader(['--failure-timeout', String(FAILURE_TIMEOUT_S)]);
    expect(await queryServers(leader)).toMatchObject({ epoch: 0, servers: [], rebalancing: false });

    expect(await heartbeat(leader, 'srv-a', 0)).toBe(1);
    // Sent before the view leader receives it: a lower bound on when it last heard from srv-a.
    const lastHeartbeatOfA = Date.now();
    expect(await heartbeat(leader, 'srv-a', 0)).toBe(1); // a repeat changes nothing
    expect(await heartbeat(leader, 'srv-b', 1)).toBe(2);
    const stopB = keepHeartbeating(leader, 'srv-b', 1);
    try {
      const view = await waitFor('srv-a to leave', async () => {
        const v = await queryServers(leader);
        return v.servers.some((s) => s.id === 'srv-a') ? undefined : v;
      });
      expect(Date.now() - lastHeartbeatOfA).toBeGreaterThanOrEqual(FAILURE_TIMEOUT_S * 1000 - 10);
      expect(view.epoch).toBe(3);
      expect(view.servers).toEqual([{ id: 'srv-b', address: serverAddress(1) }]);

      expect(await refusal(heartbeat(leader, 'srv-a', 0))).toEqual({
        kind: 'rejected',
        reason: 'server_expired',
      });
      expect(await heartbeat(leader, 'srv-a2', 0)).toBe(4);
      expect((await queryServers(leader)).servers.map((s) => s.id)).toEqual(['srv-a2', 'srv-b']);
    } finally {
      stopB();
    }
    expect(leader.stderr()).toMatch(/"epoch":3,"joined":\[\],"left":\["srv-a"\].*view changed/);
  });

  test('the next epoch exceeds every epoch a heartbeat reports (a restarted view leader)', async () => {
    const leader = await startViewLeader();
    const report = (serverId: string, i: number, epoch?: number) =>
      call(leader.address, ViewLeaderApi.heartbeat, { serverId, address: serverAddress(i), epoch });
    expect((await report('srv-a', 0, 41)).epoch).toBe(42);
    expect((await report('srv-b', 1, 7)).epoch).toBe(43);
    expect((await report('srv-a', 0, 42)).epoch).toBe(43); // a member at the current epoch
    expect((await report('srv-c', 2)).epoch).toBe(44); // no epoch yet
    expect(await queryServers(leader)).toMatchObject({ epoch: 44 });
  });

  test('a new ID heartbeating from a live address where nothing listens takes it over at once', async () => {
    // The pretend servers' addresses have no process: the view leader's probe of the address is
    // refused, so the old ID is gone (test/integration/hostile-requests.test.ts has the other case).
    const leader = await startViewLeader();
    await heartbeat(leader, 'old', 0);
    expect(await heartbeat(leader, 'new', 0)).toBe(2);
    expect((await queryServers(leader)).servers).toEqual([
      { id: 'new', address: serverAddress(0) },
    ]);
    expect(await refusal(heartbeat(leader, 'old', 0))).toEqual({
      kind: 'rejected',
      reason: 'server_expired',
    });
  });

  test('rebalancing is true from every view change until every server reports done', async () => {
    const leader = await startViewLeader();
    await heartbeat(leader, 'srv-a', 0);
    expect(await queryServers(leader)).toMatchObject({ epoch: 1, rebalancing: true });
    await rebalanceDone(leader, 'srv-a', 1);
    expect(await queryServers(leader)).toMatchObject({ epoch: 1, rebalancing: false });

    await heartbeat(leader, 'srv-b', 1);
    expect(await queryServers(leader)).toMatchObject({ epoch: 2, rebalancing: true });
    await rebalanceDone(leader, 'srv-a', 2);
    await rebalanceDone(leader, 'srv-b', 1); // stale: accepted and ignored
    expect(await queryServers(leader)).toMatchObject({ epoch: 2, rebalancing: true });
    await rebalanceDone(leader, 'srv-b', 2);
    expect(await queryServers(leader)).toMatchObject({ epoch: 2, rebalancing: false });

    expect(await refusal(rebalanceDone(leader, 'srv-b', 3))).toEqual({
      kind: 'invalid',
      reason: 'bad_request',
    });
    expect(await refusal(rebalanceDone(leader, 'stranger', 2))).toEqual({
      kind: 'rejected',
      reason: 'not_in_view',
    });
    expect(await queryServers(leader)).toMatchObject({ epoch: 2, rebalancing: false });
  });
});

// ---- locks --------------------------------------------------------------------------------------

describe('locks', () => {
  test('granted when free, queued FIFO, handed over on release, refused when not held', async () => {
    const leader = await startViewLeader();
    expect(await lockGet(leader, 'L', 'alice')).toBe(true);
    expect(await lockGet(leader, 'L', 'alice')).toBe(true);
    expect(await lockGet(leader, 'L', 'bob')).toBe(false);
    expect(await lockGet(leader, 'L', 'carol')).toBe(false);
    expect(await lockGet(leader, 'L', 'bob')).toBe(false);
    expect(await refusal(lockRelease(leader, 'L', 'dave'))).toEqual({
      kind: 'rejected',
      reason: 'lock_not_held',
    });

    await lockRelease(leader, 'L', 'alice');
    expect(await lockGet(leader, 'L', 'carol')).toBe(false); // bob is first in line
    expect(await lockGet(leader, 'L', 'bob')).toBe(true);
    await lockRelease(leader, 'L', 'carol'); // leaves the queue
    await lockRelease(leader, 'L', 'bob');
    expect(await lockGet(leader, 'L', 'erin')).toBe(true);
    expect(await refusal(lockRelease(leader, 'L', 'bob'))).toEqual({
      kind: 'rejected',
      reason: 'lock_not_held',
    });
  });

  test('the deadlock endpoint lists waits-for cycles, and the log warns', async () => {
    const leader = await startViewLeader();
    expect(await call(leader.address, ViewLeaderApi.deadlocks, {})).toEqual({ cycles: [] });
    expect(await lockGet(leader, 'L1', 'bob')).toBe(true);
    expect(await lockGet(leader, 'L2', 'alice')).toBe(true);
    expect(await lockGet(leader, 'L2', 'bob')).toBe(false);
    expect(await lockGet(leader, 'L1', 'alice')).toBe(false);
    expect(await call(leader.address, ViewLeaderApi.deadlocks, {})).toEqual({
      cycles: [['alice', 'bob']],
    });
    await waitFor('the deadlock warning', () =>
      leader.stderr().includes('deadlock') ? true : undefined,
    );
    await lockRelease(leader, 'L1', 'alice');
    expect(await call(leader.address, ViewLeaderApi.deadlocks, {})).toEqual({ cycles: [] });
  });

  test('the locks of a server that leaves the view are released (held by ID or address)', async () => {
    const leader = await startViewLeader(['--failure-timeout', String(FAILURE_TIMEOUT_S)]);
    await heartbeat(leader, 'srv-a', 0);
    expect(await lockGet(leader, 'by-id', 'srv-a')).toBe(true);
    expect(await lockGet(leader, 'by-address', serverAddress(0))).toBe(true);
    expect(await lockGet(leader, 'by-id', 'alice')).toBe(false);
    await waitFor('srv-a to leave and its locks to pass on', async () =>
      (await lockGet(leader, 'by-id', 'alice')) ? true : undefined,
    );
    expect(await lockGet(leader, 'by-address', 'bob')).toBe(true);
  });
});

// ---- bad input ----------------------------------------------------------------------------------

describe('bad input gets a 4xx JSON answer and changes nothing', () => {
  test.each([
    { case: 'unparsable JSON', path: '/heartbeat', body: '{"serverId": "a",', status: 400 },
    {
      case: 'a wrong type',
      path: '/heartbeat',
      body: '{"serverId": 5, "address": 1}',
      status: 400,
    },
    { case: 'a missing field', path: '/lock_get', body: '{"lock": "L"}', status: 400 },
    {
      case: 'a bad address',
      path: '/heartbeat',
      body: '{"serverId":"a","address":"x"}',
      status: 400,
    },
    {
      case: 'a negative heartbeat epoch',
      path: '/heartbeat',
      body: '{"serverId":"a","address":"127.0.0.1:1","epoch":-1}',
      status: 400,
    },
    {
      case: 'a heartbeat epoch beyond EPOCH_REPORTED_MAX',
      path: '/heartbeat',
      body: `{"serverId":"a","address":"127.0.0.1:1","epoch":${2 ** 52 + 1}}`,
      status: 400,
    },
    {
      case: 'a negative epoch',
      path: '/rebalance_done',
      body: '{"serverId":"a","epoch":-1}',
      status: 400,
    },
    { case: 'an array body', path: '/query_servers', body: '[]', status: 400 },
    { case: 'an unknown path', path: '/no_such_thing', body: '{}', status: 404 },
    {
      case: 'an oversized lock name',
      path: '/lock_get',
      body: JSON.stringify({ lock: 'x'.repeat(2000), requester: 'alice' }),
      status: 400,
    },
  ])('$case: HTTP $status', async ({ path: urlPath, body, status }) => {
    const leader = await startViewLeader();
    const response = await fetch(`http://${leader.address}${urlPath}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(response.status).toBe(status);
    const answer: unknown = await response.json();
    expect(answer).toMatchObject({ kind: 'invalid', error: expect.any(String) });
    expect(await queryServers(leader)).toMatchObject({ epoch: 0, servers: [], rebalancing: false });
    expect(leader.child.exitCode).toBeNull();
  });
});
