// Which replicated read a server answers in which state, and when it admits new writes: pure
// rules, so the shell's guards are tested like the protocols (the prepare's guards live in
// server/participant.ts).
//
// A read is answered from memory only when nothing newer can have been committed elsewhere:
// - the request's epoch is this server's (a coordinator with another view has other replicas);
// - this server's part of the epoch's rebalance is done (its copies are complete);
// - it holds its lease (server/view-tracker.ts): a server paused past the failure timeout may
//   have been expelled and the key rewritten in a newer epoch without it;
// - no transaction on the key is undecided here (it may be committed at this very moment), nor
//   decided by a recovery whose records are not synced yet (a crash could still undo it: the
//   participant's `refusesReads`).

import { DhtError } from '../lib/errors';

export interface ReadState {
  readonly epoch: number;
  readonly rebalancing: boolean;
  readonly leased: boolean;
  readonly keyPending: boolean;
}

/** Undefined when the read may be served; otherwise the refusal to answer with. */
export function refuseRead(requestEpoch: number, state: ReadState): DhtError | undefined {
  if (requestEpoch !== state.epoch) {
    return new DhtError(
      'retry',
      `epoch ${state.epoch} here, ${requestEpoch} in request`,
      'epoch_mismatch',
    );
  }
  if (state.rebalancing) return new DhtError('retry', 'rebalancing under way', 'rebalancing');
  if (!state.leased) {
    return new DhtError(
      'retry',
      'no heartbeat acknowledged lately: this server may be out of the view',
      'lease_expired',
    );
  }
  if (state.keyPending) {
    return new DhtError('retry', 'a transaction on this key is undecided', 'key_busy');
  }
  return undefined;
}

/**
 * New work (a yes vote, an acceptance, a promise, a received transfer, a local set) is refused
 * while the writes waiting for a sync are at their bound (a stalled disk; server/store.ts,
 * `busy`), before it changes anything. What was admitted already (a commit or abort of a prepared
 * transaction, a recovery's ballots and decisions) is never refused for room: refused half-way,
 * after memory changed, it would reach the disk in part.
 */
export function refuseNewWork(storageBusy: boolean): DhtError | undefined {
  if (!storageBusy) return undefined;
  return new DhtError(
    'retry',
    'too many writes wait for a sync of the data directory (a stalled disk?)',
    'storage_busy',
  );
}
