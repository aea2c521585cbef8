// The rebalance planner (server/rebalance-planner.ts) as properties over simulated clusters: every
// server of the previous view holds exactly its keys; every server of the next view plans; the
// simulation applies every push, then every offer (a target lacks a key iff it does not hold it),
// then every drop. Afterwards each key must sit on exactly its next replicas, with each needed copy
// pushed once, by the designated sender. Views are seeded-random UUIDs, the same on every run.

import { prng, seededUuids } from '../support/random';
import { RebalanceSim, SIM_FAILURE_TIMEOUT_STEPS, type SimServer } from '../support/rebalance-sim';
import { AssertionError } from '../../lib/assert';
import { REPLICATION_COUNT } from '../../lib/limits';
import type { ServerRef, View } from '../../lib/messages';
import { allocateReplicas } from '../../lib/ring';
import {
  arrivalsFor,
  designatedSender,
  planRebalance,
  type RebalancePlan,
} from '../../server/rebalance-planner';

const R = REPLICATION_COUNT;
const KEY_COUNT = 3000;
const KEYS = Array.from({ length: KEY_COUNT }, (_, i) => `key-${i}`);

/** A server's address is a function of its ID, so one set of servers is one (cached) ring. */
function serversOf(ids: readonly string[]): ServerRef[] {
  return ids.map((id) => ({
    id,
    address: `127.0.0.1:${38000 + (parseInt(id.slice(0, 4), 16) % 20000)}`,
  }));
}

const idsOf = (servers: readonly ServerRef[]): string[] => servers.map((s) => s.id);
/** Placements by view (sorted IDs), then by key: each (view, key) looked up in the ring once. */
const placementCache = new Map<string, Map<string, string[]>>();
const PLACEMENT_CACHE_VIEWS_MAX = 64;

function replicaIds(key: string, view: readonly ServerRef[]): string[] {
  if (view.length === 0) return [];
  const signature = idsOf(view).sort().join(',');
  let byKey = placementCache.get(signature);
  if (byKey === undefined) {
    if (placementCache.size >= PLACEMENT_CACHE_VIEWS_MAX) placementCache.clear();
    byKey = new Map();
    placementCache.set(signature, byKey);
  }
  let ids = byKey.get(key);
  if (ids === undefined) {
    ids = idsOf(allocateReplicas(key, { servers: view }));
    byKey.set(key, ids);
  }
  return ids;
}

/** Server ID -> keys held. */
type Holdings = Map<string, Set<string>>;

/** Every server of `view` holding exactly the keys whose replicas include it. */
function placed(view: readonly ServerRef[], keys: readonly string[] = KEYS): Holdings {
  const holdings: Holdings = new Map(view.map((s) => [s.id, new Set<string>()]));
  for (const key of keys) for (const id of replicaIds(key, view)) holdings.get(id)?.add(key);
  return holdings;
}

interface Copy {
  readonly key: string;
  readonly source: string;
  readonly target: string;
}

interface Rebalanced {
  readonly holdings: Holdings;
  readonly plans: Map<string, RebalancePlan>;
  readonly pushes: Copy[];
  /** Offers that found the target lacking the key (so the value was sent). */
  readonly offerCopies: Copy[];
  readonly offers: Copy[];
}

/**
 * One view change over the whole cluster. Servers of `previous` not in `next` have left: their
 * copies are gone. Every server of `next` plans with `previous` as its previous view.
 */
function rebalance(
  previous: readonly ServerRef[],
  next: readonly ServerRef[],
  before: Holdings,
): Rebalanced {
  const holdings: Holdings = new Map(next.map((s) => [s.id, new Set(before.get(s.id) ?? [])]));
  const plans = new Map(
    next.map((s) => [
      s.id,
      planRebalance({ selfId: s.id, previous, next, keys: [...(holdings.get(s.id) ?? [])] }),
    ]),
  );
  const pushes: Copy[] = [];
  const offers: Copy[] = [];
  const offerCopies: Copy[] = [];
  const targetOf = (id: string): Set<string> => {
    const target = holdings.get(id);
    if (target === undefined) throw new Error(`a transfer to ${id}, which is not in the next view`);
    return target;
  };
  for (const [source, plan] of plans) {
    for (const [target, keys] of plan.push) {
      expect(plan.targets.get(target)?.id).toBe(target);
      for (const key of keys) {
        pushes.push({ key, source, target });
        targetOf(target).add(key);
      }
    }
  }
  for (const [source, plan] of plans) {
    for (const [target, keys] of plan.offer) {
      expect(plan.targets.get(target)?.id).toBe(target);
      for (const key of keys) {
        offers.push({ key, source, target });
        if (!targetOf(target).has(key)) {
          offerCopies.push({ key, source, target });
          targetOf(target).add(key);
        }
      }
    }
  }
  for (const [source, plan] of plans)
    for (const key of plan.drop) holdings.get(source)?.delete(key);
  return { holdings, plans, pushes, offers, offerCopies };
}

