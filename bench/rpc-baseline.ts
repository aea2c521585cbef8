// The RPC limit: how many small request/response round trips per second one process can drive
// against another over loopback, and at what latency. Two stacks, same payload:
//   lean: undici Pool (keep-alive) -> bare node:http      (the floor HTTP/1.1 allows here)
//   ours: lib/http-client `call` (node:http + keep-alive agent) -> RpcServer (node:http, zod)
// Every later figure (SDK getr/setr, CLI, rebalancing) is read as a ratio against these.
// Two crossed cases split our cost between the two ends:
//   ourServer: undici Pool -> RpcServer             (what our server side costs)
//   ourClient: lib/http-client `call` -> node:http  (what our client side costs)

import fs from 'node:fs';
import path from 'node:path';
import { Pool } from 'undici';
import { assert } from '../lib/assert';
import { call } from '../lib/http-client';
import { BenchEcho, ECHO_PATH, parsePeerAddresses } from './rpc-peer';
import {
  caseFigures,
  fmt,
  killChild,
  runLoad,
  startChild,
  type CaseFigures,
  type LoadResult,
  type Table,
} from './stats';

export type RpcStack = 'lean' | 'ours' | 'ourServer' | 'ourClient';

export interface RpcBaselineOptions {
  /** Closed-loop concurrencies to measure; the JSON keys are `c${concurrency}`. */
  readonly concurrencies: readonly number[];
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly maxOps: number;
}

export const RPC_FULL: RpcBaselineOptions = {
  concurrencies: [1, 64],
  durationMs: 8_000,
  warmupMs: 1_000,
  maxOps: 2_000_000,
};
export const RPC_QUICK: RpcBaselineOptions = {
  concurrencies: [1, 64],
  durationMs: 2_000,
  warmupMs: 300,
  maxOps: 500_000,
};

export interface RpcCase extends CaseFigures {
  readonly stack: RpcStack;
  readonly elapsedMs: number;
}

export interface RpcRatio {
  /** ours/lean requests per second: 1 means our stack costs nothing extra. */
  readonly throughput: number;
  /** ours/lean latency at each percentile: 1 means no extra latency. */
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
}

export interface RpcBaseline {
  readonly durationMs: number;
  readonly payload: string;
  readonly lean: Readonly<Record<string, RpcCase>>;
  readonly ours: Readonly<Record<string, RpcCase>>;
  readonly oursOverLean: Readonly<Record<string, RpcRatio>>;
  /** The crossed cases: one end ours, the other lean. */
  readonly ourServer: Readonly<Record<string, RpcCase>>;
  readonly ourClient: Readonly<Record<string, RpcCase>>;
}

/** The peer script next to this one (dist/bench/rpc-peer.js once built). */
function peerScript(): string {
  const script = path.join(__dirname, 'rpc-peer.js');
  assert(fs.existsSync(script), `${script} missing: run the bench from dist (npm run bench)`);
  return script;
}

/** A request body of the size of a small get: a key and a counter. */
function echoBody(i: number): { key: string; n: number } {
  return { key: `bench-key-${i % 1000}`, n: i };
}

export async function measureRpcBaseline(options: RpcBaselineOptions): Promise<RpcBaseline> {
  const peer = await startChild(peerScript(), []);
  try {
    const addresses = parsePeerAddresses(peer.firstLine);
    const lean: Record<string, RpcCase> = {};
    const ours: Record<string, RpcCase> = {};
    const oursOverLean: Record<string, RpcRatio> = {};
    const ourServer: Record<string, RpcCase> = {};
    const ourClient: Record<string, RpcCase> = {};
    for (const concurrency of options.concurrencies) {
      const name = `c${concurrency}`;
      lean[name] = await measureUndici('lean', addresses.lean, concurrency, options);
      ours[name] = await measureCall('ours', addresses.ours, concurrency, options);
      ourServer[name] = await measureUndici('ourServer', addresses.ours, concurrency, options);
      ourClient[name] = await measureCall('ourClient', addresses.lean, concurrency, options);
      oursOverLean[name] = {
        throughput: ours[name].opsPerSec / lean[name].opsPerSec,
        p50: ours[name].p50Ms / lean[name].p50Ms,
        p99: ours[name].p99Ms / lean[name].p99Ms,
        p999: ours[name].p999Ms / lean[name].p999Ms,
      };
    }
    return {
      durationMs: options.durationMs,
      payload: JSON.stringify(echoBody(123456)),
      lean,
      ours,
      oursOverLean,
      ourServer,
      ourClient,
    };
  } finally {
    await killChild(peer.child);
  }
}

