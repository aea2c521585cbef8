// The far end of the RPC baseline, run as its own process (dist/bench/rpc-peer.js) so the
// bench's client and the server do not share one event loop. It serves:
//   lean: bare node:http, answering a small JSON POST (the floor an HTTP RPC can reach);
//   ours: our RpcServer (lib/http-server.ts: node:http for RPCs), zod validation at the edge.
// It prints one JSON line `{"lean":"HOST:PORT","ours":"HOST:PORT"}` on stdout once both listen,
// and exits when its stdin closes (the bench ended, however abruptly) or on SIGINT/SIGTERM.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as z from 'zod/mini';
import { formatAddress } from '../lib/address';
import { RpcServer } from '../lib/http-server';
import { createLogger } from '../lib/logger';
import { object, type Endpoint } from '../lib/messages';

export const BENCH_HOST = '127.0.0.1';
export const ECHO_PATH = '/bench/echo';
/** The lean server reads at most this much of a body; the bench sends well under 100 bytes. */
const LEAN_BODY_BYTES_MAX = 64 * 1024;

// Built as lib/messages.ts builds every message object (compiled), so "ours" measures our edge.
const EchoRequest = object({
  key: z.string().check(z.maxLength(1024)),
  n: z.number().check(z.int(), z.nonnegative()),
});
const EchoResponse = object({ key: z.string(), n: z.number().check(z.int(), z.nonnegative()) });
/** A tiny endpoint local to the bench: the same shape as a small get, without a store behind it. */
export const BenchEcho: Endpoint<typeof EchoRequest, typeof EchoResponse> = {
  path: ECHO_PATH,
  request: EchoRequest,
  response: EchoResponse,
  readOnly: true,
};

export interface PeerAddresses {
  readonly lean: string;
  readonly ours: string;
}

export function parsePeerAddresses(line: string): PeerAddresses {
  return z.object({ lean: z.string(), ours: z.string() }).parse(JSON.parse(line));
}

function startLean(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    let body = '';
    let tooLarge = false;
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      if (body.length + chunk.length > LEAN_BODY_BYTES_MAX) tooLarge = true;
      else body += chunk;
    });
    req.on('end', () => {
      let answer: string;
      let status = 200;
      try {
        if (tooLarge || req.method !== 'POST' || req.url !== ECHO_PATH) throw new Error('bad');
        const parsed = JSON.parse(body) as { key?: unknown; n?: unknown };
        answer = JSON.stringify({ key: parsed.key, n: parsed.n });
      } catch {
        status = 400;
        answer = '{"error":"bad request"}';
      }
      res.writeHead(status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(answer),
      });
      res.end(answer);
    });
  });
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, BENCH_HOST, () => resolve(server));
  });
}

async function main(): Promise<void> {
  const lean = await startLean();
  const rpc = new RpcServer(createLogger('bench-peer', 'warn'));
  rpc.route(BenchEcho, (request) => ({ key: request.key, n: request.n }));
  const ours = await rpc.listen(BENCH_HOST, [0]);

  const stop = (): void => {
    lean.closeAllConnections();
    lean.close();
    ours.server.closeAllConnections();
    ours.server.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();

  const addresses: PeerAddresses = {
    lean: formatAddress(BENCH_HOST, (lean.address() as AddressInfo).port),
    ours: ours.address,
  };
  process.stdout.write(`${JSON.stringify(addresses)}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`rpc-peer: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
