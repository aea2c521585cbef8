// The ring allocator in numbers (lib/ring.ts): the cost of a lookup, how evenly replicated keys
// spread over the servers, and how many replica copies a join or a leave moves compared with the
// least any allocator could move. Pure computation: no I/O, no processes. The figures in
// docs/design.md ("The ring allocator") come from `measureAllocator(ALLOCATOR_FULL)`.

import { assert } from '../lib/assert';
import { initHashing } from '../lib/hash';
import { REPLICATION_COUNT, VIRTUAL_NODES_PER_SERVER } from '../lib/limits';
import type { ServerRef } from '../lib/messages';
import { allocateReplicas, Ring } from '../lib/ring';
import { fmt, type Table } from './stats';

export interface AllocatorOptions {
  /** Keys placed for the load and movement figures (`key-0`, `key-1`, ...). */
  readonly keys: number;
  /** View sizes measured for load, join (N-1 -> N) and leave (N -> N-1). */
  readonly serverCounts: readonly number[];
  /** Lookups timed for ns per allocateReplicas; also bounded by lookupBudgetMs. */
  readonly lookups: number;
  readonly lookupBudgetMs: number;
  /** View size for the lookup timing. */
  readonly lookupServers: number;
  /** Seed of the server IDs (random-looking UUIDs, the same on every run). */
  readonly seed: number;
  /** Why 2048: evenness with fewer virtual nodes, for each of these view sizes. */
  readonly sweepVirtualNodes: readonly number[];
  readonly sweepServers: readonly number[];
}

export const ALLOCATOR_FULL: AllocatorOptions = {
  keys: 100_000,
  serverCounts: [3, 5, 10, 30],
  lookups: 2_000_000,
  lookupBudgetMs: 3_000,
  lookupServers: 10,
  seed: 1,
  sweepVirtualNodes: [128, 512, 1024, 2048],
  sweepServers: [10, 30],
};
export const ALLOCATOR_QUICK: AllocatorOptions = {
  keys: 100_000,
  serverCounts: [3, 5, 10, 30],
  lookups: 300_000,
  lookupBudgetMs: 500,
  lookupServers: 10,
  seed: 1,
  sweepVirtualNodes: [128, 512, 1024, 2048],
  sweepServers: [10, 30],
};

export interface LookupCost {
  readonly servers: number;
  readonly lookups: number;
  /** allocateReplicas(key, view): finds the cached ring for the view, then looks up the key. */
  readonly allocateReplicasNs: number;
  /** ring.replicasOf(key) on a ring held by the caller: hash, binary search, table read. */
  readonly replicasOfNs: number;
  /** Building the Ring (sorting N * virtual nodes positions, the replica table). */
  readonly ringBuildMs: number;
}

export interface LoadFigure {
  readonly servers: number;
  /** Replica copies per server divided by the mean copies per server. */
  readonly maxOverMean: number;
  readonly minOverMean: number;
}

export interface SweepFigure extends LoadFigure {
  readonly virtualNodesPerServer: number;
}

export interface MovementFigure {
  readonly from: number;
  readonly to: number;
  /** Copies placed on a server that did not hold them before, summed over keys. */
  readonly moved: number;
  /** The least any allocator must move: keys * min(R, N) / N, N the larger view. */
  readonly optimal: number;
  readonly movedOverOptimal: number;
  /** Keys whose replica set changed at all. */
  readonly keysChanged: number;
  /** Join: every moved copy went to the new server. Leave: only keys that lost it changed. */
  readonly onlyExpectedMoves: boolean;
}

export interface AllocatorResult {
  readonly keys: number;
  readonly replicationCount: number;
  readonly virtualNodesPerServer: number;
  readonly lookup: LookupCost;
  readonly load: readonly LoadFigure[];
  readonly join: readonly MovementFigure[];
  /** Only views where N - 1 >= R: below that, a leave moves no copy at all. */
  readonly leave: readonly MovementFigure[];
  /** Replicated load with other virtual node counts (the ring in use has 2048). */
  readonly sweep: readonly SweepFigure[];
}

