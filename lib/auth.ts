// Request authentication: every request between dht processes, from the client and to /kv proves
// that its sender knows the cluster's shared secret, and cannot be replayed or altered.
//
// The scheme (docs/security.md has the threat model, docs/protocol.md the wire format):
//
//   Authorization: DHT-HMAC-SHA256 id=<sender>, n=<counter>, t=<unix ms>, sig=<hex>
//   X-Dht-Content-Sha256: <hex SHA-256 of the body as sent>
//
//   sig = HMAC-SHA256(secret, "DHT1\n" METHOD "\n" HOST "\n" TARGET "\n" id "\n" n "\n" t "\n" digest)
//
// - The body is bound through its digest, so the signature can be checked before the body is
//   read; the body is then checked against the digest as it is read.
// - HOST is the Host header: a request captured on its way to one process is refused by another
//   (a PUT replayed through a different server would otherwise write an old value again).
// - Replay: the timestamp must be within AUTH_CLOCK_SKEW_MS of the receiver's clock, and each
//   sender (a random ID per process) numbers its requests. The receiver remembers, per sender, the
//   highest number seen and which of the AUTH_REPLAY_WINDOW numbers below it were seen (the
//   anti-replay window of IPsec, RFC 4303 section 3.4.3): memory per sender, not per request.
//   A sender unheard of for 2 x AUTH_CLOCK_SKEW_MS is forgotten: any request of its that a replay
//   could bring back is older than the clock-skew bound by then.
//
// Pure: clocks, randomness and the secret's file are the caller's. The secret never leaves this
// module's closures and is never part of an error message.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { AUTH_CLOCK_SKEW_MS, AUTH_REPLAY_WINDOW, AUTH_SECRET_BYTES_MIN } from './limits';

export const AUTH_SCHEME = 'DHT-HMAC-SHA256';
export const CONTENT_DIGEST_HEADER = 'x-dht-content-sha256';
const SIGNING_VERSION = 'DHT1';

/** SHA-256 of the empty body: what a request without a body claims. */
export const EMPTY_BODY_DIGEST = sha256Hex(Buffer.alloc(0));

export function sha256Hex(body: Buffer | string): string {
  return createHash('sha256').update(body).digest('hex');
}

/** A request as it is signed: what the receiver sees again on its side of the wire. */
export interface SignedParts {
  readonly method: string;
  readonly host: string;
  readonly target: string;
  readonly bodyDigest: string;
}

export interface Credential {
  readonly sender: string;
  readonly counter: number;
  readonly timestampMs: number;
  readonly signature: string;
}

/** A secret as read from its file: bytes, checked for length, never printed. */
export class Secret {
  private constructor(private readonly key: Buffer) {}

  /** The file's content with one trailing newline (an editor's) removed. */
  static fromFileContent(content: Buffer): Secret | string {
    let end = content.length;
    if (end > 0 && content[end - 1] === 0x0a) end--;
    if (end > 0 && content[end - 1] === 0x0d) end--;
    const key = Buffer.from(content.subarray(0, end));
    if (key.length < AUTH_SECRET_BYTES_MIN) {
      return `the secret must be at least ${AUTH_SECRET_BYTES_MIN} bytes (it has ${key.length}); make one with: head -c 32 /dev/urandom | base64 > FILE`;
    }
    return new Secret(key);
  }

  sign(parts: SignedParts, sender: string, counter: number, timestampMs: number): string {
    const text = [
      SIGNING_VERSION,
      parts.method.toUpperCase(),
      parts.host.toLowerCase(),
      parts.target,
      sender,
      String(counter),
      String(timestampMs),
      parts.bodyDigest,
    ].join('\n');
    return createHmac('sha256', this.key).update(text).digest('hex');
  }

