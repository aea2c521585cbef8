// Calling "the view leader" when it may be several members (`--viewleader A,B,C`, the contract's
// "A replicated view leader"): ask the member that led last time; a member that does not lead
// answers `not_leader` with the leader it knows, and the call follows it; a member that is down
// is skipped; while no member knows a leader (an election), the call waits and asks again, until
// VIEWLEADER_FAILOVER_WAIT_MS. The leader that answered is remembered for the next call. With one
// address (a view leader alone, or the port scan's list) it behaves as before: the first that
// answers.
//
// A timeout may mean the request was executed (the member was slow, not down), so it is followed
// to another member only for requests that are safe to repeat (`idempotent`, the default: every
// view leader request but lock_release is). A change (not `readOnly`) that timed out somewhere and
// never got an answer is reported `unknown`, not `unavailable`: it may have been done there (a
// member that lost its majority keeps the change in its log, and it commits once one returns).

import type * as z from 'zod/mini';
import { DhtError, NotLeaderError } from './errors';
import { call, UnreachableError } from './http-client';
import { VIEWLEADER_FAILOVER_WAIT_MS, VIEWLEADER_RETRY_MS } from './limits';
import type { Endpoint } from './messages';

export interface GroupCallOptions {
  /** Safe to send twice: a timed-out attempt may be repeated at another member. */
  readonly idempotent?: boolean;
  /** Overall deadline for finding the leader; VIEWLEADER_FAILOVER_WAIT_MS by default. */
  readonly waitMs?: number;
}

export class ViewLeaderGroup {
  private preferred = 0;

  constructor(
    readonly addresses: readonly string[],
    private readonly timeoutMs: number,
  ) {
    if (addresses.length === 0) throw new Error('a view leader group needs an address');
  }

  /** The member asked first: the last one that answered. */
  get current(): string {
    return this.addresses[this.preferred];
  }

  async call<Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
    endpoint: Endpoint<Req, Res>,
    body: z.infer<Req>,
    options: GroupCallOptions = {},
  ): Promise<z.infer<Res>> {
    const idempotent = options.idempotent ?? true;
    const deadline = performance.now() + (options.waitMs ?? VIEWLEADER_FAILOVER_WAIT_MS);
    let next = this.preferred;
    let last: DhtError | undefined;
    /** A member answered in this pass (it does not lead): worth waiting for an election. */
    let memberAlive = false;
    /** A change sent to a member that did not answer in time: it may have been done there. */
    let maybeDone: UnreachableError | undefined;
    // Bounded: every pass over the members ends, and either gives up (nobody answered at all) or
    // sleeps VIEWLEADER_RETRY_MS; the deadline ends the waiting.
    for (let attempt = 1; ; attempt++) {
      const index = next;
      try {
        const answer = await call(this.addresses[index], endpoint, body, {
          timeoutMs: this.timeoutMs,
        });
        this.preferred = index;
        return answer;
      } catch (err) {
        if (err instanceof NotLeaderError) {
          last = err;
          memberAlive = true;
          const hinted = err.leader === null ? -1 : this.addresses.indexOf(err.leader);
          next = hinted >= 0 && hinted !== index ? hinted : (index + 1) % this.addresses.length;
        } else if (err instanceof UnreachableError && err.transport !== 'refused' && !idempotent) {
          throw endpoint.readOnly ? err : outcomeUnknown(err);
        } else if (err instanceof UnreachableError) {
          last ??= err;
          if (err.transport !== 'refused') {
            memberAlive = true; // a stopped leader: wait it out
            if (!endpoint.readOnly) maybeDone ??= err;
          }
          next = (index + 1) % this.addresses.length;
        } else {
          throw err;
        }
      }
      if (attempt % this.addresses.length !== 0) continue;
      // A whole pass without an answer. Nobody there at all: give up now. Members there but none
      // leading (an election, a stopped leader): wait a little and ask again, until the deadline.
      if (!memberAlive || performance.now() + VIEWLEADER_RETRY_MS >= deadline) break;
      memberAlive = false;
      await sleep(VIEWLEADER_RETRY_MS);
    }
    if (maybeDone !== undefined) throw outcomeUnknown(maybeDone);
    const tried = this.addresses.length === 1 ? this.addresses[0] : this.addresses.join(',');
    const why =
      last instanceof UnreachableError
        ? ` (${last.why})`
        : last instanceof NotLeaderError
          ? ' (no member leads: an election may be under way, or a majority is down)'
          : '';
    throw new DhtError('unavailable', `no view leader reachable at ${tried}${why}`);
  }
}

/** A change that reached `err.address` and got no answer: done there, or not. */
function outcomeUnknown(err: UnreachableError): DhtError {
  return new DhtError(
    'unknown',
    `${err.message}; the view leader may or may not have done it (ask again to find out)`,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
