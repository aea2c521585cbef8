// Ballots and quorums of the per-transaction Paxos that decides a setr or delr (docs/design.md,
// "Two-phase commit"). Shared by the coordinator (client) and the participants (server).

import type { Ballot } from './messages';

/** The coordinator's ballot: round 0 of the epoch it prepared in; it needs no first phase. */
export function coordinatorBallot(epoch: number): Ballot {
  return { epoch, round: 0, slot: 0 };
}

/** Ballots are ordered by epoch, then round, then slot (0: the coordinator; i + 1: replica i). */
export function compareBallots(a: Ballot, b: Ballot): number {
  return a.epoch - b.epoch || a.round - b.round || a.slot - b.slot;
}

export function describeBallot(b: Ballot): string {
  return `${b.epoch}.${b.round}.${b.slot}`;
}

/** Phase-2 quorum: an outcome is chosen once a majority of the acceptors accepted it. */
export function majority(count: number): number {
  return Math.floor(count / 2) + 1;
}

/**
 * Phase-1 quorum of a transaction with `replicaCount` replicas: at least half of them, all in the
 * proposer's epoch. The replicas still in a view are a subset of those in every earlier view of
 * the transaction, so this meets every majority that could have chosen an outcome before.
 */
export function promiseQuorum(replicaCount: number): number {
  return Math.ceil(replicaCount / 2);
}
