// The ring allocator (lib/ring.ts) as properties: a key's replicas are a pure function of the key
// and the set of servers; there are min(R, N) distinct ones; replicated load is even; and a view
// change moves no more copies than it must, and only the copies it must (Dynamo section 4.2).
// initHashing() is awaited by test/support/setup.ts.

import { hash64 } from '../../lib/hash';
import { REPLICATION_COUNT, VIRTUAL_NODES_PER_SERVER } from '../../lib/limits';
import type { ServerRef } from '../../lib/messages';
import { allocateReplicas, replicasByScan, Ring, ringFor } from '../../lib/ring';
import { prng, seededUuids } from '../support/random';

const R = REPLICATION_COUNT;
const KEY_COUNT = 100_000;
const EVENNESS_MAX_OVER_MEAN = 1.05;
const MOVEMENT_MAX_OVER_OPTIMAL = 1.05;

/** A seeded PRNG (mulberry32): the "random" views are the same on every run. */

function serversOf(ids: readonly string[]): ServerRef[] {
  return ids.map((id, i) => ({ id, address: `127.0.0.1:${38000 + i}` }));
}

function shuffled<T>(items: readonly T[], seed: number): T[] {
  const next = prng(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const idsOf = (replicas: readonly ServerRef[]): string[] => replicas.map((s) => s.id);
const KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `key-${i}`);

describe('replica sets', () => {
  test.each([0, 1, 2, 3, 4, 5])('with %i servers a key has min(3, N) distinct replicas', (n) => {
    const servers = serversOf(seededUuids(n, 100 + n));
    const ids = new Set(idsOf(servers));
    const wrong = KEYS.slice(0, 2000).filter((key) => {
      const replicas = idsOf(allocateReplicas(key, { servers }));
      return (
        replicas.length !== Math.min(R, n) ||
        new Set(replicas).size !== replicas.length ||
        !replicas.every((id) => ids.has(id))
      );
    });
    expect(wrong).toEqual([]);
  });

  test('the same key and view give the same replicas, in whatever order the view lists them', () => {
    const servers = serversOf(seededUuids(7, 7));
    const reference = new Ring(servers);
    for (let seed = 1; seed <= 5; seed++) {
      const listed = shuffled(servers, seed);
      const ring = new Ring(listed);
      const differing = KEYS.slice(0, 5000).filter((key) => {
        const expected = idsOf(reference.replicasOf(key)).join();
        return (
          idsOf(ring.replicasOf(key)).join() !== expected ||
          idsOf(allocateReplicas(key, { servers: listed })).join() !== expected ||
          idsOf(allocateReplicas(key, { servers: listed })).join() !== expected // cached
        );
      });
      expect(differing).toEqual([]);
    }
  });

  test('ringFor gives one ring per set of servers, not per listing order', () => {
    const servers = serversOf(seededUuids(5, 5));
    expect(ringFor(shuffled(servers, 1))).toBe(ringFor(shuffled(servers, 2)));
    expect(ringFor(servers.slice(1))).not.toBe(ringFor(servers));
  });

  test('a server ID, not its place in the list, decides its positions', () => {
    // Four servers and the same four plus a fifth: keys that avoid the fifth keep their replicas.
    const ids = seededUuids(5, 55);
    const small = new Ring(serversOf(ids.slice(0, 4)));
    const large = new Ring(serversOf(ids));
    const avoiding = KEYS.slice(0, 5000).filter(
      (key) => !idsOf(large.replicasOf(key)).includes(ids[4]),
    );
    expect(avoiding.length).toBeGreaterThan(0);
    const differing = avoiding.filter(
      (key) => idsOf(large.replicasOf(key)).join() !== idsOf(small.replicasOf(key)).join(),
    );
    expect(differing).toEqual([]);
  });

  test.each([
    ['spaces', 'a key with spaces'],
    ['equals, slash, percent', 'a=b/c%20d'],
    ['quotes and backslash', `"it's" \\ \``],
    ['newlines and tabs', 'line 1\nline 2\r\n\tend'],
    ['Cyrillic', 'ключ'],
    ['CJK', '鍵と値'],
    ['Arabic', 'مفتاح'],
    ['emoji (astral plane)', '🔑🗝️👩‍👩‍👧'],
    ['NUL and controls', 'a\u0000b\u0001c'],
    ['1024 bytes', 'é'.repeat(512)],
    ['one byte', 'x'],
  ])('a UTF-8 key (%s) gets R distinct replicas, every time', (_name, key) => {
    const servers = serversOf(seededUuids(6, 66));
    const first = idsOf(allocateReplicas(key, { servers }));
    expect(first).toHaveLength(R);
    expect(new Set(first).size).toBe(R);
    expect(idsOf(new Ring(shuffled(servers, 3)).replicasOf(key))).toEqual(first);
  });

  test('keys are hashed as exact UTF-8: no normalisation, no truncation', () => {
    expect(hash64('caf\u00e9')).not.toBe(hash64('cafe\u0301')); // NFC vs NFD
    expect(hash64('é'.repeat(512))).not.toBe(hash64('é'.repeat(511)));
    expect(hash64('a\u0000b')).not.toBe(hash64('a'));
  });

  test('agrees with a brute-force reference on exact 64-bit positions', () => {
    // A small ring so the reference can scan every position: first position >= the key's hash
    // (as a bigint), wrapping around, then the first R distinct owners clockwise.
    const virtualNodesPerServer = 8;
    const servers = serversOf(seededUuids(5, 9));
    const ring = new Ring(servers, { virtualNodesPerServer });
    const points = servers
      .flatMap((s) =>
        Array.from({ length: virtualNodesPerServer }, (_, v) => ({
          at: hash64(`${s.id}#${v}`),
          id: s.id,
        })),
      )
      .sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.id < b.id ? -1 : 1));
    const reference = (key: string): string[] => {
      const h = hash64(key);
      let start = points.findIndex((p) => p.at >= h);
      if (start < 0) start = 0;
      const chosen: string[] = [];
      for (let step = 0; step < points.length && chosen.length < R; step++) {
        const id = points[(start + step) % points.length].id;
        if (!chosen.includes(id)) chosen.push(id);
      }
      return chosen;
    };
    const differing = KEYS.slice(0, 3000).filter(
      (key) => idsOf(ring.replicasOf(key)).join() !== reference(key).join(),
    );
    expect(differing).toEqual([]);
  });

  test.each([
    [0, 2048],
    [1, 2048],
    [2, 2048],
    [4, 2048],
    [10, 64],
    [6, 1],
  ])(
    "a one-off scan (the CLI) gives the Ring's replicas: %i servers, %i positions each",
    (n, virtualNodesPerServer) => {
      const servers = serversOf(seededUuids(n, 300 + n));
      const ring = new Ring(shuffled(servers, 4), { virtualNodesPerServer });
      // A scan costs every position of every server per key: 150 keys at 2048 positions (with
      // one or two servers, only their order is at stake), 1,500 at the smaller rings.
      const keys = KEYS.slice(0, virtualNodesPerServer === 2048 ? 150 : 1500);
      const differing = keys.filter(
        (key) =>
          idsOf(replicasByScan(key, servers, { virtualNodesPerServer })).join() !==
          idsOf(ring.replicasOf(key)).join(),
      );
      expect(differing).toEqual([]);
    },
  );

  test('the first lookup in a new view scans, the next ones use the cached ring', () => {
    const servers = serversOf(seededUuids(4, 404));
    const view = { servers };
    const expected = idsOf(new Ring(servers).replicasOf('k'));
    expect(idsOf(allocateReplicas('k', view))).toEqual(expected); // scanned
    expect(idsOf(allocateReplicas('k', view))).toEqual(expected); // ring built
    expect(idsOf(allocateReplicas('k', view))).toEqual(expected); // ring cached
    expect(ringFor(servers)).toBe(ringFor(shuffled(servers, 1)));
  });

  test('placements are stable across versions (clients and servers must agree)', () => {
    // Changing the hash, the virtual-node naming (`${id}#${i}`) or their count moves keys
    // between releases; this table is there to make that a deliberate decision.
    expect(VIRTUAL_NODES_PER_SERVER).toBe(2048);
    const ring = new Ring(serversOf(['alpha', 'bravo', 'charlie', 'delta', 'echo']));
    const golden: [string, string[]][] = [
      ['a', ['bravo', 'echo', 'delta']],
      ['hello', ['delta', 'echo', 'bravo']],
      ['key-0', ['charlie', 'alpha', 'delta']],
      ['key-1', ['charlie', 'echo', 'alpha']],
      ['ключ', ['charlie', 'delta', 'bravo']],
      ['🔑 with spaces', ['charlie', 'delta', 'bravo']],
    ];
    for (const [key, replicas] of golden) expect(idsOf(ring.replicasOf(key))).toEqual(replicas);
  });
});

