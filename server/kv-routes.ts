// The HTTP API for any client (the contract's Part 2): `GET/PUT/DELETE /kv/KEY` on every server.
// A thin shell: the key comes from the path (percent-encoded UTF-8, decoded strictly), the value
// is the raw body, and the request is coordinated by the SDK (client/sdk.ts: the same view cache,
// the same epoch-checked two-phase commit and the same read rule as `dht-client getr/setr/delr`),
// whether or not this server is a replica of the key. Its own prepares, commits and reads reach
// its participant over loopback HTTP like anyone else's: nothing here knows it is a replica.
// Error kinds become statuses in lib/errors.ts (`kvErrorAnswer`), not here.

import express, { type Request, type Response } from 'express';
import { DhtError, kvErrorAnswer } from '../lib/errors';
import { KEY_BYTES_MAX, KEY_BYTES_MIN, VALUE_BYTES_MAX } from '../lib/limits';
import type { Logger } from '../lib/logger';
import { BodyDigestMismatch, checkBodyDigest, refuseUnauthenticated } from '../lib/http-server';
import { secondsSince, type ProcessMetrics } from '../lib/metrics';

const EMPTY_BODY = Buffer.alloc(0);

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
 * Serve `/kv/KEY` on `app` (a server's RpcServer app, before it listens: the RPC shell installs
 * its 404 handler then). Every error is answered `{"kind","error","reason"?}` with the status of
 * lib/errors.ts's /kv column; 503s carry `Retry-After`, 405s `Allow`. With `metrics`, each
 * request is one observation, labelled `METHOD /kv` (never the key) and its outcome.
 */
export function kvRoutes(
  app: express.Express,
  client: KvClient,
  logger: Logger,
  metrics?: ProcessMetrics,
): void {
  for (const method of KV_METHODS) metrics?.knowEndpoint(`${method} ${KV_PATH}`);
  // A value is raw bytes, whatever the Content-Type says; the bound is the contract's.
  const parseRaw = express.raw({
    type: () => true,
    limit: VALUE_BYTES_MAX,
    verify: checkBodyDigest,
  });
  const readBody = (req: Request, res: Response): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      parseRaw(req, res, (err?: unknown) => {
        if (err !== undefined) return reject(bodyError(err));
        if (Buffer.isBuffer(req.body)) return resolve(req.body);
        // No body at all: the parser checked nothing, so check here that none was signed (a
        // signed PUT whose body was stripped on the way must not store an empty value).
        try {
          checkBodyDigest(req, res, EMPTY_BODY);
          resolve(EMPTY_BODY);
        } catch (mismatch) {
          reject(mismatch);
        }
      });
    });

  app.use(KV_PATH, (req: Request, res: Response) => {
    void (async () => {
      const startMs = performance.now();
      let outcome = 'ok';
      try {
        const method = kvMethod(req.method);
        const key = keyOfTarget(req.originalUrl);
        // Read for every method: a GET, HEAD or DELETE ignores its body, but a signed request's
        // body must still be the one signed (checkBodyDigest), or it is refused as altered.
        const body = await readBody(req, res);
        switch (method) {
          case 'GET':
          case 'HEAD': {
            const { value } = await client.getr(key);
            res.status(200).set('Cache-Control', 'no-store').type(VALUE_CONTENT_TYPE).send(value);
            return;
          }
          case 'PUT':
            await client.setr(key, decodeValue(body));
            res.status(204).end();
            return;
          case 'DELETE':
            await client.delr(key);
            res.status(204).end();
            return;
        }
      } catch (err) {
        outcome = err instanceof DhtError ? err.kind : 'unknown';
        answerError(res, err, logger);
      } finally {
        metrics?.observeRequest(
          metrics.endpointLabel(`${req.method} ${KV_PATH}`),
          outcome,
          secondsSince(startMs),
        );
      }
    })();
  });
}

function answerError(res: Response, err: unknown, logger: Logger): void {
  if (res.headersSent) return;
  if (err instanceof BodyDigestMismatch) {
    refuseUnauthenticated(res, 'body_mismatch');
    return;
  }
  if (!(err instanceof DhtError)) {
    // A bug, not an operating error: as the RPC shell does, 500 and a log line.
    logger.error({ err }, '/kv request failed');
    res.status(500).json({ kind: 'unknown', error: 'internal error' });
    return;
  }
  const answer = kvErrorAnswer(err);
  if (answer.retryAfterS !== undefined) res.set('Retry-After', String(answer.retryAfterS));
  if (answer.status === 405) res.set('Allow', ALLOW);
  res.status(answer.status).json(answer.body);
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
 * The key of a request target `/kv/KEY` (the raw target, before any decoding: express matched
 * its `/kv` prefix, in any letter case). Everything after `/kv/` is the key, slashes included;
 * a query string is refused rather than silently cut off a key whose `?` was not encoded.
 */
export function keyOfTarget(target: string): string {
  // An absolute-form target (`GET http://host/kv/k`, as sent to a proxy): its path.
  const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(target);
  const path = origin === null ? target : target.slice(origin[0].length);
  if (path.includes('?')) {
    throw new DhtError(
      'invalid',
      "/kv/KEY takes no query string (percent-encode a '?' in the key as %3F)",
      'bad_request',
    );
  }
  if (path.slice(0, KV_PATH.length).toLowerCase() !== KV_PATH) {
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

/** body-parser's errors: over the bound is 413; anything else (an aborted upload...) is 400. */
function bodyError(err: unknown): DhtError {
  if (err instanceof BodyDigestMismatch) return err;
  const type = typeof err === 'object' && err !== null && 'type' in err ? err.type : undefined;
  if (type === 'entity.too.large') {
    return new DhtError(
      'invalid',
      `value must be at most ${VALUE_BYTES_MAX} bytes of UTF-8`,
      'value_too_large',
    );
  }
  const message = err instanceof Error ? err.message : 'unreadable body';
  return new DhtError('invalid', `malformed request body: ${message}`, 'bad_request');
}
