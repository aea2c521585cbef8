// What a request may make this server store, as pure functions (the rule is in lib/limits.ts,
// next to VERSION_CLAIM_MAX; the shell asks the vouchers, server/storage-server.ts).
//
// Every version that arrives to be stored claims that some write reached it: a transfer entry
// claims its own version (the source holds it); a commit, or a peer's "committed" answer, claims
// one less (the highest vote, which some replica holds). This server takes a claim on the
// request's word up to VERSION_CLAIM_MAX, or up to the version it holds itself. Beyond that a
// server of its view must hold the key at least at the claimed version, or nothing is stored.

import { VERSION_CLAIM_MAX } from '../lib/limits';

export interface Claim {
  readonly key: string;
  readonly version: number;
}

/** The version a transfer entry claims exists somewhere: its own. */
export function claimOfCopy(key: string, version: number): Claim {
  return { key, version };
}

/** The version a commit claims exists somewhere: the highest vote, one less than the commit's. */
export function claimOfCommit(key: string, version: number): Claim {
  return { key, version: version - 1 };
}

/** True when `claim` may be taken on the request's word, given the version held here. */
export function withinReach(claim: Claim, heldVersion: number): boolean {
  return claim.version <= Math.max(heldVersion, VERSION_CLAIM_MAX);
}

/** The claims among `claims` that need a voucher: beyond the bound and beyond the copy held. */
export function claimsToVouch(
  claims: readonly Claim[],
  versionOf: (key: string) => number,
): Claim[] {
  return claims.filter((claim) => !withinReach(claim, versionOf(claim.key)));
}

/**
 * The claims no voucher backs. `held` has one entry per voucher that answered: the keys of the
 * claims that voucher holds at least at the claimed version. A voucher that did not answer backs
 * nothing.
 */
export function unbacked(claims: readonly Claim[], held: readonly ReadonlySet<string>[]): Claim[] {
  return claims.filter((claim) => !held.some((keys) => keys.has(claim.key)));
}
