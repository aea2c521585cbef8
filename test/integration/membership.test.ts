// Heartbeats and epochs with real server processes: a SIGKILLed server leaves the view after the
// failure timeout; restarted on the same port it is a new server (new ID) and the epoch rises.

import { ServerClient, DhtClient } from '../../client/sdk';
import { call } from '../../lib/http-client';
import { ServerApi } from '../../lib/messages';
import {
  cleanupProcessesAfterAll,
  portBlock,
  startProcess,
  waitFor,
  type Proc,
} from '../support/processes';

cleanupProcessesAfterAll();
const ports = portBlock(8);

/**
 * The view leader on this file's port (a restart reuses it), `--in-memory`: a restart here is of
 * a view leader that lost its state, which the servers' epochs must make up for.
 */
const startLeader = (failureTimeoutS: number): Promise<Proc> =>
  startProcess('dht-viewleader', [
    '--port',
    String(ports.viewleader),
    '--failure-timeout',
    String(failureTimeoutS),
    '--in-memory',
  ]);

/** Server `i` of this file, heartbeating to `leader` every `heartbeatS`. */
const startServer = (i: number, leader: Proc, heartbeatS = 0.2): Promise<Proc> =>
  startProcess('dht-server', [
    '--port',
    String(ports.server(i)),
    '--viewleader',
    leader.address,
    '--heartbeat-interval',
    String(heartbeatS),
  ]);

test('a killed server leaves after the failure timeout; its restart joins with a new ID', async () => {
  const leader = await startLeader(2);
  const start = (i: number) => startServer(i, leader);
  const servers = [await start(0), await start(1)];
  const client = new DhtClient({ viewLeader: leader.address, cacheView: false });
  const joined = await waitFor('both servers in the view', async () => {
    const view = await client.queryServers();
    return view.servers.length === 2 && !view.rebalancing ? view : undefined;
  });
  expect(joined.servers.map((s) => s.address).sort()).toEqual(servers.map((s) => s.address).sort());
  const victim = joined.servers.find((s) => s.address === servers[0].address)!;

  const killedAtMs = Date.now();
  servers[0].child.kill('SIGKILL');
  const left = await waitFor('the killed server to leave the view', async () => {
    const view = await client.queryServers();
    return view.servers.length === 1 ? view : undefined;
  });
  // Not before the failure timeout (1 s), measured from the kill.
  expect(Date.now() - killedAtMs).toBeGreaterThanOrEqual(900);
  expect(left.epoch).toBeGreaterThan(joined.epoch);
  expect(left.servers[0].address).toBe(servers[1].address);

  const restarted = await start(0);
  expect(restarted.address).toBe(servers[0].address);
  const rejoined = await waitFor('the restarted server to join', async () => {
    const view = await client.queryServers();
    return view.servers.length === 2 ? view : undefined;
  });
  expect(rejoined.epoch).toBeGreaterThan(left.epoch);
  const reborn = rejoined.servers.find((s) => s.address === restarted.address)!;
  expect(reborn.id).not.toBe(victim.id);
  // The server is usable once the view settles.
  await waitFor('the view to settle', async () =>
    (await client.queryServers()).rebalancing ? undefined : true,
  );
  await new ServerClient(restarted.address).set('k', 'v');
  expect(await new ServerClient(restarted.address).get('k')).toBe('v');
}, 60_000);

test('a server learns a newer epoch from a transfer at once, not at its next heartbeat', async () => {
  const leader = await startLeader(60);
  const sleepy = await startServer(0, leader, 30);
  const status = () => call(sleepy.address, ServerApi.status, {});
  const first = await waitFor('the first epoch', async () => {
    const s = await status();
    return s.epoch >= 0 ? s.epoch : undefined;
  });
  // Another server joins: the view leader moves on; the sleepy server's next heartbeat is ~30 s away.
  await startServer(1, leader);
  const client = new DhtClient({ viewLeader: leader.address, cacheView: false });
  const newer = await waitFor('the join', async () => {
    const view = await client.queryServers();
    return view.epoch > first ? view.epoch : undefined;
  });
  expect((await status()).epoch).toBe(first);
  await call(sleepy.address, ServerApi.transfer, { epoch: newer, sourceId: 'test', entries: [] });
  await waitFor(
    'the sleepy server to install the newer epoch',
    async () => ((await status()).epoch === newer ? true : undefined),
    5_000,
  );
}, 60_000);

test('a restarted view leader settles with the servers that rejoin, at a higher epoch', async () => {
  const leader = await startLeader(2);
  const server = await startServer(0, leader);
  const client = new DhtClient({ viewLeader: leader.address, cacheView: false, waitMs: 10_000 });
  const before = await waitFor('a settled view', async () => {
    const view = await client.queryServers();
    return view.servers.length === 1 && !view.rebalancing ? view : undefined;
  });
  await client.setr('survives', 'the restart');

  leader.child.kill('SIGKILL');
  await leader.exited;
  await startLeader(2);
  // The server's heartbeat tells the new view leader the epoch it holds: it counts on from there.
  const after = await waitFor('the rejoined server to settle', async () => {
    const view = await client.queryServers();
    return view.servers.length === 1 && !view.rebalancing ? view : undefined;
  });
  expect(after.epoch).toBe(before.epoch + 1);
  expect(after.servers[0].address).toBe(server.address);
  expect((await client.getr('survives')).value).toBe('the restart');
}, 60_000);
