// The one message vocabulary: every request and response that crosses a process boundary, as
// zod schemas (validated once, at the edge) and the TypeScript types inferred from them.
// docs/protocol.md documents each endpoint of this table.
//
// zod/mini, not zod's classic API: the same checks and messages, in functional forms instead of
// methods (`z.optional(s)`, `s.check(z.maxLength(n))`). Classic cannot be tree-shaken: it put all
// of zod in every bundle (the CLI's was 366 KB, 205 KB with mini) and cost each CLI call about
// 20 ms more CPU. Import `* as z`: `import { z }` keeps all of zod/mini's exports in the bundle.

import * as z from 'zod/mini';
// From zod's core directly, not through `z.core`: a namespace inside a namespace keeps esbuild
// from leaving out the parts of zod we do not use (the bundle would keep all of it).
import { $constructor, $ZodObjectJIT } from 'zod/v4/core';
import {
  BALLOT_ROUND_MAX,
  BATCH_REQUESTS_MAX,
  EPOCH_REPORTED_MAX,
  KEY_BYTES_MAX,
  KEY_BYTES_MIN,
  REPLICATION_COUNT,
  VALUE_BYTES_MAX,
  VERSION_MAX,
} from './limits';

// Classic zod loads its English messages itself; zod/mini leaves the locale unset, and without one
// every issue would read "Invalid input". Every module that defines schemas imports this one, so
// setting it here, once, is enough (tools/bundle.mjs keeps English alone of zod's locales).
z.config(z.locales.en());

/**
 * zod/mini's object schema parsed as classic zod parses one: through a function compiled for its
 * shape (zod's `$ZodObjectJIT`, at its first parse) rather than mini's generic loop over the keys.
 * Same checks, issues and output; mini without it validates a typical request body 1.5 to 2 times
 * slower, and this is the servers' hot path. Clones (`.check`, `z.extend`) keep the constructor.
 */
const ZodMiniObjectJIT = $constructor<z.ZodMiniObject>('ZodMiniObjectJIT', (inst, def) => {
  // Each trait initializes once: ZodMiniObject's own $ZodObject step is skipped, the JIT parse stays.
  $ZodObjectJIT.init(inst, def);
  z.ZodMiniObject.init(inst, def);
});

/** `z.object(shape)`, compiled (above): every message object is built with it. */
export function object<T extends z.core.$ZodLooseShape>(
  shape: T,
): z.ZodMiniObject<z.core.util.Writeable<T>, z.core.$strip> {
  return new ZodMiniObjectJIT({ type: 'object', shape }) as z.ZodMiniObject<
    z.core.util.Writeable<T>,
    z.core.$strip
  >;
}

/** `z.looseObject(shape)`, compiled: unknown keys pass through. */
function looseObject<T extends z.core.$ZodLooseShape>(
  shape: T,
): z.ZodMiniObject<z.core.util.Writeable<T>, z.core.$loose> {
  return new ZodMiniObjectJIT({ type: 'object', shape, catchall: z.unknown() }) as z.ZodMiniObject<
    z.core.util.Writeable<T>,
    z.core.$loose
  >;
}

const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

export const Key = z.string().check(
  z.refine((k) => utf8Bytes(k) >= KEY_BYTES_MIN && utf8Bytes(k) <= KEY_BYTES_MAX, {
    message: `key must be ${KEY_BYTES_MIN} to ${KEY_BYTES_MAX} bytes of UTF-8`,
  }),
);
export const Value = z.string().check(
  z.refine((v) => utf8Bytes(v) <= VALUE_BYTES_MAX, {
    message: `value must be at most ${VALUE_BYTES_MAX} bytes of UTF-8`,
  }),
);
/**
 * Numbers as classic's `z.number().int().nonnegative()` and the like built them: the same checks in
 * the same order, so the same messages. A schema is immutable, so one serves every such field.
 */
