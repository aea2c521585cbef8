// The one message vocabulary: every request and response that crosses a process boundary, as
// zod schemas (validated once, at the edge) and the TypeScript types inferred from them.
// docs/protocol.md documents each endpoint of this table.

import { z } from 'zod';
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

const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

export const Key = z
  .string()
  .refine((k) => utf8Bytes(k) >= KEY_BYTES_MIN && utf8Bytes(k) <= KEY_BYTES_MAX, {
    message: `key must be ${KEY_BYTES_MIN} to ${KEY_BYTES_MAX} bytes of UTF-8`,
  });
export const Value = z.string().refine((v) => utf8Bytes(v) <= VALUE_BYTES_MAX, {
  message: `value must be at most ${VALUE_BYTES_MAX} bytes of UTF-8`,
});
const Epoch = z.number().int().nonnegative();
/** The wire's range only; what a request may claim is checked against the key (lib/limits.ts). */
const Version = z.number().int().nonnegative().max(VERSION_MAX);
const ServerId = z.string().min(1).max(128);
const Address = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/, {
  message: 'address must be HOST:PORT',
});
const TxId = z.string().min(1).max(128);
const Name = z.string().min(1).max(KEY_BYTES_MAX);

export const ServerRef = z.object({ id: ServerId, address: Address });
export type ServerRef = z.infer<typeof ServerRef>;

/**
 * The last epoch whose copy phase every server finished: every key is on at least its replicas
 * for these servers. Servers plan the next rebalance against it, so they all agree on it.
 */
export const Placement = z.object({ epoch: Epoch, servers: z.array(ServerRef) });
export type Placement = z.infer<typeof Placement>;

/** The view leader's answer to query_servers; also carried by heartbeat acknowledgments. */
export const View = z.object({
  epoch: Epoch,
  servers: z.array(ServerRef),
  rebalancing: z.boolean(),
  placement: Placement,
});
export type View = z.infer<typeof View>;

const Empty = z.object({});
const Ok = z.object({});

// ---- view leader ------------------------------------------------------------------------------

/**
 * How far a server's latest copy phase has got: `copiesDone` of `copiesTotal` (key, target) pairs
 * acknowledged by their targets, `elapsedMs` after the plan was made (the server's own clock).
 * Counts only: never a key (the contract's "The view leader stores no key-specific information").
 */
export const CopyStats = z.object({
  epoch: Epoch,
  copiesDone: z.number().int().nonnegative(),
  copiesTotal: z.number().int().nonnegative(),
  elapsedMs: z.number().int().nonnegative(),
});
export type CopyStats = z.infer<typeof CopyStats>;
/**
 * What a server tells the view leader about itself with each heartbeat and rebalancing report, for
 * the operator's view (`status`, the page). The view leader keeps the latest in memory only.
 */
export const ServerStats = z.object({
  /** Keys held (tombstones not counted). */
  keys: z.number().int().nonnegative(),
  heartbeatIntervalMs: z.number().int().positive(),
  /** The latest copy phase's progress; absent before the first. */
  copy: CopyStats.optional(),
});
export type ServerStats = z.infer<typeof ServerStats>;

export const HeartbeatRequest = z.object({
  serverId: ServerId,
  address: Address,
  /** The highest epoch the server has installed; absent before its first view. */
  epoch: Epoch.max(EPOCH_REPORTED_MAX).optional(),
  /** For the operator's view; optional (a server that sends none shows as unknown). */
  stats: ServerStats.optional(),
});
export const HeartbeatResponse = z.object({
  epoch: Epoch,
  view: View,
  /**
   * The view leader's failure timeout: it expels no server sooner than this after receiving the
   * server's heartbeat, so a server may serve its view until then (its read lease).
   */
  leaseMs: z.number().int().positive(),
});
/** `copied`: this server's pushes for the epoch are acknowledged; `done`: its cleanup too. */
export const RebalancePhase = z.enum(['copied', 'done']);
export type RebalancePhase = z.infer<typeof RebalancePhase>;
export const RebalanceDoneRequest = z.object({
  serverId: ServerId,
  epoch: Epoch,
  phase: RebalancePhase,
  /** As in a heartbeat: the keys held after the cleanup, the copy phase's final counts. */
  stats: ServerStats.optional(),
});
export const LockRequest = z.object({ lock: Name, requester: Name });
export const LockGetResponse = z.object({ granted: z.boolean() });
export const DeadlocksResponse = z.object({ cycles: z.array(z.array(z.string())) });

