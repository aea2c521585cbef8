// The view leader's membership: who is in the view, the epoch, and whether every server has
// finished rebalancing for it. A pure state machine (etcd raft style): no I/O, no timers, no
// clock. Time comes in as `nowMs` from the caller's monotonic clock, so tests move it by hand.
//
// Life of a server ID (the contract's "The view leader"):
//
//   (unknown) --first heartbeat--> member --no heartbeat for > failureTimeoutMs--> expired
//                                    |                                               ^
//                                    +--a new ID takes over its address----(evicted)-+
//
// An expired ID is rejected forever: a restarted process has a new ID and joins anew. Every join
// or leave installs a new view with a higher epoch; several in one call share one increment.
//
// Address takeover. A heartbeat is only a claim: anyone can send one naming any address. A new ID
// at an address a live ID holds is therefore not admitted on its word (that would let one forged
// heartbeat evict a healthy server). `heartbeat` answers `address_held`; the shell asks the
// process listening there who it is, and `takeOver` decides with that answer. Only one process
// can listen on an address, so the newcomer wins if that process says it is the newcomer, or if
// nothing listens any more (the old holder is gone). Any other answer, or none in time, leaves
// the holder in place and refuses the newcomer.
//
// Durability (docs/design.md, "Durability of the view leader"): the epoch, the members (ID,
// address, rebalancing progress), the expired IDs and the placement survive a restart. Every
// change to them is also appended to a change log that the shell drains after each call
// (`takeChanges`) and makes durable before it answers; `restore` rebuilds a Membership from what
// was saved. A member's last heartbeat is not saved (it changes at every heartbeat, and a
// heartbeat that changes nothing else must cost no write): a restored member counts as heard from
// at the restore, so it gets a full failure timeout from the restart before it can leave.
//
// Epoch continuity: a heartbeat reports the highest epoch its server has installed, and the next
// view's epoch exceeds every epoch reported. A view leader run `--in-memory` restarts at 0 and
// forgets the epochs it handed out; the servers remember them, and their first heartbeats lift it
// above them. So the epoch a heartbeating server sees never goes back, also across such restarts
// (the 2PC termination protocol orders ballots by epoch); with a data directory this is a second
// line of defence.

import { assert } from '../lib/assert';
import type { Placement, RebalancePhase, ServerRef, View } from '../lib/messages';

/**
 * Expired IDs are remembered so that they stay rejected; the oldest is forgotten first beyond
 * this bound. IDs are random per process, so this covers far more restarts than any run makes.
 */
export const EXPIRED_IDS_REMEMBERED_MAX = 100_000;

/** Why a server left the view: it stopped heartbeating, or a new process took its address. */
export type LeaveCause = 'expired' | 'evicted';

export interface DepartedServer extends ServerRef {
  readonly cause: LeaveCause;
}

/** One view installation: the new epoch, and who joined and who left to make it. */
export interface ViewChange {
  readonly epoch: number;
  readonly joined: readonly ServerRef[];
  readonly left: readonly DepartedServer[];
}

/**
 * What a heartbeat decided. Every call first removes the servers that timed out, so any outcome
 * may carry a view change (`change`), which the caller logs and acts on (lock clean-up).
 */
export type HeartbeatOutcome =
  | { readonly kind: 'accepted'; readonly view: View; readonly change?: ViewChange }
  /** This ID timed out or was evicted: rejected forever. */
  | { readonly kind: 'expired'; readonly change?: ViewChange }
  /** A live ID heartbeating from another address: an ID's address never changes. */
  | { readonly kind: 'address_changed'; readonly address: string; readonly change?: ViewChange }
  /** A new ID at an address that live `holder` holds: probe the address, then call `takeOver`. */
  | { readonly kind: 'address_held'; readonly holder: ServerRef; readonly change?: ViewChange }
  /** The probe did not show the newcomer at the address: `holder` stays, the newcomer is refused. */
  | {
      readonly kind: 'address_in_use';
      readonly holder: ServerRef;
      readonly probe: AddressProbe;
      readonly change?: ViewChange;
    };

/**
 * What the process listening on a contested address said when asked who it is (the shell asks
 * `ServerApi.status` there, with a short timeout and a fresh connection).
 */
