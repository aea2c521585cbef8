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
 *
 * 2, not more: under load a request's cost is mostly per HTTP request, so fewer in flight means
 * fuller batches and less CPU per operation. Against 4, in alternating bench runs (2026-12-03,
 * `--only sdk`), c=64 went up 20-40% (getr 3 servers about 12,000/s against 10,000; setr
 * 2,350/s against 1,850) with c=1 unchanged; 1 was faster still at c=64 but serializes a second
 * concurrent request to the same server behind the first.
 */
export const BATCH_PIPELINE_MAX = 2;
export const BATCH_REQUESTS_MAX = 256;
/**
 * A batch's size, estimated from its strings' lengths. JSON escaping can grow a string up to 6x,
 * so a batch stays under the server's TRANSFER_BODY_BYTES_MAX (64 MiB) body limit with margin; a
 * single larger request (a 1 MiB value) simply goes alone.
 */
export const BATCH_ESTIMATED_BYTES_MAX = 4 * 1024 * 1024;
/**
 * A /batch answer drops the answers of read-only entries once its JSON passes this many
 * characters (they answer `retry`/`batch_full` and the client sends them again). Responses cannot
 * be bounded by the request (one small read can return a 6 MiB escaped value).
 */
export const BATCH_RESPONSE_CHARS_MAX = 16 * 1024 * 1024;

/**
 * Versions. Every write stores 1 + a version held or voted, so honest versions count the writes of
 * one key: they never come near either bound below. A request without authentication can claim
 * any version, though, and a forged high one used to brick its key: once a replica held
 * 2^53 - 1, the coordinator's 1 + max vote left the safe-integer range and every later setr of
 * the key failed (exit 3, "version: Too big").
 *
 * - VERSION_MAX: the wire's range (zod's safe integers); arithmetic stays exact up to it.
 * - VERSION_CLAIM_MAX: the highest version a request may make a server store on its own word:
 *   a transfer entry up to max(it, the copy held); a commit up to 1 + max(it, the copy held),
 *   since the coordinator commits 1 + the highest vote and another replica may hold a copy at
 *   the bound (a commit at VERSION_CLAIM_MAX + 1 over a vote of 0 is what an honest coordinator
 *   sends then). Anything higher is stored only if a server in this server's view holds the key
 *   that high (server/version-claims.ts): a legitimate version above the bound was reached one
 *   write at a time from below it, so some server holds it. A forged claim at the bound still
 *   leaves VERSION_MAX - VERSION_CLAIM_MAX (about 4.5e15) writes before the range ends;
 *   climbing past it takes one request per version, like honest writes. Servers of the view are
 *   believed: a hostile process that joins the view can vouch for anything (authentication).
 *
 * Why vouching rather than a plain bound on every version a request carries: after a forged
 * transfer at the bound, honest writes take the key above it, and their versions then travel
 * again in votes, commits, offers and rebalancing transfers. Refusing those would brick the key
 * after one more setr, or stall every rebalancing that moves it.
 */
export const VERSION_MAX = Number.MAX_SAFE_INTEGER;
export const VERSION_CLAIM_MAX = 2 ** 52;

export const REPLICATION_COUNT = 3;
/**
 * A server serves reads and takes prepares only for this share of the failure timeout after it
 * sent its last acknowledged heartbeat (its lease; server/view-tracker.ts). The rest is margin
 * for the two processes' clocks running at different rates: the view leader expels nobody sooner
 * than a full failure timeout after that heartbeat arrived.
 */
export const LEASE_SHARE_OF_FAILURE_TIMEOUT = 0.8;
/** Ring positions per server; measured in docs/design.md to keep max/mean load <= 1.05. */
export const VIRTUAL_NODES_PER_SERVER = 2048;

export const VIEWLEADER_PORT_FIRST = 39000;
export const VIEWLEADER_PORT_LAST = 39010;
export const SERVER_PORT_FIRST = 38000;
export const SERVER_PORT_LAST = 38010;
export const HOST_DEFAULT = '127.0.0.1';

export const HEARTBEAT_INTERVAL_S_DEFAULT = 10;
/**
 * The highest epoch a heartbeat may report. The view leader counts on from the highest reported
 * epoch (docs/design.md, "Epoch continuity"), so a bound far below 2^53 keeps every later epoch an
 * exact integer: 2^52 more view changes, at one per millisecond, would take 140,000 years.
 */
