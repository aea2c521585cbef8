// Executes rebalance plans (the shell around server/rebalance-planner.ts). The copy phase drains
// prepared transactions, then streams batched transfers to every target in parallel (one batch
// in flight per target, each bounded by TRANSFER_BATCH_KEYS_MAX and TRANSFER_BATCH_BYTES_MAX).
// The cleanup phase, run only after the view leader's barrier (every server copied), deletes
// what this server no longer replicates. A newer view supersedes a copy phase in progress; the
// next one re-plans against the view leader's placement, which an interrupted phase left as is.
// It remembers the epoch of the transfer that stored each copy here, until a placement vouches
// for it: the planner offers copies the placement does not vouch for to all their replicas.
// Tombstones (deletes) are copies like values: planned, pushed, offered and dropped exactly as
// values are, so a delete reaches every next replica before any old copy is forgotten.

import { call } from '../lib/http-client';
import type { Logger } from '../lib/logger';
import { ServerApi, type Entry, type ServerRef, type View } from '../lib/messages';
import {
  STORE_BULK_WRITES_PER_SYNC,
  TRANSFER_BATCH_BYTES_MAX,
  TRANSFER_BATCH_KEYS_MAX,
  DRAIN_POLL_MS,
  TRANSFER_ATTEMPTS_MAX,
  TRANSFER_RETRY_MS,
  TRANSFER_TIMEOUT_MS,
} from '../lib/limits';
import { copiesDone, startCopies, type CopyProgress } from './copy-progress';
import { arrivalsFor, copiesOf, planRebalance } from './rebalance-planner';
import type { Store } from './store';

/** The store's record table of `received` (key -> epoch of the transfer that stored it). */
const RECEIVED_TABLE = 'received';

export interface RebalanceHost {
  readonly selfId: string;
  readonly store: Store;
  readonly logger: Logger;
  /**
   * Transactions still undecided here, or decided by a recovery whose records are not synced
   * yet: keys must not move before their transactions are decided for good (a copy sent away
   * could carry a value that a crash here undoes).
   */
  unsettledTransactions(): number;
  /** A transfer of `copies` values was acknowledged by its target (for the metrics). */
  copiesSent(copies: number): void;
}

export interface CopyReport {
  /** Keys the plan sends to their new replicas, and stray or unvouched keys it offers. */
  readonly keysPushed: number;
  readonly keysOffered: number;
  /** Values that actually crossed the network: what the targets lacked. */
  readonly valuesSent: number;
  /** Keys to delete in the cleanup phase. */
  readonly drop: readonly string[];
  readonly elapsedMs: number;
}

export class Rebalancer {
  /**
   * Key -> the epoch of the transfer that last stored it here. Pruned at every plan (to what the
   * placement does not vouch for, and to keys still held), so it never outgrows the store by more
   * than what one copy phase receives.
   */
  private readonly received = new Map<string, number>();
  /** Values transferred so far (every copy phase). */
  private valuesSent = 0;
  /** The latest copy phase's progress (server/copy-progress.ts); undefined before the first. */
  private copyProgress: CopyProgress | undefined;

  constructor(private readonly host: RebalanceHost) {
    // Durable with the bucket: a restarted server must not take a copy it received (and the
    // placement does not vouch for yet) as vouched.
    for (const [key, epoch] of host.store.records(RECEIVED_TABLE)) {
      const parsed = Number(epoch);
      if (Number.isSafeInteger(parsed)) this.received.set(key, parsed);
    }
  }

  /** How far the latest copy phase has got (it stays as it was when a newer view cut it). */
  get progress(): CopyProgress | undefined {
    return this.copyProgress;
  }

  /** `copies` of the plan of `epoch` were acknowledged by their target. */
  private countDone(epoch: number, copies: number): void {
    const progress = this.copyProgress;
    if (progress === undefined || progress.epoch !== epoch || copies === 0) return;
    this.copyProgress = copiesDone(progress, copies, performance.now());
  }

  /** A transfer of `epoch` stored `key` here. */
  noteReceived(key: string, epoch: number): void {
    this.received.set(key, epoch);
    this.host.store.putRecord(RECEIVED_TABLE, key, String(epoch));
  }

  /**
   * The copy phase for `view`; undefined when a newer view superseded it mid-way
   * (`stillCurrent` turned false).
   */
  async copy(view: View, stillCurrent: () => boolean): Promise<CopyReport | undefined> {
    const startedMs = Date.now();
    const { host } = this;
    while (host.unsettledTransactions() > 0) {
      if (!stillCurrent()) return undefined;
      await sleep(DRAIN_POLL_MS);
    }
    const arrivals = arrivalsFor(this.received, view.placement.epoch, view.epoch);
    let pruned = 0;
    for (const key of [...this.received.keys()]) {
      if (arrivals.has(key) && host.store.copyOf(key) !== undefined) continue;
      this.received.delete(key);
      host.store.deleteRecord(RECEIVED_TABLE, key);
      // The store's write queue is bounded: hundreds of thousands of vouched copies are pruned
      // a chunk at a time, each chunk synced before the next is queued.
      if (++pruned % STORE_BULK_WRITES_PER_SYNC === 0) await host.store.flush();
    }
    const plan = planRebalance({
      selfId: host.selfId,
      previous: view.placement.servers,
      next: view.servers,
      keys: [...host.store.copyKeys()],
      arrivals,
    });
    this.copyProgress = startCopies(view.epoch, copiesOf(plan), performance.now());

    let keysPushed = 0;
    let keysOffered = 0;
    const valuesSentBefore = this.valuesSent;
    const work: Promise<boolean>[] = [];
    for (const [targetId, target] of plan.targets) {
      const push = plan.push.get(targetId) ?? [];
      const offer = plan.offer.get(targetId) ?? [];
      keysPushed += push.length;
      keysOffered += offer.length;
      work.push(this.sendTo(view.epoch, stillCurrent, target, push, offer));
    }
    const delivered = await Promise.all(work);
    if (delivered.includes(false) || !stillCurrent()) return undefined;
    return {
      keysPushed,
      keysOffered,
      valuesSent: this.valuesSent - valuesSentBefore,
      drop: plan.drop,
      elapsedMs: Date.now() - startedMs,
    };
  }

