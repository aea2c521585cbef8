// Which of this server's keys go where when the view changes: a pure function of the previous
// view (the one this server's keys are placed for), the next view and the keys held.
//
// For each key, every server of the next replica set that was not in the previous one needs a
// copy, and exactly one current holder sends it: the first surviving previous replica, preferring
// one that is leaving the replica set (it must hand its copy over before deleting it anyway).
// Every other holder that leaves the replica set offers (key, version) digests before deleting, so
// a key is never deleted before all its next replicas hold it, even when holders disagree on the
// previous view (a second view change mid-way). Values cross the network only where needed.

import { assert } from '../lib/assert';
import type { ServerRef } from '../lib/messages';
import { ringFor } from '../lib/ring';

export interface RebalanceInput {
  readonly selfId: string;
  /** The view this server's keys are placed for (empty before its first rebalance). */
  readonly previous: readonly ServerRef[];
  readonly next: readonly ServerRef[];
  readonly keys: Iterable<string>;
}

export interface RebalancePlan {
  /** Target server ID -> keys whose value this server sends (it is the designated sender). */
  readonly push: Map<string, string[]>;
  /** Target server ID -> keys to offer as digests (the target answers which it lacks). */
  readonly offer: Map<string, string[]>;
  /** Keys to delete once every push and offer to their next replicas is acknowledged. */
  readonly drop: string[];
  /** The targets by ID. */
  readonly targets: Map<string, ServerRef>;
}

export function planRebalance(input: RebalanceInput): RebalancePlan {
  const plan: RebalancePlan = { push: new Map(), offer: new Map(), drop: [], targets: new Map() };
  assert(
    input.next.some((s) => s.id === input.selfId),
    'a server plans only for a view it is in',
  );
  const nextIds = new Set(input.next.map((s) => s.id));
  const previousRing = input.previous.length > 0 ? ringFor(input.previous) : undefined;
  const nextRing = ringFor(input.next);

  for (const key of input.keys) {
    const nextReplicas = nextRing.replicasOf(key);
    const previousReplicas = previousRing?.replicasOf(key) ?? [];
    const inNext = nextReplicas.some((s) => s.id === input.selfId);
    const inPrevious = previousReplicas.some((s) => s.id === input.selfId);
    const gained = nextReplicas.filter((s) => !previousReplicas.some((p) => p.id === s.id));

    if (inPrevious) {
      if (designatedSender(previousReplicas, nextReplicas, nextIds) === input.selfId) {
        for (const target of gained) add(plan.push, plan.targets, target, key);
      } else if (!inNext) {
        for (const target of nextReplicas) add(plan.offer, plan.targets, target, key);
      }
    } else if (!inNext) {
      // A stray copy (set locally, or left by an interrupted rebalance) that is leaving: make
      // sure the next replicas have it before deleting it. A stray that stays needs nothing: it is
      // usually a copy pushed here by a holder that learned of this view first.
      for (const target of nextReplicas) add(plan.offer, plan.targets, target, key);
    }
    if (!inNext) plan.drop.push(key);
  }
  return plan;
}

/** The one holder that sends a key to its new replicas: see the file comment. */
export function designatedSender(
  previousReplicas: readonly ServerRef[],
  nextReplicas: readonly ServerRef[],
  nextIds: ReadonlySet<string>,
): string | undefined {
  const survivors = previousReplicas.filter((s) => nextIds.has(s.id));
  const leaving = survivors.find((s) => !nextReplicas.some((n) => n.id === s.id));
  return (leaving ?? survivors[0])?.id;
}

function add(
  into: Map<string, string[]>,
  targets: Map<string, ServerRef>,
  target: ServerRef,
  key: string,
): void {
  targets.set(target.id, target);
  const keys = into.get(target.id);
  if (keys === undefined) into.set(target.id, [key]);
  else keys.push(key);
}
