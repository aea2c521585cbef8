// The view leader's saved state (viewleader/saved-state.ts): the cores' change logs, written as
// records after every call the way the shell does, always read back as the cores' snapshots; and
// records that cannot be read are refused, never skipped.

import { LockTable } from '../../viewleader/locks';
import { Membership } from '../../viewleader/membership';
import {
  recordOps,
  SavedStateError,
  snapshotFromRecords,
  type ViewLeaderSnapshot,
} from '../../viewleader/saved-state';
import { prng } from '../support/random';

const TIMEOUT_MS = 100;

/** A view leader's cores and its "disk": the records, written after every call. */
class Saved {
  readonly disk = new Map<string, string>();
  membership = new Membership(TIMEOUT_MS, 5);
  locks = new LockTable(20);

  save(): void {
    const changes = { membership: this.membership.takeChanges(), locks: this.locks.takeChanges() };
    for (const op of recordOps(changes)) {
      if (op.type === 'put') this.disk.set(op.key, op.value);
      else this.disk.delete(op.key);
    }
  }

  /** What a restart reads. */
  read(): ViewLeaderSnapshot {
    return snapshotFromRecords(this.disk);
  }

  restart(nowMs: number): void {
    const snapshot = this.read();
    this.membership = Membership.restore(snapshot.membership, TIMEOUT_MS, nowMs, 5);
    this.locks = LockTable.restore(snapshot.locks, 20);
    this.save();
  }

  current(): ViewLeaderSnapshot {
    return { membership: this.membership.snapshot(), locks: this.locks.snapshot() };
  }
}

// Names that a record's key must keep apart: separators, quotes, non-Latin scripts, a lone
// surrogate (valid in a JS string, not in UTF-8).
const NAMES = ['a', 'b:c', '"q"', 'ключ', 'x\ud800', '[1,2]', 'e'];

describe('the change log, saved after every call, reads back as the snapshot', () => {
  test.each(Array.from({ length: 20 }, (_, i) => 100 + i))('seed %i', (seed) => {
    const random = prng(seed);
    const pick = <T>(items: readonly T[]): T => items[random() % items.length];
    const saved = new Saved();
    let nowMs = 0;
    let restarts = 0;
    for (let i = 0; i < 600; i++) {
      nowMs += random() % 20;
      const id = pick(NAMES);
      const address = `127.0.0.1:${38000 + (random() % 5)}`;
      switch (random() % 8) {
        case 0:
        case 1: {
          const outcome = saved.membership.heartbeat(id, address, nowMs, random() % 3);
          if (outcome.kind === 'address_held') {
            saved.save(); // the shell saves before it probes
            const probe = pick([
              { kind: 'refused' } as const,
              { kind: 'answered', serverId: id } as const,
              { kind: 'no_answer' } as const,
            ]);
            saved.membership.takeOver(id, address, outcome.holder.id, probe, nowMs);
          }
          break;
        }
        case 2:
          saved.membership.rebalanceDone(id, saved.membership.epoch, pick(['copied', 'done']));
          break;
        case 3:
          saved.membership.tick(nowMs);
          break;
        case 4:
        case 5:
          saved.locks.get(pick(NAMES), pick(NAMES));
          break;
        case 6:
          saved.locks.release(pick(NAMES), pick(NAMES));
          break;
        case 7: {
          const rare = random() % 20; // a server's locks released, or a restart
          if (rare === 0) {
            saved.locks.releaseAll(new Set([pick(NAMES)]));
          } else if (rare === 1) {
            saved.restart(nowMs);
            restarts += 1;
          }
          break;
        }
      }
      saved.save();
      expect(saved.read()).toEqual(saved.current());
    }
    expect(restarts).toBeGreaterThan(0);
    expect(saved.membership.epoch).toBeGreaterThan(3);
    expect(saved.read().membership.expired.length).toBeGreaterThan(0);
    for (const key of saved.disk.keys()) expect(key.isWellFormed()).toBe(true);
    for (const value of saved.disk.values()) expect(value.isWellFormed()).toBe(true);
  });

  test('a heartbeat that changes nothing writes nothing', () => {
    const saved = new Saved();
    saved.membership.heartbeat('a', '127.0.0.1:38000', 0);
    saved.save();
    saved.membership.heartbeat('a', '127.0.0.1:38000', 10, 1);
    expect(recordOps({ membership: saved.membership.takeChanges(), locks: [] })).toEqual([]);
  });

  test('an empty database is the state of a new view leader', () => {
    expect(snapshotFromRecords([])).toEqual({
      membership: { epoch: 0, members: [], expired: [], placement: { epoch: 0, servers: [] } },
      locks: { locks: [] },
    });
  });
});

describe('a record that cannot be read is refused, naming it', () => {
  test.each([
    ['an unknown key', [['surprise', '1']], /unknown record "surprise"/],
    ['an epoch that is not a number', [['epoch', '"three"']], /unreadable epoch/],
    ['a negative epoch', [['epoch', '-1']], /unreadable epoch/],
    ['a truncated value', [['placement', '{"epoch":1,"serv']], /unreadable placement/],
    ['a member key that is not JSON', [['member:a', '{}']], /unreadable server ID/],
    [
      'a member without an address',
      [['member:"a"', '{"copiedEpoch":null,"doneEpoch":null}']],
      /unreadable member/,
    ],
    [
      'a member with a field it never had',
      [['member:"a"', '{"address":"h:1","copiedEpoch":null,"doneEpoch":null,"x":1}']],
      /unreadable member/,
    ],
    ['a fractional sequence number', [['expired:"a"', '1.5']], /unreadable sequence number/],
    ['a holder that is not a string', [['holder:"L"', '7']], /unreadable holder/],
    ['a waiter key of the wrong shape', [['waiter:["L"]', '0']], /unreadable waiter/],
    ['waiters of a lock nobody holds', [['waiter:["L","b"]', '0']], /no holder/],
  ] as [string, [string, string][], RegExp][])('%s', (_what, records, message) => {
    expect(() => snapshotFromRecords(records)).toThrow(SavedStateError);
    expect(() => snapshotFromRecords(records)).toThrow(message);
  });
});
