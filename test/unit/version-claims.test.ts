// What a request may make a server store: the claim rule (server/version-claims.ts, bounds in
// lib/limits.ts). The property that matters: no accepted input leaves a key without versions for
// its later writes, and honest writes above a forged claim stay storable.

import { VERSION_CLAIM_MAX, VERSION_MAX } from '../../lib/limits';
import {
  claimOfCommit,
  claimOfCopy,
  claimsToVouch,
  unbacked,
  withinReach,
} from '../../server/version-claims';

const CLAIM = VERSION_CLAIM_MAX;

describe('taken on the request word', () => {
  test.each([
    {
      what: 'a copy at the bound, nothing held',
      claim: claimOfCopy('k', CLAIM),
      held: 0,
      ok: true,
    },
    { what: 'a copy over the bound', claim: claimOfCopy('k', CLAIM + 1), held: 0, ok: false },
    { what: 'a copy at 2^53 - 1', claim: claimOfCopy('k', VERSION_MAX), held: 0, ok: false },
    {
      what: 'a copy no newer than held',
      claim: claimOfCopy('k', CLAIM + 9),
      held: CLAIM + 9,
      ok: true,
    },
    // A coordinator commits 1 + the highest vote: another replica may hold a copy at the bound.
    {
      what: 'a commit one over the bound',
      claim: claimOfCommit('k', CLAIM + 1),
      held: 0,
      ok: true,
    },
    {
      what: 'a commit two over the bound',
      claim: claimOfCommit('k', CLAIM + 2),
      held: 0,
      ok: false,
    },
    { what: 'a commit at 2^53 - 1', claim: claimOfCommit('k', VERSION_MAX), held: 0, ok: false },
    // Above the bound, the next write over the copy held here is always within reach.
    {
      what: 'the next commit over a held copy above the bound',
      claim: claimOfCommit('k', CLAIM + 8),
      held: CLAIM + 7,
      ok: true,
    },
    {
      what: 'two commits over a held copy above the bound',
      claim: claimOfCommit('k', CLAIM + 9),
      held: CLAIM + 7,
      ok: false,
    },
  ])('$what: within reach = $ok', ({ claim, held, ok }) => {
    expect(withinReach(claim, held)).toBe(ok);
  });

  test('from a held copy at the bound, write after write stays within reach up to the end of the range', () => {
    for (const held of [CLAIM, CLAIM + 1, CLAIM + 1000, VERSION_MAX - 1]) {
      const next = held + 1; // what a coordinator commits when every replica holds `held`
      expect(Number.isSafeInteger(next)).toBe(true);
      expect(withinReach(claimOfCommit('k', next), held)).toBe(true);
    }
    // The writes left after a forged claim at the bound: the range's second half.
    expect(VERSION_MAX - CLAIM).toBe(2 ** 52 - 1);
  });
});

describe('vouching', () => {
  const held = new Map([
    ['low', 3],
    ['high', CLAIM + 5],
  ]);
  const versionOf = (key: string): number => held.get(key) ?? 0;

  test('only claims beyond the bound and beyond the copy held need a voucher', () => {
    const claims = [
      claimOfCopy('low', CLAIM),
      claimOfCopy('high', CLAIM + 5),
      claimOfCopy('high', CLAIM + 6),
      claimOfCopy('new', CLAIM + 1),
    ];
    expect(claimsToVouch(claims, versionOf)).toEqual([
      { key: 'high', version: CLAIM + 6 },
      { key: 'new', version: CLAIM + 1 },
    ]);
    expect(claimsToVouch([], versionOf)).toEqual([]);
  });

  test('a claim is backed when any voucher holds its key that high; silent vouchers back nothing', () => {
    const claims = [claimOfCopy('a', CLAIM + 1), claimOfCopy('b', CLAIM + 1)];
    expect(unbacked(claims, [])).toEqual(claims);
    expect(unbacked(claims, [new Set(), new Set(['b'])])).toEqual([claims[0]]);
    expect(unbacked(claims, [new Set(['a']), new Set(['b'])])).toEqual([]);
  });
});
