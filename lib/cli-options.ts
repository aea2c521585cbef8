// The command line of the three executables, parsed once at the edge into typed values: the flags
// the long-running ones share, and what all three do alike: `--help`, `--version`, flags from the
// environment (lib/cli-env.ts), and one wording for errors. Every error is one line on stderr,
// `ERROR: MESSAGE`; a usage error ends with where to read the usage, `(see 'PROGRAM --help')`,
// names the nearest flag for an unknown one, and exits 2 (the contract's code for usage errors).

import type { Argv } from 'yargs';
import { optionsFromEnv, withEnvSources, type EnvOptions } from './cli-env';
import { candidateAddresses } from './address';
import { DhtError, ERROR_KINDS } from './errors';
import { HOST_DEFAULT } from './limits';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './log-options';
import { suggest } from './suggest';
import { packageVersion } from './version';

export const USAGE_EXIT_CODE = ERROR_KINDS.usage.exitCode;

/** Help text width: yargs' default of 80 breaks most option descriptions in two. */
const HELP_COLUMNS = 100;

export interface CommonProcessOptions {
  readonly host: string;
  readonly port: number | undefined;
  readonly logLevel: LogLevel;
  readonly secretFile: string | undefined;
  readonly insecure: boolean;
  /** More Host names (HOST:PORT) signed requests may be addressed to: a proxy's, say. */
  readonly publicAddress: readonly string[];
  readonly logFormat: LogFormat;
}

export function withProcessOptions<T>(argv: Argv<T>, portHelp: string) {
  return argv
    .option('host', { type: 'string', default: HOST_DEFAULT, describe: 'address to bind' })
    .option('port', { type: 'number', describe: portHelp })
    .option('log-level', {
      choices: LOG_LEVELS,
      default: 'info' as LogLevel,
      describe: 'log level (logs go to stderr)',
    })
    .option('secret-file', secretFileOption)
    .option('insecure', {
      type: 'boolean',
      default: false,
      describe:
        'allow a --host outside loopback without --secret-file (anyone who can reach it can write)',
    })
    .option('public-address', {
      type: 'string',
      array: true,
      default: [] as string[],
      defaultDescription: 'none',
      describe:
        'with --secret-file: another HOST:PORT clients reach this process at (a TLS proxy in ' +
        'front, say); requests signed for it are accepted too',
    })

    .option('log-format', {
      choices: LOG_FORMATS,
      default: 'json' as LogFormat,
      describe: 'logs as JSON lines, or pretty: one readable line each, for a terminal',
    })
    .requiresArg(['host', 'port', 'log-level', 'log-format', 'secret-file', 'public-address'])
    .check((args) => {
      const port = (args as { port?: number }).port;
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
        throw new Error('--port must be an integer from 0 to 65535');
      }
      return true;
    });
}

/**
 * What the three executables share: the name in the usage, `--version`, `-h`/`--help`, the help
 * width, and the epilogue on environment variables.
 */
export function withCommonBehaviour<T>(argv: Argv<T>, program: string): Argv<T> {
  return argv
    .scriptName(program)
    .version(packageVersion())
    .describe('version', 'print the version and exit')
    .help()
    .alias('help', 'h')
    .describe('help', 'print this usage and exit')
    .wrap(HELP_COLUMNS)
    .epilogue(
      'Every flag can also be set in the environment: --some-flag as DHT_SOME_FLAG ' +
        '(DHT_VIEWLEADER=127.0.0.1:39000). The command line wins.',
    );
}

/** yargs keeps the declared options here; not in its type definitions. */
interface DeclaredOptions {
  readonly key: Readonly<Record<string, unknown>>;
  readonly boolean: readonly string[];
}

const NOT_FROM_ENV = new Set(['help', 'version']);

/**
 * Declare `conflicts` on the parser and give it the environment's values of its flags as its
 * lowest-precedence configuration. Call after every `.option`; returns where each value came from
 * (for `usageText`).
 */
