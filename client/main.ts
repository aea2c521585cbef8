// bin/dht-client: parse the command line (yargs), run one command through the SDK, print the
// result, exit with the contract's code.

import yargs from 'yargs';
import { DhtError } from '../lib/errors';
import { initHashing } from '../lib/hash';
import { secretFileOption } from '../lib/cli-options';
import { setUpAuthentication } from '../lib/http-auth';
import {
  CLIENT_TIMEOUT_S_DEFAULT,
  LOCK_RETRY_INTERVAL_S_DEFAULT,
  VIEWLEADER_PORT_FIRST,
} from '../lib/limits';
import { COMMANDS, resolveArgs } from './commands';
import { writeFailure, writeSuccess } from './output';
import { DhtClient, ServerClient } from './sdk';

const nonNegativeSeconds = (name: string) => (v: unknown) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number of seconds >= 0`);
  return n;
};
const positive = (name: string) => (v: unknown) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`--${name} must be a positive number of seconds`);
  return n;
};

async function main(argv: string[]): Promise<number> {
  const wantsJson = argv.includes('--json');
  let usageError: string | undefined;
  const parser = yargs(argv)
    .scriptName('dht-client')
    .usage(
      [
        '$0 [options] COMMAND ARGS...',
        '',
        'Commands:',
        ...COMMANDS.map((c) => `  ${`${c.name} ${c.args}`.padEnd(28)} ${c.describe}`),
        '',
        'A VALUE left out of set/setr is read from stdin, exactly. `--` ends the options.',
        'Exit codes: 0 done, 1 not done (not found, aborted, rejected), 2 usage, 3 outcome unknown,',
        '4 unavailable, 75 refused for now (rebalancing or view changing): retry later.',
      ].join('\n'),
    )
    .parserConfiguration({
      'parse-positional-numbers': false,
      'populate--': true,
      'dot-notation': false,
      'boolean-negation': false,
    })
    .option('server', {
      type: 'string',
      default: '127.0.0.1',
      describe: 'server HOST[:PORT] (no port: try 38000..38010)',
    })
    .option('viewleader', {
      type: 'string',
      default: `127.0.0.1:${VIEWLEADER_PORT_FIRST}`,
      describe: 'view leader(s) HOST[:PORT][,...] (no port: try 39000..39010)',
    })
    .option('json', {
      type: 'boolean',
      default: false,
      describe: 'print one JSON object on stdout',
    })
    .option('timeout', {
      coerce: positive('timeout'),
      default: CLIENT_TIMEOUT_S_DEFAULT,
      describe: 'seconds per request',
    })
    .option('wait', {
      coerce: nonNegativeSeconds('wait'),
      describe:
        'setr/delr/getr: seconds to wait for a rebalancing to finish; lock_get: most seconds to wait',
    })
    .option('retry-interval', {
      coerce: positive('retry-interval'),
      default: LOCK_RETRY_INTERVAL_S_DEFAULT,
      describe: 'lock_get: seconds between attempts',
    })
    .option('secret-file', secretFileOption)
    .requiresArg('secret-file')
    .strictOptions()
    .help()
    .alias('help', 'h')
    .version(false)
    .exitProcess(false)
    .fail((message, err) => {
      usageError = err?.message ?? message;
    });
  const args = parser.parseSync();
  if (args.help) return 0;
  if (usageError !== undefined) return writeFailure(new DhtError('usage', usageError), wantsJson);

  const positionals = [
    ...args._.map(String),
    ...((args['--'] as string[] | undefined) ?? []).map(String),
  ];
  const [name, ...rest] = positionals;
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    const message =
      name === undefined
        ? 'no command given (see --help)'
        : `unknown command '${name}' (see --help)`;
    return writeFailure(new DhtError('usage', message), args.json);
  }

  await initHashing();
  try {
    setUpAuthentication({ secretFile: args['secret-file'] });
  } catch (err) {
    return writeFailure(err, args.json);
  }
  const timeoutMs = args.timeout * 1000;
  const waitMs = args.wait === undefined ? undefined : args.wait * 1000;
  let server: ServerClient | undefined;
  try {
    const context = {
      cluster: new DhtClient({
        viewLeader: args.viewleader,
        timeoutMs,
        waitMs: waitMs ?? 0,
        cacheView: false,
      }),
      server: () => (server ??= new ServerClient(args.server, timeoutMs)),
      retryIntervalMs: args.retryInterval * 1000,
      waitMs,
      readStdin,
    };
    const output = await command.run(context, await resolveArgs(command, rest, context));
    return writeSuccess(output, args.json);
  } catch (err) {
    return writeFailure(err, args.json);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ERROR: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