export type AddressProbe =
  /** A server answered with its ID. */
  | { readonly kind: 'answered'; readonly serverId: string }
  /** The connection was refused: nothing listens there, so the holder's process is gone. */
  | { readonly kind: 'refused' }
  /** No answer in time, or not a server's answer: something holds the address, not proven whom. */
  | { readonly kind: 'no_answer' };

export type RebalanceDoneOutcome =
  /** `finished`: this report was the last one missing for the current epoch. */
  | { readonly kind: 'recorded'; readonly finished: boolean }
  /** A report for an older epoch: harmless (a slow server), ignored. */
  | { readonly kind: 'stale' }
  /** A report for an epoch that does not exist yet: the sender is confused. */
  | { readonly kind: 'future_epoch' }
  | { readonly kind: 'expired' }
  | { readonly kind: 'not_in_view' };

interface Member {
  readonly id: string;
  readonly address: string;
  lastHeartbeatMs: number;
  /** The last epoch this server reported its copy phase finished for. */
  copiedEpoch: number | undefined;
  /** The last epoch this server reported its rebalancing done for. */
  doneEpoch: number | undefined;
}

/**
 * A member as it is saved: all but its last heartbeat. Its progress is saved because a server
 * reports each phase once (it re-sends only a report never acknowledged, server/view-tracker.ts):
 * a restarted view leader that forgot it would wait at the barrier forever.
 */
export interface DurableMember {
  readonly id: string;
  readonly address: string;
  readonly copiedEpoch: number | undefined;
  readonly doneEpoch: number | undefined;
}

/** A member as the operator's view sees it (`memberReports`). */
export interface MemberReport extends DurableMember {
  /** Since its last heartbeat. */
  readonly heardAgoMs: number;
}

/** An expired ID with its expiry's sequence number: the lowest is forgotten first. */
export interface ExpiredId {
  readonly id: string;
  readonly seq: number;
}

/** Everything a restart must restore. */
export interface MembershipSnapshot {
  readonly epoch: number;
  /** Sorted by ID. */
  readonly members: readonly DurableMember[];
  /** Oldest first (ascending `seq`). */
  readonly expired: readonly ExpiredId[];
  readonly placement: Placement;
}

/**
 * One change to the saved state, in the order made. Replayed in order over the previous saved
 * state (later ones win), they give the state after the call (`snapshot()`).
 */
export type MembershipChange =
  | { readonly kind: 'epoch'; readonly epoch: number }
  | { readonly kind: 'placement'; readonly placement: Placement }
  /** Joined, or its progress changed. */
  | { readonly kind: 'member'; readonly member: DurableMember }
  | { readonly kind: 'member_gone'; readonly id: string }
  | { readonly kind: 'expired'; readonly expired: ExpiredId }
  /** Beyond the bound: no longer remembered (EXPIRED_IDS_REMEMBERED_MAX). */
  | { readonly kind: 'expired_forgotten'; readonly id: string };

export class Membership {
  private currentEpoch = 0;
  private readonly members = new Map<string, Member>();
  private readonly idByAddress = new Map<string, string>();
  /** ID -> sequence number; a Map iterates in insertion order: the first is the oldest expiry. */
  private readonly expiredIds = new Map<string, number>();
  private expiredSeqNext = 0;
  private latestNowMs = Number.NEGATIVE_INFINITY;
  /** Rebalancing is two phases with a barrier between (docs/design.md): see `Placement`. */
  private currentPlacement: Placement = { epoch: 0, servers: [] };
  /** The highest epoch a heartbeat reported: the next view's epoch exceeds it. */
  private reportedEpochMax = 0;
  /** Changes to the saved state since the last `takeChanges`. */
  private changes: MembershipChange[] = [];

  constructor(
    readonly failureTimeoutMs: number,
    private readonly expiredIdsRememberedMax = EXPIRED_IDS_REMEMBERED_MAX,
  ) {
    assert(Number.isFinite(failureTimeoutMs), 'failure timeout is finite');
    assert(failureTimeoutMs > 0, 'failure timeout is positive');
    assert(expiredIdsRememberedMax >= 1, 'at least one expired ID is remembered');
  }

