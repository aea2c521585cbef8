// A storage server's own metrics, on its process's registry (lib/metrics.ts). The shell
// (server/storage-server.ts) counts what the participant and the rebalancer decided, as they come
// back to it as values; the gauges read the server's state at each scrape. docs/operations.md
// lists them with what to alert on.

import type { Counter } from 'prom-client';
import type { ProcessMetrics } from '../lib/metrics';

/** What the gauges read at a scrape. */
export interface ServerState {
  readonly keys: number;
  readonly tombstones: number;
  /** The epoch of the view installed, -1 before the first. */
  readonly epoch: number;
  readonly inView: boolean;
  readonly rebalancing: boolean;
  readonly pendingTransactions: number;
  readonly storageFailed: boolean;
}

/** What a transaction did at this replica, from the coordinator's own messages. */
export type TransactionEvent = 'prepared' | 'committed' | 'aborted';

export class ServerMetrics {
  private readonly transactions: Counter<'event'>;
  private readonly resolved: Counter<'outcome'>;
  private readonly copiesPushed: Counter;
  private readonly copiesReceived: Counter;
  private readonly keysDropped: Counter;
  private readonly copyPhases: Counter;

  constructor(metrics: ProcessMetrics, state: () => ServerState) {
    this.transactions = metrics.counter(
      'dht_transactions_total',
      'Transactions at this replica by what the coordinator made of them: prepared (voted yes, durably), committed, aborted',
      ['event'],
    );
    this.resolved = metrics.counter(
      'dht_transactions_resolved_total',
      'Transactions this replica decided by the termination protocol (their coordinator went silent), by outcome',
      ['outcome'],
    );
    this.copiesPushed = metrics.counter(
      'dht_rebalance_copies_pushed_total',
      'Key copies this server sent to another server during rebalancing and that were acknowledged',
    );
    this.copiesReceived = metrics.counter(
      'dht_rebalance_copies_received_total',
      'Key copies received from another server during rebalancing and stored (newer than the copy held)',
    );
    this.keysDropped = metrics.counter(
      'dht_rebalance_keys_dropped_total',
      'Keys deleted here by the cleanup phase of a rebalance: no longer replicated by this server',
    );
    this.copyPhases = metrics.counter(
      'dht_rebalance_copy_phases_total',
      'Copy phases this server finished (one per view change it took part in)',
    );
    // Every label value from the start, so that rate() sees a series before its first event.
    for (const event of ['prepared', 'committed', 'aborted'] as const)
      this.transactions.inc({ event }, 0);
    for (const outcome of ['committed', 'aborted'] as const) this.resolved.inc({ outcome }, 0);
    // Read at each scrape: one call of `state` per gauge, each cheap (counts held in memory).
    const gauge = (name: string, help: string, read: (s: ServerState) => number): void => {
      metrics.gauge(name, help, [], (set) => set(read(state())));
    };
    gauge('dht_keys', 'Keys with a live value held by this server', (s) => s.keys);
    gauge('dht_tombstones', 'Deletes held as tombstones by this server', (s) => s.tombstones);
    gauge(
      'dht_epoch',
      'The epoch of the view this server installed (-1 before its first)',
      (s) => s.epoch,
    );
    gauge('dht_in_view', '1 when this server is in the view it installed', (s) => Number(s.inView));
    gauge(
      'dht_rebalancing',
      '1 while this server has not finished its part of the current rebalance',
      (s) => Number(s.rebalancing),
    );
    gauge(
      'dht_transactions_pending',
      'Prepared transactions not yet decided at this replica',
      (s) => s.pendingTransactions,
    );
    gauge(
      'dht_storage_failed',
      '1 once a write to the data directory failed: the server refuses changes until restarted',
      (s) => Number(s.storageFailed),
    );
  }

  transaction(event: TransactionEvent): void {
    this.transactions.inc({ event });
  }

  resolvedByTermination(outcome: 'committed' | 'aborted'): void {
    this.resolved.inc({ outcome });
  }

  pushed(copies: number): void {
    this.copiesPushed.inc(copies);
  }

  received(copies: number): void {
    this.copiesReceived.inc(copies);
  }

  copyPhaseDone(): void {
    this.copyPhases.inc();
  }

  dropped(keys: number): void {
    this.keysDropped.inc(keys);
  }
}