const NonNegativeInt = z.number().check(z.int(), z.nonnegative());
const Epoch = NonNegativeInt;
/** The wire's range only; what a request may claim is checked against the key (lib/limits.ts). */
const Version = NonNegativeInt.check(z.maximum(VERSION_MAX));
const PositiveInt = z.number().check(z.int(), z.positive());
const Int = z.number().check(z.int());
const NonNegative = z.number().check(z.nonnegative());
/** A string of `min` to `max` characters (UTF-16 code units, as classic's `.min().max()`). */
const sized = (min: number, max: number): z.ZodMiniString =>
  z.string().check(z.minLength(min), z.maxLength(max));
const ServerId = sized(1, 128);
const Address = z.string().check(
  z.regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/, {
    message: 'address must be HOST:PORT',
  }),
);
const TxId = sized(1, 128);
const Name = sized(1, KEY_BYTES_MAX);

export const ServerRef = object({ id: ServerId, address: Address });
export type ServerRef = z.infer<typeof ServerRef>;

/**
 * The last epoch whose copy phase every server finished: every key is on at least its replicas
 * for these servers. Servers plan the next rebalance against it, so they all agree on it.
 */
export const Placement = object({ epoch: Epoch, servers: z.array(ServerRef) });
export type Placement = z.infer<typeof Placement>;

/** The view leader's answer to query_servers; also carried by heartbeat acknowledgments. */
export const View = object({
  epoch: Epoch,
  servers: z.array(ServerRef),
  rebalancing: z.boolean(),
  placement: Placement,
});
export type View = z.infer<typeof View>;

const Empty = object({});
const Ok = object({});

// ---- view leader ------------------------------------------------------------------------------

/**
 * How far a server's latest copy phase has got: `copiesDone` of `copiesTotal` (key, target) pairs
 * acknowledged by their targets, `elapsedMs` after the plan was made (the server's own clock).
 * Counts only: never a key (the contract's "The view leader stores no key-specific information").
 */
export const CopyStats = object({
  epoch: Epoch,
  copiesDone: NonNegativeInt,
  copiesTotal: NonNegativeInt,
  elapsedMs: NonNegativeInt,
});
export type CopyStats = z.infer<typeof CopyStats>;
/**
 * What a server tells the view leader about itself with each heartbeat and rebalancing report, for
 * the operator's view (`status`, the page). The view leader keeps the latest in memory only.
 */
export const ServerStats = object({
  /** Keys held (tombstones not counted). */
  keys: NonNegativeInt,
  heartbeatIntervalMs: PositiveInt,
  /** The latest copy phase's progress; absent before the first. */
  copy: z.optional(CopyStats),
});
export type ServerStats = z.infer<typeof ServerStats>;

export const HeartbeatRequest = object({
  serverId: ServerId,
  address: Address,
  /** The highest epoch the server has installed; absent before its first view. */
  epoch: z.optional(Epoch.check(z.maximum(EPOCH_REPORTED_MAX))),
  /** For the operator's view; optional (a server that sends none shows as unknown). */
  stats: z.optional(ServerStats),
});
export const HeartbeatResponse = object({
  epoch: Epoch,
  view: View,
  /**
   * The view leader's failure timeout: it expels no server sooner than this after receiving the
   * server's heartbeat, so a server may serve its view until then (its read lease).
   */
  leaseMs: PositiveInt,
});
/** `copied`: this server's pushes for the epoch are acknowledged; `done`: its cleanup too. */
export const RebalancePhase = z.enum(['copied', 'done']);
export type RebalancePhase = z.infer<typeof RebalancePhase>;
export const RebalanceDoneRequest = object({
  serverId: ServerId,
  epoch: Epoch,
  phase: RebalancePhase,
  /** As in a heartbeat: the keys held after the cleanup, the copy phase's final counts. */
  stats: z.optional(ServerStats),
});
export const LockRequest = object({ lock: Name, requester: Name });
export const LockGetResponse = object({ granted: z.boolean() });
export const DeadlocksResponse = object({ cycles: z.array(z.array(z.string())) });

// ---- server: local commands -------------------------------------------------------------------

