// Group commit: many writers, one sync per batch. A write joins the batch that is forming; the
// batch is synced (written and made durable by `sync`) as soon as no other sync is in flight, and
// every writer of that batch learns the outcome together. Writes that arrive while a sync runs
// form the next batch, so under load one sync covers many writes, and with no load a lone write
// waits for one sync only (the classic database technique: PostgreSQL's commit_delay/WAL flush,
// LevelDB's own writer queue in DBImpl::Write, lmdb-js's event-turn batching).
//
// Rules:
// - A writer's promise resolves only after the sync of the batch holding its write succeeded.
// - Batches are synced strictly in order, one at a time, so "my batch is durable" implies every
//   earlier batch is durable too: `flush()` waits for the newest batch only.
// - A failed sync rejects every writer of that batch and of every batch queued behind it, and
//   the group commit stays failed (fail-stop): after a failed fsync the kernel may have dropped
//   the dirty pages and a retry can report success for data that never reached the disk
//   (PostgreSQL's "fsyncgate", 2018). Nothing is ever acknowledged after a failure; the process
//   must restart and recover from what is on disk.
// - Two ways in. `write(op)` asks for a sync at once and its promise says when the op is durable.
//   `queue(op)` does not ask: the op rides on the next sync somebody asks for (a `write`, or a
//   `flush()`, which asks for everything queued before it), and is synced on its own at the latest
//   `lazySyncMs` after it was queued. A caller whose answer depends on its writes being durable
//   queues them and awaits `flush()`; a write nobody waits for (a 2PC commit whose acceptance is
//   already synced, server/participant.ts) then costs no sync of its own while others are asked
//   for, and the next vote no longer waits behind a sync started for it alone (only the timer's,
//   on a server that went quiet, is such a sync).
// - "Commit" in dht means the 2PC commit only, so the storage side of this file says "sync".
// - Everything is bounded: writes and bytes per batch, writes and bytes queued. A write that would
//   pass the queue's bounds throws at once (`retry`/`storage_busy`) and nothing is queued. A
//   caller whose writes must never fail half-way (server/durable-store.ts) gives no queue bound
//   and checks its own before it admits work; an op may be a unit of several writes
//   (`writesOf`), synced whole in one batch.

import { assert } from './assert';
import { DhtError } from './errors';

export interface GroupCommitConfig<Op> {
  /** Write `ops` and make them durable; resolve only once they are on disk, reject otherwise. */
  readonly sync: (ops: readonly Op[]) => Promise<void>;
  /** An op's size estimate in bytes (its key and value), for the byte bounds. */
  readonly bytesOf: (op: Op) => number;
  /**
   * How many writes an op holds, for the op bounds (1 unless given). An op that is a unit of
   * several writes is synced whole, in one batch, never split across two syncs.
   */
  readonly writesOf?: (op: Op) => number;
  readonly batchOpsMax: number;
  readonly batchBytesMax: number;
  /** Ops waiting for a sync (not counting the batch being synced). */
  readonly queueOpsMax: number;
  readonly queueBytesMax: number;
  /** The longest a `queue`d op waits for a sync nobody asked for (ms; 0, the next turn, unless given). */
  readonly lazySyncMs?: number;
}

export interface GroupCommitStats {
  /** Syncs that succeeded. */
  readonly syncs: number;
  /** Ops those syncs made durable. */
  readonly ops: number;
  readonly batchOpsLargest: number;
  readonly queuedOps: number;
  readonly queuedBytes: number;
  /** Ops in the sync in flight (0 when none). */
  readonly syncingOps: number;
}

/**
 * A sync failed (disk full, I/O error): this write and every later one are refused. A DhtError
 * of kind `unavailable`, so a request that needed the write is refused with 503 and says why.
 */
