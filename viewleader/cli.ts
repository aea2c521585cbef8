// The view leader's command line, parsed once at the edge into typed options. A usage error
// prints one line `ERROR: MESSAGE (see 'dht-viewleader --help')` to stderr and exits 2 (the
// contract's exit code for usage errors), as the other executables do (lib/cli-options.ts).

import path from 'node:path';
import yargs from 'yargs';
import {
  declaredFlags,
  exitWithUsage,
  positiveSeconds,
  usageText,
  withCommonBehaviour,
  withEnvironment,
  withProcessOptions,
  type CommonProcessOptions,
} from '../lib/cli-options';
import { formatAddress, parseHostPort } from '../lib/address';
import {
  FAILURE_TIMEOUT_S_DEFAULT,
  VIEWLEADER_PORT_FIRST,
  VIEWLEADER_PORT_LAST,
} from '../lib/limits';

/**
 * Where the state is kept: a data directory (`dir` undefined: the default, decided once the port
 * is known, `dataDirFor`), or nowhere (`--in-memory`).
 */
export type StorageOption =
  { readonly kind: 'disk'; readonly dir: string | undefined } | { readonly kind: 'memory' };

export interface ViewLeaderOptions extends CommonProcessOptions {
  readonly failureTimeoutMs: number;
  readonly storage: StorageOption;
  /**
   * Every member of a replicated view leader, this one included (`--peers`), as HOST:PORT in the
   * order given; undefined when this view leader runs alone.
   */
  readonly peers: readonly string[] | undefined;
}

/** The contract: 3 or 5 members (2f+1, surviving f failures). */
const PEER_COUNTS = [3, 5];

/** `--peers A,B,C`: each a HOST:PORT, no repeats, 3 or 5 of them. */
export function parsePeers(list: string): string[] {
  const peers = list
    .split(',')
    .filter((item) => item.trim() !== '')
    .map((item) => {
      const { host, port } = parseHostPort(item);
      if (port === undefined) throw new Error(`--peers: '${item.trim()}' needs a port (HOST:PORT)`);
      return formatAddress(host, port);
    });
  if (new Set(peers).size !== peers.length) throw new Error('--peers: a member is named twice');
  if (!PEER_COUNTS.includes(peers.length)) {
    throw new Error(
      `--peers: ${peers.length} member(s) given; a replicated view leader has 3 or 5 ` +
        '(run without --peers for a view leader alone)',
    );
  }
  return peers;
}

/** The contract's default: `dht-data/viewleader-PORT` under the working directory. */
export function dataDirFor(dir: string | undefined, port: number): string {
  return path.resolve(dir ?? path.join('dht-data', `viewleader-${port}`));
}

const PROGRAM = 'dht-viewleader';

/** Flags that may not be given together. */
const CONFLICTS = [
  ['data-dir', 'in-memory'],
  ['peers', 'in-memory'],
] as const;

export function parseViewLeaderArgs(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): ViewLeaderOptions {
  const parser = withCommonBehaviour(
    withProcessOptions(
      yargs([...args]),
      `port to listen on (default: the first free of ${VIEWLEADER_PORT_FIRST}..${VIEWLEADER_PORT_LAST})`,
    ),
    PROGRAM,
  )
    .usage(`$0 [options]\n\nThe view leader: heartbeats, epochs, the view, locks.`)
    .option('failure-timeout', {
      type: 'number',
      default: FAILURE_TIMEOUT_S_DEFAULT,
      coerce: positiveSeconds('failure-timeout'),
      describe: 'seconds without a heartbeat after which a server leaves the view',
    })
    .option('data-dir', {
      type: 'string',
      describe:
        'directory of the saved state (the epoch, the view, expired IDs, the placement, locks); ' +
        'created if missing (default: dht-data/viewleader-PORT under the working directory, ' +
        'PORT the one it listens on)',
    })
    .option('in-memory', {
      type: 'boolean',
      describe: 'keep nothing on disk: a restart forgets the view, expired IDs and locks',
    })
    .option('peers', {
      type: 'string',
      describe:
        'every member of a replicated view leader, HOST:PORT,HOST:PORT,... (3 or 5, this one ' +
        'included; needs --port, and a data directory: the vote and log must survive a restart)',
    })
    // A flag given without its value (`--port` at the end) must not silently mean "default".
    .requiresArg(['failure-timeout', 'data-dir', 'peers'])
    .check((argv) => {
      if (argv._.length > 0) throw new Error(`unexpected argument: ${String(argv._[0])}`);
      if (argv['data-dir'] !== undefined && argv['data-dir'].trim() === '') {
        throw new Error('--data-dir must name a directory');
      }
      if (argv.peers !== undefined) {
        const peers = parsePeers(argv.peers);
        if (argv.port === undefined) throw new Error("--peers needs --port (this member's own)");
        const self = formatAddress(argv.host, argv.port);
        if (!peers.includes(self)) {
          throw new Error(`--peers must include this member's own address ${self}`);
        }
      }
      return true;
    })
    .strict();
  let sources: Readonly<Record<string, string>> = {};
  try {
    sources = withEnvironment(parser, args, env, CONFLICTS).sources;
  } catch (err) {
    exitWithUsage(usageText(PROGRAM, err instanceof Error ? err.message : String(err), []));
  }
  const parsed = parser
    .fail((message: string | undefined, err: Error | undefined) => {
      const text = message ?? err?.message ?? 'bad arguments';
      exitWithUsage(usageText(PROGRAM, text, declaredFlags(parser), sources));
    })
    .parseSync();
  return {
    host: parsed.host,
    port: parsed.port,
    logLevel: parsed['log-level'],
    secretFile: parsed['secret-file'],
    insecure: parsed.insecure,
    publicAddress: parsed['public-address'],
    logFormat: parsed['log-format'],
    failureTimeoutMs: parsed['failure-timeout'] * 1000,
    storage:
      parsed['in-memory'] === true ? { kind: 'memory' } : { kind: 'disk', dir: parsed['data-dir'] },
    peers: parsed.peers === undefined ? undefined : parsePeers(parsed.peers),
  };
}
