// A replicated view leader of real processes (the contract's "A replicated view leader"): three
// `dht-viewleader --peers` members on their own data directories, storage servers and clients
// given every member. The leading member SIGKILLed under setr/getr/lock traffic (a new leader
// within 5 s, the epoch never back, acknowledged writes kept, histories linearizable, a lock never
// held twice); the leader SIGSTOPped past an election and woken after the view moved on (it
// serves no stale view and grants no lock the new leader granted); a member SIGKILLed and
// restarted on its directory catching up and leading; two of three members down (nothing changes,
// nothing wrong acknowledged) and one back; the CLI's viewleader_status and refused starts.

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DhtClient } from '../../client/sdk';
import { DhtError } from '../../lib/errors';
import { call, keepAliveAgent } from '../../lib/http-client';
import { MemberStatus, ServerApi, ViewLeaderApi } from '../../lib/messages';
import { ViewLeaderGroup } from '../../lib/view-leader-group';
import { Cluster } from '../support/cluster';
import { checkRegister, type Operation, type OperationOutcome } from '../support/linearizability';
import {
  cleanupProcessesAfterAll,
  killAll,
  portBlock,
  runToExit,
  waitFor,
} from '../support/processes';
import { uniform } from '../support/random';
import { memberStatus, queryMember, ViewLeaderMembers } from '../support/viewleader-group';

const PORTS = portBlock(15);
/** Each test has ten ports of the file's block: its three members, then its servers. */
const PORTS_PER_TEST = 10;
const MEMBERS = 3;
/** The members' --failure-timeout (s): small, so that a server that leaves does so quickly. */
const FAILURE_TIMEOUT_S = 3;
/** The contract: a new leader within 5 s with default timings. */
const FAILOVER_MS_MAX = 5_000;
/** Every wait for the cluster to get somewhere: generous, for a busy machine. */
const WAIT_MS = 30_000;

cleanupProcessesAfterAll();
afterAll(() => {
  keepAliveAgent.destroy();
});

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-viewleader-replicated-'));
});
afterEach(async () => {
  await killAll(); // before the directories go (also when the test failed)
  fs.rmSync(root, { recursive: true, force: true });
});

/** Test number `slot`'s members (each on ROOT/viewleader-PORT) and, if asked, its servers. */
async function startSlot(
  slot: number,
  servers: number,
): Promise<{ members: ViewLeaderMembers; cluster: Cluster | undefined }> {
  const base = PORTS.viewleader + PORTS_PER_TEST * slot;
  const ports = Array.from({ length: MEMBERS }, (_, i) => base + i);
  const members = await ViewLeaderMembers.start(ports, root, FAILURE_TIMEOUT_S);
  // The servers start during the first election: they join once a member leads.
  const [, cluster] = await Promise.all([
    members.leader(WAIT_MS),
    servers === 0
      ? undefined
      : Cluster.startWithViewLeaders({
          servers,
          serverPort: (i) => base + MEMBERS + i,
          viewLeaders: members.addresses,
          heartbeatS: 0.2,
        }),
  ]);
  return { members, cluster };
}

function client(members: ViewLeaderMembers, waitMs = 5_000): DhtClient {
  return new DhtClient({ viewLeader: members.list, waitMs, timeoutMs: 2_000 });
}

function others(members: ViewLeaderMembers, ...not: string[]): string[] {
  return members.addresses.filter((a) => !not.includes(a));
}

// ---- the leader SIGKILLed under traffic ---------------------------------------------------------

/**
 * Two registers every worker writes and reads (unique values); three ops in ten write a key of
 * their own instead, read back at the end.
 */
const SHARED_KEYS = ['vl/x', 'vl/y'];
const KV_WORKERS = 3;
const LOCK_WORKERS = 2;
const LOCK = 'vl/traffic-lock';
/** Operations before the kill, and successful ones after the new leader serves, per run. */
const OPS_BEFORE_KILL = 30;
const OK_OPS_AFTER_FAILOVER = 30;
/** Hard caps: the workload stops at whichever comes first. */
const OPS_PER_WORKER_MAX = 400;
const RUN_MS_MAX = 40_000;

