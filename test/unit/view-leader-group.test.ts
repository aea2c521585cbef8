// Finding the leading member of a replicated view leader (lib/view-leader-group.ts) against small
// real HTTP servers on OS-assigned loopback ports, each playing a member that leads, does not lead
// (`not_leader`, with or without a hint), hangs, or is not there at all (connection refused):
// the hint is followed, dead members skipped, an election waited out, a group where nobody
// listens given up at once, a timeout followed elsewhere only when the call is safe to repeat,
// a change that timed out and found no answer reported `unknown` (it may have been done), and the
// member that answered asked first next time.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { DhtError, NotLeaderError } from '../../lib/errors';
import { keepAliveAgent, UnreachableError } from '../../lib/http-client';
import { ViewLeaderApi } from '../../lib/messages';
import { ViewLeaderGroup } from '../../lib/view-leader-group';

/** How a fake member answers, decided at each request (so a test can change it mid-call). */
type Behaviour =
  | { readonly kind: 'lead' }
  | { readonly kind: 'follow'; readonly leader: string | null }
  | { readonly kind: 'hang' }
  | { readonly kind: 'reject' };

interface FakeMember {
  readonly address: string;
  behaviour: Behaviour;
  /** Requests received, in order (their paths). */
  readonly requests: string[];
  close(): Promise<void>;
}

const started: FakeMember[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.close()));
});
afterAll(() => {
  keepAliveAgent.destroy();
});

/** A member that answers as its behaviour says; `lead` grants a lock_get, finds no deadlock. */
async function member(behaviour: Behaviour): Promise<FakeMember> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests.push(req.url ?? '');
      const answer = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      };
      const now = fake.behaviour;
      switch (now.kind) {
        case 'lead':
          return answer(200, req.url === '/deadlocks' ? { cycles: [] } : { granted: true });
        case 'follow':
          return answer(503, {
            kind: 'retry',
            reason: 'not_leader',
            leader: now.leader,
            error: 'this view leader member does not lead',
          });
        case 'reject':
          return answer(409, { kind: 'rejected', reason: 'lock_not_held', error: 'not held' });
        case 'hang':
          return; // never answers; closeAllConnections ends it
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const fake: FakeMember = {
    address: `127.0.0.1:${port}`,
    behaviour,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  started.push(fake);
  return fake;
}

/** An address where nothing listens: a port the OS handed out and that was closed again. */
async function deadAddress(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

const LOCK = { lock: 'L', requester: 'alice' };
const TIMEOUT_MS = 1_000;

function lockGet(group: ViewLeaderGroup, options?: Parameters<ViewLeaderGroup['call']>[2]) {
  return group.call(ViewLeaderApi.lockGet, LOCK, options);
}

async function rejection(promise: Promise<unknown>): Promise<DhtError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(DhtError);
    return err as DhtError;
  }
  throw new Error('the call succeeded');
}

test("a follower's hint is followed straight to the leader, and the leader is asked first next time", async () => {
  const c = await member({ kind: 'lead' });
  const a = await member({ kind: 'follow', leader: c.address });
  const b = await member({ kind: 'follow', leader: c.address });
  const group = new ViewLeaderGroup([a.address, b.address, c.address], TIMEOUT_MS);

  expect(await lockGet(group)).toEqual({ granted: true });
  expect([a.requests.length, b.requests.length, c.requests.length]).toEqual([1, 0, 1]);
  expect(group.current).toBe(c.address);

  expect(await lockGet(group)).toEqual({ granted: true });
  expect([a.requests.length, b.requests.length, c.requests.length]).toEqual([1, 0, 2]);
});

test('a hint naming an address outside the group is not followed: the next member is asked', async () => {
  const a = await member({ kind: 'follow', leader: '127.0.0.1:1' });
  const b = await member({ kind: 'lead' });
  const group = new ViewLeaderGroup([a.address, b.address], TIMEOUT_MS);
  expect(await lockGet(group)).toEqual({ granted: true });
  expect(group.current).toBe(b.address);
});

test('members that refuse connections are skipped', async () => {
  const c = await member({ kind: 'lead' });
  const group = new ViewLeaderGroup([await deadAddress(), await deadAddress(), c.address], 500);
  expect(await lockGet(group)).toEqual({ granted: true });
  expect(group.current).toBe(c.address);
  // Remembered: the dead ones are not asked again while the leader answers.
  const before = performance.now();
  expect(await lockGet(group)).toEqual({ granted: true });
  expect(c.requests).toHaveLength(2);
  expect(performance.now() - before).toBeLessThan(500);
});

test('a hint to a leader that has died is skipped like any dead member', async () => {
  const dead = await deadAddress();
  const a = await member({ kind: 'follow', leader: dead });
  const b = await member({ kind: 'lead' });
  const group = new ViewLeaderGroup([a.address, dead, b.address], TIMEOUT_MS);
  expect(await lockGet(group)).toEqual({ granted: true });
  expect(group.current).toBe(b.address);
});

