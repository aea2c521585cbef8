// The /kv shell (server/kv-routes.ts) with a cluster client the test plays by hand: the strict
// key decoding, the raw value body and its bound, methods, and every operating error's status,
// body and headers from lib/errors.ts's /kv column. Served by the real RPC shell on an
// OS-assigned loopback port and called with Node's fetch; the real cluster is in
// test/integration/kv-api.test.ts.

import {
  DhtError,
  ERROR_KINDS,
  KV_HTTP_STATUS,
  kvErrorAnswer,
  type ErrorKind,
  type ErrorReason,
} from '../../lib/errors';
import { RpcServer, type ListeningServer } from '../../lib/http-server';
import { KEY_BYTES_MAX, KV_RETRY_AFTER_S, VALUE_BYTES_MAX } from '../../lib/limits';
import { createLogger } from '../../lib/logger';
import http from 'node:http';
import {
  decodeKey,
  isKvTarget,
  keyOfTarget,
  kvRoutes,
  type KvClient,
} from '../../server/kv-routes';

type Call = { op: 'getr' | 'delr'; key: string } | { op: 'setr'; key: string; value: string };

const calls: Call[] = [];
const values = new Map<string, string>();
/** Thrown by the next operation instead of running it (then cleared). */
let failNext: unknown;

const client: KvClient = {
  getr: (key) => {
    calls.push({ op: 'getr', key });
    return run(() => {
      const value = values.get(key);
      if (value === undefined) throw new DhtError('not_found', 'key not found');
      return { value };
    });
  },
  setr: (key, value) => {
    calls.push({ op: 'setr', key, value });
    return run(() => values.set(key, value));
  },
  delr: (key) => {
    calls.push({ op: 'delr', key });
    return run(() => values.delete(key));
  },
};

async function run<T>(operation: () => T): Promise<T> {
  await Promise.resolve();
  const failure = failNext;
  failNext = undefined;
  if (failure !== undefined) throw failure;
  return operation();
}

let listening: ListeningServer;
let base: string;

beforeAll(async () => {
  const logger = createLogger('kv-routes-test', 'silent');
  const rpc = new RpcServer(logger);
  kvRoutes(rpc, client, logger);
  listening = await rpc.listen('127.0.0.1', [0]);
  base = `http://${listening.address}`;
});

afterAll(async () => {
  listening.server.closeAllConnections();
  await new Promise((resolve) => listening.server.close(resolve));
});

beforeEach(() => {
  calls.length = 0;
  values.clear();
  failNext = undefined;
});

function kv(key: string, init?: RequestInit): Promise<Response> {
  return fetch(`${base}/kv/${encodeURIComponent(key)}`, init);
}

async function expectError(
  response: Response,
  status: number,
  kind: ErrorKind,
  reason?: ErrorReason,
): Promise<Record<string, unknown>> {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
  const body = (await response.json()) as Record<string, unknown>;
  expect(body).toEqual({
    kind,
    error: expect.any(String),
    ...(reason === undefined ? {} : { reason }),
  });
  return body;
}