// ---- server: local commands -------------------------------------------------------------------

export const PrintRequest = z.object({ text: z.string().max(VALUE_BYTES_MAX) });
export const SetRequest = z.object({ key: Key, value: Value });
export const GetRequest = z.object({ key: Key });
export const ValueResponse = z.object({ value: z.string(), version: Version });
export const KeysResponse = z.object({ keys: z.array(z.string()) });
export const StatusResponse = z.object({
  serverId: ServerId,
  address: Address,
  epoch: z.number().int(),
  rebalancing: z.boolean(),
  keyCount: z.number().int().nonnegative(),
  /** Prepared transactions not yet decided here. */
  pendingTransactions: z.number().int().nonnegative(),
  /** The latest copy phase's progress, as reported to the view leader. */
  copy: CopyStats.optional(),
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

export const PrepareRequest = z
  .object({
    txid: TxId,
    key: Key,
    /** The value a set writes; absent for a delete. */
    value: Value.optional(),
    /** A delete: the commit writes a tombstone. */
    deleted: Deleted.optional(),
    epoch: Epoch,
    /** The ID the coordinator's view has for this address: a restarted process must vote no. */
    serverId: ServerId,
    /** The key's replicas in order, primary first: the acceptors of the transaction's outcome. */
    replicas: z.array(ServerRef).min(1),
  })
  .refine(oneWrite, ONE_WRITE);
export type PrepareRequest = z.infer<typeof PrepareRequest>;
export const PrepareResponse = z.object({ vote: z.literal('yes'), version: Version });
/**
 * Termination is a single-decree Paxos per transaction among its replicas (docs/design.md, "Two-
 * phase commit"). A ballot is ordered by epoch, then round, then slot: slot 0 is the coordinator
 * (round 0 only, no first phase), slot i + 1 is the transaction's replica i recovering it.
 */
export const Ballot = z.object({
  epoch: Epoch,
  round: z.number().int().nonnegative().max(BALLOT_ROUND_MAX),
  slot: z.number().int().nonnegative().max(REPLICATION_COUNT),
});
export type Ballot = z.infer<typeof Ballot>;
/** The value a transaction's replicas agree on. */
export const TxOutcome = z.discriminatedUnion('state', [
  z.object({ state: z.literal('committed'), version: Version }),
  z.object({ state: z.literal('aborted') }),
]);
export type TxOutcome = z.infer<typeof TxOutcome>;
export const Accepted = z.object({ ballot: Ballot, outcome: TxOutcome });
export type Accepted = z.infer<typeof Accepted>;

/** Phase 2: accept `outcome` at `ballot`; `serverId` is the asked server's expected ID. */
export const AcceptRequest = z.object({
  txid: TxId,
  key: Key,
  serverId: ServerId,
  ballot: Ballot,
  outcome: TxOutcome,
});
/** The decision, once chosen: apply the prepared value at `version`. */
export const CommitRequest = z.object({ txid: TxId, key: Key, version: Version });
/**
 * The decision abort. Without a ballot it is the coordinator's, which never proposed a commit;
 * with one, abort was chosen at that ballot.
 */
export const AbortRequest = z.object({ txid: TxId, key: Key, ballot: Ballot.optional() });
/**
 * Phase 1 of a recovery ballot (a termination query); `serverId` is the asked server's expected
 * ID (a restarted process has no memory of the transaction and must not answer for its previous
 * life).
 */
export const DecisionRequest = z.object({
  txid: TxId,
  key: Key,
  serverId: ServerId,
  ballot: Ballot,
});
export const DecisionResponse = z.discriminatedUnion('state', [
  /** Decided here (or never prepared here, hence aborted and fenced). */
  z.object({ state: z.literal('committed'), version: Version }),
  z.object({ state: z.literal('aborted') }),
  /** Promised the ballot: nothing lower is accepted here any more. */
  z.object({ state: z.literal('promised'), accepted: Accepted.optional() }),
  /** A higher ballot was promised here: the asker tries again above it. */
  z.object({ state: z.literal('superseded'), promised: Ballot }),
]);
export type DecisionResponse = z.infer<typeof DecisionResponse>;
export const ReadRequest = z.object({ key: Key, epoch: Epoch, serverId: ServerId });

// ---- server: rebalancing ------------------------------------------------------------------------

/** A copy of a key: a value, or a tombstone (`deleted: true`, no value), at its version. */
export const Entry = z
  .object({ key: Key, value: Value.optional(), deleted: Deleted.optional(), version: Version })
  .refine(oneWrite, ONE_WRITE);
export type Entry = z.infer<typeof Entry>;
export const TransferRequest = z.object({
  epoch: Epoch,
  sourceId: ServerId,
  entries: z.array(Entry),
});
export type TransferRequest = z.infer<typeof TransferRequest>;
export const TransferResponse = z.object({ stored: z.number().int().nonnegative() });
export const OfferRequest = z.object({
  epoch: Epoch,
  entries: z.array(z.object({ key: Key, version: Version })),
});
export const OfferResponse = z.object({ missing: z.array(z.string()) });

// ---- transport: several requests in one round trip (every process serves it) ---------------------

export const BatchRequest = z.object({
  requests: z
    .array(z.object({ path: z.string().max(64), body: z.unknown() }))
    .min(1)
    .max(BATCH_REQUESTS_MAX),
});
export const BatchResponse = z.object({
  responses: z.array(z.object({ status: z.number().int(), body: z.unknown() })),
});

// ---- the endpoint table -------------------------------------------------------------------------

export interface Endpoint<Req extends z.ZodType, Res extends z.ZodType> {
  readonly path: string;
  readonly request: Req;
  readonly response: Res;
  /**
   * Changes nothing: its answer may be dropped and the request sent again (a /batch answer that
   * is full drops the answers of read-only entries only).
   */
  readonly readOnly: boolean;
}
const endpoint = <Req extends z.ZodType, Res extends z.ZodType>(
  path: string,
  request: Req,
  response: Res,
): Endpoint<Req, Res> => ({ path, request, response, readOnly: false });
const readEndpoint = <Req extends z.ZodType, Res extends z.ZodType>(
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
export const RaftRequest = z.object({
  from: z.string().min(1).max(300),
  messages: z
    .array(
      z.looseObject({
        kind: z.string().max(32),
        term: z.number().int().nonnegative(),
        from: z.string().min(1).max(300),
      }),
    )
    .max(4096),
});
export type RaftRequest = z.infer<typeof RaftRequest>;

export const MemberRole = z.enum(['leader', 'follower', 'candidate', 'unreachable']);
export type MemberRole = z.infer<typeof MemberRole>;
/** One member of the view leader as it reports itself (`viewleader_status`). */
export const MemberStatus = z.object({
  address: z.string(),
  role: MemberRole,
  term: z.number().int().nonnegative(),
  leader: z.string().nullable(),
  commitIndex: z.number().int().nonnegative(),
  appliedIndex: z.number().int().nonnegative(),
  lastIndex: z.number().int().nonnegative(),
  snapshotIndex: z.number().int().nonnegative(),
  /** The view's epoch in the applied state. */
  epoch: z.number().int().nonnegative(),
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
export const ServerStatus = z.object({
  id: ServerId,
  address: Address,
  /** Keys held at its last report; null before its first report. */
  keys: z.number().int().nonnegative().nullable(),
  /** The share of the ring whose keys it replicates, in percent (all servers sum to R x 100). */
  share: z.number().nonnegative(),
  /** The share of the ring it is the primary of, in percent (all servers sum to 100). */
  primaryShare: z.number().nonnegative(),
  /** Seconds since the view leader last heard its heartbeat. */
  lastHeartbeatS: z.number().nonnegative(),
  heartbeatIntervalS: z.number().positive().nullable(),
  /** Silent for more than two of its heartbeat intervals: maybe dead, not yet expelled. */
  late: z.boolean(),
  stage: RebalanceStage,
  /** Its copy phase of the current epoch; null before it reported one. */
  copiesDone: z.number().int().nonnegative().nullable(),
  copiesTotal: z.number().int().nonnegative().nullable(),
  /** Copies per second over its copy phase so far; null when not copying or unknown. */
  copyRatePerS: z.number().nonnegative().nullable(),
});
export type ServerStatus = z.infer<typeof ServerStatus>;
/** The rebalancing of the current epoch, all servers together. */
export const RebalanceProgressStatus = z.object({
  epoch: Epoch,
  copiesDone: z.number().int().nonnegative(),
  /** The copies planned by the servers that reported a plan (`serversReporting` of them). */
  copiesTotal: z.number().int().nonnegative(),
  /** 0 to 100: every server's stage and counts together; 100 once every server has copied. */
  percent: z.number().min(0).max(100),
  serversReporting: z.number().int().nonnegative(),
  /** Sum of the copy rates of the servers still copying; null when none is. */
  ratePerS: z.number().nonnegative().nullable(),
});
export const HistoryEntry = z.object({
  epoch: Epoch,
  /** Wall-clock time (ms since 1970) at which this view leader installed the view. */
  atMs: z.number().int(),
  joined: z.array(ServerRef),
  left: z.array(ServerRef.extend({ cause: z.enum(['expired', 'evicted']) })),
});
export type HistoryEntry = z.infer<typeof HistoryEntry>;
export const ClusterStatus = z.object({
  epoch: Epoch,
  rebalancing: z.boolean(),
  placementEpoch: Epoch,
  failureTimeoutS: z.number().positive(),
  servers: z.array(ServerStatus),
  progress: RebalanceProgressStatus,
  /** The view changes this view leader installed or saw since it started leading, oldest first. */
  history: z.array(HistoryEntry),
  /** Wall-clock time (ms since 1970) since which this view leader leads (or runs). */
  leadingSinceMs: z.number().int(),
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

export type RequestOf<E> = E extends Endpoint<infer Req, z.ZodType> ? z.infer<Req> : never;
export type ResponseOf<E> = E extends Endpoint<z.ZodType, infer Res> ? z.infer<Res> : never;

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

export const HealthProblem = z.object({ reason: HealthProblemReason, message: z.string() });
export type HealthProblem = z.infer<typeof HealthProblem>;

const HealthBase = {
  /** `ok` (HTTP 200) when `problems` is empty; `unavailable` (503) otherwise. */
  status: z.enum(['ok', 'unavailable']),
  address: z.string(),
  problems: z.array(HealthProblem),
};

/** A storage server's health: no key and no value, only counts and the view. */
export const ServerHealth = z.object({
  ...HealthBase,
  process: z.literal('server'),
  serverId: z.string(),
  /** The epoch of the view this server installed; null before its first view. */
  epoch: z.number().int().nonnegative().nullable(),
  inView: z.boolean(),
  rebalancing: z.boolean(),
  keys: z.number().int().nonnegative(),
  pendingTransactions: z.number().int().nonnegative(),
});
export type ServerHealth = z.infer<typeof ServerHealth>;

/** A view leader's health: alone, or one member of a replicated view leader. */
export const ViewLeaderHealth = z.object({
  ...HealthBase,
  process: z.literal('viewleader'),
  replicated: z.boolean(),
  /** `alone` for a view leader without --peers. */
  role: z.enum(['alone', 'leader', 'follower', 'candidate']),
  /** The leading member's address as far as this one knows (a member); null: none known. */
  leader: z.string().nullable(),
  term: z.number().int().nonnegative(),
  /** The epoch in the state this process serves or has applied; null while starting. */
  epoch: z.number().int().nonnegative().nullable(),
});
export type ViewLeaderHealth = z.infer<typeof ViewLeaderHealth>;

export const Health = z.discriminatedUnion('process', [ServerHealth, ViewLeaderHealth]);
export type Health = z.infer<typeof Health>;

/** The health status that goes with `problems`. */
export function healthStatus(problems: readonly HealthProblem[]): 'ok' | 'unavailable' {
  return problems.length === 0 ? 'ok' : 'unavailable';
}