export const PrintRequest = object({ text: z.string().check(z.maxLength(VALUE_BYTES_MAX)) });
export const SetRequest = object({ key: Key, value: Value });
export const GetRequest = object({ key: Key });
export const ValueResponse = object({ value: z.string(), version: Version });
export const KeysResponse = object({ keys: z.array(z.string()) });
export const StatusResponse = object({
  serverId: ServerId,
  address: Address,
  epoch: Int,
  rebalancing: z.boolean(),
  keyCount: NonNegativeInt,
  /** Prepared transactions not yet decided here. */
  pendingTransactions: NonNegativeInt,
  /** The latest copy phase's progress, as reported to the view leader. */
  copy: z.optional(CopyStats),
});

// ---- server: two-phase commit (the client coordinates) -----------------------------------------

/**
 * A write carries a `value`, or `deleted: true` for a delete, which stores a tombstone
 * (docs/design.md, "Delete and tombstones"): exactly one of the two. A request without
 * `deleted` is a set, as before deletes existed.
 */
const Deleted = z.literal(true);
const oneWrite = (w: { value?: string; deleted?: true }): boolean =>
  (w.value === undefined) !== (w.deleted === undefined);
const ONE_WRITE = { message: 'a write carries exactly one of "value" and "deleted": true' };

export const PrepareRequest = object({
  txid: TxId,
  key: Key,
  /** The value a set writes; absent for a delete. */
  value: z.optional(Value),
  /** A delete: the commit writes a tombstone. */
  deleted: z.optional(Deleted),
  epoch: Epoch,
  /** The ID the coordinator's view has for this address: a restarted process must vote no. */
  serverId: ServerId,
  /** The key's replicas in order, primary first: the acceptors of the transaction's outcome. */
  replicas: z.array(ServerRef).check(z.minLength(1)),
}).check(z.refine(oneWrite, ONE_WRITE));
export type PrepareRequest = z.infer<typeof PrepareRequest>;
export const PrepareResponse = object({ vote: z.literal('yes'), version: Version });
/**
 * Termination is a single-decree Paxos per transaction among its replicas (docs/design.md, "Two-
 * phase commit"). A ballot is ordered by epoch, then round, then slot: slot 0 is the coordinator
 * (round 0 only, no first phase), slot i + 1 is the transaction's replica i recovering it.
 */
export const Ballot = object({
  epoch: Epoch,
  round: NonNegativeInt.check(z.maximum(BALLOT_ROUND_MAX)),
  slot: NonNegativeInt.check(z.maximum(REPLICATION_COUNT)),
});
export type Ballot = z.infer<typeof Ballot>;
/** The value a transaction's replicas agree on. */
export const TxOutcome = z.discriminatedUnion('state', [
  object({ state: z.literal('committed'), version: Version }),
  object({ state: z.literal('aborted') }),
]);
export type TxOutcome = z.infer<typeof TxOutcome>;
export const Accepted = object({ ballot: Ballot, outcome: TxOutcome });
export type Accepted = z.infer<typeof Accepted>;

/** Phase 2: accept `outcome` at `ballot`; `serverId` is the asked server's expected ID. */
export const AcceptRequest = object({
  txid: TxId,
  key: Key,
  serverId: ServerId,
  ballot: Ballot,
  outcome: TxOutcome,
});
/** The decision, once chosen: apply the prepared value at `version`. */
export const CommitRequest = object({ txid: TxId, key: Key, version: Version });
/**
 * The decision abort. Without a ballot it is the coordinator's, which never proposed a commit;
 * with one, abort was chosen at that ballot.
 */
export const AbortRequest = object({ txid: TxId, key: Key, ballot: z.optional(Ballot) });
/**
 * Phase 1 of a recovery ballot (a termination query); `serverId` is the asked server's expected
 * ID (a restarted process has no memory of the transaction and must not answer for its previous
 * life).
 */