interface KvOp extends Operation {
  readonly key: string;
  readonly error?: string;
}

/** One setr or getr through the SDK, with its interval and outcome (as the exit codes say). */
async function kvOp(
  sdk: DhtClient,
  who: string,
  key: string,
  type: 'write' | 'read',
  written: string,
): Promise<KvOp> {
  const start = performance.now();
  const op = { key, type, start, process: who };
  try {
    if (type === 'write') {
      await sdk.setr(key, written);
      return { ...op, end: performance.now(), value: written, outcome: 'ok' };
    }
    const { value } = await sdk.getr(key);
    return { ...op, end: performance.now(), value, outcome: 'ok' };
  } catch (err) {
    if (!(err instanceof DhtError)) throw err;
    const end = performance.now();
    if (type === 'read' && err.kind === 'not_found') {
      return { ...op, end, value: null, outcome: 'ok' };
    }
    const outcome: OperationOutcome = err.kind === 'unknown' ? 'unknown' : 'fail';
    const error = `${err.kind}${err.reason === undefined ? '' : `/${err.reason}`}`;
    return { ...op, end, value: type === 'write' ? written : null, outcome, error };
  }
}

/** From the moment lock_get was acknowledged to the moment its release was first sent. */
interface Holding {
  readonly requester: string;
  readonly from: number;
  readonly to: number;
}

