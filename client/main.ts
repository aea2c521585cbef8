// bin/dht-client: parse the command line (yargs), run one command through the SDK, print the
// result, exit with the contract's code.

import yargs, { type FallbackCompletionFunction } from 'yargs';
import {
  addressList,
  declaredFlags,
  nonNegativeSeconds,
  positiveSeconds,
  usageText,
  withCommonBehaviour,
  withEnvironment,
} from '../lib/cli-options';
import { DhtError } from '../lib/errors';
import { initHashing } from '../lib/hash';
import { setUpAuthentication } from '../lib/http-auth';
import {
  CLIENT_TIMEOUT_S_DEFAULT,
  LOCK_RETRY_INTERVAL_S_DEFAULT,
  SERVER_PORT_FIRST,
  SERVER_PORT_LAST,
  VIEWLEADER_PORT_FIRST,
  VIEWLEADER_PORT_LAST,
} from '../lib/limits';
import { COMMANDS, resolveArgs, type ClientFlag } from './commands';
import { commandHelp, generalHelp, PROGRAM, unknownCommandMessage, USAGE_LINE } from './help';
import { writeFailure, writeSuccess } from './output';
import { DhtClient, ServerClient } from './sdk';

/** Every flag, for yargs and for each command's help. */
const FLAGS = {
  server: {
    type: 'string',
    default: '127.0.0.1',
    coerce: addressList('server', SERVER_PORT_FIRST, SERVER_PORT_LAST),
    describe: 'server HOST[:PORT] (no port: try 38000..38010)',
  },
  viewleader: {
    type: 'string',
    default: `127.0.0.1:${VIEWLEADER_PORT_FIRST}`,
    coerce: addressList('viewleader', VIEWLEADER_PORT_FIRST, VIEWLEADER_PORT_LAST),
    describe: 'view leader(s) HOST[:PORT][,...] (no port: try 39000..39010)',
  },
  json: {
    type: 'boolean',
    default: false,
    describe: 'print one JSON object on stdout',
  },
  timeout: {
    coerce: positiveSeconds('timeout'),
    default: CLIENT_TIMEOUT_S_DEFAULT,
    describe: 'seconds per request',
  },
  wait: {
    coerce: nonNegativeSeconds('wait'),
    describe:
      'setr/delr/getr: seconds to wait for a rebalancing to finish; lock_get: most seconds to wait',
  },
  'retry-interval': {
    coerce: positiveSeconds('retry-interval'),
    default: LOCK_RETRY_INTERVAL_S_DEFAULT,
    describe: 'lock_get: seconds between attempts',
  },
  'secret-file': {
    type: 'string',
    requiresArg: true,
    describe:
      "file holding the cluster's shared secret (docs/security.md); default $DHT_SECRET_FILE",
  },
} as const satisfies Record<ClientFlag, unknown>;

const describeFlag = (flag: ClientFlag): string => {
  const spec: { describe: string; default?: unknown } = FLAGS[flag];
  return spec.default === undefined ? spec.describe : `${spec.describe} (default ${spec.default})`;
};

const NO_COMPLETION_COMMAND = '\0completion';

/** What `completion` offers in a command's place: every command and `help`. */
const COMPLETION_WORDS = [...COMMANDS.map((c) => c.name), 'help'];

/** Shell completion: in a command's place (no command yet, not a flag) the commands, else flags. */
const completeWord: FallbackCompletionFunction = (current, args, fallback, done) => {
  // args._ holds the program's name, the words before the current one, and the current one.
  const before = (args as { _: unknown[] })._.map(String).slice(1, -1);
  if (!current.startsWith('-') && !before.some((w) => COMPLETION_WORDS.includes(w))) {
    done(COMPLETION_WORDS.filter((w) => w.startsWith(current)));
  } else fallback();
};

async function main(argv: string[]): Promise<number> {
  let usageError: string | undefined;
  const parser = withCommonBehaviour(yargs(argv), PROGRAM)
    .usage(USAGE_LINE)
    .parserConfiguration({
      'parse-positional-numbers': false,
      'populate--': true,
      'dot-notation': false,
      'boolean-negation': false,
    })
    .options(FLAGS)
    // `--help` is ours: with a command it shows that command's help, not the list.
    .help(false)
    .option('help', { alias: 'h', type: 'boolean', describe: 'print this usage and exit' })
    // yargs prints its completion script whenever its completion command is among the arguments,
    // anywhere (`getr completion` would print it before reading the key), so it gets a name no
    // argument can be (argv holds no NUL), and `completion` in a command's place is handled below.
    // The function answers `--get-yargs-completions`, which the script calls.
    .completion(NO_COMPLETION_COMMAND, false, completeWord)
    .strictOptions()
    .exitProcess(false)
    .fail((message, err) => {
      usageError = err?.message ?? message;
    });
  let sources: Readonly<Record<string, string>> = {};
  let jsonWanted = argv.includes('--json');
  try {
    const fromEnv = withEnvironment(parser, argv, process.env);
    sources = fromEnv.sources;
    jsonWanted ||= fromEnv.values.json === true;
  } catch (err) {
    return writeFailure(err, jsonWanted);
  }
  const args = parser.parseSync();
  if (usageError !== undefined) {
    const text = usageText(PROGRAM, usageError, declaredFlags(parser), sources);
    return writeFailure(new DhtError('usage', text), jsonWanted);
  }
  // yargs has printed the version, or the completions the shell asked for.
  if ((args as { version?: unknown }).version === true) return 0;
  if (args['get-yargs-completions'] !== undefined) return 0;

  const positionals = [
    ...args._.map(String),
    ...((args['--'] as string[] | undefined) ?? []).map(String),
  ];
  const [first, ...afterFirst] = positionals;
  if (first === 'completion') {
    // yargs takes the name and the command for the script's comments; its types omit them.
    type ShowScript = { showCompletionScript($0: string, cmd: string): void };
    (parser as unknown as ShowScript).showCompletionScript(PROGRAM, 'completion');
    return 0;
  }
  // `help`, `help COMMAND`, `--help`, `COMMAND --help`.
  const helpWanted = args.help === true || first === 'help';
  const helpFor = first === 'help' ? afterFirst[0] : first;
  if (helpWanted) {
    if (helpFor === undefined) {
      parser.showHelp((text) => process.stdout.write(`${generalHelp(text, COMMANDS)}\n`));
      return 0;
    }
    const command = COMMANDS.find((c) => c.name === helpFor);
    if (command === undefined) {
      return writeFailure(
        new DhtError('usage', unknownCommandMessage(helpFor, COMMANDS)),
        jsonWanted,
      );
    }
    process.stdout.write(`${commandHelp(command, describeFlag)}\n`);
    return 0;
  }
  const [name, ...rest] = positionals;
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    const message =
      name === undefined
        ? `no command given (see '${PROGRAM} help')`
        : unknownCommandMessage(name, COMMANDS);
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