export const DecisionRequest = object({
  txid: TxId,
  key: Key,
  serverId: ServerId,
  ballot: Ballot,
});
export const DecisionResponse = z.discriminatedUnion('state', [
  /** Decided here (or never prepared here, hence aborted and fenced). */
  object({ state: z.literal('committed'), version: Version }),
  object({ state: z.literal('aborted') }),
  /** Promised the ballot: nothing lower is accepted here any more. */
  object({ state: z.literal('promised'), accepted: z.optional(Accepted) }),
  /** A higher ballot was promised here: the asker tries again above it. */
  object({ state: z.literal('superseded'), promised: Ballot }),
]);
export type DecisionResponse = z.infer<typeof DecisionResponse>;
export const ReadRequest = object({ key: Key, epoch: Epoch, serverId: ServerId });

// ---- server: rebalancing ------------------------------------------------------------------------

/** A copy of a key: a value, or a tombstone (`deleted: true`, no value), at its version. */
export const Entry = object({
  key: Key,
  value: z.optional(Value),
  deleted: z.optional(Deleted),
  version: Version,
}).check(z.refine(oneWrite, ONE_WRITE));
export type Entry = z.infer<typeof Entry>;
export const TransferRequest = object({
  epoch: Epoch,
  sourceId: ServerId,
  entries: z.array(Entry),
});
export type TransferRequest = z.infer<typeof TransferRequest>;
export const TransferResponse = object({ stored: NonNegativeInt });
export const OfferRequest = object({
  epoch: Epoch,
  entries: z.array(object({ key: Key, version: Version })),
});
export const OfferResponse = object({ missing: z.array(z.string()) });

// ---- transport: several requests in one round trip (every process serves it) ---------------------

export const BatchRequest = object({
  requests: z
    .array(object({ path: z.string().check(z.maxLength(64)), body: z.unknown() }))
    .check(z.minLength(1), z.maxLength(BATCH_REQUESTS_MAX)),
});
export const BatchResponse = object({
  responses: z.array(object({ status: Int, body: z.unknown() })),
});

// ---- the endpoint table -------------------------------------------------------------------------

export interface Endpoint<Req extends z.ZodMiniType, Res extends z.ZodMiniType> {
  readonly path: string;
  readonly request: Req;
  readonly response: Res;
  /**
   * Changes nothing: its answer may be dropped and the request sent again (a /batch answer that
   * is full drops the answers of read-only entries only).
   */
  readonly readOnly: boolean;
}
const endpoint = <Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
  path: string,
  request: Req,
  response: Res,
): Endpoint<Req, Res> => ({ path, request, response, readOnly: false });
const readEndpoint = <Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
  path: string,
  request: Req,
  response: Res,
): Endpoint<Req, Res> => ({ path, request, response, readOnly: true });

// ---- the replicated view leader's members among themselves, and their status ------------------

/**
 * Raft messages from one member to another (viewleader/raft/messages.ts has their shapes). The
 * edge checks only the envelope and each message's kind, term and sender; the core checks the
 * rest as it steps them, from members named in `--peers` only.
 */
export const RaftRequest = object({
  from: sized(1, 300),
  messages: z
    .array(
      looseObject({
        kind: z.string().check(z.maxLength(32)),
        term: NonNegativeInt,
        from: sized(1, 300),
      }),
    )
    .check(z.maxLength(4096)),
});
export type RaftRequest = z.infer<typeof RaftRequest>;

export const MemberRole = z.enum(['leader', 'follower', 'candidate', 'unreachable']);
export type MemberRole = z.infer<typeof MemberRole>;
/** One member of the view leader as it reports itself (`viewleader_status`). */
export const MemberStatus = object({
  address: z.string(),
  role: MemberRole,
  term: NonNegativeInt,
  leader: z.nullable(z.string()),
  commitIndex: NonNegativeInt,
  appliedIndex: NonNegativeInt,
  lastIndex: NonNegativeInt,
  snapshotIndex: NonNegativeInt,
  /** The view's epoch in the applied state. */
  epoch: NonNegativeInt,
  /** Replicated (`--peers`), or alone. */
  replicated: z.boolean(),
});
export type MemberStatus = z.infer<typeof MemberStatus>;

