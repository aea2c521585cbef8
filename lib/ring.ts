// The ring bucket allocator (consistent hashing, Dynamo section 4.2, with virtual nodes).
//
// A Ring is a value built once per view: every server owns VIRTUAL_NODES_PER_SERVER positions on
// a 2^64 circle, derived from its ID alone, so a server's positions never depend on who else is
// in the view. A key's replicas are the first min(R, |servers|) *distinct* servers clockwise from
// the key's hash. Positions are kept as exact unsigned 64-bit values (two uint32 halves) so
// ordering never suffers float rounding.

import { assert } from './assert';
import { hash64 } from './hash';
import { REPLICATION_COUNT, VIRTUAL_NODES_PER_SERVER } from './limits';
import type { ServerRef } from './messages';

const MASK_32 = 0xffffffffn;
const MASK_64 = 0xffffffffffffffffn;

export interface RingOptions {
  readonly replicationCount?: number;
  readonly virtualNodesPerServer?: number;
}

export class Ring {
  /** Servers sorted by ID: the canonical order of the view. */
  readonly servers: readonly ServerRef[];
  readonly replicationCount: number;
  private readonly positionHi: Uint32Array;
  private readonly positionLo: Uint32Array;
  /** replicasAt[i]: the replicas of every key whose successor position is i. */
  private readonly replicasAt: ReadonlyArray<readonly ServerRef[]>;

  constructor(servers: readonly ServerRef[], options: RingOptions = {}) {
    const replicationCount = options.replicationCount ?? REPLICATION_COUNT;
    const virtualNodes = options.virtualNodesPerServer ?? VIRTUAL_NODES_PER_SERVER;
    assert(replicationCount >= 1, 'replication count is at least 1');
    assert(virtualNodes >= 1, 'a server has at least one ring position');
    const ids = new Set(servers.map((s) => s.id));
    assert(ids.size === servers.length, 'server IDs in a view are distinct');

    this.servers = [...servers].sort((a, b) => compareStrings(a.id, b.id));
    this.replicationCount = Math.min(replicationCount, this.servers.length);

    const points: { hi: number; lo: number; owner: number }[] = [];
    this.servers.forEach((server, owner) => {
      for (let v = 0; v < virtualNodes; v++) {
        const h = hash64(`${server.id}#${v}`);
        points.push({ hi: Number(h >> 32n), lo: Number(h & MASK_32), owner });
      }
    });
    // Ties (vanishingly rare) are broken by owner index, which is itself ordered by ID.
    points.sort((a, b) => a.hi - b.hi || a.lo - b.lo || a.owner - b.owner);

    this.positionHi = Uint32Array.from(points, (p) => p.hi);
    this.positionLo = Uint32Array.from(points, (p) => p.lo);
    const owners = points.map((p) => p.owner);
    this.replicasAt = owners.map((_, start) => this.distinctClockwise(owners, start));
  }

  get size(): number {
    return this.positionHi.length;
  }

  /** The replicas of a key, primary first. */
  replicasOf(key: string): readonly ServerRef[] {
    if (this.size === 0) return [];
    const h = hash64(key);
    return this.replicasAt[this.successor(Number(h >> 32n), Number(h & MASK_32))];
  }

  /**
   * The share of the circle (0..1) whose keys each server replicates (`replicated`, the shares sum
   * to the replication count) and is the primary of (`primary`, they sum to 1), by server ID. A
   * key belongs to the arc that ends at its successor position, so position i's replicas hold the
   * arc from position i - 1 (exclusive) to i, the first arc wrapping round from the last position.
   */
  shares(): ReadonlyMap<string, { readonly primary: number; readonly replicated: number }> {
    const shares = new Map(this.servers.map((s) => [s.id, { primary: 0, replicated: 0 }]));
    for (let i = 0; i < this.size; i++) {
      const length = this.arcLength(i);
      const replicas = this.replicasAt[i];
      replicas.forEach((server, rank) => {
        const share = shares.get(server.id);
        assert(share !== undefined, 'a replica is a server of the ring');
        share.replicated += length;
        if (rank === 0) share.primary += length;
      });
    }
    return shares;
  }

  /**
   * Each server's primary arcs as [start, end) fractions of the circle (0 at hash 0, clockwise),
   * neighbouring arcs of one server merged: what a picture of the ring draws. The arc that wraps
   * round past hash 0 comes as two arcs, one ending at 1 and one starting at 0.
   */
  primaryArcs(): ReadonlyMap<string, ReadonlyArray<readonly [number, number]>> {
    const arcs = new Map<string, [number, number][]>(this.servers.map((s) => [s.id, []]));
    const add = (id: string, start: number, end: number): void => {
      const list = arcs.get(id);
      assert(list !== undefined, 'an owner is a server of the ring');
      const last = list[list.length - 1];
      if (last !== undefined && last[1] === start) last[1] = end;
      else list.push([start, end]);
    };
    for (let i = 0; i < this.size; i++) {
      const owner = this.replicasAt[i][0].id;
      const end = this.fractionAt(i);
      if (i === 0) {
        add(owner, 0, end);
      } else {
        add(owner, this.fractionAt(i - 1), end);
      }
    }
    if (this.size > 0) add(this.replicasAt[0][0].id, this.fractionAt(this.size - 1), 1);
    return arcs;
  }

  /** Position i as a fraction of the circle. */
  private fractionAt(i: number): number {
    return (this.positionHi[i] * 2 ** 32 + this.positionLo[i]) / 2 ** 64;
  }

