// Flags shared by the long-running executables, parsed once at the edge into typed values.

import type { Argv } from 'yargs';
import { HOST_DEFAULT } from './limits';
import { LOG_LEVELS, type LogLevel } from './logger';

export interface CommonProcessOptions {
  readonly host: string;
  readonly port: number | undefined;
  readonly logLevel: LogLevel;
  readonly secretFile: string | undefined;
  readonly insecure: boolean;
  /** More Host names (HOST:PORT) signed requests may be addressed to: a proxy's, say. */
  readonly publicAddress: readonly string[];
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
    .requiresArg(['host', 'port', 'log-level', 'secret-file', 'public-address'])
    .check((args) => {
      const port = (args as { port?: number }).port;
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
        throw new Error('--port must be an integer from 0 to 65535');
      }
      return true;
    });
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

/** Ports to try: the one given, or the contract's default range. */
export function portsToTry(port: number | undefined, first: number, last: number): number[] {
  if (port !== undefined) return [port];
  const out: number[] = [];
  for (let p = first; p <= last; p++) out.push(p);
  return out;
}

/**
 * `--secret-file FILE`, default DHT_SECRET_FILE: the cluster's shared secret (lib/auth.ts). Only
 * the file's name is ever shown, never its content.
 */
export const secretFileOption = {
  type: 'string',
  default: secretFileFromEnvironment(),
  defaultDescription: '$DHT_SECRET_FILE',
  describe:
    "file holding the cluster's shared secret; every request must then be signed with it " +
    '(docs/security.md)',
} as const;

function secretFileFromEnvironment(): string | undefined {
  const file = process.env.DHT_SECRET_FILE;
  return file === undefined || file.trim() === '' ? undefined : file;
}