// ---- evenness and movement over 100,000 keys ---------------------------------------------------

const SEED = 2024;
const ALL_IDS = seededUuids(10, SEED);
const placementCache = new Map<string, (readonly ServerRef[])[]>();

/** Every key's replicas in the view of `ids` (computed once per view). */
function placementsOf(ids: readonly string[]): (readonly ServerRef[])[] {
  const signature = ids.join(',');
  let placements = placementCache.get(signature);
  if (placements === undefined) {
    const ring = new Ring(serversOf(ids));
    placements = KEYS.map((key) => ring.replicasOf(key));
    placementCache.set(signature, placements);
  }
  return placements;
}

interface Movement {
  /** Replica copies on a server that did not hold the key before, summed over keys. */
  moved: number;
  /** Each key whose replica set changed, with what it gained and lost. */
  changes: { key: number; gained: string[]; lost: string[] }[];
}

function movement(beforeIds: readonly string[], afterIds: readonly string[]): Movement {
  const before = placementsOf(beforeIds);
  const after = placementsOf(afterIds);
  const result: Movement = { moved: 0, changes: [] };
  for (let k = 0; k < KEYS.length; k++) {
    const old = idsOf(before[k]);
    const now = idsOf(after[k]);
    const gained = now.filter((id) => !old.includes(id));
    const lost = old.filter((id) => !now.includes(id));
    result.moved += gained.length;
    if (gained.length > 0 || lost.length > 0) result.changes.push({ key: k, gained, lost });
  }
  return result;
}

