// The three executables as a new user meets them (issue 11, "A CLI that helps"): --version,
// per-command help with examples, "did you mean", shell completion, flags from DHT_* variables
// with the command line winning, one wording of usage errors, and the messages that used to
// mislead: a host name that does not resolve, an address of the other kind of process, and an
// unbracketed IPv6-looking `--viewleader`; and `--log-format pretty`. Real bin/* processes on
// loopback; the pure pieces are in test/unit/cli-parsing.test.ts.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  killAll,
  portBlock,
  ROOT,
  runClient,
  runToExit,
  startProcess,
  waitFor,
  type CliResult,
  type Proc,
} from '../support/processes';

const PORTS = portBlock(21);
/** Nothing of this file listens there. */
const CLOSED = `127.0.0.1:${PORTS.server(40)}`;
/** RFC 2606: `.invalid` never resolves. */
const UNRESOLVABLE = 'no-such-host.invalid';
const EXECUTABLES = ['dht-client', 'dht-server', 'dht-viewleader'] as const;
const VERSION = (
  JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

const EXIT_OK = 0;
const EXIT_USAGE = 2;
const EXIT_UNAVAILABLE = 4;

// The cluster below lives through its describe block; every child is killed at the end, also
// when a test fails (the processes run to their exit by themselves otherwise).
afterAll(killAll);

/** Exactly one line on stderr, `ERROR: ...`, nothing on stdout, and the exit code. */
function expectErrorLine(result: CliResult, code: number): string {
  expect(result.stdout).toBe('');
  expect(result.stderr).toMatch(/^ERROR: [^\n]+\n$/);
  expect(result.code).toBe(code);
  return result.stderr.trimEnd();
}

describe('--version and help', () => {
  test.each(EXECUTABLES)('%s --version prints the package version and exits 0', async (name) => {
    expect(await runToExit(name, ['--version'])).toEqual({
      code: EXIT_OK,
      stdout: `${VERSION}\n`,
      stderr: '',
    });
  });

  test('`help setr` and `setr --help` show setr’s usage with an example', async () => {
    const [byHelp, byFlag, byShortFlag] = await Promise.all([
      runClient(['help', 'setr']),
      runClient(['setr', '--help']),
      runClient(['setr', '-h']),
    ]);
    expect(byHelp.code).toBe(EXIT_OK);
    expect(byHelp.stderr).toBe('');
    expect(byHelp.stdout).toMatch(/^Usage: dht-client \[options\] setr KEY \[VALUE\]\n/);
    expect(byHelp.stdout).toContain('Examples:\n  dht-client setr greeting');
    expect(byHelp.stdout).toContain('--wait');
    expect(byHelp.stdout).not.toContain('query_all_keys'); // setr's help, not the list
    expect(byFlag).toEqual(byHelp);
    expect(byShortFlag).toEqual(byHelp);
  });

  test('`help` and `--help` list every command', async () => {
    const [help, flag] = await Promise.all([runClient(['help']), runClient(['--help'])]);
    expect(help.code).toBe(EXIT_OK);
    for (const command of ['setr', 'getr', 'delr', 'locate', 'query_servers', 'completion']) {
      expect(help.stdout).toContain(`  ${command}`);
    }
    expect(help.stdout).toContain('DHT_SOME_FLAG');
    expect(flag).toEqual(help);
  });

  test('`help` of an unknown command is a usage error that names the nearest', async () => {
    const message = expectErrorLine(await runClient(['help', 'getrr']), EXIT_USAGE);
    expect(message).toBe(
      "ERROR: unknown command 'getrr'; did you mean 'getr'? (see 'dht-client help')",
    );
  });
});

describe('did you mean', () => {
  test('a mistyped command: the nearest command, exit 2 as for any usage error', async () => {
    const [plain, json] = await Promise.all([
      runClient(['--viewleader', CLOSED, 'getrr', 'k']),
      runClient(['--viewleader', CLOSED, '--json', 'stre', 'k', 'v']),
    ]);
    expect(expectErrorLine(plain, EXIT_USAGE)).toBe(
      "ERROR: unknown command 'getrr'; did you mean 'getr'? (see 'dht-client help')",
    );
    expect(json.code).toBe(EXIT_USAGE);
    expect(JSON.parse(json.stdout)).toEqual({
      status: 'error',
      error: "unknown command 'stre'; did you mean 'setr'? (see 'dht-client help')",
    });
  });

  test.each([
    ['dht-client', ['--sever', CLOSED, 'get', 'k'], '--server'],
    ['dht-server', ['--heartbeat-intervall', '1'], '--heartbeat-interval'],
    ['dht-viewleader', ['--failure-timout', '1'], '--failure-timeout'],
  ])('%s: a mistyped flag names the nearest flag', async (name, args, near) => {
    const message = expectErrorLine(await runToExit(name, args), EXIT_USAGE);
    expect(message).toContain(`did you mean ${near}?`);
    expect(message).toMatch(new RegExp(`\\(see '${name} --help'\\)$`));
  });
});

describe('one wording of errors', () => {
  test.each([
    ['dht-client', ['--bogus', 'query_servers']],
    ['dht-server', ['--bogus']],
    ['dht-viewleader', ['--bogus']],
    ['dht-client', ['--timeout', 'soon', 'query_servers']],
    ['dht-server', ['--heartbeat-interval', 'soon']],
    ['dht-viewleader', ['--failure-timeout', 'soon']],
    ['dht-server', ['--port']],
    ['dht-viewleader', ['--port']],
  ])('%s %j: one line `ERROR: ... (see PROGRAM --help)`, exit 2', async (name, args) => {
    const message = expectErrorLine(await runToExit(name, args), EXIT_USAGE);
    expect(message).toMatch(new RegExp(`^ERROR: .+ \\(see '${name} --help'\\)$`));
  });

  test.each([
    ['dht-client', ['--viewleader', 'nope:1:2:3', 'query_servers']],
    ['dht-client', ['--server', 'nope:1:2:3', 'get', 'k']],
    ['dht-server', ['--viewleader', 'nope:1:2:3', '--in-memory']],
    ['dht-viewleader', ['--port', '1', '--peers', 'nope:1:2:3,a:2,b:3']],
  ])(
    '%s %j: an IPv6-looking host without brackets is refused at once (exit 2)',
    async (name, args) => {
      const message = expectErrorLine(await runToExit(name, args), EXIT_USAGE);
      expect(message).toContain("bad address 'nope:1:2:3'");
      expect(message).toContain('an IPv6 host goes in brackets: [::1]:39000');
    },
  );

  test.each([
    ['--server', ['--server', UNRESOLVABLE, 'get', 'k']],
    ['--viewleader', ['--viewleader', `${UNRESOLVABLE}:39000`, 'query_servers']],
  ])('a host name that does not resolve (%s) is said so, not "refused"', async (_flag, args) => {
    const message = expectErrorLine(await runClient(args), EXIT_UNAVAILABLE);
    // Without a DNS server at all, the lookup fails with EAI_AGAIN rather than ENOTFOUND.
    expect(message).toMatch(
      new RegExp(`host name ${UNRESOLVABLE} (does not resolve|could not be looked up now)`),
    );
    expect(message).not.toContain('refused');
  });
});

describe('against a cluster', () => {
  let viewLeader: Proc;
  let server: Proc;

  beforeAll(async () => {
    viewLeader = await startProcess('dht-viewleader', [
      '--port',
      String(PORTS.viewleader),
      '--failure-timeout',
      '5',
    ]);
    // The server's --viewleader and --heartbeat-interval from the environment.
    server = await startProcess('dht-server', ['--port', String(PORTS.server(0))], {
      DHT_VIEWLEADER: viewLeader.address,
      DHT_HEARTBEAT_INTERVAL: '0.2',
    });
    await waitFor('the server to join', async () => {
      const result = await runClient([
        '--viewleader',
        viewLeader.address,
        '--json',
        'query_servers',
      ]);
      const view = JSON.parse(result.stdout) as { servers: { address: string }[] };
      return view.servers.some((s) => s.address === server.address) ? true : undefined;
    });
  });

  afterAll(killAll);

  test('--server at the view leader says it is a view leader, not a server', async () => {
    const message = expectErrorLine(
      await runClient(['--server', viewLeader.address, 'get', 'k']),
      EXIT_UNAVAILABLE,
    );
    expect(message).toContain(`${viewLeader.address} is a dht view leader, not a dht server`);
    expect(message).not.toContain('no endpoint POST');
  });

  test('--viewleader at a server says it is a server, not a view leader', async () => {
    const message = expectErrorLine(
      await runClient(['--viewleader', server.address, 'getr', 'k']),
      EXIT_UNAVAILABLE,
    );
    expect(message).toContain(`${server.address} is a dht server, not a dht view leader`);
  });

  test('DHT_VIEWLEADER and DHT_JSON stand for their flags; the command line wins', async () => {
    const fromEnv = await runClient(['setr', 'env-key', 'env-value'], undefined, {
      DHT_VIEWLEADER: viewLeader.address,
      DHT_JSON: '1',
      DHT_WAIT: '10',
    });
    expect(fromEnv).toMatchObject({ code: EXIT_OK, stderr: '' });
    expect(JSON.parse(fromEnv.stdout)).toMatchObject({ status: 'ok' });

    const [commandLineWins, envWhenNoFlag] = await Promise.all([
      runClient(['--viewleader', viewLeader.address, 'getr', 'env-key'], undefined, {
        DHT_VIEWLEADER: CLOSED,
      }),
      runClient(['getr', 'env-key'], undefined, { DHT_VIEWLEADER: CLOSED }),
    ]);
    expect(commandLineWins).toEqual({ code: EXIT_OK, stdout: 'env-value', stderr: '' });
    expect(expectErrorLine(envWhenNoFlag, EXIT_UNAVAILABLE)).toContain(CLOSED);
  });

  test('other DHT_ variables (the chaos hooks, flags of other executables) do not break parsing', async () => {
    const result = await runClient(
      ['--viewleader', viewLeader.address, 'getr', 'env-key'],
      undefined,
      {
        DHT_FAULT_PAUSE_BEFORE_COMMIT_MS: '0',
        DHT_FAULT_PAUSE_AFTER_PRIMARY_COMMIT_MS: '0',
        DHT_HEARTBEAT_INTERVAL: '1',
        DHT_SOMETHING_NEW: 'x',
      },
    );
    expect(result).toEqual({ code: EXIT_OK, stdout: 'env-value', stderr: '' });
  });

  test('a bad value from the environment is a usage error naming the variable', async () => {
    const [client, viewleader] = await Promise.all([
      runClient(['query_servers'], undefined, { DHT_TIMEOUT: 'soon' }),
      runToExit('dht-viewleader', ['--in-memory'], undefined, { DHT_PORT: 'eighty' }),
    ]);
    expect(expectErrorLine(client, EXIT_USAGE)).toContain('(from the environment: DHT_TIMEOUT)');
    expect(expectErrorLine(viewleader, EXIT_USAGE)).toContain('(from the environment: DHT_PORT)');
  });

  test('DHT_PORT for the view leader; DHT_DATA_DIR yields to --in-memory given on the command line', async () => {
    const port = PORTS.server(10);
    const leader = await startProcess('dht-viewleader', ['--in-memory'], {
      DHT_PORT: String(port),
      DHT_DATA_DIR: path.join(ROOT, 'dht-data', 'never-created'),
    });
    expect(leader.address).toBe(`127.0.0.1:${port}`);
    leader.child.kill('SIGTERM');
    expect((await leader.exited).code).toBe(0);
  });
});

describe('logs for a person', () => {
  test('--log-format pretty: readable lines on stderr, not JSON; stdout unchanged', async () => {
    const port = PORTS.server(11);
    const leader = await startProcess('dht-viewleader', [
      '--port',
      String(port),
      '--log-format',
      'pretty',
    ]);
    const ready = await waitFor('the ready line', () =>
      /INFO \(viewleader\/\d+\): view leader ready/.test(leader.stderr())
        ? leader.stderr()
        : undefined,
    );
    expect(ready).toContain(`address: "127.0.0.1:${port}"`);
    expect(ready).not.toContain('{"level"');
    leader.child.kill('SIGTERM');
    expect((await leader.exited).code).toBe(0);
  });
});

describe('shell completion', () => {
  test('`completion` prints a bash script that asks dht-client for the words', async () => {
    const result = await runClient(['completion'], undefined, { SHELL: '/bin/bash' });
    expect(result.code).toBe(EXIT_OK);
    expect(result.stdout).toContain('complete -o bashdefault -o default -F');
    expect(result.stdout).toContain('dht-client --get-yargs-completions');
  });

  test('under zsh, a zsh script', async () => {
    const result = await runClient(['completion'], undefined, { SHELL: '/usr/bin/zsh' });
    expect(result.code).toBe(EXIT_OK);
    expect(result.stdout).toMatch(/^#compdef dht-client/);
  });

  test('`completion` and `help` are commands only in a command’s place: as keys they are keys', async () => {
    const results = await Promise.all([
      runClient(['--viewleader', CLOSED, 'getr', 'completion']),
      runClient(['--viewleader', CLOSED, 'getr', 'help']),
    ]);
    for (const result of results) {
      expect(expectErrorLine(result, EXIT_UNAVAILABLE)).toContain('no view leader reachable');
    }
  });

  test('completing a command offers the commands; completing a flag, the flags', async () => {
    const [command, flag] = await Promise.all([
      runClient(['--get-yargs-completions', 'dht-client', 'ge'], undefined, { SHELL: '/bin/bash' }),
      runClient(['--get-yargs-completions', 'dht-client', 'getr', '--vi'], undefined, {
        SHELL: '/bin/bash',
      }),
    ]);
    expect(command.stdout.split('\n').filter(Boolean)).toEqual(['get', 'getr']);
    expect(flag.stdout.split('\n')).toContain('--viewleader');
  });
});
