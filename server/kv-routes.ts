// The HTTP API for any client (the contract's Part 2): `GET/PUT/DELETE /kv/KEY` on every server.
// A thin shell: the key comes from the path (percent-encoded UTF-8, decoded strictly), the value
// is the raw body, and the request is coordinated by the SDK (client/sdk.ts: the same view cache,
// the same epoch-checked two-phase commit and the same read rule as `dht-client getr/setr/delr`),
// whether or not this server is a replica of the key. Its own prepares, commits and reads reach
// its participant over loopback HTTP like anyone else's: nothing here knows it is a replica.
// Error kinds become statuses in lib/errors.ts (`kvErrorAnswer`), not here. Served from node:http
// as a raw route of the RPC shell (lib/http-server.ts), not through express: a data path, as the
// RPC endpoints are (docs/performance.md, "The HTTP API").

import type http from 'node:http';
import { DhtError, kvErrorAnswer } from '../lib/errors';
import { KEY_BYTES_MAX, KEY_BYTES_MIN, VALUE_BYTES_MAX } from '../lib/limits';
import type { Logger } from '../lib/logger';
import { sendJson, type RawExchange, type RawRoute, type RpcServer } from '../lib/http-server';
import { secondsSince, type ProcessMetrics } from '../lib/metrics';
import { readRawBody, type BodyRefusal } from '../lib/request-body';

/** What /kv needs of a cluster client: DhtClient's replicated operations. */
export interface KvClient {
  getr(key: string): Promise<{ readonly value: string }>;
  setr(key: string, value: string): Promise<unknown>;
  delr(key: string): Promise<unknown>;
}

export const KV_PATH = '/kv';
/** HEAD is GET without the body (RFC 9110: a server that serves GET serves HEAD). */
export const KV_METHODS = ['GET', 'HEAD', 'PUT', 'DELETE'] as const;
const ALLOW = KV_METHODS.join(', ');
const VALUE_CONTENT_TYPE = 'text/plain; charset=utf-8';

