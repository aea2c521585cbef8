// `GET /health` of a view leader (docs/protocol.md): pure functions of what the shell
// (viewleader/main.ts) knows, so that the rule is read in one place.
//
// Alone: 503 while starting (the data directory not read yet), once saving failed (it serves
// reads of what is on disk, refuses every change), and while shutting down.
// A member of a replicated view leader: 503 while starting, while shutting down, and while it
// knows of no leader: an election is under way, or it cannot reach a majority (a leader that
// hears from no majority within an election timeout steps down, viewleader/raft/node.ts).
// A follower that knows the leader is healthy: it redirects callers there.

import { assert } from '../lib/assert';
import {
  healthStatus,
  type HealthProblem,
  type MemberStatus,
  type ViewLeaderHealth,
} from '../lib/messages';
import type { ServedView } from './metrics';

const STARTING: HealthProblem = {
  reason: 'starting',
  message: 'starting: the saved state is not read yet',
};
const SHUTTING_DOWN: HealthProblem = { reason: 'shutting_down', message: 'shutting down' };

export interface AloneFacts {
  readonly address: string;
  /** The view served, once the state is restored. */
  readonly served: ServedView | undefined;
  /** The message of the storage failure, once saving failed. */
  readonly storageFailure: string | undefined;
  readonly stopping: boolean;
}

export function aloneHealth(facts: AloneFacts): ViewLeaderHealth {
  const problems: HealthProblem[] = [];
  if (facts.stopping) problems.push(SHUTTING_DOWN);
  if (facts.served === undefined) problems.push(STARTING);
  if (facts.storageFailure !== undefined) {
    problems.push({ reason: 'storage_failed', message: facts.storageFailure });
  }
  return {
    status: healthStatus(problems),
    process: 'viewleader',
    address: facts.address,
    problems,
    replicated: false,
    role: 'alone',
    leader: null,
    term: 0,
    epoch: facts.served?.epoch ?? null,
  };
}

export interface MemberFacts {
  readonly address: string;
  /** The member's Raft status, once its log is read. */
  readonly status: MemberStatus | undefined;
  readonly stopping: boolean;
}

export function memberHealth(facts: MemberFacts): ViewLeaderHealth {
  const { status } = facts;
  const problems: HealthProblem[] = [];
  if (facts.stopping) problems.push(SHUTTING_DOWN);
  if (status === undefined) problems.push(STARTING);
  else if (status.leader === null) {
    problems.push({
      reason: 'no_leader',
      message: `no leader known in term ${status.term}: an election is under way or no majority of the members is reachable`,
    });
  }
  const role = status?.role ?? 'follower';
  assert(role !== 'unreachable', 'a member reports itself reachable');
  return {
    status: healthStatus(problems),
    process: 'viewleader',
    address: facts.address,
    problems,
    replicated: true,
    role,
    leader: status?.leader ?? null,
    term: status?.term ?? 0,
    epoch: status?.epoch ?? null,
  };
}
