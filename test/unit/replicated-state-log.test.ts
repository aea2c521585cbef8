// What a replicated view leader's answer may say when its wait fails (viewleader/replicated-state-
// log.ts), with a Replication the test settles by hand: a step that changed nothing did nothing
// (not_leader); a step whose entry is in the log did what it did once the entry commits, even if
// leadership was lost meanwhile; nothing if another leader's entry replaced it; and its outcome is
// unknown if neither is known in time. Before, a lost majority answered not_leader ("nothing
// done") for a lock the entry granted once a member came back.

import { DhtError, NotLeaderError } from '../../lib/errors';
import { LockTable } from '../../viewleader/locks';
import { ReplicatedStateLog } from '../../viewleader/replicated-state-log';
import type { Replication } from '../../viewleader/replication';
import type { ViewLeaderChanges } from '../../viewleader/saved-state';

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/** A Replication whose proposals and leadership confirmations the test settles. */
class FakeReplication {
  readonly proposals: Deferred[] = [];
  readonly confirmations: Deferred[] = [];
  refuse: Error | undefined;
  rebuilt = 0;
  readonly pendingProposals = 0;

  propose(): Promise<void> {
    if (this.refuse !== undefined) throw this.refuse;
    const d = deferred();
    this.proposals.push(d);
    return d.promise;
  }

  confirmLeadership(): Promise<void> {
    const d = deferred();
    this.confirmations.push(d);
    return d.promise;
  }

  rebuildCores(): void {
    this.rebuilt++;
  }
}

function setUp() {
  const replication = new FakeReplication();
  const log = new ReplicatedStateLog(replication as unknown as Replication);
  return { replication, log };
}

const locks = new LockTable();
/** A step that changed something: a lock granted. */
function grant(): ViewLeaderChanges {
  locks.get(`L${Math.random()}`, 'alice');
  return { membership: [], locks: locks.takeChanges() };
}
const NOTHING: ViewLeaderChanges = { membership: [], locks: [] };

const notLeader = (): NotLeaderError => new NotLeaderError(null);
const unknown = (): DhtError => new DhtError('unknown', 'not confirmed in time');

async function outcome(promise: Promise<void>): Promise<string> {
  try {
    await promise;
    return 'done';
  } catch (err) {
    if (err instanceof NotLeaderError) return 'not_leader';
    if (err instanceof DhtError) return err.kind;
    throw err;
  }
}

test('committed and confirmed: the answer goes out', async () => {
  const { replication, log } = setUp();
  log.write(grant());
  const answer = log.durable();
  replication.proposals[0].resolve();
  replication.confirmations[0].resolve();
  expect(await outcome(answer)).toBe('done');
});

test('a step that changed nothing and cannot confirm leadership did nothing: not_leader', async () => {
  const { replication, log } = setUp();
  log.write(NOTHING);
  const answer = log.durable();
  expect(replication.proposals).toHaveLength(0);
  replication.confirmations[0].reject(notLeader());
  expect(await outcome(answer)).toBe('not_leader');
});

test("a step that changed nothing behind an earlier step's unknown entry: not_leader, not unknown", async () => {
  const { replication, log } = setUp();
  log.write(grant()); // an earlier step (a tick, say), not awaited by this one
  log.write(NOTHING);
  const answer = log.durable();
  replication.confirmations[0].resolve();
  replication.proposals[0].reject(unknown());
  expect(await outcome(answer)).toBe('not_leader');
});

test.each([
  ['commits: the change was made, the answer stands', (d: Deferred) => d.resolve(), 'done'],
  [
    'is replaced by another leader: nothing was done',
    (d: Deferred) => d.reject(notLeader()),
    'not_leader',
  ],
  [
    'is not settled in time: the outcome is unknown',
    (d: Deferred) => d.reject(unknown()),
    'unknown',
  ],
])(
  "leadership lost while the step's entry is in the log, and the entry %s",
  async (_, settle, expected) => {
    const { replication, log } = setUp();
    log.write(grant());
    const answer = log.durable();
    replication.confirmations[0].reject(notLeader()); // deposed (or a majority lost) first
    await Promise.resolve();
    settle(replication.proposals[0]);
    expect(await outcome(answer)).toBe(expected);
  },
);

test('a step whose entry could not be proposed did nothing, and the cores are rebuilt', async () => {
  const { replication, log } = setUp();
  replication.refuse = notLeader();
  log.write(grant());
  expect(replication.rebuilt).toBe(1);
  const answer = log.durable();
  replication.confirmations[0].reject(notLeader());
  expect(await outcome(answer)).toBe('not_leader');
});

test("a step's entry is its own: the next step that changes nothing is not held to it", async () => {
  const { replication, log } = setUp();
  log.write(grant());
  const first = log.durable();
  log.write(NOTHING);
  const second = log.durable();
  replication.confirmations[0].reject(notLeader());
  replication.confirmations[1].reject(notLeader());
  expect(await outcome(second)).toBe('not_leader');
  replication.proposals[0].resolve();
  expect(await outcome(first)).toBe('done');
});
