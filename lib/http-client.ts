// The RPC shell's client side: one keep-alive agent per process, an explicit timeout on every
// call, error answers turned back into DhtError values, responses validated at the edge.

import http from 'node:http';
import type { AxiosInstance, AxiosStatic } from 'axios';
import type { z } from 'zod';
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

/**
 * Shared by every call of this process: connections are reused, never one per request.
 * `keepAliveMsecs` is axios's own TCP keep-alive delay (its http adapter sets 60 s on every
 * request's socket). With the agent's default (1 s) the two alternated on every request, and
 * each change is a setsockopt: two system calls per request, 32% of the client's busy CPU in a
 * profile of sequential calls. Equal values are cached by net.Socket, so neither calls again.
 */
export const keepAliveAgent = new http.Agent({
  keepAlive: true,
  keepAliveMsecs: 60_000,
  maxSockets: 512,
});

/** axios and our instance of it, loaded on the first request (a CLI usage error needs neither). */
let loaded: { readonly axios: AxiosStatic; readonly client: AxiosInstance } | undefined;

function axiosClient(): { readonly axios: AxiosStatic; readonly client: AxiosInstance } {
  if (loaded !== undefined) return loaded;
  const axios = loadAxios();
  const client = axios.create({
    httpAgent: keepAliveAgent,
    proxy: false,
    adapter: 'http',
    // Errors are read from the body below; axios must not throw on 4xx/5xx.
    validateStatus: () => true,
    // No redirects in this protocol; 0 also keeps axios on node:http instead of follow-redirects.
    maxRedirects: 0,
    maxBodyLength: Infinity,
    maxContentLength: Infinity,
    transitional: { clarifyTimeoutError: true },
    // Bodies are serialized once, by `post`, because the signature covers the exact bytes sent;
    // axios's own transform would parse that JSON again to check it.
    transformRequest: [(data: unknown) => data],
  });
  loaded = { axios, client };
  return loaded;
}

/**
 * The WHATWG globals axios reads while it loads (its fetch adapter and FormData check, neither of
 * which we use: requests go through its http adapter). In Node 20 they are lazy getters whose
 * first read loads Node's bundled undici (or, for ReadableStream, its web streams), about a third
 * of a bare `node -e ''` start, paid by every CLI invocation for nothing (docs/performance.md,
 * "CLI").
 */
const FETCH_GLOBALS = ['fetch', 'FormData', 'Request', 'Response', 'ReadableStream'] as const;

/** require('axios') with FETCH_GLOBALS hidden while it loads, and put back as they were. */
function loadAxios(): AxiosStatic {
  const saved = FETCH_GLOBALS.map((name) => ({
    name,
    descriptor: Object.getOwnPropertyDescriptor(globalThis, name),
  }));
  for (const { name, descriptor } of saved) {
    if (descriptor?.configurable === true) {
      Object.defineProperty(globalThis, name, {
        value: undefined,
        configurable: true,
        writable: true,
      });
    }
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('axios') as AxiosStatic;
  } finally {
    for (const { name, descriptor } of saved) {
      if (descriptor?.configurable === true) Object.defineProperty(globalThis, name, descriptor);
    }
  }
}

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

export async function call<Req extends z.ZodType, Res extends z.ZodType>(
  address: string,
  endpoint: Endpoint<Req, Res>,
  body: z.infer<Req>,
  options: CallOptions = {},
): Promise<z.infer<Res>> {
  const { status, data } = await post(address, endpoint.path, body, options.timeoutMs);
  return interpretAnswer(address, endpoint, status, data);
}

/** One HTTP POST; a transport failure becomes an UnreachableError. */
export async function post(
  address: string,
  path: string,
  body: unknown,
  timeoutMs = RPC_TIMEOUT_MS_DEFAULT,
): Promise<{ status: number; data: unknown }> {
  const payload = JSON.stringify(body) ?? '{}';
  const headers = {
    'content-type': 'application/json',
    ...authHeaders('POST', address, path, payload),
  };
  try {
    const response = await axiosClient().client.post(`http://${address}${path}`, payload, {
      timeout: timeoutMs,
      headers,
    });
    return { status: response.status, data: response.data as unknown };
  } catch (err) {
    throw toUnreachable(address, err);
  }
}

/** A 2xx answer validated against the endpoint's response schema, or the error it carries. */
export function interpretAnswer<Req extends z.ZodType, Res extends z.ZodType>(
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

function toUnreachable(address: string, err: unknown): UnreachableError {
  if (loaded?.axios.isAxiosError(err) === true) {
    const code = err.code ?? '';
    const why = neverSent(code, address);
    if (why !== undefined) return new UnreachableError(address, 'refused', code, why);
    if (code === 'ETIMEDOUT' || code === 'ECONNABORTED' || code === 'ERR_CANCELED') {
      return new UnreachableError(address, 'timeout', code);
    }
    return new UnreachableError(address, 'broken', code || err.message);
  }
  return new UnreachableError(address, 'broken', err instanceof Error ? err.message : String(err));
}
