// A request's body, read without express: the RPC endpoints and the HTTP API (`/kv`) are served
// straight from node:http (lib/http-server.ts), because express's router, body-parser and response
// helpers cost a server about 8 times the CPU of node:http alone (docs/performance.md, "RPC
// baseline").
// The checks are body-parser's as express.json and express.raw ran them for these routes, with the
// same answers: a size bound (checked on Content-Length before reading and again while reading),
// no content coding (body-parser inflated gzip; nothing here does), the signed digest, and for an
// RPC body a JSON media type, a UTF-8 charset and an object or array at the top (strict JSON). A
// refused body is still read off to its end and dropped, as body-parser did, so the client, still
// sending, reads its answer instead of a broken pipe, and the connection stays usable.

import type http from 'node:http';
import { sha256Hex } from './auth';

/**
 * The body; or why it was refused (`status` and `error` for the answer); or why nobody is answered
 * as a bad body: the client went away before its body ended (`aborted`), or the body is not the
 * one signed (`body_mismatch`: a 401, answered as authentication fails).
 */
export type BodyRead<Body> =
  | { readonly ok: true; readonly body: Body }
  | BodyRefusal
  | { readonly ok: false; readonly failure: 'aborted' | 'body_mismatch' };

export interface BodyRefusal {
  readonly ok: false;
  readonly status: number;
  readonly error: string;
}

const NOT_JSON_ERROR = 'request body must be JSON (Content-Type: application/json)';
const TOO_LARGE_ERROR = 'request body too large';
const NO_BODY = Buffer.alloc(0);

/** A body was sent (a Content-Length above 0, or a chunked body). */
export function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Read `req`'s body as JSON: `{}` for no body (curl's empty POST), as body-parser did. */
export async function readJsonBody(
  req: http.IncomingMessage,
  bytesMax: number,
  signedDigest: string | undefined,
): Promise<BodyRead<unknown>> {
  if (!hasBody(req)) return { ok: true, body: {} };
  const read = await readSignedBody(req, bytesMax, signedDigest, jsonRefusal(req, bytesMax));
  return read.ok ? parseStrictJson(read.body.toString('utf8')) : read;
}

/**
 * Read `req`'s body as the bytes sent, whatever its media type: an empty buffer for no body. (The
 * signature of a request without a body was checked with its headers: lib/http-server.ts.)
 */
export async function readRawBody(
  req: http.IncomingMessage,
  bytesMax: number,
  signedDigest: string | undefined,
): Promise<BodyRead<Buffer>> {
  if (!hasBody(req)) return { ok: true, body: NO_BODY };
  return readSignedBody(req, bytesMax, signedDigest, bytesRefusal(req, bytesMax));
}

/** The body, checked against its bound and signed digest; `refusal` answered once it is read. */
async function readSignedBody(
  req: http.IncomingMessage,
  bytesMax: number,
  signedDigest: string | undefined,
  refusal: BodyRefusal | undefined,
): Promise<BodyRead<Buffer>> {
  // Nothing kept of a body refused already: it is read off (`keepUpTo` 0) and answered after.
  const raw = await readToEnd(req, refusal === undefined ? bytesMax : 0);
  if (raw === 'aborted') return { ok: false, failure: 'aborted' };
  if (refusal !== undefined) return refusal;
  if (raw === 'too_large') return refused(413, TOO_LARGE_ERROR);
  if (signedDigest !== undefined && sha256Hex(raw) !== signedDigest) {
    return { ok: false, failure: 'body_mismatch' };
  }
  return { ok: true, body: raw };
}

/** What the headers alone refuse of a JSON body: another media type or charset, and as any body. */
function jsonRefusal(req: http.IncomingMessage, bytesMax: number): BodyRefusal | undefined {
  const type = mediaType(req.headers['content-type']);
  if (type.name !== 'application/json') return refused(415, NOT_JSON_ERROR);
  if (type.charset !== undefined && !/^utf-?8$/.test(type.charset)) {
    return refused(415, `malformed request: unsupported charset "${type.charset.toUpperCase()}"`);
  }
  return bytesRefusal(req, bytesMax);
}

/** What the headers alone refuse of any body: a content coding, a declared size over the bound. */
function bytesRefusal(req: http.IncomingMessage, bytesMax: number): BodyRefusal | undefined {
  // An empty header is no coding, as body-parser read it.
  const encoding = (req.headers['content-encoding'] || 'identity').toLowerCase();
  if (encoding !== 'identity') {
    return refused(415, `malformed request: unsupported content encoding "${encoding}"`);
  }
  if (Number(req.headers['content-length'] ?? 0) > bytesMax) return refused(413, TOO_LARGE_ERROR);
  return undefined;
}

/**
 * The body read to its end: its bytes if they are at most `keepUpTo`, else `too_large` (the rest
 * read off and dropped), or `aborted` if the client went away first.
 */
function readToEnd(
  req: http.IncomingMessage,
  keepUpTo: number,
): Promise<Buffer | 'too_large' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const finish = (result: Buffer | 'too_large' | 'aborted'): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAborted);
      req.off('close', onAborted);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes <= keepUpTo) chunks.push(chunk);
      else chunks.length = 0;
    };
    const onEnd = (): void => {
      if (bytes > keepUpTo) finish('too_large');
      else finish(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    };
    const onAborted = (): void => finish('aborted');
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAborted);
    // 'close' before 'end': the client went away (after 'end', `finish` has removed this).
    req.on('close', onAborted);
  });
}

function parseStrictJson(text: string): BodyRead<unknown> {
  if (text.length === 0) return { ok: true, body: {} };
  const first = /\S/.exec(text)?.[0];
  if (first !== '{' && first !== '[') {
    return refused(400, 'malformed request: a JSON body must be an object or an array');
  }
  try {
    return { ok: true, body: JSON.parse(text) as unknown };
  } catch (err) {
    return refused(400, `malformed request: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function mediaType(header: string | undefined): { name: string; charset?: string } {
  if (header === undefined) return { name: '' };
  const [name, ...parameters] = header.split(';');
  let charset: string | undefined;
  for (const parameter of parameters) {
    const [key, value] = parameter.split('=');
    if (key.trim().toLowerCase() === 'charset' && value !== undefined) {
      charset = value.trim().replace(/^"|"$/g, '').toLowerCase();
    }
  }
  return { name: name.trim().toLowerCase(), charset };
}

function refused(status: number, error: string): BodyRefusal {
  return { ok: false, status, error };
}