/** A member with no Raft log to report: a view leader alone, or one that did not answer. */
export function memberWithoutLog(
  address: string,
  role: 'leader' | 'unreachable',
  epoch: number,
): MemberStatus {
  return {
    address,
    role,
    term: 0,
    leader: null,
    commitIndex: 0,
    appliedIndex: 0,
    lastIndex: 0,
    snapshotIndex: 0,
    epoch,
    replicated: false,
  };
}

// ---- the operator's view (`dht-client status`, the view leader's page) -------------------------

/** Where a server is in the current epoch's rebalancing, as the view leader knows it. */
export const RebalanceStage = z.enum(['copying', 'copied', 'done']);
export type RebalanceStage = z.infer<typeof RebalanceStage>;
export const ServerStatus = object({
  id: ServerId,
  address: Address,
  /** Keys held at its last report; null before its first report. */
  keys: z.nullable(NonNegativeInt),
  /** The share of the ring whose keys it replicates, in percent (all servers sum to R x 100). */
  share: NonNegative,
  /** The share of the ring it is the primary of, in percent (all servers sum to 100). */
  primaryShare: NonNegative,
  /** Seconds since the view leader last heard its heartbeat. */
  lastHeartbeatS: NonNegative,
  heartbeatIntervalS: z.nullable(z.number().check(z.positive())),
  /** Silent for more than two of its heartbeat intervals: maybe dead, not yet expelled. */
  late: z.boolean(),
  stage: RebalanceStage,
  /** Its copy phase of the current epoch; null before it reported one. */
  copiesDone: z.nullable(NonNegativeInt),
  copiesTotal: z.nullable(NonNegativeInt),
  /** Copies per second over its copy phase so far; null when not copying or unknown. */
  copyRatePerS: z.nullable(NonNegative),
});
export type ServerStatus = z.infer<typeof ServerStatus>;
/** The rebalancing of the current epoch, all servers together. */
export const RebalanceProgressStatus = object({
  epoch: Epoch,
  copiesDone: NonNegativeInt,
  /** The copies planned by the servers that reported a plan (`serversReporting` of them). */
  copiesTotal: NonNegativeInt,
  /** 0 to 100: every server's stage and counts together; 100 once every server has copied. */
  percent: z.number().check(z.minimum(0), z.maximum(100)),
  serversReporting: NonNegativeInt,
  /** Sum of the copy rates of the servers still copying; null when none is. */
  ratePerS: z.nullable(NonNegative),
});
export const HistoryEntry = object({
  epoch: Epoch,
  /** Wall-clock time (ms since 1970) at which this view leader installed the view. */
  atMs: Int,
  joined: z.array(ServerRef),
  left: z.array(z.extend(ServerRef, { cause: z.enum(['expired', 'evicted']) })),
});
export type HistoryEntry = z.infer<typeof HistoryEntry>;
export const ClusterStatus = object({
  epoch: Epoch,
  rebalancing: z.boolean(),
  placementEpoch: Epoch,
  failureTimeoutS: z.number().check(z.positive()),
  servers: z.array(ServerStatus),
  progress: RebalanceProgressStatus,
  /** The view changes this view leader installed or saw since it started leading, oldest first. */
  history: z.array(HistoryEntry),
  /** Wall-clock time (ms since 1970) since which this view leader leads (or runs). */
  leadingSinceMs: Int,
});
export type ClusterStatus = z.infer<typeof ClusterStatus>;

export const ViewLeaderApi = {
  heartbeat: endpoint('/heartbeat', HeartbeatRequest, HeartbeatResponse),
  queryServers: readEndpoint('/query_servers', Empty, View),
  rebalanceDone: endpoint('/rebalance_done', RebalanceDoneRequest, Ok),
  lockGet: endpoint('/lock_get', LockRequest, LockGetResponse),
  lockRelease: endpoint('/lock_release', LockRequest, Ok),
  deadlocks: readEndpoint('/deadlocks', Empty, DeadlocksResponse),
  viewleaderStatus: readEndpoint('/viewleader_status', Empty, MemberStatus),
  clusterStatus: readEndpoint('/cluster_status', Empty, ClusterStatus),
  raft: endpoint('/raft', RaftRequest, Ok),
} as const;