export function withEnvironment<T>(
  parser: Argv<T>,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  conflicts: readonly (readonly [string, string])[] = [],
): EnvOptions {
  for (const [a, b] of conflicts) parser.conflicts(a, b);
  const declared = (parser as unknown as { getOptions(): DeclaredOptions }).getOptions();
  const options = Object.keys(declared.key).filter((name) => !NOT_FROM_ENV.has(name));
  const fromEnv = optionsFromEnv(env, { options, booleans: declared.boolean, conflicts }, argv);
  parser.config(fromEnv.values);
  return fromEnv;
}

/** The flags a parser knows, for "did you mean". */
export function declaredFlags<T>(parser: Argv<T>): string[] {
  const declared = (parser as unknown as { getOptions(): DeclaredOptions }).getOptions();
  return Object.keys(declared.key);
}

/**
 * A usage error as one line, without the `ERROR: ` prefix: yargs' multi-line messages joined, an
 * unknown flag given its nearest known one, the variable named when a value came from the
 * environment, and where to read the usage.
 */
export function usageText(
  program: string,
  message: string,
  flags: readonly string[],
  sources: Readonly<Record<string, string>> = {},
  helpCommand = `${program} --help`,
): string {
  let text = message.replace(/\s*\n\s*/g, ' ').trim();
  const unknown = /^Unknown arguments?: (.+)$/.exec(text);
  if (unknown) {
    // yargs names `--some-flag` twice, as some-flag and someFlag: keep the first.
    const all = unknown[1].split(', ');
    const words = all.filter((word) => !/[A-Z]/.test(word) || !all.includes(kebab(word)));
    text = `Unknown argument${words.length === 1 ? '' : 's'}: ${words.join(', ')}`;
    const hints = words.flatMap((word) => {
      const near = suggest(word.replace(/^-+/, ''), flags);
      return near === undefined ? [] : [{ word, near }];
    });
    if (words.length === 1 && hints.length === 1) text += `; did you mean --${hints[0].near}?`;
    else if (hints.length > 0) {
      text += ` (${hints.map(({ word, near }) => `${word}: did you mean --${near}?`).join(' ')})`;
    }
  }
  return `${withEnvSources(text, sources)} (see '${helpCommand}')`;
}

function kebab(word: string): string {
  return word.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Write `ERROR: MESSAGE` for a usage error and exit 2. */
export function exitWithUsage(text: string): never {
  process.stderr.write(`ERROR: ${text}\n`);
  process.exit(USAGE_EXIT_CODE);
}

/**
 * The end of a long-running executable that could not start: `ERROR: MESSAGE` and the exit code
 * of the error's kind (the catalogue's; 1 for anything else).
 */
export function exitWithError(err: unknown): never {
  process.stderr.write(`ERROR: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof DhtError ? err.info.exitCode : 1);
}

/**
 * A yargs `coerce` for a `HOST[:PORT][,...]` list: refused at parse time when malformed (an IPv6
 * host without brackets, a bad port), kept as written otherwise.
 */
export function addressList(
  flag: string,
  portFirst: number,
  portLast: number,
): (value: unknown) => string {
  return (value: unknown) => {
    const text = String(value);
    try {
      candidateAddresses(text, portFirst, portLast);
    } catch (err) {
      throw new Error(`--${flag}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return text;
  };
}

/** A positive number of seconds (fractions allowed), for --heartbeat-interval and friends. */
export function positiveSeconds(name: string): (value: unknown) => number {
  return (value: unknown) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0)
      throw new Error(`--${name} must be a positive number of seconds`);
    return n;
  };
}

/** A number of seconds >= 0 (fractions allowed), for --wait. */
export function nonNegativeSeconds(name: string): (value: unknown) => number {
  return (value: unknown) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number of seconds >= 0`);
    return n;
  };
}

/** Ports to try: the one given, or the contract's default range. */
export function portsToTry(port: number | undefined, first: number, last: number): number[] {
  if (port !== undefined) return [port];
  const out: number[] = [];
  for (let p = first; p <= last; p++) out.push(p);
  return out;
}

/**
 * `--secret-file FILE` (or DHT_SECRET_FILE, as every flag from its variable: lib/cli-env.ts): the
 * cluster's shared secret (lib/auth.ts). Only the file's name is ever shown, never its content.
 */
export const secretFileOption = {
  type: 'string',
  describe:
    "file holding the cluster's shared secret; every request must then be signed with it " +
    '(docs/security.md)',
} as const;