  /** The length of the arc that ends at position i, as a fraction of the circle. */
  private arcLength(i: number): number {
    if (this.size === 1) return 1;
    const end = this.fractionAt(i);
    return i === 0 ? end + 1 - this.fractionAt(this.size - 1) : end - this.fractionAt(i - 1);
  }

  private distinctClockwise(owners: readonly number[], start: number): readonly ServerRef[] {
    const chosen: ServerRef[] = [];
    const seen = new Set<number>();
    for (let step = 0; step < owners.length && chosen.length < this.replicationCount; step++) {
      const owner = owners[(start + step) % owners.length];
      if (seen.has(owner)) continue;
      seen.add(owner);
      chosen.push(this.servers[owner]);
    }
    assert(chosen.length === this.replicationCount, 'the ring yields R distinct replicas');
    return chosen;
  }

  /** Index of the first position >= (hi, lo), wrapping to 0 past the end. */
  private successor(hi: number, lo: number): number {
    let low = 0;
    let high = this.size;
    while (low < high) {
      const mid = (low + high) >>> 1;
      const mh = this.positionHi[mid];
      if (mh < hi || (mh === hi && this.positionLo[mid] < lo)) low = mid + 1;
      else high = mid;
    }
    return low === this.size ? 0 : low;
  }
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// A ring per distinct server set, so callers can treat allocateReplicas as a function of
// (key, servers). The cache is invisible: the same servers always build the same ring.
const RING_CACHE_MAX = 16;
const ringCache = new Map<string, Ring>();
/** The same array (a view held by a caller) skips the signature: the common case by far. */
const ringByArray = new WeakMap<readonly ServerRef[], Ring>();
/** Server lists whose first lookup was a scan (replicasByScan): their second builds the ring. */
const scannedOnce = new WeakSet<readonly ServerRef[]>();

function signatureOf(servers: readonly ServerRef[]): string {
  return servers
    .map((s) => `${s.id}@${s.address}`)
    .sort()
    .join('\n');
}

/** The ring already built for these servers (remembered for this array too), if any. */
function cachedRing(servers: readonly ServerRef[]): Ring | undefined {
  const known = ringByArray.get(servers);
  if (known !== undefined) return known;
  const ring = ringCache.get(signatureOf(servers));
  if (ring !== undefined) ringByArray.set(servers, ring);
  return ring;
}

export function ringFor(servers: readonly ServerRef[]): Ring {
  const known = cachedRing(servers);
  if (known !== undefined) return known;
  const ring = new Ring(servers);
  const signature = signatureOf(servers);
  if (ringCache.size >= RING_CACHE_MAX) ringCache.delete(ringCache.keys().next().value as string);
  ringCache.set(signature, ring);
  ringByArray.set(servers, ring);
  return ring;
}

/**
 * The replicas of one key without building a Ring: the same answer as
 * `new Ring(servers, options).replicasOf(key)`, for a caller that asks once per view (the CLI
 * asks for one key and exits). It hashes every virtual node as the Ring does but skips the sort
 * and the replica table, which cost most of a ring's build (docs/performance.md, "CLI").
 *
 * Walking clockwise from the key's hash meets positions in the order of their clockwise distance
 * (position - hash) mod 2^64, ties by owner (the Ring's sort order rotated to the key); so the
 * first R distinct servers met are the R servers whose nearest position is nearest, ties by owner.
 */
export function replicasByScan(
  key: string,
  servers: readonly ServerRef[],
  options: RingOptions = {},
): readonly ServerRef[] {
  const replicationCount = options.replicationCount ?? REPLICATION_COUNT;
  const virtualNodes = options.virtualNodesPerServer ?? VIRTUAL_NODES_PER_SERVER;
  assert(replicationCount >= 1, 'replication count is at least 1');
  assert(virtualNodes >= 1, 'a server has at least one ring position');
  assert(
    new Set(servers.map((s) => s.id)).size === servers.length,
    'server IDs in a view are distinct',
  );
  if (servers.length === 0) return [];

  const sorted = [...servers].sort((a, b) => compareStrings(a.id, b.id));
  const h = hash64(key);
  const nearest = sorted.map((server, owner) => {
    let distance = MASK_64;
    for (let v = 0; v < virtualNodes; v++) {
      const d = BigInt.asUintN(64, hash64(`${server.id}#${v}`) - h);
      if (d < distance) distance = d;
    }
    return { distance, owner };
  });
  nearest.sort((a, b) =>
    a.distance < b.distance ? -1 : a.distance > b.distance ? 1 : a.owner - b.owner,
  );
  const count = Math.min(replicationCount, sorted.length);
  const replicas = nearest.slice(0, count).map((n) => sorted[n.owner]);
  assert(replicas.length === count, 'the scan yields R distinct replicas');
  return replicas;
}

/**
 * The replicas of `key` in a view (its live servers), primary first. Pure and idempotent. The
 * first lookup in a server list scans (replicasByScan); a second builds and caches its Ring.
 */
export function allocateReplicas(
  key: string,
  view: { readonly servers: readonly ServerRef[] },
): readonly ServerRef[] {
  const servers = view.servers;
  const ring = cachedRing(servers);
  if (ring !== undefined) return ring.replicasOf(key);
  if (!scannedOnce.has(servers)) {
    scannedOnce.add(servers);
    return replicasByScan(key, servers);
  }
  return ringFor(servers).replicasOf(key);
}