export const ServerApi = {
  print: endpoint('/print', PrintRequest, Ok),
  set: endpoint('/set', SetRequest, Ok),
  get: readEndpoint('/get', GetRequest, ValueResponse),
  queryAllKeys: readEndpoint('/query_all_keys', Empty, KeysResponse),
  status: readEndpoint('/status', Empty, StatusResponse),
  prepare: endpoint('/prepare', PrepareRequest, PrepareResponse),
  accept: endpoint('/accept', AcceptRequest, Ok),
  commit: endpoint('/commit', CommitRequest, Ok),
  abort: endpoint('/abort', AbortRequest, Ok),
  decision: endpoint('/decision', DecisionRequest, DecisionResponse),
  read: readEndpoint('/read', ReadRequest, ValueResponse),
  transfer: endpoint('/transfer', TransferRequest, TransferResponse),
  offer: endpoint('/offer', OfferRequest, OfferResponse),
} as const;

export const TransportApi = {
  batch: endpoint('/batch', BatchRequest, BatchResponse),
} as const;

export type RequestOf<E> = E extends Endpoint<infer Req, z.ZodMiniType> ? z.infer<Req> : never;
export type ResponseOf<E> = E extends Endpoint<z.ZodMiniType, infer Res> ? z.infer<Res> : never;

// ---- the operator's view: GET /health (docs/protocol.md) --------------------------------------

/** Why a process answers 503 to `GET /health`; stable codes that docs/operations.md names. */
export const HealthProblemReason = z.enum([
  'starting', // the process listens but has not read its data yet
  'shutting_down', // SIGINT/SIGTERM received
  'storage_failed', // a write to its data directory failed: it serves reads, refuses changes
  'not_in_view', // a server the view leader has not (or no longer) taken into its view
  'no_leader', // a replicated view leader member that knows of no leader (no quorum reachable)
]);
export type HealthProblemReason = z.infer<typeof HealthProblemReason>;

export const HealthProblem = object({ reason: HealthProblemReason, message: z.string() });
export type HealthProblem = z.infer<typeof HealthProblem>;

const HealthBase = {
  /** `ok` (HTTP 200) when `problems` is empty; `unavailable` (503) otherwise. */
  status: z.enum(['ok', 'unavailable']),
  address: z.string(),
  problems: z.array(HealthProblem),
};

/** A storage server's health: no key and no value, only counts and the view. */
export const ServerHealth = object({
  ...HealthBase,
  process: z.literal('server'),
  serverId: z.string(),
  /** The epoch of the view this server installed; null before its first view. */
  epoch: z.nullable(NonNegativeInt),
  inView: z.boolean(),
  rebalancing: z.boolean(),
  keys: NonNegativeInt,
  pendingTransactions: NonNegativeInt,
});
export type ServerHealth = z.infer<typeof ServerHealth>;

/** A view leader's health: alone, or one member of a replicated view leader. */
export const ViewLeaderHealth = object({
  ...HealthBase,
  process: z.literal('viewleader'),
  replicated: z.boolean(),
  /** `alone` for a view leader without --peers. */
  role: z.enum(['alone', 'leader', 'follower', 'candidate']),
  /** The leading member's address as far as this one knows (a member); null: none known. */
  leader: z.nullable(z.string()),
  term: NonNegativeInt,
  /** The epoch in the state this process serves or has applied; null while starting. */
  epoch: z.nullable(NonNegativeInt),
});
export type ViewLeaderHealth = z.infer<typeof ViewLeaderHealth>;

export const Health = z.discriminatedUnion('process', [ServerHealth, ViewLeaderHealth]);
export type Health = z.infer<typeof Health>;

/** The health status that goes with `problems`. */
export function healthStatus(problems: readonly HealthProblem[]): 'ok' | 'unavailable' {
  return problems.length === 0 ? 'ok' : 'unavailable';
}