export class SyncFailedError extends DhtError {
  override name = 'SyncFailedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('unavailable', message, 'storage_failed');
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

interface Batch<Op> {
  /** Batches are numbered in queue order: asking for batch n asks for every batch before it. */
  readonly seq: number;
  readonly ops: Op[];
  /** Writes in `ops` (config `writesOf`). */
  writes: number;
  bytes: number;
  readonly durable: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

type Phase = 'open' | 'closing' | 'closed' | 'failed';

export class GroupCommit<Op> {
  /** Batches not yet handed to `sync`, oldest first; only the last one takes new writes. */
  private readonly batches: Batch<Op>[] = [];
  private queuedOps = 0;
  private queuedBytes = 0;
  /** The batch whose sync is in flight. */
  private syncing: Batch<Op> | undefined;
  private scheduled = false;
  /** Batches up to this `seq` are to be synced without waiting (someone waits for them). */
  private askedUpTo = 0;
  private nextSeq = 1;
  /** Bounds the wait of `queue`d ops nobody asked a sync for. */
  private lazyTimer: NodeJS.Timeout | undefined;
  private phase: Phase = 'open';
  private failure: SyncFailedError | undefined;
  private syncs = 0;
  private syncedOps = 0;
  private batchOpsLargest = 0;

  constructor(private readonly config: GroupCommitConfig<Op>) {
    assert(config.batchOpsMax >= 1, 'a batch holds at least one op');
    assert(config.batchBytesMax >= 1, 'a batch holds at least one byte');
    assert(config.queueOpsMax >= config.batchOpsMax, 'the queue holds at least one full batch');
    assert(config.queueBytesMax >= config.batchBytesMax, 'the queue holds a full batch of bytes');
  }

  /**
   * Queue `op` for the next sync. Throws (nothing queued) when the queue is full, closed or
   * failed; otherwise the promise resolves once `op` is durable, or rejects if its sync failed.
   * Writers that do not await the promise can await `flush()` instead: it is never left
   * unhandled.
   */
  write(op: Op): Promise<void> {
    const batch = this.add(op);
    this.ask(batch.seq);
    return batch.durable;
  }

  /**
   * Queue `op` without asking for a sync: it is made durable by the next sync anybody asks for
   * (`write`, `flush`), or on its own after `lazySyncMs`. Throws (nothing queued) as `write` does.
   */
  queue(op: Op): void {
    this.add(op);
    // Unreferenced: it never keeps a process alive, and `close()` syncs whatever is queued.
    this.lazyTimer ??= setTimeout(() => {
      this.lazyTimer = undefined;
      const newest = this.batches.at(-1);
      if (newest !== undefined) this.ask(newest.seq);
    }, this.config.lazySyncMs ?? 0).unref();
  }

  private add(op: Op): Batch<Op> {
    this.checkWritable();
    const bytes = this.config.bytesOf(op);
    assert(Number.isFinite(bytes) && bytes >= 0, 'an op has a size');
    const writes = this.config.writesOf?.(op) ?? 1;
    assert(Number.isSafeInteger(writes) && writes >= 1, 'an op holds at least one write');
    // An op larger than the whole queue is still taken when the queue is empty: a 1 MiB value
    // must always be storable, alone.
    const fits =
      (this.queuedOps === 0 || this.queuedOps + writes <= this.config.queueOpsMax) &&
      (this.queuedOps === 0 || this.queuedBytes + bytes <= this.config.queueBytesMax);
    if (!fits) {
      throw new DhtError(
        'retry',
        `storage queue full (${this.queuedOps} writes, ${this.queuedBytes} bytes waiting for a sync)`,
        'storage_busy',
      );
    }
    let batch = this.batches.at(-1);
    if (
      batch === undefined ||
      (batch.writes > 0 && batch.writes + writes > this.config.batchOpsMax) ||
      (batch.writes > 0 && batch.bytes + bytes > this.config.batchBytesMax)
    ) {
      batch = newBatch<Op>(this.nextSeq++);
      this.batches.push(batch);
    }
    batch.ops.push(op);
    batch.writes += writes;
    batch.bytes += bytes;
    this.queuedOps += writes;
    this.queuedBytes += bytes;
    return batch;
  }

  /** Resolves once every write queued so far is durable; rejects if any of them failed. */
  flush(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const queued = this.batches.at(-1);
    if (queued !== undefined) {
      this.ask(queued.seq);
      return queued.durable;
    }
    return this.syncing === undefined ? Promise.resolve() : this.syncing.durable;
  }

