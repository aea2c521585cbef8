// "Did you mean": the known word nearest to a mistyped one (`getrr` -> `getr`, `--sever` ->
// `--server`), as git and yargs' recommendCommands do. Pure: no I/O.

import { SUGGEST_DISTANCE_MAX, SUGGEST_WORD_CHARS_MAX } from './limits';

/**
 * Levenshtein distance with adjacent transpositions counted as one edit (optimal string alignment),
 * so `gtre` is one edit from `getr`. Both words are bounded by the caller.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[rows - 1][cols - 1];
}

/**
 * The candidate nearest to `word`, if one is close enough to be a typo: at most
 * SUGGEST_DISTANCE_MAX edits and fewer edits than the word has characters (`x` suggests nothing).
 * A candidate that starts with the word (`query` -> `query_servers`) counts as near. Ties go to the
 * first candidate, so the caller's order decides.
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  if (word === '' || word.length > SUGGEST_WORD_CHARS_MAX) return undefined;
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    if (candidate === word) return undefined;
    const distance =
      candidate === lower
        ? 0
        : candidate.startsWith(lower) && lower.length >= 3
          ? 1
          : editDistance(lower, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= SUGGEST_DISTANCE_MAX && bestDistance < word.length ? best : undefined;
}
