// The view leader on a data directory, with real processes: SIGKILLed and restarted on the same
// port and directory, it comes back with the epoch, the view (no view change: the servers do not
// notice), the locks and their queues, and the expired IDs. A directory another view leader uses,
// or one it cannot read, stops the start with one clear error line and a non-zero exit.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { call } from '../../lib/http-client';
import { ServerApi, ViewLeaderApi, type View } from '../../lib/messages';
import {
  cleanupProcessesAfterAll,
  portBlock,
  ROOT,
  startProcess,
  startWatched,
  waitFor,
  type Proc,
  type Watched,
} from '../support/processes';

cleanupProcessesAfterAll();
const ports = portBlock(13);
/** Servers heartbeat every 0.2 s; 2 s keeps a server that a busy machine starves in the view. */
const FAILURE_TIMEOUT_S = 2;
const SETTLE_TIMEOUT_MS = 60_000;

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-viewleader-durable-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

const startLeader = (dataDir: string): Promise<Proc> =>
  startProcess('dht-viewleader', [
    '--port',
    String(ports.viewleader),
    '--failure-timeout',
    String(FAILURE_TIMEOUT_S),
    '--data-dir',
    dataDir,
  ]);

const startServer = (i: number, leader: Proc): Promise<Proc> =>
  startProcess('dht-server', [
    '--port',
    String(ports.server(i)),
    '--viewleader',
    leader.address,
    '--heartbeat-interval',
    '0.2',
  ]);

const queryServers = (leader: Proc): Promise<View> =>
  call(leader.address, ViewLeaderApi.queryServers, {});
const lockGet = async (leader: Proc, lock: string, requester: string): Promise<boolean> =>
  (await call(leader.address, ViewLeaderApi.lockGet, { lock, requester })).granted;
const lockRelease = (leader: Proc, lock: string, requester: string): Promise<object> =>
  call(leader.address, ViewLeaderApi.lockRelease, { lock, requester });

/** The view once it lists exactly `servers`, is not rebalancing, and every one of them installed it. */
function settled(leader: Proc, servers: readonly Proc[]): Promise<View> {
  const addresses = servers.map((s) => s.address).sort();
  return waitFor(
    `the view to settle at ${addresses.join(', ')}`,
    async () => {
      const view = await queryServers(leader);
      const listed = view.servers.map((s) => s.address).sort();
      if (view.rebalancing || JSON.stringify(listed) !== JSON.stringify(addresses))
        return undefined;
      const statuses = await Promise.all(servers.map((s) => call(s.address, ServerApi.status, {})));
      return statuses.every((s) => s.epoch === view.epoch && !s.rebalancing) ? view : undefined;
    },
    SETTLE_TIMEOUT_MS,
  );
}