test('the leading member SIGKILLed under setr/getr/lock traffic: a new leader within 5 s, nothing acknowledged lost, the epoch never back, linearizable, no lock held twice', async () => {
  const { members, cluster } = await startSlot(0, 3);
  const initial = await cluster!.view();
  const leader = await members.leader(WAIT_MS);

  const history: KvOp[] = [];
  const holdings: Holding[] = [];
  const lockErrors: string[] = [];
  const epochs: { at: number; epoch: number }[] = [];
  const startedAt = performance.now();
  let stopAt = startedAt + RUN_MS_MAX;
  const running = (): boolean => performance.now() < stopAt;

  const kvWorker = async (index: number): Promise<void> => {
    const random = uniform(500 + index);
    const sdk = client(members);
    for (let i = 0; i < OPS_PER_WORKER_MAX && running(); i++) {
      const draw = random();
      const value = `w${index}-${i}`;
      if (draw < 0.3) {
        history.push(await kvOp(sdk, `kv${index}`, `vl/own/${value}`, 'write', value));
      } else {
        const key = SHARED_KEYS[Math.floor(random() * SHARED_KEYS.length)];
        history.push(await kvOp(sdk, `kv${index}`, key, draw < 0.65 ? 'write' : 'read', value));
      }
    }
  };

  const lockWorker = async (index: number): Promise<void> => {
    const me = `locker${index}`;
    const sdk = client(members);
    for (let i = 0; i < OPS_PER_WORKER_MAX && running(); i++) {
      try {
        await sdk.lockGet(LOCK, me, 50, 3_000);
      } catch (err) {
        if (!(err instanceof DhtError)) throw err;
        lockErrors.push(`${me} get: ${err.kind}/${err.reason ?? ''}`);
        continue;
      }
      const from = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 20)); // hold it a moment
      const to = performance.now();
      holdings.push({ requester: me, from, to });
      // Released for sure before the next lock_get, or the test fails: bounded retries.
      await waitFor(
        `${me} to release ${LOCK}`,
        async () => {
          try {
            await sdk.lockRelease(LOCK, me);
            return true;
          } catch (err) {
            if (!(err instanceof DhtError)) throw err;
            lockErrors.push(`${me} release: ${err.kind}/${err.reason ?? ''}`);
            // A release that timed out may have happened: releasing again is refused then.
            if (err.reason === 'lock_not_held') return true;
            throw err;
          }
        },
        WAIT_MS,
        50,
      );
    }
  };

  /** A client that checks nothing itself: every epoch any member serves, in order. */
  const epochWatcher = async (): Promise<void> => {
    const group = new ViewLeaderGroup(members.addresses, 1_000);
    while (running()) {
      try {
        const view = await group.call(ViewLeaderApi.queryServers, {});
        epochs.push({ at: performance.now(), epoch: view.epoch });
      } catch (err) {
        if (!(err instanceof DhtError)) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  let killedAt = 0;
  let servingAt = 0;
  let newLeader = '';
  const killer = async (): Promise<void> => {
    try {
      await waitFor(
        `${OPS_BEFORE_KILL} operations before the kill`,
        () => (history.length >= OPS_BEFORE_KILL ? true : undefined),
        WAIT_MS,
        10,
      );
      killedAt = performance.now();
      await members.kill(leader);
      // The first query_servers that a surviving member answers itself, asked directly.
      newLeader = await waitFor(
        'a surviving member to answer query_servers',
        async () => {
          for (const address of others(members, leader)) {
            if ((await queryMember(address, 1_000)) !== undefined) return address;
          }
          return undefined;
        },
        WAIT_MS,
        20,
      );
      servingAt = performance.now();
      await waitFor(
        `${OK_OPS_AFTER_FAILOVER} successful operations after the failover`,
        () =>
          history.filter((o) => o.outcome === 'ok' && o.start > servingAt).length >=
          OK_OPS_AFTER_FAILOVER
            ? true
            : undefined,
        WAIT_MS,
        20,
      );
      await waitFor(
        'a lock granted after the failover',
        () => (holdings.some((h) => h.from > servingAt) ? true : undefined),
        WAIT_MS,
        20,
      );
    } finally {
      stopAt = 0; // the workers finish the operation at hand and stop
    }
  };

  // Whatever fails first stops everything, and the test fails only once every task has ended:
  // no worker outlives the test.
  const stopOnFailure = (task: Promise<void>): Promise<void> =>
    task.catch((err: unknown) => {
      stopAt = 0;
      throw err;
    });
  const settled = await Promise.allSettled(
    [
      ...Array.from({ length: KV_WORKERS }, (_, i) => kvWorker(i)),
      ...Array.from({ length: LOCK_WORKERS }, (_, i) => lockWorker(i)),
      epochWatcher(),
      killer(),
    ].map(stopOnFailure),
  );
  for (const result of settled) if (result.status === 'rejected') throw result.reason;

  const failoverMs = Math.round(servingAt - killedAt);
  const summary = {
    failoverMs,
    newLeader,
    operations: history.length,
    ok: history.filter((o) => o.outcome === 'ok').length,
    okAfterFailover: history.filter((o) => o.outcome === 'ok' && o.start > servingAt).length,
    failed: history.filter((o) => o.outcome === 'fail').map((o) => o.error),
    unknown: history.filter((o) => o.outcome === 'unknown').length,
    grants: holdings.length,
    grantsAfterFailover: holdings.filter((h) => h.from > servingAt).length,
    lockErrors,
    runMs: Math.round(performance.now() - startedAt),
  };
  process.stderr.write(`viewleader failover under traffic: ${JSON.stringify(summary)}\n`);

  expect(newLeader).not.toBe(leader);
  expect(failoverMs).toBeLessThan(FAILOVER_MS_MAX);

  // The epoch never went back: not for the SDK clients (they refuse an older one: stale_view),
  // not for a client that checks nothing itself. No server changed, so it never moved at all.
  expect(history.filter((o) => o.error?.endsWith('/stale_view'))).toEqual([]);
  for (let i = 1; i < epochs.length; i++) {
    expect(epochs[i].epoch).toBeGreaterThanOrEqual(epochs[i - 1].epoch);
  }
  expect(epochs.some((e) => e.at > servingAt)).toBe(true);
  expect(epochs.every((e) => e.epoch >= initial.epoch)).toBe(true);

  // Every acknowledged setr is readable afterwards: its own key holds exactly its value.
  const reader = client(members, 10_000);
  const acknowledged = history.filter(
    (o) => o.key.startsWith('vl/own/') && o.type === 'write' && o.outcome === 'ok',
  );
  expect(acknowledged.length).toBeGreaterThan(10);
  const reads = await Promise.all(
    acknowledged.map((write) => kvOp(reader, 'final', write.key, 'read', '')),
  );
  const lost = reads
    .filter((read, i) => read.outcome !== 'ok' || read.value !== acknowledged[i].value)
    .map((read) => JSON.stringify(read));
  expect(lost).toEqual([]);

  // The shared registers' histories, closed by a last read, are linearizable.
  for (const key of SHARED_KEYS) {
    const last = await kvOp(reader, 'final', key, 'read', '');
    expect(last.outcome).toBe('ok');
    const result = checkRegister([...history.filter((o) => o.key === key), last]);
    if (!result.ok) throw new Error(`${key} is not linearizable: ${result.explanation}`);
  }

  // No two requesters ever held the lock at once.
  const overlaps = holdings.flatMap((a, i) =>
    holdings
      .slice(i + 1)
      .filter((b) => b.requester !== a.requester && b.from < a.to && a.from < b.to)
      .map((b) => JSON.stringify([a, b])),
  );
  expect(overlaps).toEqual([]);
  expect(summary.okAfterFailover).toBeGreaterThanOrEqual(OK_OPS_AFTER_FAILOVER);
  expect(summary.grantsAfterFailover).toBeGreaterThan(0);
}, 90_000);

// ---- the leader SIGSTOPped past an election, woken after the view moved on ----------------------

/** A raw POST whose bytes are known to be handed to the kernel (`written`) before it is answered. */
function sendRaw(
  address: string,
  urlPath: string,
  body: unknown,
  timeoutMs: number,
): { written: Promise<void>; answer: Promise<{ status: number; body: Record<string, unknown> }> } {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    address.slice(address.lastIndexOf(':') + 1),
  ];
  const payload = JSON.stringify(body);
  let written!: () => void;
  const done = new Promise<void>((resolve) => (written = resolve));
  const answer = new Promise<{ status: number; body: Record<string, unknown> }>(
    (resolve, reject) => {
      const request = http.request(
        {
          host,
          port: Number(port),
          path: urlPath,
          method: 'POST',
          agent: false,
          timeout: timeoutMs,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
          },
        },
        (response) => {
          let text = '';
          response.setEncoding('utf8').on('data', (d: string) => (text += d));
          response.on('end', () => {
            try {
              resolve({
                status: response.statusCode ?? 0,
                body: JSON.parse(text) as Record<string, unknown>,
              });
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          });
        },
      );
      request.on('timeout', () => request.destroy(new Error(`no answer in ${timeoutMs} ms`)));
      request.on('error', reject);
      request.end(payload, () => written());
    },
  );
  return { written: done, answer };
}