  /**
   * A Membership as saved in `snapshot`, at `nowMs` (the restart): every member counts as heard
   * from now. Throws (an AssertionError) if the snapshot is inconsistent; the shell then refuses
   * to start rather than serve a view it could not read.
   */
  static restore(
    snapshot: MembershipSnapshot,
    failureTimeoutMs: number,
    nowMs: number,
    expiredIdsRememberedMax = EXPIRED_IDS_REMEMBERED_MAX,
  ): Membership {
    const membership = new Membership(failureTimeoutMs, expiredIdsRememberedMax);
    const { epoch, members, expired, placement } = snapshot;
    assert(Number.isSafeInteger(epoch) && epoch >= 0, 'a saved epoch is a non-negative integer');
    assert(members.length === 0 || epoch >= 1, 'a view with members has an epoch above 0');
    assert(placement.epoch <= epoch, 'the placement is not ahead of the epoch');
    membership.advanceClock(nowMs);
    membership.currentEpoch = epoch;
    membership.reportedEpochMax = epoch;
    membership.currentPlacement = placement;
    let seqPrevious = -1;
    for (const { id, seq } of expired) {
      assert(Number.isSafeInteger(seq) && seq > seqPrevious, 'expired IDs are saved in order');
      membership.expiredIds.set(id, seq);
      seqPrevious = seq;
    }
    membership.expiredSeqNext = seqPrevious + 1;
    for (const member of members) {
      for (const reported of [member.copiedEpoch, member.doneEpoch]) {
        assert(
          reported === undefined || (Number.isSafeInteger(reported) && reported <= epoch),
          'a saved report is not ahead of the epoch',
        );
      }
      const restored = membership.add(member.id, member.address, nowMs);
      restored.copiedEpoch = member.copiedEpoch;
      restored.doneEpoch = member.doneEpoch;
    }
    // Restoring is not a change; only trimming to a lower bound is (saved as forgotten).
    membership.changes = [];
    membership.forgetOldestExpired();
    return membership;
  }

  /** The saved state: what `restore` takes back. */
  snapshot(): MembershipSnapshot {
    return {
      epoch: this.currentEpoch,
      members: [...this.members.values()]
        .map(durableMember)
        .sort((a, b) => compareStrings(a.id, b.id)),
      expired: [...this.expiredIds].map(([id, seq]) => ({ id, seq })),
      placement: this.currentPlacement,
    };
  }

  /** The changes to the saved state since the last call, oldest first; the log is emptied. */
  takeChanges(): MembershipChange[] {
    const changes = this.changes;
    this.changes = [];
    return changes;
  }

  get epoch(): number {
    return this.currentEpoch;
  }

  /** True iff some server in the view has not reported done for the current epoch. */
  get rebalancing(): boolean {
    for (const member of this.members.values()) {
      if (member.doneEpoch !== this.currentEpoch) return true;
    }
    return false;
  }

  /** The current view, servers sorted by address then ID for stable output. */
  view(): View {
    const servers = [...this.members.values()]
      .map(({ id, address }) => ({ id, address }))
      .sort((a, b) => compareStrings(a.address, b.address) || compareStrings(a.id, b.id));
    return {
      epoch: this.currentEpoch,
      servers,
      rebalancing: this.rebalancing,
      placement: this.currentPlacement,
    };
  }

  /**
   * The members with what the operator's view shows of them: how long ago each was last heard
   * (at `nowMs`, the caller's monotonic clock, not before the latest time seen) and the last
   * epochs it reported copied and done. Sorted as the view.
   */
  memberReports(nowMs: number): MemberReport[] {
    const at = Math.max(nowMs, this.latestNowMs);
    return [...this.members.values()]
      .map((m) => ({
        id: m.id,
        address: m.address,
        heardAgoMs: Math.max(0, at - m.lastHeartbeatMs),
        copiedEpoch: m.copiedEpoch,
        doneEpoch: m.doneEpoch,
      }))
      .sort((a, b) => compareStrings(a.address, b.address) || compareStrings(a.id, b.id));
  }

  get placement(): Placement {
    return this.currentPlacement;
  }

  isExpired(serverId: string): boolean {
    return this.expiredIds.has(serverId);
  }

  /** The passage of time: servers whose last heartbeat is older than the timeout leave. */
  tick(nowMs: number): ViewChange | undefined {
    this.advanceClock(nowMs);
    return this.installView([], this.removeOverdue(nowMs));
  }