export const EPOCH_REPORTED_MAX = 2 ** 52;
export const FAILURE_TIMEOUT_S_DEFAULT = 30;
/**
 * A new server ID heartbeating from a live server's address makes the view leader ask that
 * address who listens there (viewleader/membership.ts, `takeOver`). A restarted process answers
 * from loopback or a LAN in milliseconds; the bound stays well under the server's own heartbeat
 * timeout (SERVER_VIEWLEADER_TIMEOUT_MS) so the waiting heartbeat still gets its answer.
 */
export const ADDRESS_PROBE_TIMEOUT_MS = 500;
/** A status answer is a few hundred bytes; whatever answers with more is not a dht server. */
export const ADDRESS_PROBE_RESPONSE_BYTES_MAX = 64 * 1024;
/** How long a participant holds an undecided prepared transaction before asking for the outcome.
 * The contract bounds a dead coordinator's block at 10 s: PREPARE_TIMEOUT + one decision round. */
export const PREPARE_TIMEOUT_S_DEFAULT = 5;
/** How often a participant runs a new recovery ballot for a transaction it could not resolve. */
export const DECISION_RETRY_MS = 500;
/**
 * Replica i of a transaction starts recovering it i * RECOVERY_STAGGER_MS after replica 0, so the
 * survivors rarely duel with ballots (duels are safe, only slower).
 */
export const RECOVERY_STAGGER_MS = 100;
/** Rounds of recovery ballots within one epoch (one per DECISION_RETRY_MS: days of retries). */
export const BALLOT_ROUND_MAX = 2 ** 31;
/** Decisions (and, apart, fences) a replica remembers for late askers; bounded by count. */
export const DECISIONS_REMEMBERED_MAX = 100_000;

// ---- a storage server's timers and peers (server/storage-server.ts, server/rebalancer.ts) -------

/**
 * How often undecided transactions are looked at (their prepare timeouts, recovery rounds). The
 * timer runs only while some are pending: an idle server is not woken for nothing.
 */
export const PARTICIPANT_TICK_MS = 100;
/** A server's requests to the view leader (heartbeats, the copy barrier's asks). */
export const SERVER_VIEWLEADER_TIMEOUT_MS = 2000;
/** While waiting at the copy barrier, ask the view leader this often (a few asks per epoch). */
export const BARRIER_POLL_MS = 50;
/** One recovery message to another replica: a dead one costs a ballot at most this. */
export const PEER_TIMEOUT_MS = 1000;
/** Asking a voucher about versions beyond the claim bound (only ever after a forged claim). */
export const VOUCH_TIMEOUT_MS = 1000;
/** While no view leader answers, warn at most this often (heartbeats can be 50 ms apart). */
export const UNREACHABLE_WARNING_INTERVAL_MS = 10_000;
/** A rebalancing waits for the transactions in flight to drain, looking this often. */
export const DRAIN_POLL_MS = 20;
/** One transfer batch (up to TRANSFER_BATCH_BYTES_MAX): generous, a slow disk syncs it. */
export const TRANSFER_TIMEOUT_MS = 30_000;
/** A transfer that failed is sent again after this. */
export const TRANSFER_RETRY_MS = 200;
/**
 * A target that stays unreachable this long (TRANSFER_ATTEMPTS_MAX * TRANSFER_RETRY_MS: 10 minutes)
 * is dead: the next view will say so.
 */
export const TRANSFER_ATTEMPTS_MAX = 3000;

/**
 * The view leader's expiry timer: a quarter of the failure timeout, within these bounds. Requests
 * tick the core themselves, so expiry is exact; the timer only makes a silent server leave (and
 * its locks go) without waiting for the next request. A quarter keeps that delay small; the bounds
 * keep the timer neither busy nor lazy.
 */
export const VIEWLEADER_TICK_INTERVAL_MS_MIN = 10;
export const VIEWLEADER_TICK_INTERVAL_MS_MAX = 1000;

/**
 * How long dht's tooling (demo, bench, tests: demo/spawn.ts) waits for a process it started to
 * print `listening on`: well under a second on a quiet machine, many seconds under a CPU hog.
 */
export const PROCESS_READY_TIMEOUT_MS = 30_000;