test('the leader SIGSTOPped past an election while the view moves on: woken, it serves no stale view and grants no lock the new leader granted', async () => {
  const { members, cluster } = await startSlot(1, 3);
  const old = await members.leader(WAIT_MS);
  const before = await cluster!.view();
  const early = client(members, 10_000); // has seen the epoch before the pause
  expect((await early.queryServers()).epoch).toBe(before.epoch);

  // The view moves on while the old leader sleeps: a server leaves (SIGKILLed as the leader
  // stops: expelled a failure timeout after the new leader took over), another joins.
  const leaving = before.servers[0].address;
  await Promise.all([cluster!.kill(leaving), members.pause(old)]);
  const stoppedAt = performance.now();
  const [next] = await Promise.all([
    members.leader(WAIT_MS, others(members, old)),
    cluster!.startServer(3),
  ]);
  const electedMs = Math.round(performance.now() - stoppedAt);
  expect(electedMs).toBeLessThan(FAILOVER_MS_MAX);
  const moved = await cluster!.settled(3, WAIT_MS);
  expect(moved.epoch).toBeGreaterThan(before.epoch);
  expect(moved.servers.map((s) => s.address)).not.toContain(leaving);
  // ...and the new leader grants a lock.
  const sdk = client(members, 10_000);
  expect(await sdk.lockTry('vl/contested', 'bob')).toBe(true);
  const stoppedForMs = Math.round(performance.now() - stoppedAt);
  expect(stoppedForMs).toBeGreaterThan(3_000);

  // Requests to the old leader itself, queued at its port while it sleeps, then answered at once
  // as it wakes: before it has heard from anyone.
  const staleQuery = sendRaw(old, ViewLeaderApi.queryServers.path, {}, WAIT_MS);
  const staleLock = sendRaw(
    old,
    ViewLeaderApi.lockGet.path,
    { lock: 'vl/contested', requester: 'carol' },
    WAIT_MS,
  );
  await Promise.all([staleQuery.written, staleLock.written]);
  await members.resume(old);
  const [query, lock] = await Promise.all([staleQuery.answer, staleLock.answer]);
  // Refused: not_leader; or `unknown` (500) if its step's entry (a lock it granted in its stale
  // cores, the expiry of servers it has not heard from while asleep) was not overwritten by the
  // new leader's log within its commit wait. Neither tells anything stale.
  const refused = (a: { status: number; body: Record<string, unknown> }): boolean =>
    (a.status === 503 && a.body.reason === 'not_leader') ||
    (a.status === 500 && a.body.kind === 'unknown');
  if (!refused(query)) {
    expect(query.status).toBe(200);
    expect(query.body.epoch).toBe(moved.epoch); // the current one, never the old one
  }
  if (!refused(lock)) {
    expect(lock).toEqual({ status: 200, body: { granted: false } });
  }

  // Once it has heard the new term, it follows, and keeps refusing to answer for the view.
  const following = await waitFor(
    `${old} to follow ${next}`,
    async () => {
      const status = await memberStatus(old);
      return status.role === 'follower' && status.leader === next ? status : undefined;
    },
    WAIT_MS,
  );
  expect(following.term).toBeGreaterThanOrEqual((await memberStatus(next)).term);
  expect(await queryMember(old)).toBeUndefined();
  const direct = await sendRaw(
    old,
    ViewLeaderApi.lockGet.path,
    { lock: 'vl/contested', requester: 'dave' },
    WAIT_MS,
  ).answer;
  expect(direct).toEqual({
    status: 503,
    body: expect.objectContaining({ reason: 'not_leader', leader: next }),
  });

  // Through the group: the lock is still bob's, and the epoch a client saw only went forward.
  expect(await sdk.lockTry('vl/contested', 'carol')).toBe(false);
  expect((await early.queryServers()).epoch).toBeGreaterThanOrEqual(moved.epoch);
  process.stderr.write(
    `viewleader SIGSTOP: new leader in ${electedMs} ms, stopped ${stoppedForMs} ms, ` +
      `answers on waking ${JSON.stringify({ query: query.body, lock: lock.body })}\n`,
  );
}, 90_000);

