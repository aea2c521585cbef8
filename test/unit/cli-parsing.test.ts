// The pieces of the command line that help a person (issue 11, "A CLI that helps"), pure: "did you
// mean" (lib/suggest.ts), flags from DHT_* variables (lib/cli-env.ts), the one wording of usage
// errors (lib/cli-options.ts), address parsing (lib/address.ts), the client's help texts
// (client/help.ts), and the answers that say what went wrong: a name that does not resolve, a
// process of the other kind (lib/http-client.ts). The real executables: cli-help.test.ts.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import yargs from 'yargs';
import { candidateAddresses, parseHostPort } from '../../lib/address';
import { envName, optionsFromEnv, optionsGiven, withEnvSources } from '../../lib/cli-env';
import { usageText, withEnvironment } from '../../lib/cli-options';
import { DhtError } from '../../lib/errors';
import { interpretAnswer } from '../../lib/http-client';
import { ServerApi, ViewLeaderApi } from '../../lib/messages';
import { editDistance, suggest } from '../../lib/suggest';
import { packageVersion } from '../../lib/version';
import { COMMANDS } from '../../client/commands';
import { commandHelp, commandList, unknownCommandMessage } from '../../client/help';

const COMMAND_NAMES = COMMANDS.map((c) => c.name);

describe('did you mean', () => {
  test.each([
    ['getr', 'getr', 0],
    ['getrr', 'getr', 1],
    ['gert', 'getr', 1], // a transposition is one edit
    ['setr', 'getr', 1],
    ['', 'abc', 3],
    ['kitten', 'sitting', 3],
  ])('editDistance(%s, %s) = %d', (a, b, distance) => {
    expect(editDistance(a, b)).toBe(distance);
    expect(editDistance(b, a)).toBe(distance);
  });

  test.each([
    ['getrr', 'getr'],
    ['stre', 'setr'],
    ['lcoate', 'locate'],
    ['query_server', 'query_servers'],
    ['query', 'query_all_keys'], // a prefix: the first command that starts with it
    ['SETR', 'setr'],
    ['dlr', 'delr'],
    ['lock_gte', 'lock_get'],
  ])('%s suggests %s', (word, expected) => {
    expect(suggest(word, COMMAND_NAMES)).toBe(expected);
  });

  test.each([['frobnicate'], ['x'], ['zz'], ['getr'], ['a'.repeat(200)]])(
    '%s suggests nothing (too far, too short, exact, or too long to compare)',
    (word) => {
      expect(suggest(word, COMMAND_NAMES)).toBeUndefined();
    },
  );

  test('an unknown command names the nearest one, or only where to look', () => {
    expect(unknownCommandMessage('getrr', COMMANDS)).toBe(
      "unknown command 'getrr'; did you mean 'getr'? (see 'dht-client help')",
    );
    expect(unknownCommandMessage('frobnicate', COMMANDS)).toBe(
      "unknown command 'frobnicate' (see 'dht-client help')",
    );
    expect(unknownCommandMessage('hepl', COMMANDS)).toContain("did you mean 'help'?");
  });
});

