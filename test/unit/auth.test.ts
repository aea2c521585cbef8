// lib/auth.ts: what a signature binds, what the receiver refuses, and how much it remembers.

import { isLoopbackHost, isWildcardHost } from '../../lib/address';
import {
  EMPTY_BODY_DIGEST,
  RequestSigner,
  RequestVerifier,
  Secret,
  isOpenRequest,
  sha256Hex,
  type SignedParts,
} from '../../lib/auth';
import { hostNamesOf } from '../../lib/http-auth';
import { AUTH_CLOCK_SKEW_MS, AUTH_REPLAY_WINDOW, AUTH_SECRET_BYTES_MIN } from '../../lib/limits';

const HOST = '127.0.0.1:38000';
const T0 = 1_800_000_000_000;

function secretOf(text: string): Secret {
  const secret = Secret.fromFileContent(Buffer.from(text));
  if (typeof secret === 'string') throw new Error(secret);
  return secret;
}

const SECRET = secretOf('correct horse battery staple\n');
const OTHER = secretOf('incorrect horse battery staple');

function parts(over: Partial<SignedParts> = {}): SignedParts {
  return {
    method: 'POST',
    host: HOST,
    target: '/setr',
    bodyDigest: sha256Hex('{"key":"k"}'),
    ...over,
  };
}

interface Sent {
  readonly parts: SignedParts;
  readonly headers: Record<string, string>;
}

function sign(signer: RequestSigner, p: SignedParts = parts(), at = T0): Sent {
  return { parts: p, headers: signer.headers(p, at) };
}

function check(verifier: RequestVerifier, sent: Sent, at = T0, as: Partial<SignedParts> = {}) {
  const p = { ...sent.parts, ...as };
  return verifier.check(
    p.method,
    p.host,
    p.target,
    sent.headers.authorization,
    sent.headers['x-dht-content-sha256'],
    at,
  );
}

const failureOf = (verdict: ReturnType<RequestVerifier['check']>): string =>
  verdict.ok ? 'ok' : verdict.failure;

describe('a signed request', () => {
  test('is accepted once, with its body digest', () => {
    const verifier = new RequestVerifier(SECRET, new Set([HOST]));
    const sent = sign(new RequestSigner(SECRET, 'a'.repeat(16)));
    expect(check(verifier, sent)).toEqual({ ok: true, bodyDigest: sent.parts.bodyDigest });
    expect(failureOf(check(verifier, sent))).toBe('replayed');
  });

  test.each([
    ['method', { method: 'PUT' }],
    ['host', { host: '127.0.0.1:38001' }],
    ['target', { target: '/delr' }],
    ['body digest', { bodyDigest: EMPTY_BODY_DIGEST }],
  ] as const)('altered in its %s is refused', (_what, change) => {
    const verifier = new RequestVerifier(SECRET, new Set([HOST, '127.0.0.1:38001']));
    const sent = sign(new RequestSigner(SECRET, 'b'.repeat(16)));
    const verdict =
      'bodyDigest' in change
        ? verifier.check('POST', HOST, '/setr', sent.headers.authorization, change.bodyDigest, T0)
        : check(verifier, sent, T0, change);
    expect(failureOf(verdict)).toBe('bad_signature');
    // The refusal did not use up the request: the genuine one still passes.
    expect(failureOf(check(verifier, sent))).toBe('ok');
  });

  test('with another secret is refused', () => {
    const verifier = new RequestVerifier(SECRET, new Set([HOST]));
    expect(failureOf(check(verifier, sign(new RequestSigner(OTHER, 'c'.repeat(16)))))).toBe(
      'bad_signature',
    );
  });

  test('sent to another process (Host it does not answer to) is refused', () => {
    const verifier = new RequestVerifier(SECRET, new Set(['127.0.0.1:38001']));
    expect(failureOf(check(verifier, sign(new RequestSigner(SECRET, 'd'.repeat(16)))))).toBe(
      'bad_signature',
    );
  });

  test('older or newer than the clock-skew bound is refused', () => {
    const verifier = new RequestVerifier(SECRET, new Set([HOST]));
    const signer = new RequestSigner(SECRET, 'e'.repeat(16));
    expect(failureOf(check(verifier, sign(signer), T0 + AUTH_CLOCK_SKEW_MS + 1))).toBe('stale');
    expect(failureOf(check(verifier, sign(signer), T0 - AUTH_CLOCK_SKEW_MS - 1))).toBe('stale');
    expect(failureOf(check(verifier, sign(signer), T0 + AUTH_CLOCK_SKEW_MS))).toBe('ok');
  });

  test('without credentials, or with a malformed header, is refused', () => {
    const verifier = new RequestVerifier(SECRET, new Set([HOST]));
    const sent = sign(new RequestSigner(SECRET, 'f'.repeat(16)));
    const digest = sent.parts.bodyDigest;
    const at = (authorization: string | undefined, d: string | undefined) =>
      failureOf(verifier.check('POST', HOST, '/setr', authorization, d, T0));
    expect(at(undefined, digest)).toBe('missing');
    expect(at('Bearer x', digest)).toBe('malformed');
    expect(at(`${sent.headers.authorization} `, digest)).toBe('malformed');
    expect(at(sent.headers.authorization, undefined)).toBe('malformed');
    expect(at(sent.headers.authorization, 'zz')).toBe('malformed');
    expect(
      failureOf(verifier.check('POST', undefined, '/setr', sent.headers.authorization, digest, T0)),
    ).toBe('malformed');
  });
});