/** Deterministic random-looking v4 UUIDs (mulberry32), so every run measures the same views. */
export function seededUuids(count: number, seed: number): string[] {
  let state = seed >>> 0;
  const next32 = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const hex = (n: number): string => n.toString(16).padStart(8, '0');
  return Array.from({ length: count }, () => {
    const a = hex(next32());
    const b = hex(next32());
    const c = hex(next32());
    const d = hex(next32());
    const variant = ((parseInt(c[0], 16) & 0x3) | 0x8).toString(16);
    return `${a}-${b.slice(0, 4)}-4${b.slice(5, 8)}-${variant}${c.slice(1, 4)}-${c.slice(4)}${d}`;
  });
}

export function benchServers(count: number, seed: number): ServerRef[] {
  return seededUuids(count, seed).map((id, i) => ({ id, address: `127.0.0.1:${38000 + i}` }));
}

/** Every key's replica IDs in `ring`, as a Set per key. */
function placements(ring: Ring, keys: readonly string[]): Set<string>[] {
  return keys.map((key) => new Set(ring.replicasOf(key).map((s) => s.id)));
}

function loadFigure(ring: Ring, keys: readonly string[]): LoadFigure {
  const copies = new Map<string, number>(ring.servers.map((s) => [s.id, 0]));
  for (const key of keys) {
    for (const s of ring.replicasOf(key)) copies.set(s.id, (copies.get(s.id) ?? 0) + 1);
  }
  const counts = [...copies.values()];
  const mean = (keys.length * ring.replicationCount) / ring.servers.length;
  return {
    servers: ring.servers.length,
    maxOverMean: Math.max(...counts) / mean,
    minOverMean: Math.min(...counts) / mean,
  };
}

/**
 * Copies moved between two views of the same keys. `changed` is the server that joined (present
 * only in `after`) or left (present only in `before`).
 */
function movementFigure(
  before: Ring,
  after: Ring,
  changed: string,
  keys: readonly string[],
): MovementFigure {
  const old = placements(before, keys);
  const now = placements(after, keys);
  const joined = after.servers.some((s) => s.id === changed);
  let moved = 0;
  let keysChanged = 0;
  let onlyExpectedMoves = true;
  for (let k = 0; k < keys.length; k++) {
    let gained = 0;
    for (const id of now[k]) {
      if (old[k].has(id)) continue;
      gained++;
      if (joined && id !== changed) onlyExpectedMoves = false;
    }
    const lost = [...old[k]].filter((id) => !now[k].has(id));
    if (gained > 0 || lost.length > 0) keysChanged++;
    if (!joined && !old[k].has(changed) && (gained > 0 || lost.length > 0)) {
      onlyExpectedMoves = false;
    }
    if (!joined && old[k].has(changed) && (lost.length !== 1 || lost[0] !== changed)) {
      onlyExpectedMoves = false;
    }
    moved += gained;
  }
  const larger = Math.max(before.servers.length, after.servers.length);
  const optimal = (keys.length * Math.min(REPLICATION_COUNT, larger)) / larger;
  return {
    from: before.servers.length,
    to: after.servers.length,
    moved,
    optimal,
    movedOverOptimal: moved / optimal,
    keysChanged,
    onlyExpectedMoves,
  };
}

function measureLookup(options: AllocatorOptions, keys: readonly string[]): LookupCost {
  const servers = benchServers(options.lookupServers, options.seed);
  const buildStart = performance.now();
  const ring = new Ring(servers);
  const ringBuildMs = performance.now() - buildStart;
  const view = { servers };
  allocateReplicas(keys[0], view); // builds and caches the view's ring outside the timing

  const timed = (lookup: (key: string) => readonly ServerRef[]): { ns: number; n: number } => {
    const deadline = performance.now() + options.lookupBudgetMs;
    let n = 0;
    let sink = 0;
    const start = performance.now();
    // Bounded by count and, checked every 1,000 lookups, by time.
    while (n < options.lookups) {
      sink += lookup(keys[n % keys.length]).length;
      n++;
      if (n % 1000 === 0 && performance.now() > deadline) break;
    }
    const elapsedMs = performance.now() - start;
    assert(sink === n * ring.replicationCount, 'every lookup returned R replicas');
    return { ns: (elapsedMs * 1e6) / n, n };
  };
  const viaView = timed((key) => allocateReplicas(key, view));
  const viaRing = timed((key) => ring.replicasOf(key));
  return {
    servers: servers.length,
    lookups: Math.min(viaView.n, viaRing.n),
    allocateReplicasNs: viaView.ns,
    replicasOfNs: viaRing.ns,
    ringBuildMs,
  };
}

