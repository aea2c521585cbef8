// Flags from the environment: every flag `--some-flag` of an executable may also be given as
// `DHT_SOME_FLAG` (`DHT_VIEWLEADER=127.0.0.1:39001 dht-client getr k`). The command line wins:
// a variable is ignored for a flag given on the command line, and for a flag that conflicts with
// one given there (`DHT_DATA_DIR` with `--in-memory`). Only the executable's own flags are read,
// so other DHT_ variables (the chaos hooks DHT_FAULT_PAUSE_*, a DHT_SECRET_FILE before its flag
// exists) never reach strict parsing. Pure: the caller passes process.env and the argv.

import { DhtError } from './errors';

export const ENV_PREFIX = 'DHT_';

/** `data-dir` -> `DHT_DATA_DIR`. */
export function envName(option: string): string {
  return ENV_PREFIX + option.toUpperCase().replace(/-/g, '_');
}

export interface EnvSpec {
  /** Every flag (kebab-case) the executable declares, --help and --version excluded. */
  readonly options: readonly string[];
  /** Those of them that are booleans. */
  readonly booleans: readonly string[];
  /** Pairs of flags that may not be given together. */
  readonly conflicts: readonly (readonly [string, string])[];
}

export interface EnvOptions {
  /** Option values to give the parser as its lowest-precedence configuration. */
  readonly values: Readonly<Record<string, string | boolean>>;
  /** Which variable each value came from, to say so in an error about it. */
  readonly sources: Readonly<Record<string, string>>;
}

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

export function optionsFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  spec: EnvSpec,
  argv: readonly string[],
): EnvOptions {
  const given = optionsGiven(argv);
  const values: Record<string, string | boolean> = {};
  const sources: Record<string, string> = {};
  for (const option of spec.options) {
    const name = envName(option);
    const raw = env[name];
    // An empty variable counts as unset (`DHT_SERVER= dht-client ...` undoes an export).
    if (raw === undefined || raw === '' || given.has(option)) continue;
    const overruled = spec.conflicts.some(
      ([a, b]) => (a === option && given.has(b)) || (b === option && given.has(a)),
    );
    if (overruled) continue;
    values[option] = spec.booleans.includes(option) ? booleanOf(name, raw) : raw;
    sources[option] = name;
  }
  return { values, sources };
}

function booleanOf(name: string, raw: string): boolean {
  const word = raw.trim().toLowerCase();
  if (TRUE_WORDS.includes(word)) return true;
  if (FALSE_WORDS.includes(word)) return false;
  throw new DhtError(
    'usage',
    `${name}=${raw} in the environment: expected one of ${[...TRUE_WORDS, ...FALSE_WORDS].join(', ')}`,
  );
}

/**
 * The flags present on the command line, kebab-case (`--dataDir` counts as `data-dir`, as yargs
 * reads it). Everything after `--` is an argument, not a flag.
 */
export function optionsGiven(argv: readonly string[]): Set<string> {
  const given = new Set<string>();
  for (const token of argv) {
    if (token === '--') break;
    const match = /^--([^=]+)/.exec(token);
    if (match) given.add(match[1].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`));
  }
  return given;
}

/** `message` with a note naming the variable behind any flag it mentions. */
export function withEnvSources(message: string, sources: Readonly<Record<string, string>>): string {
  const named = Object.entries(sources).filter(([option]) => message.includes(option));
  if (named.length === 0) return message;
  return `${message} (from the environment: ${named.map(([, name]) => name).join(', ')})`;
}
