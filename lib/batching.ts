// Adaptive request batching per address (group commit for RPCs). Under load, a client's cost is
// per HTTP request, not per byte, so concurrent requests to one server share a round trip:
// requests go out alone while fewer than BATCH_PIPELINE_MAX are in flight to that address (no
// added latency at low concurrency); beyond that they queue, and every completion sends the queue
// as one /batch request. The server runs each entry through its route exactly as if it had come
// alone (lib/http-server.ts), so batching is invisible to the protocols above.

import type * as z from 'zod/mini';
import { interpretAnswer, post, UnreachableError, type CallOptions } from './http-client';
import {
  BATCH_ESTIMATED_BYTES_MAX,
  BATCH_PIPELINE_MAX,
  BATCH_REQUESTS_MAX,
  RPC_TIMEOUT_MS_DEFAULT,
} from './limits';
import { BatchResponse, TransportApi, type Endpoint } from './messages';
import { DhtError } from './errors';

interface Queued {
  readonly path: string;
  readonly body: unknown;
  /** Estimated request size, to bound a batch by bytes as well as by count. */
  readonly bytes: number;
  readonly timeoutMs: number;
  readonly settle: (status: number, data: unknown) => void;
  readonly fail: (err: unknown) => void;
}

class AddressBatcher {
  private inFlight = 0;
  private readonly queue: Queued[] = [];

  constructor(private readonly address: string) {}

  enqueue(item: Queued): void {
    this.queue.push(item);
    this.flush();
  }

  private flush(): void {
    while (this.inFlight < BATCH_PIPELINE_MAX && this.queue.length > 0) {
      const items = this.takeBatch();
      this.inFlight++;
      void this.send(items).finally(() => {
        this.inFlight--;
        this.flush();
      });
    }
  }

  /** The queue's head, up to BATCH_REQUESTS_MAX requests and BATCH_ESTIMATED_BYTES_MAX (at least one). */
  private takeBatch(): Queued[] {
    let count = 0;
    let bytes = 0;
    while (count < this.queue.length && count < BATCH_REQUESTS_MAX) {
      bytes += this.queue[count].bytes;
      if (count > 0 && bytes > BATCH_ESTIMATED_BYTES_MAX) break;
      count++;
    }
    return this.queue.splice(0, count);
  }

  private async send(items: readonly Queued[]): Promise<void> {
    if (items.length === 1) {
      const [item] = items;
      try {
        const { status, data } = await post(this.address, item.path, item.body, item.timeoutMs);
        item.settle(status, data);
      } catch (err) {
        item.fail(err);
      }
      return;
    }
    try {
      const timeoutMs = Math.max(...items.map((i) => i.timeoutMs));
      const { status, data } = await post(
        this.address,
        TransportApi.batch.path,
        { requests: items.map((i) => ({ path: i.path, body: i.body })) },
        timeoutMs,
      );
      const parsed = BatchResponse.safeParse(data);
      if (status !== 200 || !parsed.success || parsed.data.responses.length !== items.length) {
        throw new DhtError('unknown', `bad batch answer (HTTP ${status}) from ${this.address}`);
      }
      // Entries the server did not execute because its answer was full go again, first in line.
      const again: Queued[] = [];
      parsed.data.responses.forEach((r, i) => {
        if (isBatchFull(r.status, r.body)) again.push(items[i]);
        else items[i].settle(r.status, r.body);
      });
      this.queue.unshift(...again);
    } catch (err) {
      // A transport failure is every entry's: each may or may not have been processed.
      for (const item of items) item.fail(err);
    }
  }
}

const batchers = new Map<string, AddressBatcher>();

/** `call`, sharing round trips with concurrent calls to the same address. */
export function callBatched<Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
  address: string,
  endpoint: Endpoint<Req, Res>,
  body: z.infer<Req>,
  options: CallOptions = {},
): Promise<z.infer<Res>> {
  let batcher = batchers.get(address);
  if (batcher === undefined) {
    batcher = new AddressBatcher(address);
    batchers.set(address, batcher);
  }
  return new Promise((resolve, reject) => {
    batcher.enqueue({
      path: endpoint.path,
      body,
      bytes: estimateBytes(body),
      timeoutMs: options.timeoutMs ?? RPC_TIMEOUT_MS_DEFAULT,
      settle: (status, data) => {
        try {
          resolve(interpretAnswer(address, endpoint, status, data));
        } catch (err) {
          reject(err);
        }
      },
      fail: (err) =>
        reject(
          err instanceof DhtError ? err : new UnreachableError(address, 'broken', String(err)),
        ),
    });
  });
}

function isBatchFull(status: number, body: unknown): boolean {
  return (
    status === 503 &&
    typeof body === 'object' &&
    body !== null &&
    (body as { reason?: unknown }).reason === 'batch_full'
  );
}

/** Sum of the lengths of the strings in a request body (its bulk), plus a little per field. */
function estimateBytes(value: unknown): number {
  if (typeof value === 'string') return value.length + 2;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + estimateBytes(v) + 1, 2);
  if (typeof value === 'object' && value !== null) {
    let n = 2;
    for (const [k, v] of Object.entries(value)) n += k.length + 4 + estimateBytes(v);
    return n;
  }
  return 8;
}