/** A heartbeat sent by hand over plain HTTP: the status and the body of the answer. */
async function forgedHeartbeat(
  leader: Proc,
  serverId: string,
  address: string,
): Promise<{ status: number; body: { reason?: string } }> {
  const response = await fetch(`http://${leader.address}${ViewLeaderApi.heartbeat.path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ serverId, address }),
  });
  return { status: response.status, body: (await response.json()) as { reason?: string } };
}

async function sigkill(proc: Proc): Promise<void> {
  proc.child.kill('SIGKILL');
  await proc.exited;
}

test('restarted on its data directory, it keeps the epoch, the view, the locks and the expired IDs', async () => {
  const dataDir = path.join(root, 'viewleader');
  let leader = await startLeader(dataDir);
  const servers = await Promise.all([0, 1, 2, 3].map((i) => startServer(i, leader)));
  await settled(leader, servers);

  // An expired ID: server 3 is SIGKILLed and times out; its ID is rejected from then on.
  const victim = servers.pop()!;
  const victimId = (await queryServers(leader)).servers.find(
    (s) => s.address === victim.address,
  )!.id;
  await sigkill(victim);
  const before = await settled(leader, servers);
  expect(await forgedHeartbeat(leader, victimId, victim.address)).toEqual({
    status: 409,
    body: expect.objectContaining({ reason: 'server_expired' }),
  });

  // A held lock with a queue of two.
  expect(await lockGet(leader, 'L', 'alice')).toBe(true);
  expect(await lockGet(leader, 'L', 'bob')).toBe(false);
  expect(await lockGet(leader, 'L', 'carol')).toBe(false);

  await sigkill(leader);
  leader = await startLeader(dataDir);
  const restartedAt = Date.now();

  // The same view at once, before any server heartbeats again.
  const restored = await queryServers(leader);
  expect(restored.epoch).toBe(before.epoch);
  expect(restored.servers).toEqual(before.servers);
  expect(restored.placement).toEqual(before.placement);
  expect(restored.rebalancing).toBe(false);
  // And for longer than a failure timeout from the restart: the servers' heartbeats were
  // accepted as before (else they would have left), and none of them changed the view.
  await waitFor(
    'a failure timeout to pass with the view unchanged',
    async () => {
      const view = await queryServers(leader);
      expect(view.epoch).toBe(before.epoch);
      expect(view.servers).toEqual(before.servers);
      return Date.now() - restartedAt > FAILURE_TIMEOUT_S * 1000 * 1.25 ? true : undefined;
    },
    SETTLE_TIMEOUT_MS,
  );
  expect(await settled(leader, servers)).toEqual(before);

  // The lock is held by the same requester and the queue is intact, in order.
  expect(await lockGet(leader, 'L', 'alice')).toBe(true);
  expect(await lockGet(leader, 'L', 'carol')).toBe(false);
  await lockRelease(leader, 'L', 'alice');
  expect(await lockGet(leader, 'L', 'bob')).toBe(true);
  await lockRelease(leader, 'L', 'bob');
  expect(await lockGet(leader, 'L', 'carol')).toBe(true);

  // The expired ID stays expired.
  expect(await forgedHeartbeat(leader, victimId, victim.address)).toEqual({
    status: 409,
    body: expect.objectContaining({ reason: 'server_expired' }),
  });

  // The next view change gets an epoch above every epoch seen before.
  servers.push(await startServer(3, leader));
  const grown = await settled(leader, servers);
  expect(grown.epoch).toBeGreaterThan(before.epoch);
  expect(leader.stderr()).toMatch(
    /"epoch":\d+,"servers":3,.*"locks":1,"msg":"view leader state restored"/,
  );
}, 120_000);

test('a failed sync: it serves reads of what is on disk, refuses every change, and a restart resumes', async () => {
  const dataDir = path.join(root, 'viewleader');
  const failFile = path.join(root, 'disk-full');
  const startFailing = (): Promise<Proc> =>
    startProcess(
      'dht-viewleader',
      [
        '--port',
        String(ports.viewleader),
        '--failure-timeout',
        String(FAILURE_TIMEOUT_S),
        '--data-dir',
        dataDir,
      ],
      { DHT_FAULT_SYNC_FAIL_FILE: failFile },
    );
  let leader = await startFailing();
  const first = await startServer(0, leader);
  const before = await settled(leader, [first]);
  expect(await lockGet(leader, 'L', 'alice')).toBe(true);

  fs.writeFileSync(failFile, 'every sync fails while this file exists');
  // A change needs a sync: a new server's join is refused, and stays refused.
  const joiner = await forgedHeartbeat(leader, 'newcomer-id', '127.0.0.1:1');
  expect(joiner.status).toBe(503);
  await waitFor('the view leader to refuse changes with storage_failed', async () => {
    const again = await forgedHeartbeat(leader, 'newcomer-id', '127.0.0.1:1');
    return again.body.reason === 'storage_failed' ? true : undefined;
  });
  await expect(lockGet(leader, 'M', 'bob')).rejects.toMatchObject({ reason: 'storage_failed' });
  // Reads go on, from what is on disk: the view, the held lock (alice's request is a read of her
  // own grant, and changes nothing), and the member's heartbeats keep it in the view.
  const during = await queryServers(leader);
  expect(during.epoch).toBe(before.epoch);
  expect(during.servers.map((s) => s.id)).toEqual(before.servers.map((s) => s.id));
  expect(await lockGet(leader, 'L', 'alice')).toBe(true);
  const status = await call(first.address, ServerApi.status, {});
  expect(status.epoch).toBe(before.epoch);
  expect(leader.child.exitCode).toBeNull();

  // The disk is fixed and the view leader restarted: everything resumes from the disk.
  fs.rmSync(failFile);
  leader.child.kill('SIGTERM');
  await leader.exited;
  leader = await startFailing();
  expect((await queryServers(leader)).epoch).toBe(before.epoch);
  expect(await lockGet(leader, 'M', 'bob')).toBe(true);
  expect(await lockGet(leader, 'L', 'carol')).toBe(false); // alice still holds L
}, 90_000);

// ---- starts that must fail ----------------------------------------------------------------------

/** `bin/dht-viewleader args...` in `cwd`, watched to its end. */
function run(args: string[], cwd = ROOT): Watched {
  return startWatched('dht-viewleader', args, { cwd });
}

/** The start failed: exit `code`, nothing on stdout, one `ERROR: ...` line on stderr; that line. */
async function refusedToStart(attempt: Watched, code = 1): Promise<string> {
  expect(await attempt.exited).toBe(code);
  expect(attempt.stdout()).toBe('');
  expect(attempt.stderr()).toMatch(/^ERROR: [^\n]+\n$/);
  return attempt.stderr();
}

test('a second view leader on the same data directory refuses to start', async () => {
  const dataDir = path.join(root, 'viewleader');
  const first = await startLeader(dataDir);
  const second = run(['--port', String(ports.server(9)), '--data-dir', dataDir]);
  expect(await refusedToStart(second)).toContain(`${dataDir} is in use by another process`);
  // The first one is unharmed.
  expect(await lockGet(first, 'L', 'alice')).toBe(true);
});

test('the default data directory is dht-data/viewleader-PORT under the working directory', async () => {
  const port = ports.server(8);
  const leader = run(['--port', String(port)], root);
  await waitFor('the listening line', () => (leader.stdout().includes('\n') ? true : undefined));
  expect(fs.existsSync(path.join(root, 'dht-data', `viewleader-${port}`, 'CURRENT'))).toBe(true);
  // A second one on the same port does not get as far as the directory (exit 4: unavailable).
  const second = run(['--port', String(port)], root);
  expect(await refusedToStart(second, 4)).toContain(`no free port on 127.0.0.1 in ${port}`);
  leader.child.kill('SIGTERM');
  expect(await leader.exited).toBe(0);
});

describe('a data directory it cannot read: a clear error, exit 1, nothing written over it', () => {
  test('a file where the directory should be', async () => {
    const file = path.join(root, 'not-a-directory');
    fs.writeFileSync(file, 'precious');
    const attempt = run(['--port', String(ports.viewleader), '--data-dir', file]);
    expect(await refusedToStart(attempt)).toContain(`cannot use ${file} as a data directory`);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious');
  });

  test('a directory of other files', async () => {
    const dir = path.join(root, 'photos');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'cat.jpg'), 'meow');
    const attempt = run(['--port', String(ports.viewleader), '--data-dir', dir]);
    expect(await refusedToStart(attempt)).toContain('no LevelDB database');
    expect(fs.readdirSync(dir)).toEqual(['cat.jpg']);
  });

  test('garbage in CURRENT, after a view leader had saved its state there', async () => {
    const dataDir = path.join(root, 'viewleader');
    const leader = await startLeader(dataDir);
    expect(await lockGet(leader, 'L', 'alice')).toBe(true);
    await sigkill(leader);
    fs.writeFileSync(path.join(dataDir, 'CURRENT'), 'garbage\n');
    const attempt = run(['--port', String(ports.viewleader), '--data-dir', dataDir]);
    expect(await refusedToStart(attempt)).toContain(
      `cannot open the LevelDB database in ${dataDir}`,
    );
    expect(fs.readFileSync(path.join(dataDir, 'CURRENT'), 'utf8')).toBe('garbage\n');
    // The port was let go again.
    const other = await startLeader(path.join(root, 'elsewhere'));
    expect(other.port).toBe(ports.viewleader);
  });
});