describe('decodeKey: strict percent-decoding of UTF-8', () => {
  test.each([
    ['plain', 'plain'],
    ['a%20key%20with%20spaces', 'a key with spaces'],
    ['a/b/c', 'a/b/c'],
    ['a%2Fb%2fc', 'a/b/c'],
    ['100%25', '100%'],
    ['%D0%BA%D0%BB%D1%8E%D1%87%20%E9%8D%B5', 'ключ 鍵'],
    ['%F0%9F%94%91', '🔑'],
    ['%EF%BB%BFbom', '\uFEFFbom'], // a leading U+FEFF is part of the key
    ['%00', '\u0000'],
    ['line%0Akey', 'line\nkey'],
    ['..', '..'],
    ['a+b', 'a+b'], // a path, not a form: '+' is a plus
  ])('%s -> %j', (encoded, key) => {
    expect(decodeKey(encoded)).toBe(key);
  });

  test.each([
    ['%', 'malformed percent-encoding'],
    ['a%4', 'malformed percent-encoding'],
    ['%zz', 'malformed percent-encoding'],
    ['%%41', 'malformed percent-encoding'],
    ['%C3', 'not valid UTF-8'], // a lead byte alone
    ['%FF', 'not valid UTF-8'],
    ['%C0%AF', 'not valid UTF-8'], // overlong '/'
    ['%ED%A0%80', 'not valid UTF-8'], // a UTF-16 surrogate
    ['é', 'percent-encoded'], // never reaches us from Node's parser, refused anyway
    ['', 'empty'],
  ])('%j is refused: 400 bad_request (%s)', (encoded, message) => {
    expect(() => decodeKey(encoded)).toThrow(message);
    const err = catchError(() => decodeKey(encoded));
    expect(kvErrorAnswer(err).status).toBe(400);
    expect(err.reason).toBe('bad_request');
  });

  test('the bound is in bytes once decoded: 1024 accepted, 1025 is 414', () => {
    expect(decodeKey('k'.repeat(KEY_BYTES_MAX))).toHaveLength(KEY_BYTES_MAX);
    expect(decodeKey('%C3%A9'.repeat(KEY_BYTES_MAX / 2))).toBe('é'.repeat(KEY_BYTES_MAX / 2));
    for (const tooLong of ['k'.repeat(KEY_BYTES_MAX + 1), `${'%C3%A9'.repeat(512)}k`]) {
      const err = catchError(() => decodeKey(tooLong));
      expect(err.reason).toBe('key_too_long');
      expect(kvErrorAnswer(err).status).toBe(414);
    }
  });

  test('keyOfTarget: after /kv/, any letter case, absolute form; no query string', () => {
    expect(keyOfTarget('/kv/a%20b')).toBe('a b');
    expect(keyOfTarget('/KV/a')).toBe('a');
    expect(keyOfTarget('/kv//lead')).toBe('/lead');
    expect(keyOfTarget('http://127.0.0.1:1/kv/x%2Fy')).toBe('x/y');
    expect(() => keyOfTarget('/kv')).toThrow('empty');
    expect(() => keyOfTarget('/kv/')).toThrow('empty');
    expect(() => keyOfTarget('/kv/a?b')).toThrow('query string');
    expect(() => keyOfTarget('/kv/a?')).toThrow('query string');
    expect(() => keyOfTarget('/kv/a#b')).toThrow('fragment');
    expect(() => keyOfTarget('/kv#b')).toThrow('fragment');
    expect(() => keyOfTarget('/kvb')).toThrow('not a /kv/KEY path');
  });

  test.each([
    ['/kv/k', true],
    ['/KV/k', true],
    ['/kv', true],
    ['/kv/', true],
    ['/kv?x', true],
    ['/kv#x', true], // then refused by keyOfTarget, not taken as the key 'x'
    ['http://127.0.0.1:1/kv/k', true],
    ['/kvx', false],
    ['/kv%2Fk', false],
    ['/', false],
    ['/get', false],
    ['/x/kv/k', false],
  ])('isKvTarget(%j) is %s (what express mounted on /kv matched)', (target, served) => {
    expect(isKvTarget(target)).toBe(served);
  });
});

describe('the /kv status of every kind and reason (lib/errors.ts)', () => {
  test('the kind table is the contract: 404, 409, 400, 503, 504 (and 401 without the secret)', () => {
    expect(KV_HTTP_STATUS).toEqual({
      not_found: 404,
      aborted: 409,
      rejected: 409,
      invalid: 400,
      retry: 503,
      unknown: 504,
      unavailable: 503,
      unauthorized: 401,
      usage: 400,
    });
  });

  const cases: [string, DhtError, number][] = [
    ...(Object.keys(ERROR_KINDS) as ErrorKind[]).map((kind): [string, DhtError, number] => [
      kind,
      new DhtError(kind, `a ${kind}`),
      KV_HTTP_STATUS[kind],
    ]),
    ['busy writing', new DhtError('aborted', 'busy', 'key_busy'), 409],
    ['busy reading (past the deadline)', new DhtError('retry', 'busy', 'key_busy'), 409],
    ['rebalancing', new DhtError('retry', 'rebalancing', 'rebalancing'), 503],
    ['no servers', new DhtError('unavailable', 'none', 'no_servers'), 503],
    ['deleted', new DhtError('not_found', 'deleted', 'key_deleted'), 404],
  ];

  test.each(cases)(
    '%s: over HTTP, status, body and Retry-After exactly on 503',
    async (_, err, status) => {
      failNext = err;
      const response = await kv('k', { method: 'PUT', body: 'v' });
      await expectError(response, status, err.kind, err.reason);
      expect(response.headers.get('retry-after')).toBe(
        status === 503 ? String(KV_RETRY_AFTER_S) : null,
      );
      expect(values.has('k')).toBe(false);
    },
  );

  test('anything other than an operating error is a bug: 500, kind unknown', async () => {
    failNext = new TypeError('a bug');
    await expectError(await kv('k'), 500, 'unknown');
  });
});

