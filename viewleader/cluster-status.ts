// The operator's view of the cluster (`dht-client status`, the view leader's page): a pure function
// of the view, the members' heartbeat ages and rebalancing reports, what each server last said of
// itself (keys held, copy progress: soft state, `ServerStatsTable`), and the history of views.
// Shares of the ring come from the ring allocator (lib/ring.ts). Counts only: the view leader
// stores no key-specific information.

import { assert } from '../lib/assert';
import { HEARTBEAT_LATE_INTERVALS, HEARTBEAT_LATE_MS_MIN } from '../lib/limits';
import type {
  ClusterStatus,
  HistoryEntry,
  RebalanceStage,
  ServerStats,
  ServerStatus,
  View,
} from '../lib/messages';
import { ringFor } from '../lib/ring';
import type { MemberReport } from './membership';

/**
 * What each member last reported of itself, by server ID. Soft state: kept in memory only, never
 * in the saved state or the Raft log (it changes with every heartbeat), forgotten when a server
 * leaves the view, and empty after a restart or a change of leader until the next heartbeats.
 */
export class ServerStatsTable {
  private readonly byId = new Map<string, ServerStats>();

  note(serverId: string, stats: ServerStats): void {
    this.byId.set(serverId, stats);
  }

  /** Forget every server not in `ids` (the view): bounded by the view's size. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.byId.keys()) if (!ids.has(id)) this.byId.delete(id);
  }

  get(serverId: string): ServerStats | undefined {
    return this.byId.get(serverId);
  }

  get size(): number {
    return this.byId.size;
  }
}

export interface ClusterStatusInput {
  readonly view: View;
  /** Every member of the view (Membership.memberReports). */
  readonly members: readonly MemberReport[];
  readonly stats: ServerStatsTable;
  readonly failureTimeoutMs: number;
  readonly history: readonly HistoryEntry[];
  readonly leadingSinceMs: number;
}

export function clusterStatus(input: ClusterStatusInput): ClusterStatus {
  const { view, members, stats, failureTimeoutMs } = input;
  assert(members.length === view.servers.length, 'the members are the servers of the view');
  const shares = ringFor(view.servers).shares();
  const servers = members.map((member): ServerStatus => {
    const share = shares.get(member.id);
    assert(share !== undefined, 'every server of the view is on the ring');
    const own = stats.get(member.id);
    const stage: RebalanceStage =
      member.doneEpoch === view.epoch
        ? 'done'
        : member.copiedEpoch === view.epoch
          ? 'copied'
          : 'copying';
    const copy = own?.copy?.epoch === view.epoch ? own.copy : undefined;
    // A server reports `copied` after its last copy was acknowledged: whatever a heartbeat said
    // before, its copies are done.
    const copiesDone =
      copy === undefined ? null : stage === 'copying' ? copy.copiesDone : copy.copiesTotal;
    const lateAfterMs =
      own === undefined
        ? failureTimeoutMs / 2
        : Math.max(HEARTBEAT_LATE_INTERVALS * own.heartbeatIntervalMs, HEARTBEAT_LATE_MS_MIN);
    return {
      id: member.id,
      address: member.address,
      keys: own?.keys ?? null,
      share: percent(share.replicated),
      primaryShare: percent(share.primary),
      lastHeartbeatS: round(member.heardAgoMs / 1000, 1),
      heartbeatIntervalS: own === undefined ? null : own.heartbeatIntervalMs / 1000,
      late: member.heardAgoMs > lateAfterMs,
      stage,
      copiesDone,
      copiesTotal: copy?.copiesTotal ?? null,
      copyRatePerS:
        stage === 'copying' && copy !== undefined && copy.elapsedMs > 0
          ? round((copy.copiesDone * 1000) / copy.elapsedMs, 1)
          : null,
    };
  });
  return {
    epoch: view.epoch,
    rebalancing: view.rebalancing,
    placementEpoch: view.placement.epoch,
    failureTimeoutS: failureTimeoutMs / 1000,
    servers,
    progress: progressOf(view.epoch, servers),
    history: [...input.history],
    leadingSinceMs: Math.round(input.leadingSinceMs),
  };
}

/** The current epoch's rebalancing, all servers together. */
function progressOf(epoch: number, servers: readonly ServerStatus[]): ClusterStatus['progress'] {
  let copiesDone = 0;
  let copiesTotal = 0;
  let reporting = 0;
  let rate: number | null = null;
  for (const s of servers) {
    if (s.copiesTotal === null || s.copiesDone === null) continue;
    reporting++;
    copiesDone += s.copiesDone;
    copiesTotal += s.copiesTotal;
    if (s.copyRatePerS !== null) rate = (rate ?? 0) + s.copyRatePerS;
  }
  const allCopied = servers.every((s) => s.stage !== 'copying');
  // A server still copying that reported no plan yet may add copies: short of 100 until it does.
  const unknown = servers.some((s) => s.stage === 'copying' && s.copiesTotal === null);
  let done: number;
  if (allCopied) done = 100;
  else if (copiesTotal === 0) done = 0;
  else done = Math.min((copiesDone / copiesTotal) * 100, unknown ? 99 : 100);
  return {
    epoch,
    copiesDone,
    copiesTotal,
    percent: round(done, 1),
    serversReporting: reporting,
    ratePerS: rate === null ? null : round(rate, 1),
  };
}

function percent(fraction: number): number {
  return round(fraction * 100, 2);
}

function round(n: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(n * scale) / scale;
}
