// Asking "the first that answers" of a list of candidate addresses (the contract's port scan),
// remembering which one answered so the next call goes straight there.

import { DhtError } from '../lib/errors';
import { call, UnreachableError } from '../lib/http-client';
import type { Endpoint } from '../lib/messages';
import type * as z from 'zod/mini';

export class CandidateSet {
  private preferred = 0;

  constructor(
    private readonly what: string,
    private readonly addresses: readonly string[],
    private readonly timeoutMs: number,
  ) {}

  async call<Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
    endpoint: Endpoint<Req, Res>,
    body: z.infer<Req>,
  ): Promise<z.infer<Res>> {
    let last: UnreachableError | undefined;
    for (let attempt = 0; attempt < this.addresses.length; attempt++) {
      const index = (this.preferred + attempt) % this.addresses.length;
      try {
        const answer = await call(this.addresses[index], endpoint, body, {
          timeoutMs: this.timeoutMs,
        });
        this.preferred = index;
        return answer;
      } catch (err) {
        // Only a refused connection certainly did nothing: anything else (a timeout) may have
        // been executed, so trying the next address could do it twice.
        if (!(err instanceof UnreachableError) || err.transport !== 'refused') throw err;
        last = err;
      }
    }
    const tried =
      this.addresses.length === 1
        ? this.addresses[0]
        : `${this.addresses[0]} .. ${this.addresses[this.addresses.length - 1]}`;
    throw new DhtError(
      'unavailable',
      `no ${this.what} reachable at ${tried}${last ? ` (${last.why})` : ''}`,
    );
  }
}
