// A whole cluster's rebalancing, simulated with the real pure cores: the view leader's Membership,
// every server's ViewTracker, planRebalance and arrivalsFor, wired as the shells wire them
// (server/storage-server.ts, server/rebalancer.ts). Each server has its own view of the world: it
// learns a view only from its own heartbeat's acknowledgment, its copy run advances one transfer
// at a time, interleaved with anything else, and a transfer is epoch-checked at its receiver as
// the shell does (older than the receiver's epoch: refused; anything else: stored and recorded).
// Time is a step counter, so a killed server leaves the view only after the failure timeout.
// Copies are holdings only (no values, no versions): what is checked is where keys are.
//
// After every barrier (the placement advancing) it records every violation of the invariant of
// server/rebalance-planner.ts: each key held by a live server of the barrier's view is held by
// all the key's live replicas in that view.
//
// The view leader saves its changes after every call, as its shell does before answering
// (viewleader/routes.ts), into `disk` (the records of viewleader/saved-state.ts). It can restart
// from them (`restartViewLeaderOnDisk`) or with nothing (`restartViewLeader`, `--in-memory`).

import { ringFor } from '../../lib/ring';
import type { ServerRef, View } from '../../lib/messages';
import { arrivalsFor, planRebalance } from '../../server/rebalance-planner';
import { ViewTracker, type ViewEffect } from '../../server/view-tracker';
import { Membership } from '../../viewleader/membership';
import { recordOps, snapshotFromRecords } from '../../viewleader/saved-state';
import { prng } from './random';

/** Steps without a heartbeat after which the view leader drops a server. */
export const SIM_FAILURE_TIMEOUT_STEPS = 400;
/** Violations kept per run (the first ones tell the story). */
const VIOLATIONS_KEPT_MAX = 20;

interface Send {
  readonly key: string;
  readonly target: string;
}

interface CopyRun {
  readonly run: number;
  readonly epoch: number;
  readonly sends: Send[];
  readonly drop: readonly string[];
}

export interface SimServer {
  readonly ref: ServerRef;
  readonly held: Set<string>;
  /** Key -> the epoch of the transfer that stored it (the shell's Rebalancer.received). */
  readonly received: Map<string, number>;
  readonly tracker: ViewTracker;
  copy: CopyRun | undefined;
}

export class RebalanceSim {
  nowMs = 0;
  membership = new Membership(SIM_FAILURE_TIMEOUT_STEPS);
  /** Live server processes, in the view or not. */
  readonly servers = new Map<string, SimServer>();
  readonly violations: string[] = [];
  /** Barriers passed, with the epoch of each. */
  readonly barriers: number[] = [];
  /** Every epoch each server installed, in order (for "the epoch never goes back"). */
  readonly installed = new Map<string, number[]>();
  /** The view leader's data directory: its saved records, current after every call. */
  readonly disk = new Map<string, string>();
  private readonly random: () => number;
  private placementEpoch = 0;
  private serversMade = 0;

  constructor(seed: number) {
    this.random = prng(seed);
  }

  /** A uniformly random integer in [0, n). */
  pick(n: number): number {
    return this.random() % n;
  }

  /** A new server process (its first heartbeat joins it), holding `keys`. */
  start(keys: Iterable<string> = []): SimServer {
    const index = this.serversMade++;
    const id = `server-${index}-${this.random().toString(16)}`;
    const server: SimServer = {
      ref: { id, address: `127.0.0.1:${20000 + index}` },
      held: new Set(keys),
      received: new Map(),
      tracker: new ViewTracker(),
      copy: undefined,
    };
    this.servers.set(id, server);
    this.installed.set(id, []);
    return server;
  }

  /** SIGKILL: its copies are gone; the view leader notices after the failure timeout. */
  kill(id: string): void {
    this.servers.delete(id);
  }

  /** SIGKILL and restart the view leader `--in-memory`: it knows nothing, not even the epoch. */
  restartViewLeader(): void {
    this.membership = new Membership(SIM_FAILURE_TIMEOUT_STEPS);
    this.placementEpoch = 0;
    this.disk.clear();
  }

  /**
   * SIGKILL and restart the view leader on its data directory: it restores what it saved, and
   * every member gets a full failure timeout from now.
   */
  restartViewLeaderOnDisk(): void {
    const snapshot = snapshotFromRecords(this.disk);
    this.membership = Membership.restore(
      snapshot.membership,
      SIM_FAILURE_TIMEOUT_STEPS,
      this.nowMs,
    );
    this.saveViewLeader();
  }

  /** One step of time: the view leader expires silent servers. */
  tick(): void {
    this.nowMs += 1;
    this.membership.tick(this.nowMs);
    this.saveViewLeader();
    this.checkBarrier();
  }

  /** The server heartbeats and carries out what its tracker decides. */
  heartbeat(server: SimServer): void {
    const outcome = this.membership.heartbeat(
      server.ref.id,
      server.ref.address,
      this.nowMs,
      server.tracker.reportedEpoch,
    );
    this.saveViewLeader();
    this.checkBarrier();
    if (outcome.kind === 'expired') server.tracker.onExpelled();
    if (outcome.kind !== 'accepted') return;
    this.execute(server, server.tracker.onAck(outcome.view));
  }