describe('requests', () => {
  test('PUT passes the exact body, GET answers it as text/plain; charset=utf-8, DELETE removes it', async () => {
    const value = '\uFEFF👩‍🚀 Ελληνικά "q" a=b/%\r\n\u0000';
    const put = await kv('ключ/🔑', { method: 'PUT', body: value });
    expect(put.status).toBe(204);
    expect(await put.text()).toBe('');
    expect(calls).toEqual([{ op: 'setr', key: 'ключ/🔑', value }]);

    const get = await kv('ключ/🔑');
    expect(get.status).toBe(200);
    expect(get.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(get.headers.get('cache-control')).toBe('no-store');
    expect(Buffer.from(await get.arrayBuffer()).equals(Buffer.from(value, 'utf8'))).toBe(true);

    const head = await kv('ключ/🔑', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(Buffer.byteLength(value)));
    expect(await head.text()).toBe('');

    expect((await kv('ключ/🔑', { method: 'DELETE' })).status).toBe(204);
    await expectError(await kv('ключ/🔑'), 404, 'not_found');
    expect(calls.map((c) => c.op)).toEqual(['setr', 'getr', 'getr', 'delr', 'getr']);
  });

  test('an empty body is the empty value; so is a PUT with no body at all', async () => {
    expect((await kv('empty', { method: 'PUT', body: '' })).status).toBe(204);
    expect((await kv('none', { method: 'PUT' })).status).toBe(204);
    expect(values.get('empty')).toBe('');
    expect(values.get('none')).toBe('');
    const get = await kv('empty');
    expect(get.status).toBe(200);
    expect(await get.text()).toBe('');
  });

  test('any Content-Type: the body is the value, bytes as sent', async () => {
    const body = '{"not":"parsed"}';
    const put = await kv('json', {
      method: 'PUT',
      body,
      headers: { 'content-type': 'application/json' },
    });
    expect(put.status).toBe(204);
    expect(values.get('json')).toBe(body);
  });

  test('1 MiB is accepted; 1 MiB + 1 byte is 413 and nothing is asked of the cluster', async () => {
    const largest = 'é'.repeat(VALUE_BYTES_MAX / 2);
    expect((await kv('big', { method: 'PUT', body: largest })).status).toBe(204);
    expect(values.get('big')).toBe(largest);
    calls.length = 0;
    await expectError(
      await kv('big', { method: 'PUT', body: `${largest}x` }),
      413,
      'invalid',
      'value_too_large',
    );
    expect(calls).toEqual([]);
    expect(values.get('big')).toBe(largest);
  });

  test('a compressed body is 400 (no content coding is decoded); nothing asked', async () => {
    const response = await kv('gz', {
      method: 'PUT',
      body: 'not really gzip',
      headers: { 'content-encoding': 'gzip' },
    });
    const body = await expectError(response, 400, 'invalid', 'bad_request');
    expect(body.error).toContain('content encoding "gzip"');
    expect(calls).toEqual([]);
  });

  test('an empty Content-Encoding header is no coding: the value is stored', async () => {
    const { port } = listening.server.address() as { port: number };
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method: 'PUT',
          path: '/kv/plain',
          headers: { 'content-encoding': '', 'content-length': '1' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode);
        },
      );
      req.on('error', reject);
      req.end('v');
    });
    expect(status).toBe(204);
    expect(values.get('plain')).toBe('v');
  });

  test('a client gone before its body ended: nothing asked, nothing answered, still serving', async () => {
    const { port } = listening.server.address() as { port: number };
    await new Promise<void>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1',
        port,
        method: 'PUT',
        path: '/kv/half',
        headers: { 'content-length': '1000' },
      });
      req.on('error', () => resolve()); // the socket we destroy
      req.on('response', () => reject(new Error('answered a request whose body never ended')));
      req.write('only part of it', () => setImmediate(() => req.destroy()));
    });
    expect((await kv('after', { method: 'PUT', body: 'v' })).status).toBe(204);
    expect(calls).toEqual([{ op: 'setr', key: 'after', value: 'v' }]);
  });

  test('a body that is not UTF-8 is 400', async () => {
    const body = new Uint8Array([0x61, 0xff, 0x62]);
    await expectError(await kv('bytes', { method: 'PUT', body }), 400, 'invalid', 'bad_request');
    expect(calls).toEqual([]);
  });

  test('bad keys: 400 (empty, malformed, query string), 414 (too long); nothing asked', async () => {
    for (const path of ['/kv', '/kv/', '/kv/%zz', '/kv/%C3', '/kv/a?b=c']) {
      for (const method of ['GET', 'PUT', 'DELETE']) {
        await expectError(await fetch(`${base}${path}`, { method }), 400, 'invalid', 'bad_request');
      }
    }
    await expectError(await kv('k'.repeat(KEY_BYTES_MAX + 1)), 414, 'invalid', 'key_too_long');
    expect(calls).toEqual([]);
    expect((await kv('k'.repeat(KEY_BYTES_MAX))).status).toBe(404); // the longest key is fine
  });

  test.each(['POST', 'PATCH', 'OPTIONS'])(
    '%s is 405 with Allow and a JSON body',
    async (method) => {
      const response = await kv('k', { method, body: method === 'OPTIONS' ? undefined : 'v' });
      await expectError(response, 405, 'invalid', 'method_not_allowed');
      expect(response.headers.get('allow')).toBe('GET, HEAD, PUT, DELETE');
      expect(calls).toEqual([]);
    },
  );

  test('the RPC shell is untouched: other paths still 404 as before', async () => {
    const response = await fetch(`${base}/kvx`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toBe('no endpoint GET /kvx');
  });
});

function catchError(f: () => unknown): DhtError {
  try {
    f();
  } catch (err) {
    if (err instanceof DhtError) return err;
    throw err;
  }
  throw new Error('expected a DhtError');
}