// ---- a member restarted on its directory, and viewleader_status ---------------------------------

/** `viewleader_status --json` through the CLI: exit 0 and `{"status":"ok","members":[...]}`. */
async function statusByCli(members: ViewLeaderMembers): Promise<MemberStatus[]> {
  const result = await members.cli('viewleader_status', '--json');
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  const parsed = JSON.parse(result.stdout) as { status: string; members: unknown[] };
  expect(parsed.status).toBe('ok');
  return parsed.members.map((m) => MemberStatus.parse(m));
}

test('a member SIGKILLed and restarted on its data directory catches up, then leads with the latest epoch and the held locks; viewleader_status shows it', async () => {
  const { members, cluster } = await startSlot(2, 3);
  const leader = await members.leader(WAIT_MS);
  const [member, other] = others(members, leader);
  const sdk = client(members, 10_000);

  const all = await statusByCli(members);
  expect(all.map((m) => m.address)).toEqual(members.addresses);
  expect(all.filter((m) => m.role === 'leader').map((m) => m.address)).toEqual([leader]);
  expect(all.every((m) => m.replicated && m.term === all[0].term)).toBe(true);

  await members.kill(member);
  const withDown = await statusByCli(members);
  expect(withDown.map((m) => [m.address, m.role])).toContainEqual([member, 'unreachable']);
  // Changes it misses: a server joins; a lock is taken, with a waiter queued behind.
  await cluster!.startServer(3);
  const grown = await cluster!.settled(4, WAIT_MS);
  expect(await sdk.lockTry('vl/held', 'alice')).toBe(true);
  expect(await sdk.lockTry('vl/held', 'bob')).toBe(false);

  // Its directory is refused to a member of other peers, and to a view leader alone.
  const stranger = `127.0.0.1:${PORTS.viewleader + PORTS_PER_TEST * 2 + PORTS_PER_TEST - 1}`;
  const port = member.slice(member.lastIndexOf(':') + 1);
  const dir = members.dataDir(member);
  const wrongPeers = await runToExit('dht-viewleader', [
    ...['--port', port, '--data-dir', dir],
    ...['--peers', [member, leader, stranger].join(',')],
  ]);
  expect({ code: wrongPeers.code === 0, stdout: wrongPeers.stdout }).toEqual({
    code: false,
    stdout: '',
  });
  expect(wrongPeers.stderr).toMatch(/^ERROR: .*belongs to a view leader of members .*refusing/);
  const alone = await runToExit('dht-viewleader', ['--port', port, '--data-dir', dir]);
  expect(alone.code).not.toBe(0);
  expect(alone.stderr).toMatch(/^ERROR: .*dht-viewleader-raft 1/);

  // Restarted with its own peers, it catches up.
  await members.startMember(member);
  const caughtUp = await members.caughtUp(member, WAIT_MS);
  expect(caughtUp).toMatchObject({ role: 'follower', leader, epoch: grown.epoch });
  const plain = await members.cli('viewleader_status');
  const lines = plain.stdout.trim().split('\n');
  expect(lines).toHaveLength(MEMBERS);
  expect(lines.filter((l) => / leader term \d+ /.test(l))).toEqual([
    expect.stringContaining(leader) as unknown,
  ]);

  // Make it the only member that can win the next election: `other` misses one more change
  // (SIGKILLed while it commits on the leader and `member`), then the leader dies and `other`
  // comes back on its directory with the shorter log. Raft elects only an up-to-date log.
  await members.kill(other);
  expect(await sdk.lockTry('vl/later', 'carol')).toBe(true);
  await members.caughtUp(member, WAIT_MS);
  await members.kill(leader);
  await members.startMember(other);
  expect(await members.leader(WAIT_MS, [member, other])).toBe(member);

  const served = await queryMember(member);
  expect(served?.epoch).toBe(grown.epoch);
  expect(served?.servers.map((s) => s.id).sort()).toEqual(grown.servers.map((s) => s.id).sort());
  expect(await sdk.lockTry('vl/held', 'dave')).toBe(false); // still alice's
  expect(await sdk.lockTry('vl/later', 'carol')).toBe(true); // still carol's
  expect(await sdk.lockTry('vl/later', 'dave')).toBe(false);
  await sdk.lockRelease('vl/held', 'alice');
  expect(await sdk.lockTry('vl/held', 'bob')).toBe(true); // the first waiter, kept in the queue
  // The servers kept their IDs through both failovers: nobody was expelled.
  expect((await cluster!.settled(4, WAIT_MS)).epoch).toBe(grown.epoch);
}, 90_000);