  /** Deliver one of the server's pending transfers (push or offer: the target stores it if it lacks it). */
  deliver(server: SimServer): void {
    const copy = server.copy;
    if (copy === undefined || copy.sends.length === 0) return;
    if (!server.tracker.isCurrentRun(copy.run)) {
      server.copy = undefined; // superseded: the shell stops at its next batch
      return;
    }
    const index = this.pick(copy.sends.length);
    const send = copy.sends[index];
    const target = this.servers.get(send.target);
    // A dead target, or one that moved to a newer epoch, refuses: the sender retries until a
    // newer view supersedes its run.
    if (target === undefined || copy.epoch < target.tracker.epoch) return;
    copy.sends.splice(index, 1);
    if (!target.held.has(send.key)) {
      target.held.add(send.key);
      target.received.set(send.key, copy.epoch);
    }
  }

  /** The server's copy run has every transfer acknowledged: report `copied`. */
  finishCopy(server: SimServer): void {
    const copy = server.copy;
    if (copy === undefined || copy.sends.length > 0) return;
    server.copy = undefined;
    this.execute(server, server.tracker.onCopied(copy.run, copy.drop));
  }

  /** A replicated write of a new key, as setr does it: only while settled, on all replicas. */
  write(key: string): boolean {
    const view = this.membership.view();
    if (view.rebalancing || view.servers.length === 0) return false;
    const replicas = ringFor(view.servers).replicasOf(key);
    const holders = replicas.map((r) => this.servers.get(r.id));
    const ready = holders.every(
      (s) => s !== undefined && s.tracker.epoch === view.epoch && !s.tracker.rebalancing,
    );
    if (!ready) return false;
    for (const s of holders) s?.held.add(key);
    return true;
  }

  /** The view is settled: not rebalancing, and every live member has installed it and is idle. */
  settled(): View | undefined {
    const view = this.membership.view();
    if (view.rebalancing) return undefined;
    for (const ref of view.servers) {
      const server = this.servers.get(ref.id);
      if (server === undefined) return undefined; // dead, not yet timed out
      if (server.tracker.epoch !== view.epoch || server.tracker.rebalancing) return undefined;
    }
    return view;
  }

  /** Live servers that the view lists. */
  members(): SimServer[] {
    return this.membership.view().servers.flatMap((ref) => this.servers.get(ref.id) ?? []);
  }

  /** Every key a live member holds: on exactly its live replicas. Differences as plain data. */
  misplaced(view: View): string[] {
    const ring = ringFor(view.servers);
    const problems: string[] = [];
    const keys = new Set(this.members().flatMap((s) => [...s.held]));
    for (const key of keys) {
      const replicas = new Set(ring.replicasOf(key).map((r) => r.id));
      for (const ref of view.servers) {
        const server = this.servers.get(ref.id);
        if (server === undefined) continue;
        if (replicas.has(ref.id) !== server.held.has(key)) {
          problems.push(`${key} ${server.held.has(key) ? 'extra on' : 'missing on'} ${ref.id}`);
        }
      }
    }
    return problems.slice(0, VIOLATIONS_KEPT_MAX);
  }

  private execute(server: SimServer, effects: readonly ViewEffect[]): void {
    for (const effect of effects) {
      switch (effect.type) {
        case 'install':
          this.installed.get(server.ref.id)?.push(effect.view.epoch);
          server.copy = this.plan(server, effect.view, effect.run);
          break;
        case 'cleanup':
          for (const key of effect.drop) server.held.delete(key);
          break;
        case 'report': {
          const outcome = this.membership.rebalanceDone(server.ref.id, effect.epoch, effect.phase);
          this.saveViewLeader();
          this.checkBarrier();
          if (outcome.kind === 'recorded' || outcome.kind === 'stale') {
            server.tracker.onReported(effect.epoch, effect.phase);
          }
          break;
        }
      }
    }
  }

  /** What Rebalancer.copy does once drained: prune the records, plan. */
  private plan(server: SimServer, view: View, run: number): CopyRun {
    const arrivals = arrivalsFor(server.received, view.placement.epoch, view.epoch);
    for (const key of server.received.keys()) {
      if (!arrivals.has(key) || !server.held.has(key)) server.received.delete(key);
    }
    const plan = planRebalance({
      selfId: server.ref.id,
      previous: view.placement.servers,
      next: view.servers,
      keys: [...server.held],
      arrivals,
    });
    const sends: Send[] = [];
    for (const into of [plan.push, plan.offer]) {
      for (const [target, keys] of into) for (const key of keys) sends.push({ key, target });
    }
    return { run, epoch: view.epoch, sends, drop: plan.drop };
  }

  /** What the view leader's shell does before it answers: its changes reach the disk. */
  private saveViewLeader(): void {
    for (const op of recordOps({ membership: this.membership.takeChanges(), locks: [] })) {
      if (op.type === 'put') this.disk.set(op.key, op.value);
      else this.disk.delete(op.key);
    }
  }

  /** On every advance of the placement: the invariant, over the barrier's view. */
  private checkBarrier(): void {
    const placement = this.membership.placement;
    if (placement.epoch === this.placementEpoch) return;
    this.placementEpoch = placement.epoch;
    this.barriers.push(placement.epoch);
    if (placement.servers.length === 0) return;
    const ring = ringFor(placement.servers);
    const live = placement.servers.flatMap((ref) => this.servers.get(ref.id) ?? []);
    const keys = new Set(live.flatMap((s) => [...s.held]));
    for (const key of keys) {
      for (const replica of ring.replicasOf(key)) {
        const server = this.servers.get(replica.id);
        if (server !== undefined && !server.held.has(key)) {
          if (this.violations.length < VIOLATIONS_KEPT_MAX) {
            this.violations.push(
              `barrier of epoch ${placement.epoch}: ${key} missing on replica ${replica.id}`,
            );
          }
        }
      }
    }
  }
}