describe('flags from the environment', () => {
  const spec = {
    options: ['viewleader', 'data-dir', 'in-memory', 'port', 'json'],
    booleans: ['in-memory', 'json'],
    conflicts: [['data-dir', 'in-memory']] as const,
  };

  test('a flag is DHT_ and its name in capitals, dashes as underscores', () => {
    expect(envName('viewleader')).toBe('DHT_VIEWLEADER');
    expect(envName('data-dir')).toBe('DHT_DATA_DIR');
    expect(envName('retry-interval')).toBe('DHT_RETRY_INTERVAL');
  });

  test('the executable’s own flags are read; other DHT_ variables are left alone', () => {
    const env = {
      DHT_VIEWLEADER: '127.0.0.1:39001',
      DHT_PORT: '38005',
      DHT_FAULT_PAUSE_BEFORE_COMMIT_MS: '500',
      DHT_FAULT_PAUSE_AFTER_PRIMARY_COMMIT_MS: '500',
      DHT_SECRET_FILE: '/tmp/secret',
      VIEWLEADER: 'not ours',
    };
    expect(optionsFromEnv(env, spec, [])).toEqual({
      values: { viewleader: '127.0.0.1:39001', port: '38005' },
      sources: { viewleader: 'DHT_VIEWLEADER', port: 'DHT_PORT' },
    });
  });

  test('the command line wins: a flag given there, or one that conflicts with it, is not read', () => {
    const env = { DHT_VIEWLEADER: 'a:1', DHT_DATA_DIR: '/data', DHT_PORT: '1' };
    const argv = ['--viewleader=b:2', '--in-memory', 'getr', 'k'];
    expect(optionsFromEnv(env, spec, argv).values).toEqual({ port: '1' });
    // camelCase on the command line is the same flag to yargs
    expect(optionsFromEnv(env, spec, ['--dataDir', 'x']).values).toEqual({
      viewleader: 'a:1',
      port: '1',
    });
  });

  test('after `--` nothing is a flag', () => {
    expect([...optionsGiven(['--json', 'setr', '--', '--port', '-x'])]).toEqual(['json']);
  });

  test('an empty variable is unset; booleans take 1/0, true/false, yes/no, on/off', () => {
    expect(optionsFromEnv({ DHT_VIEWLEADER: '' }, spec, []).values).toEqual({});
    for (const yes of ['1', 'true', 'YES', 'on']) {
      expect(optionsFromEnv({ DHT_JSON: yes }, spec, []).values).toEqual({ json: true });
    }
    for (const no of ['0', 'false', 'No', 'off']) {
      expect(optionsFromEnv({ DHT_JSON: no }, spec, []).values).toEqual({ json: false });
    }
    expect(() => optionsFromEnv({ DHT_JSON: 'maybe' }, spec, [])).toThrow(
      expect.objectContaining({ kind: 'usage', message: expect.stringContaining('DHT_JSON') }),
    );
  });

  test('an error about a flag that came from the environment names the variable', () => {
    expect(withEnvSources('--port must be an integer', { port: 'DHT_PORT' })).toBe(
      '--port must be an integer (from the environment: DHT_PORT)',
    );
    expect(withEnvSources('--timeout must be positive', { port: 'DHT_PORT' })).toBe(
      '--timeout must be positive',
    );
  });

  test('through yargs: environment below the command line, above the defaults, strict intact', () => {
    const parse = (argv: string[], env: Record<string, string>) => {
      const parser = yargs(argv)
        .option('viewleader', { type: 'string', default: 'default:1' })
        .option('port', { type: 'number' })
        .option('data-dir', { type: 'string' })
        .option('in-memory', { type: 'boolean' })
        .strict()
        .exitProcess(false)
        .fail((message, err) => {
          throw new Error(err?.message ?? message);
        });
      withEnvironment(parser, argv, env, [['data-dir', 'in-memory']]);
      return parser.parseSync();
    };
    const env = {
      DHT_VIEWLEADER: 'env:2',
      DHT_PORT: '38001',
      DHT_DATA_DIR: '/data',
      DHT_FAULT_PAUSE_BEFORE_COMMIT_MS: '5',
      DHT_SECRET_FILE: '/s',
    };
    expect(parse([], env)).toMatchObject({ viewleader: 'env:2', port: 38001, 'data-dir': '/data' });
    expect(parse(['--viewleader', 'cli:3', '--in-memory'], env)).toMatchObject({
      viewleader: 'cli:3',
      port: 38001,
      'in-memory': true,
    });
    expect(parse(['--in-memory'], env)['data-dir']).toBeUndefined();
    expect(parse([], {}).viewleader).toBe('default:1');
    expect(() => parse([], { DHT_DATA_DIR: '/d', DHT_IN_MEMORY: '1' })).toThrow(
      'mutually exclusive',
    );
  });
});

describe('usage errors', () => {
  const flags = ['server', 'viewleader', 'json', 'timeout', 'heartbeat-interval', 'help'];

  test('one line, with where to read the usage', () => {
    expect(usageText('dht-server', '--port must be an integer', flags)).toBe(
      "--port must be an integer (see 'dht-server --help')",
    );
    expect(
      usageText('dht-server', 'Invalid values:\n  Argument: log-level, Given: "loud"', flags),
    ).toBe('Invalid values: Argument: log-level, Given: "loud" (see \'dht-server --help\')');
  });

  test('an unknown flag names the nearest known one; yargs’ camelCase twin is dropped', () => {
    expect(usageText('dht-client', 'Unknown argument: sever', flags)).toBe(
      "Unknown argument: sever; did you mean --server? (see 'dht-client --help')",
    );
    expect(
      usageText(
        'dht-server',
        'Unknown arguments: heartbeat-intervall, heartbeatIntervall, bogus',
        flags,
      ),
    ).toBe(
      'Unknown arguments: heartbeat-intervall, bogus ' +
        "(heartbeat-intervall: did you mean --heartbeat-interval?) (see 'dht-server --help')",
    );
    expect(usageText('dht-server', 'Unknown argument: frobnicate', flags)).toBe(
      "Unknown argument: frobnicate (see 'dht-server --help')",
    );
  });
});

