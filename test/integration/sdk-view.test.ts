// The SDK's view handling against an in-process view leader stand-in (no processes): a view
// with an older epoch than one already received is refused as stale, never acted on.

import { DhtClient } from '../../client/sdk';
import { keepAliveAgent } from '../../lib/http-client';
import { RpcServer, type ListeningServer } from '../../lib/http-server';
import { createLogger } from '../../lib/logger';
import { ViewLeaderApi, type View } from '../../lib/messages';

const epochs: number[] = [];
let listening: ListeningServer;

beforeAll(async () => {
  const rpc = new RpcServer(createLogger('sdk-view-test', 'silent'));
  rpc.route(ViewLeaderApi.queryServers, (): View => {
    const epoch = epochs.shift() ?? 0;
    return { epoch, servers: [], rebalancing: false, placement: { epoch, servers: [] } };
  });
  listening = await rpc.listen('127.0.0.1', [0]);
});

afterAll(() => {
  listening.server.closeAllConnections();
  listening.server.close();
  keepAliveAgent.destroy();
});

test('a view older than one already received is stale: refused with retry, not cached', async () => {
  const client = new DhtClient({ viewLeader: listening.address });
  epochs.push(7, 3, 7, 8);
  expect((await client.queryServers()).epoch).toBe(7);
  await expect(client.queryServers()).rejects.toMatchObject({
    kind: 'retry',
    reason: 'stale_view',
  });
  expect((await client.queryServers()).epoch).toBe(7); // the same epoch again is fine
  expect((await client.queryServers()).epoch).toBe(8);
});
