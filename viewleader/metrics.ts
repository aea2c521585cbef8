// The view leader's own metrics, on its process's registry (lib/metrics.ts): the view it serves
// (read at each scrape), the view changes it made (counted by the shell, viewleader/routes.ts,
// from the ViewChange values the membership core returns), and for a member of a replicated view
// leader its Raft state. docs/operations.md lists them with what to alert on.

import type { Counter } from 'prom-client';
import type { MemberStatus } from '../lib/messages';
import type { ProcessMetrics } from '../lib/metrics';
import type { LeaveCause, ViewChange } from './membership';

/** The view this process serves; undefined while it serves none (starting, a follower). */
export interface ServedView {
  readonly epoch: number;
  readonly servers: number;
  readonly rebalancing: boolean;
  readonly locks: number;
  readonly storageFailed: boolean;
}

export interface ViewLeaderState {
  readonly served: ServedView | undefined;
  /** The epoch of the state applied here (a follower's too); -1 while starting. */
  readonly epoch: number;
  /** A member's Raft status; undefined for a view leader alone. */
  readonly raft: MemberStatus | undefined;
}

const RAFT_ROLES = ['leader', 'follower', 'candidate'] as const;

export class ViewLeaderMetrics {
  private readonly joined: Counter;
  private readonly left: Counter<'cause'>;

  constructor(metrics: ProcessMetrics, state: () => ViewLeaderState) {
    this.joined = metrics.counter(
      'dht_view_servers_joined_total',
      'Servers this view leader took into the view (each one a new epoch, with the others of the same change)',
    );
    this.left = metrics.counter(
      'dht_view_servers_left_total',
      'Servers that left the view, by cause: expired (no heartbeat within the failure timeout) or evicted (a new process took the address)',
      ['cause'],
    );
    for (const cause of ['expired', 'evicted'] as const) this.left.inc({ cause }, 0);
    const served = (read: (v: ServedView) => number) => () => {
      const v = state().served;
      return v === undefined ? 0 : read(v);
    };
    const gauge = (name: string, help: string, read: () => number): void => {
      metrics.gauge(name, help, [], (set) => set(read()));
    };
    gauge(
      'dht_epoch',
      'The epoch of the view this view leader holds (a follower: of the state it applied; -1 while starting)',
      () => state().epoch,
    );
    gauge(
      'dht_viewleader_serving',
      '1 while this process answers for the view (alone and started, or the leading member)',
      () => Number(state().served !== undefined),
    );
    gauge(
      'dht_view_servers',
      'Servers in the view (0 where dht_viewleader_serving is 0)',
      served((v) => v.servers),
    );
    gauge(
      'dht_rebalancing',
      '1 from a view change until every server in the view finished its rebalance',
      served((v) => Number(v.rebalancing)),
    );
    gauge(
      'dht_locks',
      'Locks held plus requesters queued for them',
      served((v) => v.locks),
    );
    gauge(
      'dht_storage_failed',
      '1 once saving the view leader state failed: it refuses changes until restarted',
      served((v) => Number(v.storageFailed)),
    );
    const raft = (read: (s: MemberStatus) => number) => () => {
      const s = state().raft;
      return s === undefined ? 0 : read(s);
    };
    gauge(
      'dht_raft_term',
      "This member's Raft term (0 alone)",
      raft((s) => s.term),
    );
    gauge(
      'dht_raft_commit_index',
      'The highest log index this member knows committed',
      raft((s) => s.commitIndex),
    );
    gauge(
      'dht_raft_applied_index',
      'The highest log index applied to the state here',
      raft((s) => s.appliedIndex),
    );
    gauge(
      'dht_raft_last_index',
      'The last index in the log here',
      raft((s) => s.lastIndex),
    );
    gauge(
      'dht_raft_leader_known',
      '1 when this member knows a leader (itself or another)',
      raft((s) => Number(s.leader !== null)),
    );
    metrics.gauge(
      'dht_raft_role',
      "1 for this member's Raft role, 0 for the others (all 0 alone)",
      ['role'],
      (set) => {
        const s = state().raft;
        for (const role of RAFT_ROLES) set(Number(s?.role === role), { role });
      },
    );
  }

  /** A view change the membership core made. */
  viewChanged(change: ViewChange): void {
    if (change.joined.length > 0) this.joined.inc(change.joined.length);
    const causes = new Map<LeaveCause, number>();
    for (const server of change.left) causes.set(server.cause, (causes.get(server.cause) ?? 0) + 1);
    for (const [cause, count] of causes) this.left.inc({ cause }, count);
  }
}