describe('addresses', () => {
  test.each([
    ['127.0.0.1:39000', { host: '127.0.0.1', port: 39000 }],
    ['localhost', { host: 'localhost' }],
    ['node-1.example.org:38001', { host: 'node-1.example.org', port: 38001 }],
    ['[::1]:39000', { host: '::1', port: 39000 }],
    ['[::1]', { host: '::1' }],
    [' 10.0.0.7:1 ', { host: '10.0.0.7', port: 1 }],
  ])('%s parses', (text, expected) => {
    expect(parseHostPort(text)).toEqual(expected);
  });

  test.each([
    ['nope:1:2:3', 'an IPv6 host goes in brackets: [::1]:39000'],
    ['::1', 'an IPv6 host goes in brackets'],
    ['::1:39000', 'an IPv6 host goes in brackets'],
    ['[nope]:1', 'only an IPv6 address goes in brackets'],
    ['a:b', "bad port in address 'a:b'"],
    ['a:0', 'bad port'],
    ['a:65536', 'bad port'],
    [':39000', "'' is not a host name"],
    ['http://127.0.0.1:38000', 'not a URL'],
    ['bad host:1', "'bad host' is not a host name"],
    ['', 'empty address'],
  ])('%s is a usage error: %s', (text, message) => {
    expect(() => parseHostPort(text)).toThrow(
      expect.objectContaining({ kind: 'usage', message: expect.stringContaining(message) }),
    );
  });

  test('a list with a bad entry is refused as a whole', () => {
    expect(() => candidateAddresses('127.0.0.1:1,nope:1:2:3', 39000, 39010)).toThrow(DhtError);
    expect(candidateAddresses('[::1]', 39000, 39001)).toEqual(['[::1]:39000', '[::1]:39001']);
  });
});

describe("the client's help", () => {
  test.each(COMMANDS.map((c) => [c.name, c] as const))(
    '%s: its usage, what it does, an example of it, and its flags',
    (name, command) => {
      const help = commandHelp(command, (flag) => `about ${flag}`);
      expect(help.split('\n')[0]).toBe(
        `Usage: ${`dht-client [options] ${name} ${command.args}`.trimEnd()}`,
      );
      expect(help).toContain(command.describe.slice(1));
      expect(command.examples.length).toBeGreaterThan(0);
      for (const example of command.examples) {
        expect(example).toMatch(new RegExp(`dht-client .*\\b${name}\\b`));
      }
      expect(help).toContain('Examples:');
      for (const flag of command.flags) expect(help).toContain(`--${flag}`);
      expect(help).toContain('Exit codes');
    },
  );

  test('examples’ comments line up in one column', () => {
    const setr = COMMANDS.find((c) => c.name === 'setr')!;
    const lines = commandHelp(setr, () => '').split('\n');
    const columns = lines.filter((l) => l.includes('  # ')).map((l) => l.indexOf('  # '));
    expect(columns.length).toBeGreaterThan(1);
    expect(new Set(columns).size).toBe(1);
  });

  test('the list names every command, help and completion', () => {
    const list = commandList(COMMANDS);
    for (const name of [...COMMAND_NAMES, 'help', 'completion']) {
      expect(list).toMatch(new RegExp(`^  ${name}\\b`, 'm'));
    }
  });
});

describe('what a failed call says', () => {
  test('a dht process of the other kind says what it is', () => {
    const fromViewLeader = {
      kind: 'invalid',
      error: 'no endpoint POST /get',
      reason: 'bad_request',
      process: 'viewleader',
    };
    expect(() => interpretAnswer('127.0.0.1:39000', ServerApi.get, 404, fromViewLeader)).toThrow(
      expect.objectContaining({
        kind: 'unavailable',
        reason: 'wrong_process',
        message: expect.stringMatching(
          /^127\.0\.0\.1:39000 is a dht view leader, not a dht server/,
        ),
      }),
    );
    const fromServer = { ...fromViewLeader, process: 'server' };
    expect(() =>
      interpretAnswer('127.0.0.1:38000', ViewLeaderApi.queryServers, 404, fromServer),
    ).toThrow(
      expect.objectContaining({
        message: expect.stringContaining('is a dht server, not a dht view leader'),
      }),
    );
  });

  test('a 404 without a process (an older peer, a test server) stays an invalid request', () => {
    const body = { kind: 'invalid', error: 'no endpoint /nope', reason: 'bad_request' };
    expect(() => interpretAnswer('a:1', ServerApi.get, 404, body)).toThrow(
      expect.objectContaining({ kind: 'invalid', message: 'no endpoint /nope' }),
    );
  });

  test('an HTTP answer that is not dht’s asks whether the address is a dht process', () => {
    expect(() => interpretAnswer('a:1', ServerApi.get, 404, '<html>')).toThrow(
      'HTTP 404 from a:1/get, not a dht answer: is a:1 a dht process?',
    );
  });
});

test('--version is the version in package.json', () => {
  const pkg = JSON.parse(
    readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'),
  ) as {
    version: string;
  };
  expect(packageVersion()).toBe(pkg.version);
});
