// The package's version, for `--version` on every executable. Read from package.json at run time,
// found by walking up from this file: dist/lib/ unbundled, or wherever a bundle puts it.

import { readFileSync } from 'node:fs';
import path from 'node:path';

/** dist/lib/version.js is two levels below the root; a bundle one. A few more is plenty. */
const PACKAGE_SEARCH_LEVELS_MAX = 5;
const PACKAGE_NAME = 'dht';

let cached: string | undefined;

export function packageVersion(): string {
  if (cached !== undefined) return cached;
  let dir = __dirname;
  for (let level = 0; level <= PACKAGE_SEARCH_LEVELS_MAX; level++) {
    const found = versionIn(path.join(dir, 'package.json'));
    if (found !== undefined) return (cached = found);
    dir = path.dirname(dir);
  }
  return (cached = 'unknown');
}

function versionIn(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const pkg = JSON.parse(text) as { name?: unknown; version?: unknown };
  return pkg.name === PACKAGE_NAME && typeof pkg.version === 'string' ? pkg.version : undefined;
}