async function measureUndici(
  stack: RpcStack,
  address: string,
  concurrency: number,
  options: RpcBaselineOptions,
): Promise<RpcCase> {
  const pool = new Pool(`http://${address}`, {
    connections: concurrency,
    pipelining: 1,
    keepAliveTimeout: 60_000,
  });
  try {
    const op = async (i: number): Promise<void> => {
      const { statusCode, body } = await pool.request({
        path: ECHO_PATH,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(echoBody(i)),
      });
      const answer = (await body.json()) as { n?: unknown };
      if (statusCode !== 200 || answer.n !== i)
        throw new Error(`${stack}: bad answer ${statusCode}`);
    };
    return await loadCase(stack, concurrency, op, options);
  } finally {
    await pool.close();
  }
}

async function measureCall(
  stack: RpcStack,
  address: string,
  concurrency: number,
  options: RpcBaselineOptions,
): Promise<RpcCase> {
  const op = async (i: number): Promise<void> => {
    const answer = await call(address, BenchEcho, echoBody(i), { timeoutMs: 5_000 });
    if (answer.n !== i) throw new Error(`${stack}: bad answer`);
  };
  return loadCase(stack, concurrency, op, options);
}

async function loadCase(
  stack: RpcStack,
  concurrency: number,
  op: (i: number) => Promise<void>,
  options: RpcBaselineOptions,
): Promise<RpcCase> {
  // Warm-up: connections opened, JIT settled; not recorded.
  await runLoad({ concurrency, durationMs: options.warmupMs, maxOps: options.maxOps, op });
  const r: LoadResult = await runLoad({
    concurrency,
    durationMs: options.durationMs,
    maxOps: options.maxOps,
    op,
  });
  return {
    stack,
    ...caseFigures(r),
    elapsedMs: r.elapsedMs,
  };
}

const STACK_LABELS: Readonly<Record<RpcStack, string>> = {
  lean: 'lean: undici -> node:http',
  ours: 'ours: call -> RpcServer',
  ourServer: '  undici -> RpcServer',
  ourClient: '  call -> node:http',
};

export function rpcTables(result: RpcBaseline): Table[] {
  const rows: string[][] = [];
  const row = (c: RpcCase): string[] => [
    STACK_LABELS[c.stack],
    String(c.concurrency),
    fmt(c.opsPerSec),
    fmt(c.p50Ms, 3),
    fmt(c.p99Ms, 3),
    fmt(c.p999Ms, 3),
    String(c.errors),
  ];
  for (const name of Object.keys(result.lean)) {
    const ratio = result.oursOverLean[name];
    rows.push(
      row(result.lean[name]),
      row(result.ours[name]),
      [
        '  ours/lean',
        String(result.lean[name].concurrency),
        fmt(ratio.throughput, 2),
        fmt(ratio.p50, 2),
        fmt(ratio.p99, 2),
        fmt(ratio.p999, 2),
        '',
      ],
      row(result.ourServer[name]),
      row(result.ourClient[name]),
    );
  }
  return [
    {
      title: `RPC baseline: small JSON POST over loopback keep-alive (${fmt(result.durationMs)} ms per case)`,
      header: ['client -> server', 'conc', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'errors'],
      rows,
    },
  ];
}