  /** `reportedEpoch`: the highest epoch the server has installed (undefined: none yet). */
  heartbeat(
    serverId: string,
    address: string,
    nowMs: number,
    reportedEpoch?: number,
  ): HeartbeatOutcome {
    return this.step(serverId, address, nowMs, undefined, reportedEpoch);
  }

  /**
   * The second half of a heartbeat that got `address_held`: `probe` is what the address answered
   * when asked, `holderId` the holder that `address_held` named. The newcomer takes the address
   * over (the holder is evicted, in the same epoch increment as the join) only if the probe shows
   * the newcomer there or nothing there. Time passed during the probe: expiry is applied first,
   * and if the address changed hands meanwhile the answer is `address_held` again (the newcomer
   * tries again at its next heartbeat; the shell does not probe twice for one request).
   */
  takeOver(
    serverId: string,
    address: string,
    holderId: string,
    probe: AddressProbe,
    nowMs: number,
    reportedEpoch?: number,
  ): HeartbeatOutcome {
    const proven =
      probe.kind === 'refused' || (probe.kind === 'answered' && probe.serverId === serverId);
    const outcome = this.step(
      serverId,
      address,
      nowMs,
      proven ? holderId : undefined,
      reportedEpoch,
    );
    if (outcome.kind === 'address_held' && outcome.holder.id === holderId) {
      assert(!proven, 'a proven takeover of the probed holder is never refused');
      return { kind: 'address_in_use', holder: outcome.holder, probe, change: outcome.change };
    }
    return outcome;
  }

  /** A heartbeat; `evictable` is the holder of `address` that the newcomer may evict. */
  private step(
    serverId: string,
    address: string,
    nowMs: number,
    evictable: string | undefined,
    reportedEpoch: number | undefined,
  ): HeartbeatOutcome {
    this.advanceClock(nowMs);
    this.noteReportedEpoch(reportedEpoch);
    const left = this.removeOverdue(nowMs);
    if (this.expiredIds.has(serverId)) {
      return { kind: 'expired', change: this.installView([], left) };
    }
    const member = this.members.get(serverId);
    if (member !== undefined && member.address !== address) {
      return {
        kind: 'address_changed',
        address: member.address,
        change: this.installView([], left),
      };
    }
    const joined: ServerRef[] = [];
    if (member !== undefined) {
      member.lastHeartbeatMs = nowMs;
    } else {
      const holderId = this.idByAddress.get(address);
      if (holderId !== undefined && holderId !== evictable) {
        return {
          kind: 'address_held',
          holder: { id: holderId, address },
          change: this.installView([], left),
        };
      }
      // Proven: only one process can listen on an address, and it is the newcomer (or nobody).
      // Evict the old ID now rather than wait for its timeout, so that the view never lists two
      // IDs for one address.
      if (holderId !== undefined) left.push(this.remove(holderId, 'evicted'));
      this.add(serverId, address, nowMs);
      joined.push({ id: serverId, address });
    }
    const change = this.installView(joined, left);
    return { kind: 'accepted', view: this.view(), change };
  }

  rebalanceDone(
    serverId: string,
    epoch: number,
    phase: RebalancePhase = 'done',
  ): RebalanceDoneOutcome {
    assert(Number.isInteger(epoch) && epoch >= 0, 'an epoch is a non-negative integer');
    if (this.expiredIds.has(serverId)) return { kind: 'expired' };
    const member = this.members.get(serverId);
    if (member === undefined) return { kind: 'not_in_view' };
    if (epoch > this.currentEpoch) return { kind: 'future_epoch' };
    if (epoch < this.currentEpoch) return { kind: 'stale' };
    const wasRebalancing = this.rebalancing;
    const doneEpoch = phase === 'done' ? epoch : member.doneEpoch;
    if (member.copiedEpoch !== epoch || member.doneEpoch !== doneEpoch) {
      member.copiedEpoch = epoch;
      member.doneEpoch = doneEpoch;
      this.changes.push({ kind: 'member', member: durableMember(member) });
    }
    this.advancePlacement();
    return { kind: 'recorded', finished: wasRebalancing && !this.rebalancing };
  }