export async function measureAllocator(options: AllocatorOptions): Promise<AllocatorResult> {
  await initHashing();
  assert(options.keys >= 1 && options.keys <= 10_000_000, 'key count is bounded');
  const keys = Array.from({ length: options.keys }, (_, i) => `key-${i}`);
  const lookup = measureLookup(options, keys);

  const load: LoadFigure[] = [];
  const join: MovementFigure[] = [];
  const leave: MovementFigure[] = [];
  for (const n of options.serverCounts) {
    assert(n >= 2, 'a join or leave needs at least two servers');
    const servers = benchServers(n, options.seed);
    const full = new Ring(servers);
    load.push(loadFigure(full, keys));
    // Join: the last server joins the other N-1.
    join.push(movementFigure(new Ring(servers.slice(0, -1)), full, servers[n - 1].id, keys));
    // Leave: the first server (not the last, so this differs from an undone join) leaves.
    if (n - 1 >= REPLICATION_COUNT) {
      leave.push(movementFigure(full, new Ring(servers.slice(1)), servers[0].id, keys));
    }
  }
  const sweep: SweepFigure[] = [];
  for (const virtualNodesPerServer of options.sweepVirtualNodes) {
    for (const n of options.sweepServers) {
      const ring = new Ring(benchServers(n, options.seed), { virtualNodesPerServer });
      sweep.push({ virtualNodesPerServer, ...loadFigure(ring, keys) });
    }
  }
  return {
    keys: options.keys,
    replicationCount: REPLICATION_COUNT,
    virtualNodesPerServer: VIRTUAL_NODES_PER_SERVER,
    lookup,
    load,
    join,
    leave,
    sweep,
  };
}

export function allocatorTables(result: AllocatorResult): Table[] {
  const { lookup } = result;
  const movementRows = (kind: string, figures: readonly MovementFigure[]): string[][] =>
    figures.map((m) => [
      `${kind} ${m.from} -> ${m.to}`,
      fmt(m.moved),
      fmt(m.optimal),
      fmt(m.movedOverOptimal, 3),
      fmt(m.keysChanged),
      m.onlyExpectedMoves ? 'yes' : 'NO',
    ]);
  return [
    {
      title:
        `Ring allocator: ${fmt(result.virtualNodesPerServer)} virtual nodes per server, ` +
        `R = ${result.replicationCount}, ${fmt(result.keys)} keys`,
      header: ['measure', 'value'],
      rows: [
        [
          `allocateReplicas(key, view), ${lookup.servers} servers`,
          `${fmt(lookup.allocateReplicasNs)} ns`,
        ],
        [`ring.replicasOf(key), ${lookup.servers} servers`, `${fmt(lookup.replicasOfNs)} ns`],
        [`new Ring(view), ${lookup.servers} servers`, `${fmt(lookup.ringBuildMs, 1)} ms`],
        ...result.load.map((l) => [
          `max/mean (min/mean) replicated load, ${l.servers} servers`,
          `${fmt(l.maxOverMean, 3)} (${fmt(l.minOverMean, 3)})`,
        ]),
      ],
    },
    {
      title: 'Ring allocator: replica copies moved by a view change (optimal = keys * R / N)',
      header: ['change', 'moved', 'optimal', 'moved/optimal', 'keys changed', 'only expected'],
      rows: [...movementRows('join', result.join), ...movementRows('leave', result.leave)],
    },
    {
      title: 'Ring allocator: max/mean replicated load by virtual nodes per server',
      header: ['virtual nodes', 'servers', 'max/mean', 'min/mean'],
      rows: result.sweep.map((f) => [
        fmt(f.virtualNodesPerServer),
        String(f.servers),
        fmt(f.maxOverMean, 3),
        fmt(f.minOverMean, 3),
      ]),
    },
  ];
}
