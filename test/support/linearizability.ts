// A linearizability checker for one register (one key) whose writes carry unique values: the
// Wing & Gong search with Lowe's memoisation (as in Knossos and Porcupine). It looks for a total
// order of the operations that respects real time (an operation that ended before another began
// comes first) and in which every read returns the value of the latest write before it.
//
// Outcomes, as a history checker reads the contract's exit codes:
// - `ok`: took effect exactly once, somewhere between `start` and `end`.
// - `fail` (exit 1, 4, 75): definitely took no effect; a failed read told us nothing.
// - `unknown` (exit 3, a killed client): a write that may or may not have taken effect, at any
//   time after `start` (its `end` is +infinity); an unknown read told us nothing.
//
// The register may be absent (`null`): a delete (delr) is a write of "absent", and a read that
// answered not_found observed "absent". A read's `value` is `null` then; a delete's is always
// `null`. Written values are unique; deletes, all writing the same "absent", need not be.

import { assert } from '../../lib/assert';

export type OperationType = 'write' | 'delete' | 'read';
export type OperationOutcome = 'ok' | 'fail' | 'unknown';

export interface Operation {
  readonly type: OperationType;
  /** The value written (`null` for a delete), or the value read (`null`: the key was absent). */
  readonly value: string | null;
  /** When the caller issued it (any clock, the same for the whole history). */
  readonly start: number;
  /** When the caller heard the outcome; ignored for `unknown` (taken as +infinity). */
  readonly end: number;
  readonly outcome: OperationOutcome;
  /** Who issued it, for explanations only. */
  readonly process?: string;
}

export type CheckResult =
  { readonly ok: true } | { readonly ok: false; readonly explanation: string };

export interface CheckOptions {
  /** The register's value before the history (`null`: absent). */
  readonly initial?: string | null;
  /** A bound on search steps, so a pathological history cannot hang a test. */
  readonly searchStepsMax?: number;
}

const SEARCH_STEPS_MAX_DEFAULT = 2_000_000;

/** An operation that can appear in the linearization. */
interface Candidate {
  readonly index: number;
  readonly op: Operation;
  readonly start: number;
  /** +Infinity for an unknown write. */
  readonly end: number;
  /** An `ok` operation must be linearized; an `unknown` write or delete may be left out. */
  readonly required: boolean;
}

export function checkRegister(
  history: readonly Operation[],
  options: CheckOptions = {},
): CheckResult {
  const initial = options.initial ?? null;
  const stepsMax = options.searchStepsMax ?? SEARCH_STEPS_MAX_DEFAULT;
  for (const op of history) {
    assert(op.type !== 'write' || op.value !== null, 'a write writes a value');
    assert(op.type !== 'delete' || op.value === null, 'a delete writes "absent" (null)');
    assert(op.outcome === 'unknown' || op.start <= op.end, 'an operation ends after it starts');
  }
  const writes = new Map<string, Operation>();
  for (const op of history) {
    if (op.type !== 'write' || op.value === null) continue;
    assert(!writes.has(op.value), `written values are unique (${JSON.stringify(op.value)} twice)`);
    assert(op.value !== initial, 'no write writes the initial value');
    writes.set(op.value, op);
  }

  const deletes = history.filter((op) => op.type === 'delete');
  const precheck = checkReadsAgainstWrites(history, writes, deletes, initial);
  if (precheck !== undefined) return precheck;

  const candidates: Candidate[] = [];
  for (const op of history) {
    if (op.outcome === 'fail') continue;
    if (op.type === 'read' && op.outcome !== 'ok') continue; // a read without an answer
    candidates.push({
      index: candidates.length,
      op,
      start: op.start,
      end: op.outcome === 'unknown' ? Infinity : op.end,
      required: op.outcome === 'ok',
    });
  }
  // Trying early operations first finds the usual (nearly sequential) linearization at once.
  candidates.sort((a, b) => a.start - b.start || a.end - b.end);
  const ordered = candidates.map((c, index) => ({ ...c, index }));
  return new Search(ordered, initial, stepsMax).run();
}

