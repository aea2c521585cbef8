// The StateLog of a replicated view leader's leading member (viewleader/saved-state.ts has the
// interface, viewleader/routes.ts the steps that use it): a step's changes become one Raft entry,
// and an answer waits until the newest entry is committed and applied and the member has
// confirmed it still leads. Committed means durable on a majority of the members' disks; the
// confirmation (a read index) is what keeps a deposed leader that does not know it yet from
// answering, also for requests that changed nothing (query_servers, a member's heartbeat).

import { PROPOSALS_PENDING_MAX } from './raft';
import type { Replication } from './replication';
import { recordOps, type StateLog, type ViewLeaderChanges } from './saved-state';

export class ReplicatedStateLog implements StateLog {
  private newest: Promise<void> = Promise.resolve();

  constructor(private readonly replication: Replication) {}

  /** Refuse steps before the core's own bound on uncommitted entries would refuse a proposal. */
  get busy(): boolean {
    return this.replication.pendingProposals >= PROPOSALS_PENDING_MAX / 2;
  }

  write(changes: ViewLeaderChanges): void {
    const ops = recordOps(changes);
    if (ops.length === 0) return; // a heartbeat that changed nothing costs no entry
    let committed: Promise<void>;
    try {
      committed = this.replication.propose(ops);
    } catch (err) {
      // The step already changed the cores, and its changes will never be in the log: the cores
      // are rebuilt from the log before this member serves again.
      this.replication.rebuildCores();
      committed = Promise.reject(err);
    }
    committed.catch(() => undefined); // awaited through durable(); never unhandled
    this.newest = committed;
  }

  /** Entries commit in order: the newest one committed means every earlier one is too. */
  async durable(): Promise<void> {
    const newest = this.newest;
    await Promise.all([newest, this.replication.confirmLeadership()]);
  }
}
