// The RPC shell's client side: one keep-alive agent per process, a deadline on every call, error
// answers turned back into DhtError values, responses validated at the edge.
//
// Requests go out through node:http itself. axios did this until 2026-12-03 and cost about 2.5
// times node:http's CPU per request (its config merging, header normalisation and stream plumbing
// run on every call; 73 KB allocated per request against 16), which bounded every client of the
// cluster, the servers' peer calls and the CLI's start (docs/performance.md, "RPC baseline").
// Nothing it did for us is missing here: our bodies are JSON strings we serialise ourselves (the
// signature covers those exact bytes), every answer is read whatever its status, and there are
// no redirects or proxies in this protocol.

import http from 'node:http';
import type * as z from 'zod/mini';
import {
  DHT_PROCESS_NAMES,
  DhtError,
  isDhtProcess,
  isErrorKind,
  NotLeaderError,
  type ErrorReason,
} from './errors';
import type { Endpoint } from './messages';
import { RPC_TIMEOUT_MS_DEFAULT } from './limits';
import { authHeaders } from './http-auth';

/** Shared by every call of this process: connections are reused, never one per request. */
export const keepAliveAgent = new http.Agent({ keepAlive: true, maxSockets: 512 });

export type Transport = 'refused' | 'timeout' | 'broken';

/**
 * The peer could not be asked or did not answer. `refused` means the request was certainly not
 * processed (the connection was refused, or never made: the host name does not resolve, the
 * address is not available); `timeout` and `broken` mean it may have been (a coordinator must
 * treat a commit that ended so as outcome-unknown). `why` says which, for people.
 */
export class UnreachableError extends DhtError {
  override name = 'UnreachableError';
  constructor(
    readonly address: string,
    readonly transport: Transport,
    detail: string,
    readonly why: string = transport,
  ) {
    super('unavailable', `${address} unreachable (${why}): ${detail}`);
  }
}

export interface CallOptions {
  readonly timeoutMs?: number;
}

export async function call<Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
  address: string,
  endpoint: Endpoint<Req, Res>,
  body: z.infer<Req>,
  options: CallOptions = {},
): Promise<z.infer<Res>> {
  const { status, data } = await post(address, endpoint.path, body, options.timeoutMs);
  return interpretAnswer(address, endpoint, status, data);
}

/**
 * One HTTP POST, answered within `timeoutMs` from the call (connecting, sending and reading the
 * whole answer), or an UnreachableError. The answer's body is its JSON, or its text if it is not
 * JSON (interpretAnswer then says the peer is not a dht process).
 */
export function post(
  address: string,
  path: string,
  body: unknown,
  timeoutMs = RPC_TIMEOUT_MS_DEFAULT,
): Promise<{ status: number; data: unknown }> {
  const payload = JSON.stringify(body) ?? '{}';
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: hostOf(address),
        port: portOf(address),
        path,
        method: 'POST',
        agent: keepAliveAgent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          ...authHeaders('POST', address, path, payload),
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', fail);
        response.on('end', () => {
          clearTimeout(deadline);
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: response.statusCode ?? 0, data: parseJsonOrText(text) });
        });
      },
    );
    function fail(err: unknown): void {
      clearTimeout(deadline);
      reject(toUnreachable(address, err));
    }
    const deadline = setTimeout(() => {
      reject(new UnreachableError(address, 'timeout', `no answer within ${timeoutMs} ms`));
      request.destroy();
    }, timeoutMs);
    request.on('error', fail);
    request.end(payload);
  });
}

function parseJsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** A 2xx answer validated against the endpoint's response schema, or the error it carries. */
export function interpretAnswer<Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
  address: string,
  endpoint: Endpoint<Req, Res>,
  status: number,
  data: unknown,
): z.infer<Res> {
  if (status >= 200 && status < 300) {
    const parsed = endpoint.response.safeParse(data);
    if (!parsed.success) {
      throw new DhtError('unknown', `bad answer from ${address}${endpoint.path}`);
    }
    return parsed.data;
  }
  if (typeof data === 'object' && data !== null && 'kind' in data && isErrorKind(data.kind)) {
    const message = 'error' in data && typeof data.error === 'string' ? data.error : 'error';
    const reason =
      'reason' in data && typeof data.reason === 'string'
        ? (data.reason as ErrorReason)
        : undefined;
    if (status === 404 && 'process' in data && isDhtProcess(data.process)) {
      throw wrongProcess(address, data.process, endpoint.path);
    }
    if (reason === 'not_leader') {
      const leader = 'leader' in data && typeof data.leader === 'string' ? data.leader : null;
      throw new NotLeaderError(leader, message);
    }
    throw new DhtError(data.kind, message, reason);
  }
  throw new DhtError(
    'unknown',
    `HTTP ${status} from ${address}${endpoint.path}, not a dht answer: is ${address} a dht process?`,
  );
}

/**
 * A dht process without the endpoint asked for is the other kind: every endpoint a client calls
 * is a server's or a view leader's. Nothing was done there, so `unavailable`, as for an address
 * where nothing listens.
 */
function wrongProcess(address: string, found: 'server' | 'viewleader', path: string): DhtError {
  const wanted = found === 'server' ? 'viewleader' : 'server';
  return new DhtError(
    'unavailable',
    `${address} is ${DHT_PROCESS_NAMES[found]}, not ${DHT_PROCESS_NAMES[wanted]} (it has no ` +
      `endpoint ${path}); a view leader's address goes in --viewleader, a server's in --server`,
    'wrong_process',
  );
}

/**
 * Connection errors that mean the request was never sent, and how to say so. A name that does not
 * resolve is not a refused connection: it is usually a typo in the address.
 */
function neverSent(code: string, address: string): string | undefined {
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
      return `host name ${hostOf(address)} does not resolve`;
    case 'EAI_AGAIN':
      return `host name ${hostOf(address)} could not be looked up now (EAI_AGAIN)`;
    case 'EADDRNOTAVAIL':
      return 'address not available';
    default:
      return undefined;
  }
}

function hostOf(address: string): string {
  const host = address.slice(0, address.lastIndexOf(':'));
  return host.startsWith('[') ? host.slice(1, -1) : host;
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

function toUnreachable(address: string, err: unknown): UnreachableError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  const why = neverSent(code, address);
  if (why !== undefined) return new UnreachableError(address, 'refused', code, why);
  const detail = err instanceof Error ? err.message : String(err);
  return new UnreachableError(address, 'broken', code === '' ? detail : `${code}: ${detail}`);
}