  /** Constant-time: the comparison's duration says nothing about how much of `sig` is right. */
  verify(parts: SignedParts, credential: Credential): boolean {
    const expected = Buffer.from(
      this.sign(parts, credential.sender, credential.counter, credential.timestampMs),
      'hex',
    );
    const given = Buffer.from(credential.signature, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** Never the bytes: a secret logged by accident stays secret. */
  toJSON(): string {
    return '[secret]';
  }
  toString(): string {
    return '[secret]';
  }
}

/** A sending process's side: one random ID, requests numbered from 1. */
export class RequestSigner {
  private counter = 0;
  constructor(
    private readonly secret: Secret,
    readonly sender: string,
  ) {}

  /** The two headers that authenticate `parts` at `nowMs`. */
  headers(parts: SignedParts, nowMs: number): Record<string, string> {
    const counter = ++this.counter;
    const timestampMs = Math.floor(nowMs);
    const signature = this.secret.sign(parts, this.sender, counter, timestampMs);
    return {
      authorization: `${AUTH_SCHEME} id=${this.sender}, n=${counter}, t=${timestampMs}, sig=${signature}`,
      [CONTENT_DIGEST_HEADER]: parts.bodyDigest,
    };
  }
}

const SENDER_PATTERN = /^[0-9a-f]{16,64}$/;
const AUTHORIZATION_PATTERN = new RegExp(
  `^${AUTH_SCHEME} id=([0-9a-f]{16,64}), n=([1-9][0-9]{0,15}), t=([0-9]{1,16}), sig=([0-9a-f]{64})$`,
);
const DIGEST_PATTERN = /^[0-9a-f]{64}$/;

export function isSenderId(value: string): boolean {
  return SENDER_PATTERN.test(value);
}

/** Why a request was refused; counted by reason, told to the sender (it reveals nothing). */
export type AuthFailure =
  | 'missing' // no Authorization header
  | 'malformed' // not the scheme's format
  | 'bad_signature' // wrong secret, or the method, host, target or digest was altered
  | 'stale' // timestamp outside the clock-skew bound
  | 'replayed' // this sender's number was seen already, or is below its window
  | 'body_mismatch'; // the body is not the one the digest claims

export const AUTH_FAILURE_MESSAGES: Readonly<Record<AuthFailure, string>> = {
  missing: 'authentication required: this cluster has a secret (see --secret-file)',
  malformed: `malformed Authorization header (expected ${AUTH_SCHEME})`,
  bad_signature: 'bad signature: wrong secret, or the request was altered',
  stale: `request timestamp is more than ${AUTH_CLOCK_SKEW_MS / 1000} s from this process's clock`,
  replayed: 'request replayed: this request was already received',
  body_mismatch: 'the body does not match its signed digest',
};

export type HeaderCheck =
  | { readonly ok: true; readonly bodyDigest: string }
  | { readonly ok: false; readonly failure: AuthFailure };

interface SenderWindow {
  highest: number;
  /** Bit i of the ring: whether number (highest - k) with k ≡ highest - i was seen. */
  readonly seen: Uint32Array;
  lastHeardMs: number;
}

/** A receiving process's side: checks credentials and remembers what it accepted. */
export class RequestVerifier {
  private readonly senders = new Map<string, SenderWindow>();
  private lastSweepMs = 0;

  constructor(
    private readonly secret: Secret,
    /** Host headers this process answers to (lower case `host:port`). */
    private readonly hostNames: ReadonlySet<string>,
  ) {}

  /**
   * Check a request's headers at `nowMs` (before its body is read): the body's claimed digest is
   * returned, for the body check once the body is in.
   */
  check(
    method: string,
    host: string | undefined,
    target: string,
    authorization: string | undefined,
    contentDigest: string | undefined,
    nowMs: number,
  ): HeaderCheck {
    if (authorization === undefined) return { ok: false, failure: 'missing' };
    const match = AUTHORIZATION_PATTERN.exec(authorization);
    const bodyDigest = contentDigest ?? '';
    if (match === null || !DIGEST_PATTERN.test(bodyDigest) || host === undefined) {
      return { ok: false, failure: 'malformed' };
    }
    const credential: Credential = {
      sender: match[1],
      counter: Number(match[2]),
      timestampMs: Number(match[3]),
      signature: match[4],
    };
    // Only a request signed with the secret may touch the replay windows: anyone could fill
    // them otherwise.
    const hostOk = this.hostNames.has(host.toLowerCase());
    const parts: SignedParts = { method, host, target, bodyDigest };
    if (!hostOk || !this.secret.verify(parts, credential)) {
      return { ok: false, failure: 'bad_signature' };
    }
    if (Math.abs(nowMs - credential.timestampMs) > AUTH_CLOCK_SKEW_MS) {
      return { ok: false, failure: 'stale' };
    }
    if (!this.admitOnce(credential.sender, credential.counter, nowMs)) {
      return { ok: false, failure: 'replayed' };
    }
    return { ok: true, bodyDigest };
  }

  /** How many senders are remembered (bounded by who knows the secret, and by time). */
  get senderCount(): number {
    return this.senders.size;
  }

  private admitOnce(sender: string, counter: number, nowMs: number): boolean {
    this.sweep(nowMs);
    let window = this.senders.get(sender);
    if (window === undefined) {
      window = { highest: 0, seen: new Uint32Array(AUTH_REPLAY_WINDOW / 32), lastHeardMs: nowMs };
      this.senders.set(sender, window);
    }
    window.lastHeardMs = nowMs;
    if (counter > window.highest) {
      const advance = counter - window.highest;
      if (advance >= AUTH_REPLAY_WINDOW) window.seen.fill(0);
      else for (let k = window.highest + 1; k < counter; k++) setBit(window.seen, k, false);
      window.highest = counter;
      setBit(window.seen, counter, true);
      return true;
    }
    if (window.highest - counter >= AUTH_REPLAY_WINDOW) return false;
    if (getBit(window.seen, counter)) return false;
    setBit(window.seen, counter, true);
    return true;
  }

  /** Forget senders unheard of for twice the skew bound: their requests are all stale now. */
  private sweep(nowMs: number): void {
    if (nowMs - this.lastSweepMs < AUTH_CLOCK_SKEW_MS) return;
    this.lastSweepMs = nowMs;
    for (const [sender, window] of this.senders) {
      if (nowMs - window.lastHeardMs > 2 * AUTH_CLOCK_SKEW_MS) this.senders.delete(sender);
    }
  }
}

function getBit(bits: Uint32Array, n: number): boolean {
  const i = n % AUTH_REPLAY_WINDOW;
  return (bits[i >>> 5] & (1 << (i & 31))) !== 0;
}

function setBit(bits: Uint32Array, n: number, on: boolean): void {
  const i = n % AUTH_REPLAY_WINDOW;
  if (on) bits[i >>> 5] |= 1 << (i & 31);
  else bits[i >>> 5] &= ~(1 << (i & 31));
}

/**
 * Requests that need no secret (contract: `/health`, `/metrics` and the view leader's page show
 * no key and no value): the page is `/` and its files and data under `/ui/`. Only reads: anything
 * else on these paths is authenticated as usual.
 */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/', '/health', '/metrics']);
export const OPEN_PATH_PREFIX = '/ui/';

export function isOpenRequest(method: string, path: string): boolean {
  return (
    (method === 'GET' || method === 'HEAD') &&
    (OPEN_PATHS.has(path) || path.startsWith(OPEN_PATH_PREFIX))
  );
}
