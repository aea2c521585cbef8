// The 2PC participant's durable state as records in the store's tables: encoded as JSON, checked
// with the message vocabulary's schemas when read back, so a damaged record stops the server at
// start-up ("corrupt") instead of being half-believed.

import * as z from 'zod/mini';
import { Accepted, Ballot, ServerRef, TxOutcome } from '../lib/messages';
import { StoreOpenError } from './durable-store';
import type { ParticipantChange, ParticipantState } from './participant';
import type { Store } from './store';

const PreparedRecord = z
  .object({
    key: z.string(),
    value: z.optional(z.string()),
    deleted: z.optional(z.literal(true)),
    replicas: z.array(ServerRef).check(z.minLength(1)),
    votedVersion: z.number().check(z.int(), z.nonnegative()),
    promised: Ballot,
    accepted: z.optional(Accepted),
  })
  .check(
    z.refine((r) => (r.value === undefined) !== (r.deleted === undefined), {
      message: 'a prepared write has a value or is a delete',
    }),
  );
const DecisionRecord = z.object({
  outcome: TxOutcome,
  fenced: z.boolean(),
  seq: z.number().check(z.int(), z.positive()),
});
const LastCommitRecord = z.object({
  txid: z.string(),
  version: z.number().check(z.int(), z.positive()),
});

/** Write what the participant changed; the caller syncs (`store.flush()`) before answering. */
export function writeParticipantChanges(store: Store, changes: readonly ParticipantChange[]): void {
  for (const change of changes) {
    if (change.record === undefined) store.deleteRecord(change.table, change.key);
    else store.putRecord(change.table, change.key, JSON.stringify(change.record));
  }
}

/** What the participant had synced before the process stopped. */
export function readParticipantState(store: Store): ParticipantState {
  return {
    prepared: parseTable(store, 'prepared', PreparedRecord),
    decided: parseTable(store, 'decided', DecisionRecord),
    lastCommits: parseTable(store, 'last-commit', LastCommitRecord),
  };
}

/** Forget every record (a server that must join with a new ID starts its protocol state anew). */
export function clearParticipantState(store: Store): void {
  for (const table of ['prepared', 'decided', 'last-commit']) {
    for (const [key] of [...store.records(table)]) store.deleteRecord(table, key);
  }
}

function parseTable<T>(store: Store, table: string, schema: z.ZodMiniType<T>): [string, T][] {
  const out: [string, T][] = [];
  for (const [key, text] of store.records(table)) {
    let parsed: z.core.util.SafeParseResult<T>;
    try {
      parsed = schema.safeParse(JSON.parse(text));
    } catch {
      throw new StoreOpenError('corrupt', `unreadable ${table} record ${JSON.stringify(key)}`);
    }
    if (!parsed.success) {
      throw new StoreOpenError('corrupt', `malformed ${table} record ${JSON.stringify(key)}`);
    }
    out.push([key, parsed.data]);
  }
  return out;
}
