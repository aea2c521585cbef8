// Which of this server's keys go where when the view changes: a pure function of the placement
// (the view of the last epoch whose barrier passed), the next view, the keys held, and how the
// copies that arrived since that barrier got here.
//
// The invariant (docs/design.md, "Rebalancing"):
//
//   (A) When the barrier of epoch e passes (every server of view e has copied), every key held by
//       any server of view e is held by all of its replicas in view e (all live ones: a dead
//       server holds nothing).
//
// A server holds a key *as placed* when it is one of the key's replicas under the placement p and
// has held it since the barrier of p (or got it from a 2PC commit of a settled epoch, which writes
// every replica). By (A) for p, a key held as placed anywhere is held by every live replica of
// it under p: deletes only remove keys the deleting server does not replicate, and what arrived
// since the barrier is not "as placed". Every other copy is *unvouched*: a stray (this server is
// not a replica under p, which after a view leader restart, when the placement is empty, is
// every key), or a copy a transfer brought since the barrier. Then, for each key held:
//
// - as placed: every server of the next replica set that was not in the previous one needs a
//   copy, and exactly one holder sends it: the designated sender, the first surviving previous
//   replica, preferring one that is leaving the replica set (it must hand its copy over before
//   deleting it anyway). It holds the key, by (A) for p, and whichever case its own copy falls
//   in, its plan covers the gained replicas. The replicas that stay hold it already, by (A).
//   Every other placed holder that leaves the replica set offers (key, version) digests, so that
//   holders that disagree on the previous view still never delete a key before its next replicas
//   hold it.
// - unvouched: offered to every next replica but this server, whether the copy stays or leaves,
//   so the copy reaches them all by itself, whatever the placement says.
// - arrived in the epoch being planned, from a server planning the same view, and stays: nothing.
//   Its sender sent it because its own plan covers the key on every next replica (an unvouched
//   copy, a leaving holder's offers, or the designated sender's pushes), so offering it back would
//   only cost digests. This is what a joiner holds when the others' pushes beat its own plan. (A
//   sender sends only to next replicas; such a copy that leaves is treated as unvouched.)
//
// Every key held when the barrier of e passes was held at plan time by some server of view e, or
// was sent during the copy phase by one that was (transfers of an older epoch are refused, 2PC
// drains before planning and refuses while rebalancing), and each case above ends with the key on
// all its replicas in view e once that server's copy phase is acknowledged: so (A) holds for e.
// A copy phase superseded mid-way only adds copies, all unvouched until the next barrier. In the
// normal case nothing is unvouched and values cross only to gained replicas; after a view leader
// restart every key is offered once as digests, and a value crosses only where a replica lacks it
// or holds it older. Outside the argument: a local `set` (not replicated, and not recorded), and
// an epoch number that a restarted in-memory view leader hands out again before the server that
// held it reports it (docs/design.md, "Known limitations").

import { assert } from '../lib/assert';
import type { ServerRef } from '../lib/messages';
import { ringFor } from '../lib/ring';

/**
 * How a copy that a transfer stored here relates to a plan: `this_epoch`, the transfer came from a
 * server planning the same epoch; `unvouched`, from a later epoch than the placement's, but not the
 * one being planned (a superseded copy phase, or one ahead of this server).
 */
export type Arrival = 'this_epoch' | 'unvouched';

export interface RebalanceInput {
  readonly selfId: string;
  /** The placement's servers (empty before the first barrier and after a view leader restart). */
  readonly previous: readonly ServerRef[];
  readonly next: readonly ServerRef[];
  readonly keys: Iterable<string>;
  /** Copies that transfers stored here since the placement's barrier (`arrivalsFor`). */
  readonly arrivals?: ReadonlyMap<string, Arrival>;
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
  const arrivals = input.arrivals ?? new Map<string, Arrival>();

  for (const key of input.keys) {
    const nextReplicas = nextRing.replicasOf(key);
    const inNext = nextReplicas.some((s) => s.id === input.selfId);
    const arrival = arrivals.get(key);
    if (!inNext) plan.drop.push(key);
    if (arrival === 'this_epoch' && inNext) continue; // its sender's plan covers every replica

    const previousReplicas = previousRing?.replicasOf(key) ?? [];
    const placed = arrival === undefined && previousReplicas.some((s) => s.id === input.selfId);
    if (!placed) {
      for (const target of nextReplicas) {
        if (target.id !== input.selfId) add(plan.offer, plan.targets, target, key);
      }
    } else if (designatedSender(previousReplicas, nextReplicas, nextIds) === input.selfId) {
      for (const target of nextReplicas) {
        if (!previousReplicas.some((p) => p.id === target.id)) {
          add(plan.push, plan.targets, target, key);
        }
      }
    } else if (!inNext) {
      for (const target of nextReplicas) add(plan.offer, plan.targets, target, key);
    }
  }
  return plan;
}

/**
 * The copies that transfers stored here (key -> the transfer's epoch), as a plan of `epoch` against
 * a placement of `placementEpoch` sees them. A copy from an epoch up to the placement's was here
 * when that barrier passed (a transfer of an older epoch than the receiver's is refused, and every
 * transfer of an epoch is acknowledged before its barrier), so the placement vouches for it and it
 * is left out.
 */
export function arrivalsFor(
  received: ReadonlyMap<string, number>,
  placementEpoch: number,
  epoch: number,
): Map<string, Arrival> {
  // Equal for a server that restarted and resumed its ID in a settled view: nothing moves.
  assert(placementEpoch <= epoch, 'a plan is for an epoch at or after its placement');
  const arrivals = new Map<string, Arrival>();
  for (const [key, receivedEpoch] of received) {
    if (receivedEpoch <= placementEpoch) continue;
    arrivals.set(key, receivedEpoch === epoch ? 'this_epoch' : 'unvouched');
  }
  return arrivals;
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

/** The copies a plan makes: one per (key, target) pair, pushed or offered. */
export function copiesOf(plan: RebalancePlan): number {
  let copies = 0;
  for (const keys of plan.push.values()) copies += keys.length;
  for (const keys of plan.offer.values()) copies += keys.length;
  return copies;
}