// ---- two of three members down ------------------------------------------------------------------

test('two of three members down: nothing changes and nothing wrong is acknowledged; one back and everything resumes', async () => {
  const { members, cluster } = await startSlot(3, 3);
  const leader = await members.leader(WAIT_MS);
  const [first, second] = others(members, leader);
  const before = await cluster!.view();
  await members.kill(first);
  await members.kill(second);

  // The lone member may not have noticed yet: a lock_get now can reach it while it still thinks
  // it leads and be appended to its log, where it commits if this member wins again once another
  // returns. So it is not acknowledged, and says "unknown" (3) unless nothing was done (4, 75).
  // (--timeout above the member's own commit wait, RAFT_COMMIT_WAIT_MS_MAX: its verdict arrives.)
  const earlyRun = members.cli('--timeout', '5', 'lock_get', 'vl/early', 'alice');

  // Once it has stepped down (check-quorum), nothing is done at all: a new server's join is
  // not acknowledged, a lock_get is refused.
  await waitFor(
    `${leader} to step down`,
    async () => ((await memberStatus(leader)).role !== 'leader' ? true : undefined),
    WAIT_MS,
  );
  const joiner = await cluster!.startServer(3);
  const [early, refused] = await Promise.all([
    earlyRun,
    members.cli('--timeout', '2', 'lock_get', 'vl/two-down', 'bob'),
  ]);
  expect({ code: [3, 4, 75].includes(early.code ?? -1), stdout: early.stdout }).toEqual({
    code: true,
    stdout: '',
  });
  expect({ code: [4, 75].includes(refused.code ?? -1), stdout: refused.stdout }).toEqual({
    code: true,
    stdout: '',
  });
  expect(refused.stderr).toMatch(/^ERROR: /);
  expect((await call(joiner.address, ServerApi.status, {})).epoch).toBe(-1); // never acknowledged
  expect(await queryMember(leader)).toBeUndefined();

  // One comes back: the join completes, and the locks are as the answers said.
  await members.startMember(first);
  await members.leader(WAIT_MS);
  const after = await cluster!.settled(4, WAIT_MS);
  expect(after.epoch).toBeGreaterThan(before.epoch);
  expect(after.servers.map((s) => s.address)).toContain(joiner.address);
  const lockGet = (lock: string, requester: string) =>
    members.cli('--wait', '10', '--retry-interval', '0.2', 'lock_get', lock, requester);
  // bob was refused: the lock is free for anyone.
  expect(await lockGet('vl/two-down', 'carol')).toMatchObject({ code: 0, stderr: '' });
  // alice's outcome was unknown: she may hold it, and asking again tells her. Otherwise it was
  // refused, and the lock is free for anyone.
  const requester = early.code === 3 ? 'alice' : 'dave';
  expect(await lockGet('vl/early', requester)).toMatchObject({ code: 0, stderr: '' });
  process.stderr.write(`viewleader two down: the early lock_get exited ${early.code}\n`);
}, 90_000);

