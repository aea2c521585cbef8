// The StateLog of a replicated view leader's leading member (viewleader/saved-state.ts has the
// interface, viewleader/routes.ts the steps that use it): a step's changes become one Raft entry,
// and an answer waits until the newest entry is committed and applied and the member has
// confirmed it still leads. Committed means durable on a majority of the members' disks; the
// confirmation (a read index) is what keeps a deposed leader that does not know it yet from
// answering, also for requests that changed nothing (query_servers, a member's heartbeat).

import { DhtError, NotLeaderError } from '../lib/errors';
import { PROPOSALS_PENDING_MAX } from './raft';
import type { Replication } from './replication';
import { recordOps, type StateLog, type ViewLeaderChanges } from './saved-state';

export class ReplicatedStateLog implements StateLog {
  private newest: Promise<void> = Promise.resolve();
  /** The entry of the step written last, undefined if it changed nothing (see `durable`). */
  private lastStep: Promise<void> | undefined;

  constructor(private readonly replication: Replication) {}

  /** Refuse steps before the core's own bound on uncommitted entries would refuse a proposal. */
  get busy(): boolean {
    return this.replication.pendingProposals >= PROPOSALS_PENDING_MAX / 2;
  }

  write(changes: ViewLeaderChanges): void {
    const ops = recordOps(changes);
    this.lastStep = undefined;
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
    this.lastStep = committed;
  }

  /**
   * Entries commit in order: the newest one committed means every earlier one is too.
   *
   * A step calls this right after its write() (ViewLeader: a step is synchronous and its answer
   * awaits durable() at once), so `lastStep` is that step's own entry. When the wait fails, the
   * answer must not say "nothing done" for a change that may still take effect (a leader that
   * lost its majority keeps its entry, and wins again with it once a member returns):
   * - a step that changed nothing did nothing: not_leader, the caller asks elsewhere;
   * - a step whose entry is in the log waits for that entry: committed, the change was made and
   *   the answer stands (a committed change is linearizable at its commit, whatever became of
   *   this member's leadership since); replaced by another leader's entry, nothing was done
   *   (not_leader); neither within RAFT_COMMIT_WAIT_MS_MAX, the outcome is unknown.
   */
  async durable(): Promise<void> {
    const own = this.lastStep;
    this.lastStep = undefined;
    try {
      await Promise.all([this.newest, this.replication.confirmLeadership()]);
    } catch (err) {
      if (own !== undefined) return own;
      // An earlier step's entry whose outcome is unknown: this step itself did nothing.
      if (err instanceof DhtError && err.kind === 'unknown') {
        throw new NotLeaderError(
          null,
          'the view leader members did not confirm in time; try again',
        );
      }
      throw err;
    }
  }
}