describe('evenness: 100,000 keys over random server IDs', () => {
  test.each([3, 4, 5, 6, 7, 8, 9, 10])(
    '%i servers: the most loaded holds at most 1.05x the mean of replicated keys',
    (n) => {
      const ids = ALL_IDS.slice(0, n);
      const copies = new Map<string, number>(ids.map((id) => [id, 0]));
      for (const replicas of placementsOf(ids)) {
        for (const s of replicas) copies.set(s.id, copies.get(s.id)! + 1);
      }
      const total = [...copies.values()].reduce((a, b) => a + b, 0);
      expect(total).toBe(KEY_COUNT * Math.min(R, n));
      const mean = total / n;
      expect(Math.max(...copies.values()) / mean).toBeLessThanOrEqual(EVENNESS_MAX_OVER_MEAN);
    },
  );
});

describe('movement: a view change moves about the optimum, and only what it must', () => {
  test.each([3, 4, 5, 6, 7, 8, 9, 10])('a join to %i servers', (n) => {
    const joining = ALL_IDS[n - 1];
    const { moved, changes } = movement(ALL_IDS.slice(0, n - 1), ALL_IDS.slice(0, n));
    const optimal = (KEY_COUNT * Math.min(R, n)) / n;
    expect(moved / optimal).toBeLessThanOrEqual(MOVEMENT_MAX_OVER_OPTIMAL);
    // Every changed assignment involves the new server: the key gains exactly that one copy and
    // loses at most one old one (none while the view is below R); nothing moves between two old
    // servers.
    const unexpected = changes.filter(
      (c) =>
        c.gained.length !== 1 || c.gained[0] !== joining || c.lost.length !== (n - 1 < R ? 0 : 1),
    );
    expect(unexpected).toEqual([]);
    // A key whose set did not change keeps its replicas in the same order (same primary).
    const changed = new Set(changes.map((c) => c.key));
    const before = placementsOf(ALL_IDS.slice(0, n - 1));
    const after = placementsOf(ALL_IDS.slice(0, n));
    const reordered = KEYS.filter(
      (_, k) =>
        !changed.has(k) &&
        before[k] !== after[k] &&
        idsOf(after[k]).join() !== idsOf(before[k]).join(),
    );
    expect(reordered).toEqual([]);
  });

  test.each([4, 5, 6, 7, 8, 9, 10])('a leave from %i servers', (n) => {
    // The first server leaves (not the last, so this is not simply a join undone).
    const leaving = ALL_IDS[0];
    const beforeIds = ALL_IDS.slice(0, n);
    const afterIds = ALL_IDS.slice(1, n);
    const { moved, changes } = movement(beforeIds, afterIds);
    const optimal = (KEY_COUNT * R) / n;
    expect(moved / optimal).toBeLessThanOrEqual(MOVEMENT_MAX_OVER_OPTIMAL);
    // Exactly the keys that had the leaving server change; each loses it and gains one copy.
    const hadLeaving = placementsOf(beforeIds).filter((replicas) =>
      replicas.some((s) => s.id === leaving),
    ).length;
    expect(changes).toHaveLength(hadLeaving);
    const unexpected = changes.filter(
      (c) =>
        c.lost.length !== 1 ||
        c.lost[0] !== leaving ||
        c.gained.length !== 1 ||
        c.gained[0] === leaving,
    );
    expect(unexpected).toEqual([]);
    expect(moved).toBe(hadLeaving);
  });

  test('a leave below R servers moves nothing: the survivors already hold every key', () => {
    const { moved, changes } = movement(ALL_IDS.slice(0, 3), ALL_IDS.slice(1, 3));
    expect(moved).toBe(0);
    expect(changes).toHaveLength(KEY_COUNT);
    expect(changes.filter((c) => c.lost.join() !== ALL_IDS[0])).toEqual([]);
  });
});