  /**
   * The one door through which the epoch changes. A reported epoch beyond the current one (a
   * server that learned it elsewhere) installs a new view too, with no join or leave: the server
   * would ignore an older one, and everyone must see an epoch above it.
   */
  private installView(
    joined: readonly ServerRef[],
    left: readonly DepartedServer[],
  ): ViewChange | undefined {
    const behind = this.reportedEpochMax > this.currentEpoch;
    if (joined.length === 0 && left.length === 0 && !behind) return undefined;
    const previousEpoch = this.currentEpoch;
    this.currentEpoch = Math.max(this.currentEpoch, this.reportedEpochMax) + 1;
    assert(this.currentEpoch > previousEpoch, 'the epoch never decreases nor repeats');
    this.changes.push({ kind: 'epoch', epoch: this.currentEpoch });
    assert(this.currentEpoch > this.reportedEpochMax, 'the epoch exceeds every reported epoch');
    assert(
      joined.every((s) => this.members.has(s.id)) && left.every((s) => !this.members.has(s.id)),
      'joined servers are in the view and departed ones are not',
    );
    this.advancePlacement();
    return { epoch: this.currentEpoch, joined, left };
  }

  /** The barrier: once every server has copied the current epoch, it becomes the placement. */
  private advancePlacement(): void {
    if (this.currentPlacement.epoch === this.currentEpoch) return;
    for (const member of this.members.values()) {
      if (member.copiedEpoch !== this.currentEpoch) return;
    }
    assert(this.currentPlacement.epoch < this.currentEpoch, 'the placement never goes back');
    this.currentPlacement = { epoch: this.currentEpoch, servers: this.view().servers };
    this.changes.push({ kind: 'placement', placement: this.currentPlacement });
  }

  private noteReportedEpoch(reported: number | undefined): void {
    if (reported === undefined) return;
    assert(Number.isSafeInteger(reported) && reported >= 0, 'a reported epoch is validated');
    this.reportedEpochMax = Math.max(this.reportedEpochMax, reported);
  }

  private removeOverdue(nowMs: number): DepartedServer[] {
    const overdue = [...this.members.values()].filter(
      (m) => nowMs - m.lastHeartbeatMs > this.failureTimeoutMs,
    );
    return overdue.map((m) => this.remove(m.id, 'expired'));
  }

  private add(id: string, address: string, nowMs: number): Member {
    assert(!this.members.has(id) && !this.expiredIds.has(id), 'a joining ID is new');
    assert(!this.idByAddress.has(address), 'one live ID per address');
    const member: Member = {
      id,
      address,
      lastHeartbeatMs: nowMs,
      copiedEpoch: undefined,
      doneEpoch: undefined,
    };
    this.members.set(id, member);
    this.idByAddress.set(address, id);
    this.changes.push({ kind: 'member', member: durableMember(member) });
    return member;
  }

  private remove(id: string, cause: LeaveCause): DepartedServer {
    const member = this.members.get(id);
    assert(member !== undefined, 'only a member can leave');
    assert(this.idByAddress.get(member.address) === id, 'the address index matches the member');
    this.members.delete(id);
    this.idByAddress.delete(member.address);
    const seq = this.expiredSeqNext++;
    this.expiredIds.set(id, seq);
    this.changes.push({ kind: 'member_gone', id }, { kind: 'expired', expired: { id, seq } });
    this.forgetOldestExpired();
    return { id, address: member.address, cause };
  }

  /** Keep at most expiredIdsRememberedMax expired IDs: the oldest go first. */
  private forgetOldestExpired(): void {
    for (const id of this.expiredIds.keys()) {
      if (this.expiredIds.size <= this.expiredIdsRememberedMax) return;
      this.expiredIds.delete(id);
      this.changes.push({ kind: 'expired_forgotten', id });
    }
  }

  private advanceClock(nowMs: number): void {
    assert(Number.isFinite(nowMs), 'time is finite');
    assert(nowMs >= this.latestNowMs, 'time never goes backwards (use a monotonic clock)');
    this.latestNowMs = nowMs;
  }
}

function durableMember({ id, address, copiedEpoch, doneEpoch }: Member): DurableMember {
  return { id, address, copiedEpoch, doneEpoch };
}

/** Code-unit order, independent of the process locale. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
