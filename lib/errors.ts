// Operating errors are values with a kind. This file is the one place where a kind becomes an
// HTTP status (server side; the /kv API has its own column, at the end), a JSON status and an exit
// code (client side), as the contract says.

import { KV_RETRY_AFTER_S } from './limits';

export type ErrorKind =
  | 'not_found' // key absent
  | 'aborted' // setr aborted: no replica applied it
  | 'rejected' // the request was refused for good (lock not held, expired server ID)
  | 'invalid' // malformed request or out-of-bounds key/value
  | 'retry' // refused for now, nothing done: rebalancing, view changing, key busy reading
  | 'unknown' // outcome unknown: a setr that may have committed somewhere
  | 'unavailable' // no view leader or no server reachable, nothing done
  | 'unauthorized' // the request did not prove it knows the cluster's secret; nothing done
  | 'usage'; // bad command line

export interface KindInfo {
  readonly exitCode: number;
  readonly jsonStatus: string;
  readonly httpStatus: number;
}

export const ERROR_KINDS: Readonly<Record<ErrorKind, KindInfo>> = {
  not_found: { exitCode: 1, jsonStatus: 'not_found', httpStatus: 404 },
  aborted: { exitCode: 1, jsonStatus: 'aborted', httpStatus: 409 },
  rejected: { exitCode: 1, jsonStatus: 'error', httpStatus: 409 },
  invalid: { exitCode: 1, jsonStatus: 'error', httpStatus: 400 },
  retry: { exitCode: 75, jsonStatus: 'retry', httpStatus: 503 },
  unknown: { exitCode: 3, jsonStatus: 'unknown', httpStatus: 500 },
  unavailable: { exitCode: 4, jsonStatus: 'unavailable', httpStatus: 503 },
  // Definitely not done, as a rejection is (exit 1); a misconfigured secret is not "retry later".
  unauthorized: { exitCode: 1, jsonStatus: 'error', httpStatus: 401 },
  usage: { exitCode: 2, jsonStatus: 'error', httpStatus: 400 },
};

/** Why a request was refused; stable codes that tests and docs/protocol.md name. */
export type ErrorReason =
  | 'epoch_mismatch'
  | 'server_id_mismatch'
  | 'key_busy'
  | 'rebalancing'
  | 'not_in_view'
  | 'transaction_unknown'
  | 'no_servers'
  | 'bad_request'
  | 'lock_not_held'
  | 'server_expired'
  | 'ballot_superseded'
  | 'lease_expired'
  | 'commit_accepted'
  | 'batch_full'
  | 'newer_copy_held'
  | 'address_in_use'
  | 'version_out_of_reach'
  | 'storage_busy'
  | 'storage_failed'
  | 'stale_view'
  | 'key_deleted'
  | 'not_leader'
  | 'key_too_long'
  | 'value_too_large'
  | 'method_not_allowed'
  | 'unauthenticated'
  | 'wrong_process';

/**
 * The two kinds of dht process that answer requests. An answer for an endpoint the process does
 * not have says which it is, so that a client pointed at the wrong one (`--server` naming the view
 * leader) can say so instead of "no endpoint".
 */
export type DhtProcess = 'server' | 'viewleader';

export const DHT_PROCESS_NAMES: Readonly<Record<DhtProcess, string>> = {
  server: 'a dht server',
  viewleader: 'a dht view leader',
};

export function isDhtProcess(value: unknown): value is DhtProcess {
  return value === 'server' || value === 'viewleader';
}

export class DhtError extends Error {
  override name = 'DhtError';
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly reason?: ErrorReason,
  ) {
    super(message);
  }

  get info(): KindInfo {
    return ERROR_KINDS[this.kind];
  }
}

/**
 * A member of a replicated view leader that does not lead (or leads but does not serve yet):
 * nothing was done; ask `leader` (null: none known, an election may be under way; try another
 * member or again shortly).
 */
export class NotLeaderError extends DhtError {
  override name = 'NotLeaderError';
  constructor(
    readonly leader: string | null,
    message = leader === null
      ? 'this view leader member does not lead, and knows no leader yet; try again'
      : `this view leader member does not lead; ask ${leader}`,
  ) {
    super('retry', message, 'not_leader');
  }
}

export function isErrorKind(value: unknown): value is ErrorKind {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_KINDS, value);
}

/** The wire form of an error answer (any 4xx/5xx body). */
export interface ErrorBody {
  kind: ErrorKind;
  error: string;
  reason?: ErrorReason;
  /** With `not_leader`: the leading member's address, or null when none is known. */
  leader?: string | null;
  /** On an answer for an endpoint this process does not have: what it is. */
  process?: DhtProcess;
}

export function toErrorBody(err: DhtError): ErrorBody {
  const body: ErrorBody =
    err.reason === undefined
      ? { kind: err.kind, error: err.message }
      : { kind: err.kind, error: err.message, reason: err.reason };
  if (err instanceof NotLeaderError) body.leader = err.leader;
  return body;
}

/**
 * The HTTP API for any client (`/kv/KEY`, server/kv-routes.ts) answers with its own statuses, the
 * contract's (Part 2, "The HTTP API for any client"): an outcome unknown is 504 there (a gateway
 * that could not learn what its upstream did), not the RPC's 500 (a bug). The same kinds, so
 * `kind` in the body means what it means everywhere; a few reasons refine the status.
 */
export const KV_HTTP_STATUS: Readonly<Record<ErrorKind, number>> = {
  not_found: 404,
  aborted: 409,
  rejected: 409,
  invalid: 400,
  retry: 503,
  unknown: 504,
  unavailable: 503,
  unauthorized: 401,
  usage: 400,
};

/** Reasons whose /kv status is not their kind's. */
const KV_HTTP_STATUS_BY_REASON: Readonly<Partial<Record<ErrorReason, number>>> = {
  // A key held by another undecided transaction: "busy" is a conflict, as an abort is (a read
  // that waited out its deadline behind one says `retry`/`key_busy`, a write `aborted`/`key_busy`).
  key_busy: 409,
  key_too_long: 414,
  value_too_large: 413,
  method_not_allowed: 405,
};

/** An operating error as `/kv/KEY` answers it. */
export interface KvErrorAnswer {
  readonly status: number;
  /** The `Retry-After` header (seconds), on every 503: nothing was done, ask again then. */
  readonly retryAfterS: number | undefined;
  readonly body: ErrorBody;
}

export function kvErrorAnswer(err: DhtError): KvErrorAnswer {
  const byReason = err.reason === undefined ? undefined : KV_HTTP_STATUS_BY_REASON[err.reason];
  const status = byReason ?? KV_HTTP_STATUS[err.kind];
  return {
    status,
    retryAfterS: status === 503 ? KV_RETRY_AFTER_S : undefined,
    body: toErrorBody(err),
  };
}