describe('shares and arcs (the operator view)', () => {
  test.each([1, 2, 3, 4, 7])(
    'with %i servers the shares match where keys land, and the arcs cover the circle once',
    (n) => {
      const servers = serversOf(seededUuids(n, 300 + n));
      const ring = new Ring(servers);
      const shares = ring.shares();
      let primary = 0;
      let replicated = 0;
      for (const share of shares.values()) {
        primary += share.primary;
        replicated += share.replicated;
      }
      expect(primary).toBeCloseTo(1, 9);
      expect(replicated).toBeCloseTo(Math.min(R, n), 9);
      // The share of keys each server replicates, counted, is its share of the circle.
      const held = new Map<string, number>(servers.map((s) => [s.id, 0]));
      const keys = KEYS.slice(0, 20_000);
      for (const key of keys) {
        for (const r of ring.replicasOf(key)) held.set(r.id, held.get(r.id)! + 1);
      }
      for (const s of servers) {
        expect(Math.abs(held.get(s.id)! / keys.length - shares.get(s.id)!.replicated)).toBeLessThan(
          0.02,
        );
      }
      // Arcs: sorted per server, and all servers' arcs together cover [0, 1) exactly once.
      const arcs = [...ring.primaryArcs().values()].flat();
      arcs.sort((a, b) => a[0] - b[0]);
      expect(arcs[0][0]).toBe(0);
      expect(arcs[arcs.length - 1][1]).toBe(1);
      for (let i = 1; i < arcs.length; i++) expect(arcs[i][0]).toBe(arcs[i - 1][1]);
      for (const [id, own] of ring.primaryArcs()) {
        const length = own.reduce((sum, [a, b]) => sum + (b - a), 0);
        expect(length).toBeCloseTo(shares.get(id)!.primary, 9);
      }
    },
  );
});