describe('the replay window', () => {
  test('takes requests out of order, each once', () => {
    const verifier = new RequestVerifier(SECRET, new Set([HOST]));
    const signer = new RequestSigner(SECRET, '1'.repeat(16));
    const sent = Array.from({ length: 100 }, () => sign(signer));
    const order = [...sent.keys()].reverse();
    for (const i of order) expect(failureOf(check(verifier, sent[i]))).toBe('ok');
    for (const i of order) expect(failureOf(check(verifier, sent[i]))).toBe('replayed');
  });

  test('refuses a request overtaken by a whole window of its sender', () => {
    const verifier = new RequestVerifier(SECRET, new Set([HOST]));
    const signer = new RequestSigner(SECRET, '2'.repeat(16));
    const first = sign(signer);
    const second = sign(signer);
    for (let i = 0; i < AUTH_REPLAY_WINDOW - 2; i++) sign(signer);
    const last = sign(signer); // number AUTH_REPLAY_WINDOW + 1: the first is a window behind
    expect(failureOf(check(verifier, last))).toBe('ok');
    expect(failureOf(check(verifier, first))).toBe('replayed');
    expect(failureOf(check(verifier, second))).toBe('ok');
    expect(failureOf(check(verifier, second))).toBe('replayed');
  });

  test('keeps senders apart, and forgets a sender once its requests are all stale', () => {
    const verifier = new RequestVerifier(SECRET, new Set([HOST]));
    const a = new RequestSigner(SECRET, '3'.repeat(16));
    const b = new RequestSigner(SECRET, '4'.repeat(16));
    const fromA = sign(a);
    expect(failureOf(check(verifier, fromA))).toBe('ok');
    expect(failureOf(check(verifier, sign(b)))).toBe('ok'); // also number 1, another sender
    expect(verifier.senderCount).toBe(2);
    const later = T0 + 2 * AUTH_CLOCK_SKEW_MS + 1;
    expect(failureOf(check(verifier, sign(a, parts(), later), later))).toBe('ok');
    expect(verifier.senderCount).toBe(1); // b forgotten; a just heard
    // a's first request, replayed now, is refused for its age even though its number could be
    // forgotten.
    expect(failureOf(check(verifier, fromA, later))).toBe('stale');
  });
});

describe('the secret', () => {
  test('is refused when short, and never printed', () => {
    const short = Secret.fromFileContent(Buffer.from('x'.repeat(AUTH_SECRET_BYTES_MIN - 1)));
    expect(typeof short).toBe('string');
    expect(String(SECRET)).toBe('[secret]');
    expect(JSON.stringify({ SECRET })).toBe('{"SECRET":"[secret]"}');
  });

  test("one trailing newline is the editor's, not the secret's", () => {
    const verifier = new RequestVerifier(secretOf('0123456789abcdef'), new Set([HOST]));
    const signer = new RequestSigner(secretOf('0123456789abcdef\r\n'), '5'.repeat(16));
    expect(failureOf(check(verifier, sign(signer)))).toBe('ok');
  });
});

describe('open requests and host names', () => {
  test('only reads of /, /ui/..., /health and /metrics are open', () => {
    expect(isOpenRequest('GET', '/health')).toBe(true);
    expect(isOpenRequest('GET', '/ui/events')).toBe(true);
    expect(isOpenRequest('POST', '/ui/events')).toBe(false);
    expect(isOpenRequest('GET', '/metrics')).toBe(true);
    expect(isOpenRequest('GET', '/')).toBe(true);
    expect(isOpenRequest('POST', '/health')).toBe(false);
    expect(isOpenRequest('GET', '/kv/k')).toBe(false);
    expect(isOpenRequest('GET', '/query_servers')).toBe(false);
  });

  test('loopback is 127.0.0.0/8 and ::1; a wildcard is every interface', () => {
    for (const host of ['127.0.0.1', '127.9.8.7', '::1', '[::1]', 'localhost']) {
      expect([host, isLoopbackHost(host)]).toEqual([host, true]);
    }
    for (const host of ['0.0.0.0', '10.0.0.1', '128.0.0.1', '::', 'example.com', '1127.0.0.1']) {
      expect([host, isLoopbackHost(host)]).toEqual([host, false]);
    }
    expect(isWildcardHost('0.0.0.0')).toBe(true);
    expect(isWildcardHost('[::]')).toBe(true);
    expect(isWildcardHost('127.0.0.1')).toBe(false);
  });

  test('a process answers to its address, and to localhost on loopback', () => {
    expect([...hostNamesOf('127.0.0.1', 38000)].sort()).toEqual(
      ['127.0.0.1:38000', 'localhost:38000'].sort(),
    );
    expect([...hostNamesOf('::1', 38000)].sort()).toEqual(['[::1]:38000', 'localhost:38000']);
    const all = hostNamesOf('0.0.0.0', 38000);
    expect(all.has('127.0.0.1:38000')).toBe(true);
    expect(all.has('localhost:38000')).toBe(true);
  });
});