/** Cheap checks with precise explanations for the usual ways a read goes wrong. */
function checkReadsAgainstWrites(
  history: readonly Operation[],
  writes: ReadonlyMap<string, Operation>,
  deletes: readonly Operation[],
  initial: string | null,
): CheckResult | undefined {
  for (const read of history) {
    if (read.type !== 'read' || read.outcome !== 'ok') continue;
    if (read.value === initial) continue;
    if (read.value === null) {
      // "Absent" after a value: some delete that did not fail must have begun before the read ended.
      if (!deletes.some((d) => d.outcome !== 'fail' && d.start <= read.end)) {
        return fail(`${describe(read)} found the key absent, but no delete could have removed it`);
      }
      continue;
    }
    const write = writes.get(read.value);
    if (write === undefined) {
      return fail(`${describe(read)} returned a value that was never written`);
    }
    if (write.outcome === 'fail') {
      return fail(
        `${describe(read)} returned the value of a write that failed: ${describe(write)}`,
      );
    }
    if (write.start > read.end) {
      return fail(`${describe(read)} returned a value before its write began: ${describe(write)}`);
    }
  }
  return undefined;
}

class Search {
  private readonly visited = new Set<string>();
  private steps = 0;
  /** The longest linearization found, for the explanation. */
  private best: Candidate[] = [];
  private bestState: string | null;
  private bestStuck: Candidate[] = [];
  private readonly requiredCount: number;

  constructor(
    private readonly candidates: readonly Candidate[],
    private readonly initial: string | null,
    private readonly stepsMax: number,
  ) {
    this.requiredCount = candidates.filter((c) => c.required).length;
    this.bestState = initial;
  }

  run(): CheckResult {
    const linearized = new Uint8Array(this.candidates.length);
    const found = this.explore(linearized, [], this.initial, 0);
    if (found === 'yes') return { ok: true };
    if (found === 'budget') {
      return fail(
        `search gave up after ${this.stepsMax} steps (${this.candidates.length} operations)`,
      );
    }
    const prefix = this.best
      .slice(-5)
      .map((c) => `  ${describe(c.op)}`)
      .join('\n');
    const stuck = this.bestStuck.map((c) => `  ${describe(c.op)}`).join('\n');
    return fail(
      [
        `not linearizable: at most ${this.best.length} operations can be ordered; then the ` +
          `register holds ${show(this.bestState)} and none of the operations that may come next fits.`,
        this.best.length > 0
          ? `The last operations ordered:\n${prefix}`
          : 'No operation can come first.',
        `The operations that could come next:\n${stuck || '  (none)'}`,
      ].join('\n'),
    );
  }

  /**
   * Depth-first: extend `order` by any operation that no remaining operation precedes in real
   * time and that is legal in `state`. A (set of linearized operations, state) pair already
   * explored cannot succeed a second time.
   */
  private explore(
    linearized: Uint8Array,
    order: Candidate[],
    state: string | null,
    requiredDone: number,
  ): 'yes' | 'no' | 'budget' {
    if (requiredDone === this.requiredCount) return 'yes';
    if (++this.steps > this.stepsMax) return 'budget';
    const memoKey = `${Buffer.from(linearized).toString('base64')}|${state === null ? '' : `=${state}`}`;
    if (this.visited.has(memoKey)) return 'no';
    this.visited.add(memoKey);

    // An operation may come next only if no remaining operation ended before it started.
    let endMin = Infinity;
    for (const c of this.candidates)
      if (linearized[c.index] === 0 && c.end < endMin) endMin = c.end;
    const next = this.candidates.filter((c) => linearized[c.index] === 0 && c.start <= endMin);

    let progressed = false;
    for (const c of next) {
      if (c.op.type === 'read' && c.op.value !== state) continue;
      progressed = true;
      linearized[c.index] = 1;
      order.push(c);
      const found = this.explore(
        linearized,
        order,
        c.op.type === 'read' ? state : c.op.value, // a delete writes null: absent
        requiredDone + (c.required ? 1 : 0),
      );
      order.pop();
      linearized[c.index] = 0;
      if (found !== 'no') return found;
    }
    if (!progressed && order.length >= this.best.length) {
      this.best = [...order];
      this.bestState = state;
      this.bestStuck = next;
    }
    return 'no';
  }
}

function fail(explanation: string): CheckResult {
  return { ok: false, explanation };
}

function show(value: string | null): string {
  return value === null ? '(absent)' : JSON.stringify(value);
}

function describe(op: Operation): string {
  const who = op.process === undefined ? '' : `${op.process}: `;
  const end = op.outcome === 'unknown' ? 'inf' : op.end.toFixed(1);
  return `${who}${op.type} ${show(op.value)} [${op.start.toFixed(1)}, ${end}] ${op.outcome}`;
}
