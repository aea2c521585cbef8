// The view leader's command line, parsed once at the edge into typed options. A usage error
// prints a clear message to stderr and exits 2 (the contract's exit code for usage errors).

import yargs from 'yargs';
import { positiveSeconds, withProcessOptions, type CommonProcessOptions } from '../lib/cli-options';
import { ERROR_KINDS } from '../lib/errors';
import {
  FAILURE_TIMEOUT_S_DEFAULT,
  VIEWLEADER_PORT_FIRST,
  VIEWLEADER_PORT_LAST,
} from '../lib/limits';

export interface ViewLeaderOptions extends CommonProcessOptions {
  readonly failureTimeoutMs: number;
}

const PROGRAM = 'dht-viewleader';

export function parseViewLeaderArgs(args: readonly string[]): ViewLeaderOptions {
  const parsed = withProcessOptions(
    yargs([...args]),
    `port to listen on (default: the first free of ${VIEWLEADER_PORT_FIRST}..${VIEWLEADER_PORT_LAST})`,
  )
    .scriptName(PROGRAM)
    .usage(`$0 [options]\n\nThe view leader: heartbeats, epochs, the view, locks.`)
    .option('failure-timeout', {
      type: 'number',
      default: FAILURE_TIMEOUT_S_DEFAULT,
      coerce: positiveSeconds('failure-timeout'),
      describe: 'seconds without a heartbeat after which a server leaves the view',
    })
    // A flag given without its value (`--port` at the end) must not silently mean "default".
    .requiresArg(['host', 'port', 'log-level', 'failure-timeout'])
    .check((argv) => {
      if (argv._.length > 0) throw new Error(`unexpected argument: ${String(argv._[0])}`);
      return true;
    })
    .strict()
    .version(false)
    .help()
    .alias('help', 'h')
    .wrap(100)
    .fail((message: string | undefined, err: Error | undefined) => {
      process.stderr.write(`${PROGRAM}: ${message ?? err?.message ?? 'bad arguments'}\n`);
      process.stderr.write(`Run '${PROGRAM} --help' for usage.\n`);
      process.exit(ERROR_KINDS.usage.exitCode);
    })
    .parseSync();
  return {
    host: parsed.host,
    port: parsed.port,
    logLevel: parsed['log-level'],
    failureTimeoutMs: parsed['failure-timeout'] * 1000,
  };
}