/**
 * Strict UTF-8: malformed bytes are an error, not U+FFFD; a leading U+FEFF is part of the
 * string, not a byte-order mark to drop (a key or value may start with it).
 */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Serve `/kv/KEY` on `rpc` (a server's RpcServer). Every error is answered
 * `{"kind","error","reason"?}` with the status of lib/errors.ts's /kv column; 503s carry
 * `Retry-After`, 405s `Allow`. With `metrics`, each answered request is one observation, labelled
 * `METHOD /kv` (never the key) and its outcome; a 401 is counted instead in
 * `dht_requests_unauthenticated_total` under the same label, as the RPC endpoints count theirs.
 */
export function kvRoutes(
  rpc: RpcServer,
  client: KvClient,
  logger: Logger,
  metrics?: ProcessMetrics,
): void {
  for (const method of KV_METHODS) metrics?.knowEndpoint(endpointOf(method));
  const route: RawRoute = {
    matches: isKvTarget,
    endpoint: endpointOf,
    serve: async (exchange) => {
      const startMs = performance.now();
      const outcome = await serveKv(exchange, client, logger);
      if (outcome !== undefined) {
        metrics?.observeRequest(
          metrics.endpointLabel(endpointOf(exchange.req.method ?? '')),
          outcome,
          secondsSince(startMs),
        );
      }
    },
  };
  rpc.rawRoute(route);
}

/** One request, answered; its outcome for the metrics, or undefined if it was not answered. */
async function serveKv(
  { req, res, signedDigest, refuse }: RawExchange,
  client: KvClient,
  logger: Logger,
): Promise<string | undefined> {
  try {
    const method = kvMethod(req.method ?? '');
    const key = keyOfTarget(req.url ?? '');
    // Read for every method: a GET, HEAD or DELETE ignores its body, but a signed request's
    // body must still be the one signed, or it is refused as altered.
    const read = await readRawBody(req, VALUE_BYTES_MAX, signedDigest);
    if (!read.ok) {
      if (!('failure' in read)) throw bodyError(read);
      if (read.failure === 'aborted') {
        res.destroy();
        return undefined;
      }
      refuse(read.failure);
      return undefined;
    }
    switch (method) {
      case 'GET':
      case 'HEAD': {
        const { value } = await client.getr(key);
        res.writeHead(200, {
          'cache-control': 'no-store',
          'content-type': VALUE_CONTENT_TYPE,
          'content-length': Buffer.byteLength(value),
        });
        // A HEAD's answer has no body: node:http leaves out what is written.
        res.end(value);
        return 'ok';
      }
      case 'PUT':
        await client.setr(key, decodeValue(read.body));
        res.writeHead(204).end();
        return 'ok';
      case 'DELETE':
        await client.delr(key);
        res.writeHead(204).end();
        return 'ok';
    }
  } catch (err) {
    answerError(res, err, logger);
    return err instanceof DhtError ? err.kind : 'unknown';
  }
}

function endpointOf(method: string): string {
  return `${method} ${KV_PATH}`;
}

function answerError(res: http.ServerResponse, err: unknown, logger: Logger): void {
  if (res.headersSent) return;
  if (!(err instanceof DhtError)) {
    // A bug, not an operating error: as the RPC shell does, 500 and a log line.
    logger.error({ err }, '/kv request failed');
    sendJson(res, 500, { kind: 'unknown', error: 'internal error' });
    return;
  }
  const answer = kvErrorAnswer(err);
  const headers: http.OutgoingHttpHeaders = {};
  if (answer.retryAfterS !== undefined) headers['retry-after'] = String(answer.retryAfterS);
  if (answer.status === 405) headers.allow = ALLOW;
  sendJson(res, answer.status, answer.body, headers);
}

function kvMethod(method: string): (typeof KV_METHODS)[number] {
  const known = KV_METHODS.find((m) => m === method);
  if (known === undefined) {
    throw new DhtError(
      'invalid',
      `method ${method} is not allowed on /kv/KEY (allowed: ${ALLOW})`,
      'method_not_allowed',
    );
  }
  return known;
}

/**
 * Whether a request target is the HTTP API's: its path is `/kv`, or starts with `/kv/`, `/kv?` or
 * `/kv#`, in any letter case (as express's mount on `/kv` matched it before). keyOfTarget then
 * refuses what is not `/kv/KEY`.
 */
export function isKvTarget(target: string): boolean {
  const path = pathOfTarget(target);
  if (path.slice(0, KV_PATH.length).toLowerCase() !== KV_PATH) return false;
  return /^(?:$|[/?#])/.test(path.slice(KV_PATH.length));
}

/** The path of a request target; of an absolute-form one (`GET http://host/kv/k`, to a proxy) too. */
function pathOfTarget(target: string): string {
  const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(target);
  return origin === null ? target : target.slice(origin[0].length);
}

/**
 * The key of a request target `/kv/KEY` (the raw target, before any decoding). Everything after
 * `/kv/` is the key, slashes included; a query string or a fragment is refused rather than
 * silently cut off a key whose `?` or `#` was not encoded.
 */
export function keyOfTarget(target: string): string {
  const path = pathOfTarget(target);
  if (path.includes('?') || path.includes('#')) {
    throw new DhtError(
      'invalid',
      "/kv/KEY takes no query string or fragment (percent-encode '?' as %3F, '#' as %23)",
      'bad_request',
    );
  }
  if (!/^\/kv(?:$|\/)/i.test(path)) {
    throw new DhtError('invalid', `not a /kv/KEY path: ${path.slice(0, 64)}`, 'bad_request');
  }
  // '/kv' and '/kv/' both name the empty key, which is out of bounds.
  return decodeKey(path.slice(KV_PATH.length + 1));
}

/**
 * Percent-decode a key (RFC 3986), strictly: `%` must start two hex digits, and the bytes must be
 * UTF-8. Other characters stand for themselves; they are ASCII (Node's HTTP parser refuses a
 * target with raw non-ASCII bytes before express sees it, lib/http-server.ts answers 400).
 */
export function decodeKey(encoded: string): string {
  const bytes = Buffer.alloc(encoded.length);
  let length = 0;
  for (let i = 0; i < encoded.length; i++) {
    const code = encoded.charCodeAt(i);
    if (code === 0x25) {
      const hex = encoded.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
        throw new DhtError(
          'invalid',
          `malformed percent-encoding in the key at character ${i}: '%${hex}'`,
          'bad_request',
        );
      }
      bytes[length++] = parseInt(hex, 16);
      i += 2;
    } else if (code > 0x7f) {
      throw new DhtError('invalid', 'the key must be percent-encoded UTF-8', 'bad_request');
    } else {
      bytes[length++] = code;
    }
  }
  if (length < KEY_BYTES_MIN) {
    throw new DhtError(
      'invalid',
      `the key is empty: use /kv/KEY with a KEY of 1 to ${KEY_BYTES_MAX} bytes`,
      'bad_request',
    );
  }
  if (length > KEY_BYTES_MAX) {
    throw new DhtError(
      'invalid',
      `key must be ${KEY_BYTES_MIN} to ${KEY_BYTES_MAX} bytes of UTF-8 (this one is ${length})`,
      'key_too_long',
    );
  }
  try {
    return utf8.decode(bytes.subarray(0, length));
  } catch {
    throw new DhtError('invalid', 'the key is not valid UTF-8 once percent-decoded', 'bad_request');
  }
}

function decodeValue(body: Buffer): string {
  try {
    return utf8.decode(body);
  } catch {
    throw new DhtError('invalid', 'the value (the request body) is not valid UTF-8', 'bad_request');
  }
}

/** A refused body: over the bound is 413 `value_too_large`; anything else (a content coding) 400. */
function bodyError(refusal: BodyRefusal): DhtError {
  if (refusal.status === 413) {
    return new DhtError(
      'invalid',
      `value must be at most ${VALUE_BYTES_MAX} bytes of UTF-8`,
      'value_too_large',
    );
  }
  return new DhtError('invalid', refusal.error, 'bad_request');
}
