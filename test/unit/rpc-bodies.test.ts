// The RPC routes' request bodies (lib/request-body.ts, served by lib/http-server.ts without express):
// the answers body-parser gave before (415 for another media type, charset or a compressed body,
// 413 over the route's bound, 400 for bad JSON, `{}` for no body), a refused body read off so that
// the connection stays usable; and what is not an RPC POST still reaching express. Served on an OS-assigned loopback port, called with raw node:http requests.

import http from 'node:http';
import * as z from 'zod/mini';
import { createLogger } from '../../lib/logger';
import { RpcServer, type ListeningServer } from '../../lib/http-server';
import type { Endpoint } from '../../lib/messages';
import { httpRequest } from '../support/http-request';

const Echo = z.object({ name: z.optional(z.string()) });
const EchoEndpoint: Endpoint<typeof Echo, typeof Echo> = {
  path: '/echo',
  request: Echo,
  response: Echo,
  readOnly: true,
};
const BODY_BYTES_MAX = 1000;

let listening: ListeningServer;
const received: unknown[] = [];

beforeAll(async () => {
  const rpc = new RpcServer(createLogger('test', 'silent')).route(
    EchoEndpoint,
    (request) => {
      received.push(request);
      return request;
    },
    { bodyBytesMax: BODY_BYTES_MAX },
  );
  rpc.app.get('/page', (_req, res) => {
    res.type('text/plain').send('page');
  });
  listening = await rpc.listen('127.0.0.1', [0]);
});

afterAll(async () => {
  listening.server.closeAllConnections();
  await new Promise((resolve) => listening.server.close(resolve));
});

function post(body: string | undefined, headers: Record<string, string>) {
  return httpRequest(listening.address, '/echo', { method: 'POST', body, headers });
}

const JSON_TYPE = { 'content-type': 'application/json' };

test('a JSON body is validated and answered as JSON', async () => {
  const reply = await post('{"name":"a"}', JSON_TYPE);
  expect(reply).toEqual({
    status: 200,
    contentType: 'application/json; charset=utf-8',
    body: '{"name":"a"}',
  });
  const withCharset = await post('{"name":"b"}', {
    'content-type': 'Application/JSON; charset="UTF-8"',
  });
  expect(withCharset.body).toBe('{"name":"b"}');
});

test('no body counts as {} (an empty POST, as curl sends it)', async () => {
  const reply = await post(undefined, {});
  expect(reply.status).toBe(200);
  expect(reply.body).toBe('{}');
  const empty = await post('', JSON_TYPE);
  expect(empty.body).toBe('{}');
});

test.each([
  ['another media type', { 'content-type': 'text/plain' }, 'request body must be JSON'],
  ['no media type', {}, 'request body must be JSON'],
  [
    'another charset',
    { 'content-type': 'application/json; charset=latin1' },
    'unsupported charset "LATIN1"',
  ],
  [
    'a compressed body',
    { ...JSON_TYPE, 'content-encoding': 'gzip' },
    'unsupported content encoding "gzip"',
  ],
])('%s: 415, and the handler never runs', async (_what, headers, error) => {
  const before = received.length;
  const reply = await post('{"name":"x"}', headers);
  expect(reply.status).toBe(415);
  expect(JSON.parse(reply.body)).toEqual({
    kind: 'invalid',
    error: expect.stringContaining(error) as unknown,
    reason: 'bad_request',
  });
  expect(received.length).toBe(before);
});

test.each([
  ['not JSON', '{"name":', 'malformed request: '],
  ['JSON, but not an object or array', '"name"', 'must be an object or an array'],
])('%s: 400', async (_what, body, error) => {
  const reply = await post(body, JSON_TYPE);
  expect(reply.status).toBe(400);
  expect(JSON.parse(reply.body)).toEqual({
    kind: 'invalid',
    error: expect.stringContaining(error) as unknown,
    reason: 'bad_request',
  });
});

test('a body the schema refuses: 400 with the field named', async () => {
  const reply = await post('{"name":5}', JSON_TYPE);
  expect(reply.status).toBe(400);
  expect(reply.body).toContain('name');
});

test('over the route bound: 413, declared or chunked, and the handler never runs', async () => {
  const before = received.length;
  const big = JSON.stringify({ name: 'x'.repeat(BODY_BYTES_MAX) });
  const declared = await post(big, JSON_TYPE);
  expect(declared.status).toBe(413);
  expect(JSON.parse(declared.body)).toMatchObject({ error: 'request body too large' });
  const chunked = await post(big, { ...JSON_TYPE, 'transfer-encoding': 'chunked' });
  expect(chunked.status).toBe(413);
  expect(received.length).toBe(before);
});

/** Two requests on one kept-alive connection: whether the second went on the same socket. */
async function secondOnSameSocket(firstBody: string): Promise<boolean> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const send = (body: string) =>
    new Promise<{ status: number; socket: unknown }>((resolve, reject) => {
      const request = http.request(
        `http://${listening.address}/echo`,
        { method: 'POST', agent, headers: JSON_TYPE },
        (response) => {
          response.resume();
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, socket: request.socket }),
          );
        },
      );
      request.on('error', reject);
      request.end(body);
    });
  try {
    const first = await send(firstBody);
    const second = await send('{"name":"after"}');
    expect(second.status).toBe(200);
    return first.socket === second.socket;
  } finally {
    agent.destroy();
  }
}

test('a refused body is read off and dropped: the connection serves the next request', async () => {
  expect(await secondOnSameSocket('{"name":"ok"}')).toBe(true);
  expect(await secondOnSameSocket('{"name":')).toBe(true);
  const huge = JSON.stringify({ name: 'x'.repeat(64 * BODY_BYTES_MAX) });
  expect(await secondOnSameSocket(huge)).toBe(true);
});

test('what is not an RPC POST goes to express: its routes, and the 404 of unknown paths', async () => {
  const page = await httpRequest(listening.address, '/page');
  expect(page).toMatchObject({ status: 200, body: 'page' });
  const getOfRpc = await httpRequest(listening.address, '/echo');
  expect(getOfRpc.status).toBe(404);
  expect(JSON.parse(getOfRpc.body)).toMatchObject({ error: 'no endpoint GET /echo' });
  const unknown = await httpRequest(listening.address, '/nothing', { method: 'POST' });
  expect(unknown.status).toBe(404);
});