/**
 * How often a coordinator sends a chosen commit to a replica whose answer was lost (a timeout or a
 * broken connection; a refused one is a dead process, not asked again). The commit is idempotent
 * and already chosen: asking again only spares a busy replica's read of the key its wait for the
 * termination protocol, and the caller an "outcome unknown" for a write that is in fact decided.
 * Twice in all: a replica that is frozen, not just slow, costs the caller two timeouts, not more.
 */
export const COMMIT_DELIVERY_ATTEMPTS = 2;
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
 * `Retry-After` of a 503 on `/kv/KEY` (the refusal did nothing): a rebalancing on loopback or a LAN
 * takes well under a second to a few seconds, and a view change is noticed within one heartbeat.
 */
export const KV_RETRY_AFTER_S = 1;

/**
 * Authentication (lib/auth.ts). A request's timestamp may differ from the receiver's clock by at
 * most AUTH_CLOCK_SKEW_MS (NTP keeps machines within milliseconds; a paused process's queued
 * requests are refused after this). Per sender, the receiver remembers the last AUTH_REPLAY_WINDOW
 * request numbers; a request overtaken by that many newer ones of its sender is refused as a
 * replay (a client has at most a few hundred requests in flight). A secret shorter than
 * AUTH_SECRET_BYTES_MIN is refused: HMAC-SHA256's key should carry at least 128 bits.
 */
export const AUTH_CLOCK_SKEW_MS = 30_000;
export const AUTH_REPLAY_WINDOW = 4096;
export const AUTH_SECRET_BYTES_MIN = 16;
/** A secret file is read whole; anything this large is not a secret file. */
export const AUTH_SECRET_FILE_BYTES_MAX = 64 * 1024;

/**
 * The durable store (server/durable-store.ts) commits writes in groups (lib/group-commit.ts): one
 * LevelDB batch and one fdatasync per group. A group is whatever arrived during the previous sync,
 * up to these bounds; a transfer batch (TRANSFER_BATCH_KEYS_MAX keys, TRANSFER_BATCH_BYTES_MAX
 * bytes) fits in one group.
 */
export const STORE_BATCH_OPS_MAX = 4096;
export const STORE_BATCH_BYTES_MAX = 8 * 1024 * 1024;
/**
 * Writes waiting for a sync; at this bound a server admits no new work (`retry`/`storage_busy`:
 * a vote, an acceptance, a promise, a transfer, a local set, the abort of a transaction unknown
 * there) before it changes anything, and
 * starts no recovery ballot. Work already admitted still writes (a decision and its value are
 * never refused half-way), so the queue may pass the bound by that much. Only a stalled disk
 * fills it: 64 requests of a 1 MiB value take 64 MiB.
 */
export const STORE_QUEUE_OPS_MAX = 4 * STORE_BATCH_OPS_MAX;
/**
 * Bulk work of a server's own (pruning `received` records, the rebalancing cleanup) queues at
 * most this many writes, then waits for their sync: a drop of 100,000 keys must not fill the
 * queue that requests need.
 */
export const STORE_BULK_WRITES_PER_SYNC = STORE_BATCH_OPS_MAX;
export const STORE_QUEUE_BYTES_MAX = 8 * STORE_BATCH_BYTES_MAX;
/**
 * A write nobody waits for (a 2PC commit whose acceptance is synced already; records that only
 * tidy up) rides on the next sync somebody asks for, and waits at most this long for one before
 * it is synced on its own (lib/group-commit.ts). Nothing depends on it being durable sooner; the
 * bound only keeps the disk close behind memory on a server that turns idle.
 */
export const STORE_LAZY_SYNC_MS = 50;

/**
 * The view leader saves each step's changes (a request's, or a tick's) as one unit, and syncs
 * the units that arrived during the previous sync as one LevelDB batch (viewleader/state-store.ts).
 * A step is small (a join, a leave, a lock entry or a few), so a batch of 256 steps is at most a
 * few hundred kilobytes; a departed server's locks released together are one larger step.
 */
export const VIEWLEADER_SYNC_BATCH_STEPS_MAX = 256;
export const VIEWLEADER_SYNC_BATCH_BYTES_MAX = 8 * 1024 * 1024;
/**
 * Steps waiting for a sync; at the bound the view leader refuses requests (`retry`/`storage_busy`)
 * before they change anything. Only a stalled disk fills it.
 */