  /**
   * The cleanup phase: every key in `drop` is now held by all its replicas. The store's write
   * queue is bounded, so a large drop is deleted a chunk at a time, each chunk synced before the
   * next is queued; it stops when a newer view was installed meanwhile (`stillCurrent`), whose
   * plan may keep some of these keys here. What is left is a stray copy, offered to its replicas
   * by a later plan. Returns how many keys were dropped.
   */
  async cleanup(drop: readonly string[], stillCurrent: () => boolean): Promise<number> {
    let dropped = 0;
    for (const key of drop) {
      if (dropped % STORE_BULK_WRITES_PER_SYNC === 0 && dropped > 0) {
        await this.host.store.flush();
        if (!stillCurrent()) break;
      }
      this.host.store.delete(key);
      dropped++;
    }
    return dropped;
  }

  /** Offer digests and push the values the target lacks. False if superseded. */
  private async sendTo(
    epoch: number,
    stillCurrent: () => boolean,
    target: ServerRef,
    push: readonly string[],
    offer: readonly string[],
  ): Promise<boolean> {
    // What the plan pushes goes as digests first too: a joining server may already hold most of
    // it (a durable server back with a new ID after a long absence), and values cross the
    // network only where the target lacks them. For an empty joiner this costs one round trip per
    // batch of digests.
    const keys = [...push, ...offer];
    for (let i = 0; i < keys.length; i += TRANSFER_BATCH_KEYS_MAX) {
      const chunk = keys.slice(i, i + TRANSFER_BATCH_KEYS_MAX);
      const digests = chunk.flatMap((key) => {
        const held = this.host.store.copyOf(key);
        return held === undefined ? [] : [{ key, version: held.version }];
      });
      let missing: string[] = [];
      const offered = await this.withRetry(stillCurrent, target, async () => {
        missing = (
          await call(
            target.address,
            ServerApi.offer,
            { epoch, entries: digests },
            {
              timeoutMs: TRANSFER_TIMEOUT_MS,
            },
          )
        ).missing;
      });
      if (!offered) return false;
      // Only what was asked, once each: the counts below must not exceed the chunk.
      const asked = new Set(digests.map((d) => d.key));
      missing = [...new Set(missing)].filter((key) => asked.has(key));
      // Progress: what the target holds already is done now; the rest as its batches land (a
      // key deleted here meanwhile has nothing to send, and is done with the chunk).
      this.countDone(epoch, chunk.length - missing.length);
      let sent = 0;
      for (const batch of this.batches(missing)) {
        if (
          !(await this.withRetry(stillCurrent, target, () => this.transfer(epoch, target, batch)))
        ) {
          return false;
        }
        sent += batch.length;
        this.countDone(epoch, batch.length);
      }
      this.countDone(epoch, missing.length - sent);
    }
    return true;
  }

  private async transfer(epoch: number, target: ServerRef, entries: Entry[]): Promise<void> {
    await call(
      target.address,
      ServerApi.transfer,
      { epoch, sourceId: this.host.selfId, entries },
      { timeoutMs: TRANSFER_TIMEOUT_MS },
    );
    this.valuesSent += entries.length; // counted once acknowledged (retries send again)
    this.host.copiesSent(entries.length);
  }

  /** Cut keys into batches bounded by count and bytes. */
  private *batches(keys: readonly string[]): Generator<Entry[]> {
    let batch: Entry[] = [];
    let bytes = 0;
    for (const key of keys) {
      const held = this.host.store.copyOf(key);
      if (held === undefined) continue;
      const size = key.length + (held.value?.length ?? 0) + 32;
      if (
        batch.length > 0 &&
        (batch.length >= TRANSFER_BATCH_KEYS_MAX || bytes + size > TRANSFER_BATCH_BYTES_MAX)
      ) {
        yield batch;
        batch = [];
        bytes = 0;
      }
      batch.push({ key, ...held }); // a value, or a tombstone (`deleted: true`)
      bytes += size;
    }
    if (batch.length > 0) yield batch;
  }

  private async withRetry(
    stillCurrent: () => boolean,
    target: ServerRef,
    send: () => Promise<void>,
  ): Promise<boolean> {
    for (let attempt = 1; attempt <= TRANSFER_ATTEMPTS_MAX; attempt++) {
      if (!stillCurrent()) return false;
      try {
        await send();
        return true;
      } catch (err) {
        if (attempt === 1 || attempt % 25 === 0) {
          this.host.logger.warn(
            { err: String(err), target: target.address, attempt },
            'transfer failed; retrying',
          );
        }
        await sleep(TRANSFER_RETRY_MS);
      }
    }
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