/** Every key held by exactly its replicas under `view`: the differences, as plain data. */
function misplaced(
  holdings: Holdings,
  view: readonly ServerRef[],
  keys: readonly string[] = KEYS,
): string[] {
  const problems: string[] = [];
  const expected = placed(view, keys);
  for (const [id, held] of holdings) {
    const want = expected.get(id) ?? new Set<string>();
    for (const key of held) if (!want.has(key)) problems.push(`${id} holds ${key}, not a replica`);
    for (const key of want) if (!held.has(key)) problems.push(`${id} lacks ${key}`);
  }
  return problems.slice(0, 10);
}

/** The optimum: one copy per (key, replica gained). */
function gainedPairs(previous: readonly ServerRef[], next: readonly ServerRef[]): Set<string> {
  const pairs = new Set<string>();
  for (const key of KEYS) {
    const before = replicaIds(key, previous);
    for (const id of replicaIds(key, next)) if (!before.includes(id)) pairs.add(`${key} -> ${id}`);
  }
  return pairs;
}

function duplicates(copies: readonly Copy[]): string[] {
  const seen = new Set<string>();
  const dup: string[] = [];
  for (const c of copies) {
    const pair = `${c.key} -> ${c.target}`;
    if (seen.has(pair)) dup.push(pair);
    seen.add(pair);
  }
  return dup.slice(0, 10);
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

/** Checks every property of one change; returns the run for further checks. */
function checkChange(
  previous: readonly ServerRef[],
  next: readonly ServerRef[],
  before?: Holdings,
): Rebalanced {
  const initial = before ?? placed(previous);
  const run = rebalance(previous, next, initial);
  expect(misplaced(run.holdings, next)).toEqual([]);
  expect(duplicates(run.pushes)).toEqual([]);
  // What is pushed is exactly what the optimum needs: every (key, gained replica) pair, no other.
  const pushed = new Set(run.pushes.map((c) => `${c.key} -> ${c.target}`));
  const optimum = gainedPairs(previous, next);
  expect([...pushed].filter((p) => !optimum.has(p)).slice(0, 10)).toEqual([]);
  expect([...optimum].filter((p) => !pushed.has(p)).slice(0, 10)).toEqual([]);
  // Pushes go only to a server that did not hold the key.
  const wasted = run.pushes.filter((c) => initial.get(c.target)?.has(c.key) === true);
  expect(wasted.slice(0, 10)).toEqual([]);
  return run;
}

// ---- designatedSender ---------------------------------------------------------------------------

describe('designatedSender', () => {
  const s = (id: string): ServerRef => ({ id, address: `127.0.0.1:1` });
  const [A, B, C, D, E] = ['A', 'B', 'C', 'D', 'E'].map(s);
  test.each<[string, ServerRef[], ServerRef[], string[], string | undefined]>([
    ['no change: the first previous replica', [A, B, C], [A, B, C], ['A', 'B', 'C'], 'A'],
    ['a join pushes C out: C (the dropper) sends', [A, B, C], [A, D, B], ['A', 'B', 'C', 'D'], 'C'],
    ['a join pushes A out: A sends', [A, B, C], [D, B, C], ['A', 'B', 'C', 'D'], 'A'],
    ['A leaves: B (the first survivor) sends', [A, B, C], [B, C, D], ['B', 'C', 'D'], 'B'],
    ['B leaves: A sends', [A, B, C], [A, C, D], ['A', 'C', 'D'], 'A'],
    ['two leave: the only survivor sends', [A, B, C], [C, D, E], ['C', 'D', 'E'], 'C'],
    [
      'one leaves, one pushed out: the pushed-out one sends',
      [A, B, C],
      [D, B, E],
      ['B', 'C', 'D', 'E'],
      'C',
    ],
    ['all previous replicas gone: nobody', [A, B, C], [D, E], ['D', 'E'], undefined],
    ['no previous view: nobody', [], [A, B], ['A', 'B'], undefined],
  ])('%s', (_name, previous, next, view, expected) => {
    expect(designatedSender(previous, next, new Set(view))).toBe(expected);
  });
});

// ---- random views -----------------------------------------------------------------------------

describe('any view change, simulated over the whole cluster', () => {
  /** A random change of a random view: up to 2 leave (never all), up to 3 join. */
  function randomChange(seed: number): [ServerRef[], ServerRef[]] {
    const next = prng(seed);
    const ids = seededUuids(12, seed);
    const size = 1 + (next() % 7);
    const previous = serversOf(ids.slice(0, size));
    const leaving = Math.min(next() % 3, size - 1);
    const joining = next() % 4;
    const stay = previous.filter((_, i) => i >= leaving); // the first `leaving` leave
    const fresh = serversOf(ids.slice(size, size + joining));
    const result = [...stay, ...fresh];
    return [previous, result.length > 0 ? result : previous];
  }

  test.each(Array.from({ length: 10 }, (_, i) => 1000 + i))(
    'seed %i: every key ends on exactly its next replicas, each needed copy pushed once',
    (seed) => {
      const [previous, next] = randomChange(seed);
      checkChange(previous, next);
    },
  );

  test.each([
    ['two leave at once', 5, 2, 0],
    ['two leave at once from three', 3, 2, 0],
    ['one leaves and one joins', 5, 1, 1],
    ['one leaves and two join', 4, 1, 2],
    ['three join at once', 3, 0, 3],
    ['two leave and two join', 6, 2, 2],
  ])('%s (%i servers, -%i +%i): still exactly placed', (_name, size, leaving, joining) => {
    const ids = seededUuids(size + joining, 7000 + 10 * size + joining);
    const previous = serversOf(ids.slice(0, size));
    const next = [...previous.slice(leaving), ...serversOf(ids.slice(size))];
    const run = checkChange(previous, next);
    // Nothing is lost: every key still exists somewhere.
    const held = new Set([...run.holdings.values()].flatMap((keys) => [...keys]));
    expect(held.size).toBe(KEY_COUNT);
  });

  test('the planner is indifferent to the order a view lists its servers', () => {
    const [previous, next] = randomChange(4242);
    const reversed = rebalance([...previous].reverse(), [...next].reverse(), placed(previous));
    const straight = rebalance(previous, next, placed(previous));
    expect(reversed.pushes).toHaveLength(straight.pushes.length);
    expect(misplaced(reversed.holdings, next)).toEqual([]);
  });
});

// ---- single joins and leaves: optimal -----------------------------------------------------------

describe('a single join', () => {
  test.each([1, 2, 3, 4, 5, 6].map((n) => [n, n + 1]))(
    '%i -> %i servers: copies moved / optimum = 1.0, the dropper sends',
    (size) => {
      const ids = seededUuids(size + 1, 300 + size);
      const previous = serversOf(ids.slice(0, size));
      const joiner = serversOf([ids[size]]);
      const next = [...previous, ...joiner];
      const run = checkChange(previous, next);
      const optimum = gainedPairs(previous, next).size;
      const moved = run.pushes.length + run.offerCopies.length;
      expect(optimum).toBeGreaterThan(0);
      expect(moved / optimum).toBe(1);
      expect(run.offers).toEqual([]);
      // Every copy goes to the joiner, from the old replica it pushed out (if one was pushed out).
      const wrong = run.pushes.filter(({ key, source, target }) => {
        const before = replicaIds(key, previous);
        const after = replicaIds(key, next);
        const dropped = before.filter((id) => !after.includes(id));
        return (
          target !== joiner[0].id ||
          dropped.length !== (size >= R ? 1 : 0) ||
          source !== (dropped[0] ?? before[0])
        );
      });
      expect(wrong.slice(0, 10)).toEqual([]);
    },
  );
});

describe('a single leave', () => {
  test.each([2, 3, 4, 5, 6, 7].map((n) => [n, n - 1]))(
    '%i -> %i servers: copies moved / optimum = 1.0, the first survivor sends',
    (size) => {
      const ids = seededUuids(size, 500 + size);
      for (const leaverIndex of [0, size - 1]) {
        const previous = serversOf(ids);
        const leaver = previous[leaverIndex].id;
        const next = previous.filter((s) => s.id !== leaver);
        const run = checkChange(previous, next);
        const optimum = gainedPairs(previous, next).size;
        expect(run.pushes.length + run.offerCopies.length).toBe(optimum);
        if (size > R) expect(optimum).toBeGreaterThan(0);
        expect(run.offers).toEqual([]);
        const wrong = run.pushes.filter(
          ({ key, source }) =>
            source !== replicaIds(key, previous).filter((id) => id !== leaver)[0],
        );
        expect(wrong.slice(0, 10)).toEqual([]);
      }
    },
  );
});

// ---- sequences ----------------------------------------------------------------------------------

describe('sequences of views', () => {
  const ids = seededUuids(4, 9090);
  const servers = serversOf(ids);

  test('1 -> 2 -> 3 -> 4 servers, then 4 -> 3 -> 2 -> 1: exactly placed after every step', () => {
    const sizes = [1, 2, 3, 4, 3, 2, 1];
    let view = servers.slice(0, sizes[0]);
    let holdings = placed(view);
    const ratios: number[] = [];
    for (const size of sizes.slice(1)) {
      // Grow by adding the next ID; shrink by removing the oldest (the primary of many keys).
      const next = size > view.length ? servers.slice(0, size) : view.slice(view.length - size);
      const run = checkChange(view, next, holdings);
      const optimum = gainedPairs(view, next).size;
      ratios.push(optimum === 0 ? 1 : (run.pushes.length + run.offerCopies.length) / optimum);
      holdings = run.holdings;
      view = next;
    }
    expect(ratios).toEqual([1, 1, 1, 1, 1, 1]);
    // A single server ends holding every key.
    expect([...holdings.values()].map((keys) => keys.size)).toEqual([KEY_COUNT]);
  });

  test('a rolling replacement (a new server joins, an old one leaves, six times): nothing lost', () => {
    const pool = serversOf(seededUuids(10, 8080));
    let view = pool.slice(0, 4);
    let holdings = placed(view);
    for (let i = 4; i < pool.length; i++) {
      const grown = [...view, pool[i]];
      holdings = checkChange(view, grown, holdings).holdings;
      const shrunk = grown.slice(1);
      holdings = checkChange(grown, shrunk, holdings).holdings;
      view = shrunk;
    }
    expect(misplaced(holdings, view)).toEqual([]);
  });
});

// ---- stray copies, first views, misuse ----------------------------------------------------------

describe('stray copies', () => {
  const ids = seededUuids(5, 4321);
  const previous = serversOf(ids.slice(0, 4));
  const next = serversOf(ids); // one joins

  test('a stray leaving the replica set is offered to every next replica, then dropped', () => {
    // A key of which `holder` was not a previous replica, and is not a next replica either.
    const holder = previous[0];
    const key = KEYS.find(
      (k) =>
        !replicaIds(k, previous).includes(holder.id) && !replicaIds(k, next).includes(holder.id),
    );
    if (key === undefined) throw new Error('no such key');
    const plan = planRebalance({ selfId: holder.id, previous, next, keys: [key] });
    expect(plan.push.size).toBe(0);
    expect([...plan.offer.entries()].sort()).toEqual(
      replicaIds(key, next)
        .map((id) => [id, [key]])
        .sort(),
    );
    expect(plan.drop).toEqual([key]);
    // In the cluster: the stray is gone, the key placed as before.
    const holdings = placed(previous);
    holdings.get(holder.id)?.add(key);
    const run = rebalance(previous, next, holdings);
    expect(misplaced(run.holdings, next)).toEqual([]);
    expect(run.offerCopies).toEqual([]); // its next replicas already had it
  });

  test('a stray that stays in the replica set is kept, and offered to its other next replicas', () => {
    // A key that `holder` was not a previous replica of, but is a next replica of: nothing says
    // the other replicas hold it (after a view leader restart, say, they may not).
    const holder = next[4]; // the joiner
    const key = KEYS.find((k) => replicaIds(k, next).includes(holder.id));
    if (key === undefined) throw new Error('no such key');
    const plan = planRebalance({ selfId: holder.id, previous, next, keys: [key] });
    expect(plan.push.size).toBe(0);
    expect(plan.drop).toEqual([]);
    expect([...plan.offer.entries()].sort()).toEqual(
      replicaIds(key, next)
        .filter((id) => id !== holder.id)
        .map((id) => [id, [key]])
        .sort(),
    );
  });

  test('a copy pushed here in the epoch being planned is kept with no messages', () => {
    // The joiner plans after the others' pushes reached it: their plans cover those keys.
    const joiner = next[4];
    const keys = KEYS.filter((k) => replicaIds(k, next).includes(joiner.id)).slice(0, 50);
    const arrivals = new Map(keys.map((k) => [k, 'this_epoch' as const]));
    const plan = planRebalance({ selfId: joiner.id, previous, next, keys, arrivals });
    expect(plan).toEqual({ push: new Map(), offer: new Map(), drop: [], targets: new Map() });
  });

  test('a copy that arrived since the placement is unvouched, even on a previous replica', () => {
    // A previous replica that is the designated sender would push only to gained replicas; a copy
    // that a superseded copy phase brought here is offered to every other next replica instead.
    const self = previous[0];
    const key = KEYS.find(
      (k) =>
        replicaIds(k, previous).includes(self.id) &&
        designatedSender(
          allocateReplicas(k, { servers: previous }),
          allocateReplicas(k, { servers: next }),
          new Set(idsOf(next)),
        ) === self.id,
    );
    if (key === undefined) throw new Error('no such key');
    const arrivals = new Map([[key, 'unvouched' as const]]);
    const plan = planRebalance({ selfId: self.id, previous, next, keys: [key], arrivals });
    expect(plan.push.size).toBe(0);
    expect([...plan.offer.keys()].sort()).toEqual(
      replicaIds(key, next)
        .filter((id) => id !== self.id)
        .sort(),
    );
  });

  test('a stray the only copy of a key (a local set) ends on its replicas', () => {
    const holder = previous[1];
    const key = 'set locally only';
    const holdings = placed(previous);
    holdings.get(holder.id)?.add(key);
    const run = rebalance(previous, next, holdings);
    const expected = replicaIds(key, next);
    const holders = [...run.holdings].filter(([, keys]) => keys.has(key)).map(([id]) => id);
    if (expected.includes(holder.id)) expect(holders).toEqual([holder.id]);
    else expect(holders.sort()).toEqual([...expected].sort());
  });

  test('a first rebalance (no placement) offers every key to all its other replicas, drops the rest', () => {
    // No placement (a first view, or a view leader restart): every key is a stray.
    const self = next[2];
    const keys = KEYS.slice(0, 500);
    const plan = planRebalance({ selfId: self.id, previous: [], next, keys });
    const mine = keys.filter((k) => replicaIds(k, next).includes(self.id));
    const others = keys.filter((k) => !mine.includes(k));
    expect(plan.push.size).toBe(0);
    expect([...plan.drop].sort()).toEqual([...others].sort());
    const unoffered = keys.filter((key) =>
      replicaIds(key, next).some((id) => id !== self.id && !plan.offer.get(id)?.includes(key)),
    );
    expect(unoffered).toEqual([]);
    expect(plan.offer.has(self.id)).toBe(false);
    const offered = [...plan.offer.values()].flat();
    const replicas = Math.min(R, next.length);
    expect(offered.length).toBe(others.length * replicas + mine.length * (replicas - 1));
  });
});

describe('misuse', () => {
  test('planning for a view the server is not in is a programmer error', () => {
    const servers = serversOf(seededUuids(3, 77));
    const err = thrown(() =>
      planRebalance({ selfId: 'not-in-the-view', previous: servers, next: servers, keys: ['a'] }),
    );
    expect(err).toBeInstanceOf(AssertionError);
  });

  test('a server that left plans nothing: planning for the next view without it throws', () => {
    const servers = serversOf(seededUuids(4, 78));
    expect(
      thrown(() =>
        planRebalance({
          selfId: servers[0].id,
          previous: servers,
          next: servers.slice(1),
          keys: [],
        }),
      ),
    ).toBeInstanceOf(AssertionError);
  });

  test('an empty plan when nothing changes', () => {
    const servers = serversOf(seededUuids(4, 79));
    for (const s of servers) {
      const plan = planRebalance({
        selfId: s.id,
        previous: servers,
        next: servers,
        keys: placed(servers).get(s.id) ?? [],
      });
      expect(plan).toEqual({ push: new Map(), offer: new Map(), drop: [], targets: new Map() });
    }
  });
});

// ---- arrivals: copies the placement does not vouch for --------------------------------------------

describe('arrivalsFor', () => {
  const received = new Map([
    ['before the placement', 3],
    ['at the placement', 5],
    ['a superseded phase', 6],
    ['this epoch', 7],
    ['ahead of this server', 8],
  ]);
  test('a copy up to the placement epoch is vouched for; later ones are not', () => {
    expect(arrivalsFor(received, 5, 7)).toEqual(
      new Map([
        ['a superseded phase', 'unvouched'],
        ['this epoch', 'this_epoch'],
        ['ahead of this server', 'unvouched'],
      ]),
    );
  });

  test('a plan for an epoch before its placement is a programmer error', () => {
    expect(thrown(() => arrivalsFor(received, 8, 7))).toBeInstanceOf(AssertionError);
  });

  test("a plan for the placement's own epoch (a server resuming its ID) takes only later copies as unvouched", () => {
    expect(arrivalsFor(received, 7, 7).size).toBe(
      [...received.values()].filter((epoch) => epoch > 7).length,
    );
  });
});

// ---- simulated clusters: placements that do not hold, superseded copies, view leader restarts ---

/**
 * The whole cluster as the shells run it (test/support/rebalance-sim.ts): the real Membership,
 * ViewTracker and planner; each server learns views from its own heartbeats, copies one transfer
 * at a time interleaved with everything else, and the invariant is checked at every barrier.
 */
describe('simulated clusters', () => {
  const SIM_KEYS = 150;
  const simKeys = (tag: string, count = SIM_KEYS): string[] =>
    Array.from({ length: count }, (_, i) => `${tag}-${i}`);

  /** One random step of a random live server (of `among`, if given): heartbeat, deliver a
   * transfer, or finish copying. */
  function step(sim: RebalanceSim, among?: readonly SimServer[]): void {
    const live = among ?? [...sim.servers.values()];
    if (live.length > 0) {
      const server = live[sim.pick(live.length)];
      if (server.copy !== undefined && server.copy.sends.length === 0) sim.finishCopy(server);
      else if (server.copy !== undefined && sim.pick(10) < 7) sim.deliver(server);
      else sim.heartbeat(server);
    }
    sim.tick();
  }

  /** Steps until settled with every live server not expired in the view; the settled view. */
  function settle(sim: RebalanceSim, stepsMax = 200_000): View {
    for (let i = 0; i < stepsMax; i++) {
      const view = sim.settled();
      const inView = new Set(view?.servers.map((s) => s.id));
      const joined = [...sim.servers.keys()].every(
        (id) => inView.has(id) || sim.membership.isExpired(id),
      );
      if (view !== undefined && joined) return view;
      step(sim);
    }
    throw new Error(`not settled after ${stepsMax} steps; violations: ${sim.violations}`);
  }

  /** `count` keys written with setr into a settled cluster. */
  function writeAll(sim: RebalanceSim, keys: readonly string[]): void {
    for (const key of keys) {
      if (!sim.write(key)) throw new Error(`could not write ${key}: not settled`);
    }
  }

  /** A settled cluster of `size` servers holding `keys`, each on exactly its replicas. */
  function cluster(seed: number, size: number, keys: readonly string[]): RebalanceSim {
    const sim = new RebalanceSim(seed);
    for (let i = 0; i < size; i++) sim.start();
    settle(sim);
    writeAll(sim, keys);
    return sim;
  }

  /** Each server's installed epochs only go up. */
  function epochsWentBack(sim: RebalanceSim): string[] {
    return [...sim.installed].flatMap(([id, epochs]) =>
      epochs.some((e, i) => i > 0 && e <= epochs[i - 1]) ? [`${id}: ${epochs.join(' ')}`] : [],
    );
  }

  /** Keys held by no live member of the view. */
  function lost(sim: RebalanceSim, keys: readonly string[]): string[] {
    const held = new Set(sim.members().flatMap((s) => [...s.held]));
    return keys.filter((k) => !held.has(k)).slice(0, 10);
  }

  test("the issue's scenario: view leader and one server die, the rest rejoin, then failures down to 1", () => {
    const keys = simKeys('issue', 60);
    for (const seed of [1, 2, 3, 4, 5]) {
      const sim = cluster(seed, 4, keys);
      const victim = [...sim.servers.keys()][sim.pick(4)];
      sim.kill(victim);
      sim.restartViewLeader();
      let view = settle(sim); // the survivors rejoin at their own heartbeats: one epoch each
      expect(view.servers).toHaveLength(3);
      expect(sim.misplaced(view)).toEqual([]);
      while (view.servers.length > 1) {
        sim.kill(view.servers[sim.pick(view.servers.length)].id);
        view = settle(sim);
        expect(sim.misplaced(view)).toEqual([]);
      }
      expect(sim.violations).toEqual([]);
      expect(lost(sim, keys)).toEqual([]);
      expect(epochsWentBack(sim)).toEqual([]);
    }
  });

  test('servers rejoin a restarted view leader one at a time, each join its own barrier', () => {
    const keys = simKeys('rejoin');
    const sim = cluster(11, 6, keys);
    const before = sim.membership.epoch;
    sim.restartViewLeader();
    // Each server joins alone, and only the joined ones act until that join's barrier passed.
    const joined: SimServer[] = [];
    for (const server of [...sim.servers.values()]) {
      joined.push(server);
      sim.heartbeat(server);
      const joinedEpoch = sim.membership.epoch;
      for (let i = 0; i < 100_000 && sim.membership.placement.epoch !== joinedEpoch; i++) {
        step(sim, joined);
      }
      expect(sim.membership.placement).toEqual({ epoch: joinedEpoch, servers: expect.anything() });
      expect(sim.membership.placement.servers).toHaveLength(joined.length);
    }
    const view = settle(sim);
    expect(view.epoch).toBeGreaterThan(before);
    expect(sim.barriers.filter((e) => e > before).length).toBeGreaterThanOrEqual(6);
    expect(sim.violations).toEqual([]);
    expect(sim.misplaced(view)).toEqual([]);
    expect(lost(sim, keys)).toEqual([]);
  });

  test('a copy from a superseded phase whose only other holder died still reaches every replica', () => {
    // Three servers hold every key. A fourth joins with a key nobody else has (its copy from
    // before a view leader restart), offers it, reaches one replica, and dies: the copy it left
    // is on a previous replica, yet the placement does not vouch for it.
    const sim = cluster(21, 3, simKeys('placed', 30));
    const carrier = sim.start(['only on the carrier']);
    sim.heartbeat(carrier); // joins: a new epoch, and it plans at once
    const sends = carrier.copy?.sends ?? [];
    expect(sends.length).toBeGreaterThan(1);
    const first = sim.servers.get(sends[0].target);
    if (first === undefined) throw new Error('no first target');
    sim.heartbeat(first); // installs the join's epoch: a transfer of it is not refused
    sends.splice(1); // only the first offer goes out
    sim.deliver(carrier);
    expect(first.held.has('only on the carrier')).toBe(true);
    sim.kill(carrier.ref.id);
    const view = settle(sim);
    expect(view.servers).toHaveLength(3);
    expect(sim.violations).toEqual([]);
    expect(sim.misplaced(view)).toEqual([]);
    for (const server of sim.members()) expect(server.held.has('only on the carrier')).toBe(true);
  });

  test.each(Array.from({ length: 12 }, (_, i) => 500 + i))(
    'seed %i: random kills, joins and view leader restarts at any moment; every barrier holds',
    (seed) => {
      const sim = cluster(seed, 3 + (seed % 4), simKeys(`adversary-${seed}`));
      let faults = 8;
      let restarts = 0;
      for (let i = 0; i < 40_000 && faults > 0; i++) {
        if (sim.pick(300) === 0) {
          faults -= 1;
          const live = [...sim.servers.keys()];
          const choice = sim.pick(4);
          if (choice === 0 && live.length > 2) sim.kill(live[sim.pick(live.length)]);
          else if (choice === 1) sim.start();
          else if (choice === 2) {
            sim.restartViewLeader();
            restarts += 1;
          } else {
            // The double fault: the view leader and a server at once.
            if (live.length > 2) sim.kill(live[sim.pick(live.length)]);
            sim.restartViewLeader();
            restarts += 1;
          }
        }
        step(sim);
      }
      const view = settle(sim);
      expect(sim.violations).toEqual([]);
      expect(sim.misplaced(view)).toEqual([]);
      expect(epochsWentBack(sim)).toEqual([]);
      // The run did what it says: every fault happened, and the last view passed its barrier.
      expect(faults).toBe(0);
      expect(restarts).toBeGreaterThan(0);
      expect(sim.barriers.at(-1)).toBe(view.epoch);
    },
  );

  test.each(Array.from({ length: 8 }, (_, i) => 800 + i))(
    'seed %i: one fault at a time, settled between (the contract): nothing written is lost',
    (seed) => {
      const sim = cluster(seed, 4, simKeys(`faults-${seed}`));
      const written = simKeys(`faults-${seed}`);
      for (let fault = 0; fault < 6; fault++) {
        const live = [...sim.servers.keys()];
        const choice = sim.pick(3);
        if (choice === 0 && live.length > 1) sim.kill(live[sim.pick(live.length)]);
        else if (choice === 1) sim.start();
        else {
          if (live.length > 1) sim.kill(live[sim.pick(live.length)]);
          sim.restartViewLeader();
        }
        const view = settle(sim);
        expect(sim.misplaced(view)).toEqual([]);
        const more = simKeys(`faults-${seed}-after-${fault}`, 10);
        writeAll(sim, more);
        written.push(...more);
      }
      expect(sim.violations).toEqual([]);
      expect(lost(sim, written)).toEqual([]);
      expect(epochsWentBack(sim)).toEqual([]);
    },
  );
  // ---- a view leader restarted on its data directory (viewleader/saved-state.ts) -----------------

  test('restarted on its data directory, the view leader changes nothing: same view, no epoch', () => {
    const sim = cluster(31, 4, simKeys('durable'));
    const before = sim.membership.view();
    sim.restartViewLeaderOnDisk();
    expect(sim.membership.view()).toEqual(before);
    // Well past the failure timeout: the members stay because they keep heartbeating.
    for (let i = 0; i < 5 * SIM_FAILURE_TIMEOUT_STEPS; i++) step(sim);
    expect(sim.settled()).toEqual(before);
    expect(sim.misplaced(before)).toEqual([]);
  });

  test.each(Array.from({ length: 6 }, (_, i) => 900 + i))(
    'seed %i: restarted on its data directory mid-rebalancing, the barrier passes in the same epoch',
    (seed) => {
      const keys = simKeys(`mid-${seed}`);
      const sim = cluster(seed, 3, keys);
      sim.start(); // joins at its first heartbeat
      for (let i = 0; i < 10_000 && !sim.membership.view().rebalancing; i++) step(sim);
      const joined = sim.membership.view();
      expect(joined.rebalancing).toBe(true);
      // Somewhere in the copy phase or the cleanup phase.
      const pause = sim.pick(200);
      for (let i = 0; i < pause && sim.membership.view().rebalancing; i++) step(sim);
      const barriers = sim.barriers.length;
      sim.restartViewLeaderOnDisk();
      const view = settle(sim);
      expect(view.epoch).toBe(joined.epoch);
      expect(view.servers).toEqual(joined.servers);
      expect(sim.barriers.length - barriers).toBeLessThanOrEqual(1);
      expect(sim.violations).toEqual([]);
      expect(sim.misplaced(view)).toEqual([]);
      expect(lost(sim, keys)).toEqual([]);
    },
  );

  test.each(Array.from({ length: 8 }, (_, i) => 950 + i))(
    'seed %i: random kills, joins and view leader restarts on its data directory; every barrier holds',
    (seed) => {
      const sim = cluster(seed, 3 + (seed % 4), simKeys(`durable-adversary-${seed}`));
      let faults = 8;
      let restarts = 0;
      for (let i = 0; i < 40_000 && faults > 0; i++) {
        if (sim.pick(300) === 0) {
          faults -= 1;
          const live = [...sim.servers.keys()];
          const choice = sim.pick(4); // half of the faults are restarts
          if (choice === 0 && live.length > 2) sim.kill(live[sim.pick(live.length)]);
          else if (choice === 1) sim.start();
          else if (choice >= 2) {
            const before = sim.membership.view();
            sim.restartViewLeaderOnDisk();
            expect(sim.membership.view()).toEqual(before);
            restarts += 1;
          }
        }
        step(sim);
      }
      const view = settle(sim);
      expect(sim.violations).toEqual([]);
      expect(sim.misplaced(view)).toEqual([]);
      expect(epochsWentBack(sim)).toEqual([]);
      expect(faults).toBe(0);
      expect(restarts).toBeGreaterThan(0);
      expect(sim.barriers.at(-1)).toBe(view.epoch);
    },
  );
});