  /** Somebody waits for batch `seq` (and so for every batch before it): sync without delay. */
  private ask(seq: number): void {
    if (seq > this.askedUpTo) this.askedUpTo = seq;
    this.schedule();
  }

  /** Refuse new writes, then wait until every queued write is durable (or failed). */
  async close(): Promise<void> {
    if (this.phase === 'open') this.phase = 'closing';
    try {
      await this.flush();
    } finally {
      if (this.phase === 'closing') this.phase = 'closed';
    }
  }

  /** Writes not yet known to be durable: queued, or in the sync in flight. */
  get unsyncedOps(): number {
    return this.queuedOps + (this.syncing?.writes ?? 0);
  }

  /** Why writes are refused for good, if a sync failed. */
  get failed(): SyncFailedError | undefined {
    return this.failure;
  }

  get stats(): GroupCommitStats {
    return {
      syncs: this.syncs,
      ops: this.syncedOps,
      batchOpsLargest: this.batchOpsLargest,
      queuedOps: this.queuedOps,
      queuedBytes: this.queuedBytes,
      syncingOps: this.syncing?.writes ?? 0,
    };
  }

  private stopLazyTimer(): void {
    if (this.lazyTimer !== undefined) clearTimeout(this.lazyTimer);
    this.lazyTimer = undefined;
  }

  /** Throws the reason a write cannot be queued now, if any. */
  checkWritable(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.phase !== 'open') throw new Error('group commit is closed');
  }

  /**
   * Start the next sync after the current event-loop phase, so that writes issued by the same
   * burst of I/O callbacks (requests parsed from one poll) share the first sync as well.
   */
  private schedule(): void {
    if (this.scheduled || this.syncing !== undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.startNext();
    });
  }

  private startNext(): void {
    assert(this.syncing === undefined, 'one sync at a time');
    if (this.failure !== undefined) return;
    const head = this.batches[0];
    // Nobody waits for the head batch yet (only `queue`d ops): it waits for an ask or its timer.
    if (head === undefined || head.seq > this.askedUpTo) return;
    const batch = this.batches.shift()!;
    if (this.batches.length === 0) this.stopLazyTimer();
    assert(batch.ops.length >= 1, 'a queued batch is never empty');
    this.queuedOps -= batch.writes;
    this.queuedBytes -= batch.bytes;
    assert(this.queuedOps >= 0 && this.queuedBytes >= 0, 'queue counters never go negative');
    this.syncing = batch;
    let outcome: Promise<void>;
    try {
      outcome = this.config.sync(batch.ops);
    } catch (err) {
      outcome = Promise.reject(err);
    }
    outcome.then(
      () => this.synced(batch),
      (err: unknown) => this.fail(batch, err),
    );
  }

  private synced(batch: Batch<Op>): void {
    assert(this.syncing === batch, 'the batch that finished is the one in flight');
    this.syncing = undefined;
    this.syncs++;
    this.syncedOps += batch.writes;
    this.batchOpsLargest = Math.max(this.batchOpsLargest, batch.writes);
    batch.resolve();
    // Writes that arrived during this sync are waiting already: no reason to wait any longer.
    this.startNext();
  }

  private fail(batch: Batch<Op>, err: unknown): void {
    assert(this.syncing === batch, 'the batch that failed is the one in flight');
    this.syncing = undefined;
    const message = err instanceof Error ? err.message : String(err);
    this.failure = new SyncFailedError(`storage sync failed, no write acknowledged: ${message}`, {
      cause: err,
    });
    this.phase = 'failed';
    this.stopLazyTimer();
    batch.reject(this.failure);
    for (const queued of this.batches.splice(0)) queued.reject(this.failure);
    this.queuedOps = 0;
    this.queuedBytes = 0;
  }
}

function newBatch<Op>(seq: number): Batch<Op> {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const durable = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Many writers share this promise and some never await it (they await flush()): a rejection
  // must not surface as an unhandled one. Writers that do await it still see the rejection.
  durable.catch(() => {});
  return { seq, ops: [], writes: 0, bytes: 0, durable, resolve, reject };
}
