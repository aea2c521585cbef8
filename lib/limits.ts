// Every bound in one place (TigerBeetle style: units last, derived values as formulas).
// Process defaults here are the contract's; tests override them with flags.

export const KEY_BYTES_MIN = 1;
export const KEY_BYTES_MAX = 1024;
export const VALUE_BYTES_MAX = 1024 * 1024;

/** A JSON-encoded value can be up to 6x its UTF-8 size (\u0000 escapes), plus the envelope. */
export const REQUEST_BODY_BYTES_MAX = 6 * VALUE_BYTES_MAX + 64 * 1024;
/** Transfer batches carry many values; the sender caps a batch at TRANSFER_BATCH_BYTES_MAX. */
export const TRANSFER_BODY_BYTES_MAX = 64 * 1024 * 1024;
export const TRANSFER_BATCH_KEYS_MAX = 2000;
export const TRANSFER_BATCH_BYTES_MAX = 4 * 1024 * 1024;

/**
 * Transport batching (lib/http-client.ts): requests to one address go out alone while fewer than
 * BATCH_PIPELINE_MAX are in flight there; beyond that they queue, and each completion sends the
 * queue as one /batch request of at most BATCH_REQUESTS_MAX requests.
 */
export const BATCH_PIPELINE_MAX = 4;
export const BATCH_REQUESTS_MAX = 256;
/**
 * A batch's size, estimated from its strings' lengths. JSON escaping can grow a string up to 6x,
 * so a batch stays under the server's TRANSFER_BODY_BYTES_MAX (64 MiB) body limit with margin; a
 * single larger request (a 1 MiB value) simply goes alone.
 */
export const BATCH_ESTIMATED_BYTES_MAX = 4 * 1024 * 1024;
/**
 * A /batch answer stops executing entries once its JSON passes this many characters; the rest
 * answer `retry`/`batch_full` unexecuted and the client sends them again. Responses cannot be
 * bounded by the request (one small read can return a 6 MiB escaped value).
 */
export const BATCH_RESPONSE_CHARS_MAX = 16 * 1024 * 1024;
/** A /batch yields to the event loop after this many entries, so heartbeats keep flowing. */
export const BATCH_ENTRIES_PER_YIELD = 16;

export const REPLICATION_COUNT = 3;
/** Ring positions per server; measured in docs/design.md to keep max/mean load <= 1.05. */
export const VIRTUAL_NODES_PER_SERVER = 2048;

export const VIEWLEADER_PORT_FIRST = 39000;
export const VIEWLEADER_PORT_LAST = 39010;
export const SERVER_PORT_FIRST = 38000;
export const SERVER_PORT_LAST = 38010;
export const HOST_DEFAULT = '127.0.0.1';

export const HEARTBEAT_INTERVAL_S_DEFAULT = 10;
export const FAILURE_TIMEOUT_S_DEFAULT = 30;
/** How long a participant holds an undecided prepared transaction before asking for the outcome.
 * The contract bounds a dead coordinator's block at 10 s: PREPARE_TIMEOUT + one decision round. */
export const PREPARE_TIMEOUT_S_DEFAULT = 5;
/** How often a participant re-asks about a transaction it could not resolve. */
export const DECISION_RETRY_MS = 500;
/** Decisions remembered at the decision point (primary) for late askers; bounded by count. */
export const DECISIONS_REMEMBERED_MAX = 100_000;

/** Per-request timeout of the client (`--timeout`). */
export const CLIENT_TIMEOUT_S_DEFAULT = 2;
/** Pause between attempts while waiting for a rebalancing to finish (`--wait`). */
export const VIEW_POLL_MS = 100;
export const LOCK_RETRY_INTERVAL_S_DEFAULT = 5;
/** One RPC's deadline inside a client operation; a dead replica costs at most this. */
export const RPC_TIMEOUT_MS_DEFAULT = 1000;
/** A read of a key whose transaction is undecided is retried this often until the deadline. */
export const READ_PENDING_RETRY_MS = 5;

/**
 * The durable store (server/durable-store.ts) commits writes in groups (lib/group-commit.ts): one
 * LevelDB batch and one fdatasync per group. A group is whatever arrived during the previous sync,
 * up to these bounds; a transfer batch (TRANSFER_BATCH_KEYS_MAX keys, TRANSFER_BATCH_BYTES_MAX
 * bytes) fits in one group.
 */
export const STORE_BATCH_OPS_MAX = 4096;
export const STORE_BATCH_BYTES_MAX = 8 * 1024 * 1024;
/**
 * Writes waiting for a sync; beyond this a write is refused (`retry`/`storage_busy`) before it
 * changes anything. Only a stalled disk fills it: 64 requests of a 1 MiB value take 64 MiB.
 */
export const STORE_QUEUE_OPS_MAX = 4 * STORE_BATCH_OPS_MAX;
export const STORE_QUEUE_BYTES_MAX = 8 * STORE_BATCH_BYTES_MAX;