test('while no member knows a leader it waits, and succeeds once one starts leading', async () => {
  const dead = await deadAddress(); // the old leader, SIGKILLed
  const b = await member({ kind: 'follow', leader: null });
  const c = await member({ kind: 'follow', leader: null });
  const group = new ViewLeaderGroup([dead, b.address, c.address], TIMEOUT_MS);

  const electedAfterMs = 700;
  const start = performance.now();
  const timer = setTimeout(() => {
    c.behaviour = { kind: 'lead' };
    b.behaviour = { kind: 'follow', leader: c.address };
  }, electedAfterMs);
  try {
    expect(await lockGet(group, { waitMs: 5_000 })).toEqual({ granted: true });
  } finally {
    clearTimeout(timer);
  }
  expect(performance.now() - start).toBeGreaterThanOrEqual(electedAfterMs - 10);
  expect(group.current).toBe(c.address);
  // It asked again and again while waiting (every VIEWLEADER_RETRY_MS), not once.
  expect(b.requests.length + c.requests.length).toBeGreaterThan(3);
});

test('when no member leads until the deadline, it gives up with unavailable and says why', async () => {
  const b = await member({ kind: 'follow', leader: null });
  const c = await member({ kind: 'follow', leader: null });
  const group = new ViewLeaderGroup([await deadAddress(), b.address, c.address], TIMEOUT_MS);
  const start = performance.now();
  const err = await rejection(lockGet(group, { waitMs: 600 }));
  const elapsed = performance.now() - start;
  expect(err).not.toBeInstanceOf(NotLeaderError);
  expect(err.kind).toBe('unavailable');
  expect(err.message).toMatch(/no member leads/);
  expect(elapsed).toBeGreaterThanOrEqual(400);
  expect(elapsed).toBeLessThan(3_000);
});

test('when every address refuses, it gives up at once instead of waiting out the deadline', async () => {
  const addresses = [await deadAddress(), await deadAddress(), await deadAddress()];
  const group = new ViewLeaderGroup(addresses, TIMEOUT_MS);
  const start = performance.now();
  const err = await rejection(lockGet(group, { waitMs: 10_000 }));
  expect(performance.now() - start).toBeLessThan(1_000);
  expect(err.kind).toBe('unavailable');
  expect(err.message).toContain(addresses.join(','));
  expect(err.message).toContain('refused');
});

test('a timeout is followed to another member for an idempotent call only', async () => {
  const a = await member({ kind: 'hang' }); // a stopped leader: the connection opens, no answer
  const b = await member({ kind: 'lead' });
  const timeoutMs = 300;

  const idempotent = new ViewLeaderGroup([a.address, b.address], timeoutMs);
  expect(await lockGet(idempotent)).toEqual({ granted: true });
  expect(idempotent.current).toBe(b.address);

  // lock_release is not safe to repeat: the hung member may have executed it, so its outcome
  // is unknown (exit 3), not "unavailable, nothing done".
  const once = new ViewLeaderGroup([a.address, b.address], timeoutMs);
  const err = await rejection(lockGet(once, { idempotent: false }));
  expect(err.kind).toBe('unknown');
  expect(err.message).toContain(`${a.address} unreachable (timeout)`);
  expect(b.requests).toHaveLength(1); // only the idempotent group's
  expect(once.current).toBe(a.address);

  // A refused connection proves nothing was done: followed also for a non-idempotent call.
  const refused = new ViewLeaderGroup([await deadAddress(), b.address], timeoutMs);
  expect(await lockGet(refused, { idempotent: false })).toEqual({ granted: true });
});

test("the leader's own refusal (an operating error) is the answer, not a reason to ask elsewhere", async () => {
  const a = await member({ kind: 'reject' });
  const b = await member({ kind: 'lead' });
  const group = new ViewLeaderGroup([a.address, b.address], TIMEOUT_MS);
  const err = await rejection(lockGet(group));
  expect(err.reason).toBe('lock_not_held');
  expect(b.requests).toHaveLength(0);
});

test('a leader that changes is found again from the remembered one', async () => {
  const a = await member({ kind: 'lead' });
  const b = await member({ kind: 'follow', leader: a.address });
  const c = await member({ kind: 'follow', leader: a.address });
  const group = new ViewLeaderGroup([a.address, b.address, c.address], TIMEOUT_MS);
  await lockGet(group);
  expect(group.current).toBe(a.address);

  // Leadership moves to b; a now points there.
  a.behaviour = { kind: 'follow', leader: b.address };
  b.behaviour = { kind: 'lead' };
  c.behaviour = { kind: 'follow', leader: b.address };
  expect(await lockGet(group)).toEqual({ granted: true });
  expect(group.current).toBe(b.address);
  expect(c.requests).toHaveLength(0);
});

test('a change that timed out somewhere and never found a leader is unknown; a read, unavailable', async () => {
  const a = await member({ kind: 'hang' }); // took the request, never answered
  const b = await member({ kind: 'follow', leader: null });
  const timeoutMs = 200;
  const group = new ViewLeaderGroup([a.address, b.address], timeoutMs);

  const change = await rejection(lockGet(group, { waitMs: 600 }));
  expect(change.kind).toBe('unknown');
  expect(change.message).toContain(a.address);

  const read = await rejection(group.call(ViewLeaderApi.deadlocks, {}, { waitMs: 600 }));
  expect(read.kind).toBe('unavailable');
  expect(read).not.toBeInstanceOf(UnreachableError);

  // A refused connection proves nothing was done: a change nobody took is unavailable.
  const down = new ViewLeaderGroup([await deadAddress(), b.address], timeoutMs);
  expect((await rejection(lockGet(down, { waitMs: 600 }))).kind).toBe('unavailable');
});