export const VIEWLEADER_SYNC_QUEUE_STEPS_MAX = 4 * VIEWLEADER_SYNC_BATCH_STEPS_MAX;
export const VIEWLEADER_SYNC_QUEUE_BYTES_MAX = 8 * VIEWLEADER_SYNC_BATCH_BYTES_MAX;

// ---- the replicated view leader (viewleader/replication.ts; the Raft core's own bounds are in
// viewleader/raft/limits.ts) ----------------------------------------------------------------------

/** One Raft tick. Election timeouts and heartbeats are counted in ticks. */
export const RAFT_TICK_MS = 100;
/**
 * Ticks without a leader before a follower campaigns (plus a random 0..this-1 more): 1 to 2 s.
 * Detection plus an election stays well within the contract's "a new leader within 5 s".
 */
export const RAFT_ELECTION_TICKS = 10;
/** A leader's heartbeat period, in ticks. */
export const RAFT_HEARTBEAT_TICKS = 1;
/** Applied entries kept in the log before the state is snapshotted and the log cut. */
export const RAFT_SNAPSHOT_ENTRIES = 1000;
/** One member-to-member message's deadline: an unanswered one is dropped (Raft resends). */
export const RAFT_SEND_TIMEOUT_MS = 500;
/** Requests in flight to one member; beyond, messages are dropped (a stopped member). */
export const RAFT_SENDS_IN_FLIGHT_MAX = 16;
/**
 * How long an answer waits for its change to commit, or for a read-index confirmation, before it
 * gives up (a lost majority): `not_leader` when nothing was changed, `unknown` when its entry may
 * still commit. Below the client's default per-request timeout (CLIENT_TIMEOUT_S_DEFAULT, 2 s), so
 * that the client hears the member's verdict rather than its own timeout.
 */
export const RAFT_COMMIT_WAIT_MS_MAX = 1500;
/**
 * How long a caller of the view leader keeps looking for the leading member (following
 * redirects, waiting out an election) before it reports the view leader unavailable.
 */
export const VIEWLEADER_FAILOVER_WAIT_MS = 6000;
/** Pause between rounds over the members while no leader is known. */
export const VIEWLEADER_RETRY_MS = 100;

/**
 * Metrics (lib/metrics.ts). Request latency buckets in seconds: from a 0.5 ms loopback read to
 * the client's 2 s timeout and beyond (a /kv setr that waits out a commit); 14 buckets keep a
 * series per (endpoint, outcome) small. The event loop delay is sampled every this many ms:
 * 10 samples a second, hundreds per scrape. Not prom-client's default of 10 ms: on these machines
 * each wakeup costs about 90 us, so 10 ms sampling alone took 8 ms of CPU a second from every idle
 * process, a third of an idle server's (docs/performance.md, "Idle cost").
 */
export const REQUEST_SECONDS_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;
export const EVENT_LOOP_MONITORING_MS = 100;

// ---- the operator's view (`dht-client status`, the view leader's page) --------------------------

/**
 * While a server copies, it heartbeats at least this often, so that the view leader (and the page,
 * and `status`) see its copy progress move also with a long --heartbeat-interval (10 s default).
 */
export const COPY_PROGRESS_REPORT_MS = 1000;
/**
 * A server is shown as late when the view leader has not heard it for this many of its heartbeat
 * intervals: probably dead, though it is expelled only after the failure timeout.
 */
export const HEARTBEAT_LATE_INTERVALS = 2;
/** View changes the view leader remembers for the page's history (in memory only). */
export const VIEW_HISTORY_MAX = 200;
/** The page's server-sent events: a fresh snapshot this often (when it changed). */
export const PAGE_REFRESH_MS = 1000;
/** Open event streams (browser tabs) one view leader serves at once; more are refused (503). */
export const PAGE_STREAMS_MAX = 32;
/** An idle event stream gets a comment line this often, so proxies keep it open. */
export const PAGE_KEEPALIVE_MS = 15_000;
/** ... but never before this long: a busy machine delays a heartbeat by a few hundred ms. */
export const HEARTBEAT_LATE_MS_MIN = 1000;

/**
 * "Did you mean" (lib/suggest.ts): a mistyped command or flag is matched against the known ones
 * within this many edits (two catches a doubled and a dropped letter, `getrr`, `sever`; more
 * suggests unrelated words). Longer words are not matched: the distance table is length squared.
 */
export const SUGGEST_DISTANCE_MAX = 2;
export const SUGGEST_WORD_CHARS_MAX = 64;