// ---- starts refused on the command line ---------------------------------------------------------

test('a member whose --peers leave it out, or name 2 members, or that is --in-memory or has no --port, exits 2 with a clear message', async () => {
  const base = PORTS.viewleader + PORTS_PER_TEST * 4;
  const [self, a, b] = [0, 1, 2].map((i) => `127.0.0.1:${base + i}`);
  const port = String(base);
  const dir = path.join(root, 'refused');
  const usage: [string[], RegExp][] = [
    [
      ['--port', port, '--peers', `${a},${b},127.0.0.1:${base + 3}`, '--data-dir', dir],
      /--peers must include this member's own address 127\.0\.0\.1:\d+/,
    ],
    [['--port', port, '--peers', `${self},${a},${b}`, '--in-memory'], /peers.*in-memory/],
    [
      ['--port', port, '--peers', `${self},${a}`, '--data-dir', dir],
      /2 member\(s\) given; a replicated view leader has 3 or 5/,
    ],
    [['--peers', `${self},${a},${b}`, '--data-dir', dir], /--peers needs --port/],
  ];
  const results = await Promise.all(usage.map(([args]) => runToExit('dht-viewleader', args)));
  results.forEach((result, i) => {
    const [args, message] = usage[i];
    expect({ args, code: result.code, stdout: result.stdout }).toEqual({
      args,
      code: 2,
      stdout: '',
    });
    expect(result.stderr).toMatch(message);
  });
  expect(fs.existsSync(dir)).toBe(false); // refused before anything was created
});
