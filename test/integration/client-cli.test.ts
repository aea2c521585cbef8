// bin/dht-client against real processes: every command of the contract (/work/shared/contract.md,
// "The client"), in plain and --json output, with the contract's exit codes; values and keys that
// must round-trip exactly; the bounds; usage errors; nothing reachable; and the life cycle of the
// long-running executables (--help, one `listening on` line, exit 0 on SIGINT/SIGTERM).

import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import {
  KEY_BYTES_MAX,
  SERVER_PORT_FIRST,
  SERVER_PORT_LAST,
  VALUE_BYTES_MAX,
} from '../../lib/limits';
import { allocateReplicas } from '../../lib/ring';
import { Cluster } from '../support/cluster';
import {
  cleanupProcessesAfterAll,
  killAll,
  portBlock,
  ROOT,
  runClient,
  startProcess,
  waitFor,
  type CliResult,
  type Proc,
} from '../support/processes';
import { httpRequest } from '../support/http-request';
import { parsePrometheusText, sumOf } from '../support/prometheus-text';

/** lock_get requests the view leader has answered so far, from its /metrics (docs/operations.md). */
async function lockGetsAnswered(address: string): Promise<number> {
  const { body } = await httpRequest(address, '/metrics');
  return sumOf(parsePrometheusText(body), 'dht_requests_seconds_count', { endpoint: '/lock_get' });
}

const PORTS = portBlock(3);
/** Nothing of this file listens there: "no view leader / no server reachable". */
const CLOSED_PORT = PORTS.server(40);
const CLOSED = `127.0.0.1:${CLOSED_PORT}`;
/** setr/getr may meet a rebalancing if a heartbeat is late on a busy machine: wait it out. */
const WAIT = ['--wait', '10'];

/** A request may wait behind a starved process on a busy machine; no test here waits for one. */
const TIMEOUT = ['--timeout', '10'];
/**
 * Clients run at most two at a time: a 2-core machine gains nothing from more, and a burst of
 * node start-ups can starve the servers' heartbeats past the 1 s failure timeout.
 */
const CLIENTS_CONCURRENT_MAX = 2;
let clientsRunning = 0;
const clientsWaiting: (() => void)[] = [];

async function cli(args: string[], stdin?: string): Promise<CliResult> {
  while (clientsRunning >= CLIENTS_CONCURRENT_MAX) {
    await new Promise<void>((resolve) => clientsWaiting.push(resolve));
  }
  clientsRunning++;
  try {
    return await runClient(args, stdin);
  } finally {
    clientsRunning--;
    clientsWaiting.shift()?.();
  }
}

const EXIT_OK = 0;
const EXIT_NOT_DONE = 1;
const EXIT_USAGE = 2;
const EXIT_UNAVAILABLE = 4;

interface ViewJson {
  status: string;
  epoch: number;
  servers: { id: string; address: string }[];
  rebalancing: boolean;
}

// ---- helpers --------------------------------------------------------------------------------------

/** stdout must be exactly one JSON object (one line); returns it parsed. */
function jsonOf(result: CliResult): Record<string, unknown> {
  const lines = result.stdout.split('\n');
  expect(lines).toHaveLength(2); // the object, then the empty string after its newline
  expect(lines[1]).toBe('');
  const parsed: unknown = JSON.parse(lines[0]);
  expect(typeof parsed).toBe('object');
  expect(parsed).not.toBeNull();
  expect(Array.isArray(parsed)).toBe(false);
  return parsed as Record<string, unknown>;
}

/** A plain-mode failure: nothing on stdout, one `ERROR: message` line on stderr. */
function expectPlainError(result: CliResult, code: number): void {
  expect({ code: result.code, stdout: result.stdout }).toEqual({ code, stdout: '' });
  expect(result.stderr).toMatch(/^ERROR: [^\n]+\n$/);
}

/** A --json failure: one object with the status and an error message. */
function expectJsonError(result: CliResult, code: number, status: string): void {
  expect(result.code).toBe(code);
  const body = jsonOf(result);
  expect(body.status).toBe(status);
  expect(typeof body.error).toBe('string');
  expect(Object.keys(body).sort()).toEqual(['error', 'status']);
}

function expectOk(result: CliResult, stdout = ''): void {
  expect({ code: result.code, stdout: result.stdout }).toEqual({ code: EXIT_OK, stdout });
}

/**
 * A view leader on `viewLeaderPort` and `servers` servers on the ports after it, heartbeating every
 * 0.2 s (the view leader's failure timeout: the shared cluster's 2 s).
 */
function startCluster(viewLeaderPort: number, servers: number): Promise<Cluster> {
  return Cluster.start({
    servers,
    viewLeaderPort,
    serverPort: (i) => viewLeaderPort + 1 + i,
  });
}

/** Resolves true if something accepts connections on 127.0.0.1:port. */
function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Processes this file spawns itself (to see their whole stdout); killed after each test. */
const ownChildren = new Set<ChildProcess>();

interface Captured {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnBin(name: string, args: string[]): Captured {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', name), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  ownChildren.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      ownChildren.delete(child);
      resolve({ code, signal });
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Wait for the first stdout line; fail at once, with the logs, if the process exits first. */
async function waitReady(name: string, run: Captured): Promise<void> {
  const exitedEarly = run.exited.then(({ code, signal }) => {
    throw new Error(`${name} exited (${code ?? signal}) before ready; stderr:\n${run.stderr()}`);
  });
  exitedEarly.catch(() => undefined); // the exit that comes later, on our signal, is expected
  await Promise.race([
    waitFor(`${name} ready`, () => (run.stdout().includes('\n') ? true : undefined), 15_000),
    exitedEarly,
  ]);
}

async function killOwnChildren(): Promise<void> {
  const children = [...ownChildren];
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
  ownChildren.clear();
}

afterAll(async () => {
  await killOwnChildren();
  await killAll();
});

// ---- a cluster of three servers ---------------------------------------------------------------

describe('with a view leader and three servers', () => {
  let cluster: Cluster;
  let viewLeader: Proc;
  /** By index: server i listens on PORTS.server(i), also after a restart. */
  let servers: Proc[];
  let listening: string[];

  const client = (args: string[], stdin?: string): Promise<CliResult> =>
    cli(['--viewleader', viewLeader.address, ...TIMEOUT, ...args], stdin);
  /** setr/getr, given time to wait out a rebalancing. */
  const replicated = (args: string[], stdin?: string): Promise<CliResult> =>
    client([...WAIT, ...args], stdin);
  const onServer = (i: number, args: string[], stdin?: string): Promise<CliResult> =>
    cli(['--server', servers[i].address, ...TIMEOUT, ...args], stdin);

  beforeAll(async () => {
    cluster = await startCluster(PORTS.viewleader, 3);
    viewLeader = cluster.viewLeader;
    servers = [...cluster.servers.values()].sort((a, b) => a.port - b.port);
    listening = servers.map((s) => s.address);
  }, 30_000);

  afterAll(async () => {
    await killAll();
  });

  // A server starved of CPU on a busy machine can miss its heartbeats for longer than the failure
  // timeout and leave the view for good (its ID is then rejected forever, as the contract says).
  // That is not what these tests are about: replace such a server with a new process on its port.
  beforeEach(async () => {
    const view = await cluster.view();
    const inView = new Set(view.servers.map((s) => s.address));
    for (let i = 0; i < servers.length; i++) {
      if (inView.has(servers[i].address)) continue;
      const logs = servers[i]
        .stderr()
        .split('\n')
        .filter((line) => /"level":[456]0/.test(line))
        .slice(-5);
      console.warn(
        `server ${servers[i].address} left the view; restarting it. Its last warnings:\n${logs.join('\n')}`,
      );
      servers[i] = await cluster.restart(servers[i].address);
    }
    await cluster.settled(servers.length);
  }, 30_000);

  test('query_servers: the epoch, exactly the listening addresses, rebalancing false', async () => {
    await cluster.settled(servers.length);
    const [asJson, plain] = await Promise.all([
      client(['--json', 'query_servers']),
      client(['query_servers']),
    ]);
    expect(asJson.code).toBe(EXIT_OK);
    const body = jsonOf(asJson) as unknown as ViewJson;
    expect(Object.keys(body).sort()).toEqual(['epoch', 'rebalancing', 'servers', 'status']);
    expect(body.status).toBe('ok');
    expect(Number.isInteger(body.epoch)).toBe(true);
    expect(body.epoch).toBeGreaterThanOrEqual(3); // one view change per server that joined
    expect(body.rebalancing).toBe(false);
    for (const server of body.servers) {
      expect(Object.keys(server).sort()).toEqual(['address', 'id']);
      expect(typeof server.id).toBe('string');
    }
    expect(body.servers.map((s) => s.address).sort()).toEqual([...listening].sort());
    expect(new Set(body.servers.map((s) => s.id)).size).toBe(3);

    expect(plain.code).toBe(EXIT_OK);
    for (const address of listening) expect(plain.stdout).toContain(address);
  });

  test('print: the server prints TEXT on its stderr; nothing on the client stdout', async () => {
    const text = `hello from client-cli ${process.pid}`;
    expectOk(await onServer(0, ['print', ...text.split(' ')]));
    await waitFor('the printed text', () =>
      servers[0].stderr().includes(text) ? true : undefined,
    );
    const asJson = await onServer(0, ['--json', 'print', 'json', 'print']);
    expect(asJson.code).toBe(EXIT_OK);
    expect(jsonOf(asJson)).toEqual({ status: 'ok' });
    await waitFor('the printed text', () =>
      servers[0].stderr().includes('json print') ? true : undefined,
    );
  });

  test('set, get and query_all_keys act on the one server named by --server', async () => {
    expectOk(await onServer(0, ['set', 'local key', 'first value']));
    const setJson = await onServer(0, ['--json', 'set', 'local key', 'local value']);
    expect(setJson.code).toBe(EXIT_OK);
    expect(jsonOf(setJson)).toEqual({ status: 'ok' });
    expectOk(await onServer(0, ['get', 'local key']), 'local value');
    const asJson = await onServer(0, ['--json', 'get', 'local key']);
    expect(asJson.code).toBe(EXIT_OK);
    expect(jsonOf(asJson)).toEqual({ status: 'ok', value: 'local value' });

    const keysPlain = await onServer(0, ['query_all_keys']);
    expect(keysPlain.code).toBe(EXIT_OK);
    expect(keysPlain.stdout.split('\n')).toContain('local key');
    const keysJson = await onServer(0, ['--json', 'query_all_keys']);
    expect(keysJson.code).toBe(EXIT_OK);
    const keysBody = jsonOf(keysJson);
    expect(Object.keys(keysBody).sort()).toEqual(['keys', 'status']);
    expect(keysBody.status).toBe('ok');
    expect(keysBody.keys).toContain('local key');

    // A local set is local: another server does not have the key.
    expectPlainError(await onServer(1, ['get', 'local key']), EXIT_NOT_DONE);
    const other = await onServer(1, ['--json', 'query_all_keys']);
    expect(jsonOf(other).keys).not.toContain('local key');
  });

  test.each([['get'], ['getr']])(
    '%s of a missing key: nothing on stdout, one ERROR line, exit 1; --json not_found',
    async (command) => {
      const run = (args: string[]): Promise<CliResult> =>
        command === 'get' ? onServer(0, args) : replicated(args);
      expectPlainError(await run([command, 'no such key']), EXIT_NOT_DONE);
      const asJson = await run(['--json', command, 'no such key']);
      expect(asJson.code).toBe(EXIT_NOT_DONE);
      expect(asJson.stdout).toBe('{"status":"not_found"}\n');
    },
  );

  const VALUES: [string, string][] = [
    ['with newlines', 'line one\nline two\n\nline four'],
    ['with a trailing newline', 'ends with a newline\n'],
    ['starting with -', '-v --json -- --timeout 0'],
    ['empty', ''],
    ['with spaces', '  spaces  around and   inside  '],
    ['with = / % and quotes', `a=b&c=d/e/f%20%zz "double" 'single' \`back\` \\ ;|`],
    ['in non-Latin scripts', 'Ελληνικά Русский 中文 日本語 العربية עברית हिन्दी'],
    ['with emoji', '👩‍🚀🚀 🇫🇷 ✨'],
    ['with CR, tabs and a NUL', 'a\r\nb\tc\r\u0000d'],
    ['that looks like JSON', '{"status":"ok","value":"x"}\n'],
  ];

  test.each(VALUES)(
    'a value %s round-trips exactly from stdin (setr/getr, set/get)',
    async (label, value) => {
      const key = `stdin value ${label}`;
      const [setr, set] = await Promise.all([
        replicated(['setr', key], value),
        onServer(1, ['set', key], value),
      ]);
      expectOk(setr);
      expectOk(set);
      const [getr, getrJson, get] = await Promise.all([
        replicated(['getr', key]),
        replicated(['--json', 'getr', key]),
        onServer(1, ['get', key]),
      ]);
      expectOk(getr, value);
      expect(Buffer.from(getr.stdout, 'utf8').equals(Buffer.from(value, 'utf8'))).toBe(true);
      expectOk(get, value);
      expect(getrJson.code).toBe(EXIT_OK);
      expect(jsonOf(getrJson)).toEqual({ status: 'ok', value });
    },
  );

  test('values given as arguments after -- round-trip exactly', async () => {
    const values = [
      '-v --json -- --timeout 0',
      '',
      'line one\nline two\n',
      '👩‍🚀 Ελληνικά "q" a=b/%',
    ];
    const keys = values.map((_, i) => `argv value ${i}`);
    const sets = await Promise.all(
      values.map((value, i) => replicated(['setr', '--', keys[i], value])),
    );
    for (const result of sets) expectOk(result);
    const [gets, getJson] = await Promise.all([
      Promise.all(keys.map((key) => replicated(['getr', '--', key]))),
      onServer(2, ['--json', 'get', keys[3]]),
    ]);
    gets.forEach((result, i) => expectOk(result, values[i]));
    expect(jsonOf(getJson)).toEqual({ status: 'ok', value: values[3] });
  });

  test('keys with spaces, = / %, quotes, newlines, non-Latin scripts, emoji, a leading - round-trip', async () => {
    const keys = [
      'a key with spaces',
      'a=b/c%20d%',
      `"double" 'single'`,
      'line\nkey',
      'ключ 鍵 مفتاح',
      '🔑🗝️',
      '-k',
    ];
    for (const result of await Promise.all(
      keys.map((key) => replicated(['setr', '--', key, `value of ${key}`])),
    )) {
      expectOk(result);
    }
    const gets = await Promise.all(keys.map((key) => replicated(['getr', '--', key])));
    gets.forEach((result, i) => expectOk(result, `value of ${keys[i]}`));
    // Three servers, three replicas: every server holds every key, spelled exactly.
    for (const server of servers) {
      const held = jsonOf(await cli(['--server', server.address, '--json', 'query_all_keys']))
        .keys as string[];
      for (const key of keys) expect(held).toContain(key);
    }
  });

  test('`--` ends the options: setr -- -key -value', async () => {
    expectOk(await replicated(['setr', '--', '-key', '-value']));
    expectOk(await replicated(['getr', '--', '-key']), '-value');
    expectOk(await onServer(2, ['set', '--', '-local', '--json']));
    expectOk(await onServer(2, ['get', '--', '-local']), '--json');
  });

  test('setr and getr --json answer {"status":"ok"} and {"status":"ok","value"}', async () => {
    const setr = await replicated(['--json', 'setr', 'json key', 'json value']);
    expect(setr.code).toBe(EXIT_OK);
    expect(jsonOf(setr).status).toBe('ok');
    const plain = await replicated(['setr', 'json key', 'plain value']);
    expectOk(plain);
    const getr = await replicated(['--json', 'getr', 'json key']);
    expect(getr.code).toBe(EXIT_OK);
    expect(jsonOf(getr)).toEqual({ status: 'ok', value: 'plain value' });
  });

  test('keys of 1024 bytes are accepted; 0 and 1025 bytes exit 1 for every key command', async () => {
    const longest = 'k'.repeat(KEY_BYTES_MAX);
    const longestWide = 'é'.repeat(KEY_BYTES_MAX / 2); // 2 bytes each
    for (const key of [longest, longestWide]) {
      expectOk(await replicated(['setr', key, 'v']));
      expectOk(await replicated(['getr', key]), 'v');
    }
    const tooLong = 'k'.repeat(KEY_BYTES_MAX + 1);
    const tooLongWide = `${'é'.repeat(KEY_BYTES_MAX / 2)}k`; // 513 characters, 1025 bytes
    const runs: Promise<CliResult>[] = [
      replicated(['setr', '--', '', 'v']),
      replicated(['setr', '--', tooLong, 'v']),
      replicated(['setr', '--', tooLongWide, 'v']),
      replicated(['getr', '--', '']),
      replicated(['getr', '--', tooLong]),
      client(['locate', '--', '']),
      client(['locate', '--', tooLongWide]),
      onServer(0, ['set', '--', '', 'v']),
      onServer(0, ['set', '--', tooLong, 'v']),
      onServer(0, ['set', '--', tooLongWide, 'v']),
      onServer(0, ['get', '--', tooLongWide]),
    ];
    for (const result of await Promise.all(runs)) expectPlainError(result, EXIT_NOT_DONE);
    expectJsonError(await replicated(['--json', 'setr', tooLong, 'v']), EXIT_NOT_DONE, 'error');
    // Nothing was stored under the out-of-bounds keys.
    const keys = jsonOf(await onServer(0, ['--json', 'query_all_keys'])).keys as string[];
    expect(keys).not.toContain(tooLong);
    expect(keys).not.toContain(tooLongWide);
    expect(keys).not.toContain('');
  });

  test('a 1 MiB value round-trips through stdin; 1 MiB + 1 byte exits 1 and sets nothing', async () => {
    const largest = 'v'.repeat(VALUE_BYTES_MAX);
    const largestWide = 'é'.repeat(VALUE_BYTES_MAX / 2);
    expectOk(await replicated(['setr', 'largest value'], largest));
    expectOk(await replicated(['getr', 'largest value']), largest);
    expectOk(await onServer(0, ['set', 'largest wide value'], largestWide));
    expectOk(await onServer(0, ['get', 'largest wide value']), largestWide);

    const tooLarge = `${largest}v`;
    const tooLargeWide = `${largestWide}x`; // fewer characters than the limit, one byte more
    const results = await Promise.all([
      replicated(['setr', 'too large value'], tooLarge),
      replicated(['setr', 'too large wide value'], tooLargeWide),
      onServer(0, ['set', 'too large value'], tooLarge),
      onServer(0, ['set', 'too large wide value'], tooLargeWide),
    ]);
    for (const result of results) expectPlainError(result, EXIT_NOT_DONE);
    for (const key of ['too large value', 'too large wide value']) {
      expectPlainError(await replicated(['getr', key]), EXIT_NOT_DONE);
      expectPlainError(await onServer(0, ['get', key]), EXIT_NOT_DONE);
    }
  });

  test('locate: exactly the allocator replicas, primary first, each a listening address', async () => {
    const view = await cluster.settled(servers.length);
    for (const key of ['alpha', 'δέλτα', 'a key with spaces']) {
      const [asJson, plain] = await Promise.all([
        client(['--json', 'locate', key]),
        client(['locate', key]),
      ]);
      expect(asJson.code).toBe(EXIT_OK);
      const body = jsonOf(asJson);
      expect(Object.keys(body).sort()).toEqual(['epoch', 'replicas', 'status']);
      expect(body.status).toBe('ok');
      expect(body.epoch).toBe(view.epoch);
      const expected = allocateReplicas(key, view).map((s) => s.address);
      expect(body.replicas).toEqual(expected);
      expect(new Set(expected).size).toBe(3);
      for (const address of expected) expect(listening).toContain(address);
      expectOk(plain, expected.map((a) => `${a}\n`).join(''));
    }
  });

  test('lock_get grants; a second requester waits until the first releases', async () => {
    const lock = `lock ${process.pid}`;
    expectOk(await client(['lock_get', lock, 'alice']));
    const again = await client(['--json', 'lock_get', lock, 'alice']); // held by alice: granted
    expect(again.code).toBe(EXIT_OK);
    expect(jsonOf(again)).toEqual({ status: 'ok' });

    const asked = await lockGetsAnswered(viewLeader.address);
    let bobDone = false;
    const bob = client(['--retry-interval', '0.2', 'lock_get', lock, 'bob']).then((r) => {
      bobDone = true;
      return r;
    });
    // Bob asked, was told no, and asked again (the view leader answered both): he is waiting.
    await waitFor('bob to ask twice', async () =>
      (await lockGetsAnswered(viewLeader.address)) >= asked + 2 ? true : undefined,
    );
    expect(bobDone).toBe(false);

    expectOk(await client(['lock_release', lock, 'alice']));
    expectOk(await bob);
    const release = await client(['--json', 'lock_release', lock, 'bob']);
    expect(release.code).toBe(EXIT_OK);
    expect(jsonOf(release)).toEqual({ status: 'ok' });

    // Neither held nor waited for: exit 1.
    expectPlainError(await client(['lock_release', lock, 'bob']), EXIT_NOT_DONE);
    expectJsonError(await client(['--json', 'lock_release', lock, 'bob']), EXIT_NOT_DONE, 'error');
    expectPlainError(await client(['lock_release', 'never taken', 'carol']), EXIT_NOT_DONE);
  });

  test('deadlocks: none, then the cycle of two requesters waiting for each other', async () => {
    const none = await client(['--json', 'deadlocks']);
    expect(none.code).toBe(EXIT_OK);
    expect(jsonOf(none)).toEqual({ status: 'ok', cycles: [] });
    expectOk(await client(['deadlocks']));

    const lockGet = async (lock: string, requester: string): Promise<boolean> => {
      const response = await fetch(`http://${viewLeader.address}/lock_get`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ lock, requester }),
      });
      return ((await response.json()) as { granted: boolean }).granted;
    };
    expect(await lockGet('dl-A', 'xavier')).toBe(true);
    expect(await lockGet('dl-B', 'yvonne')).toBe(true);
    expect(await lockGet('dl-B', 'xavier')).toBe(false);
    expect(await lockGet('dl-A', 'yvonne')).toBe(false);

    const cycle = await client(['--json', 'deadlocks']);
    expect(cycle.code).toBe(EXIT_OK);
    const cycles = jsonOf(cycle).cycles as string[][];
    expect(cycles).toHaveLength(1);
    expect([...cycles[0]].sort()).toEqual(['xavier', 'yvonne']);
    const plain = await client(['deadlocks']);
    expect(plain.code).toBe(EXIT_OK);
    expect(plain.stdout).toMatch(/xavier/);
    expect(plain.stdout).toMatch(/yvonne/);

    for (const [lock, requester] of [
      ['dl-A', 'xavier'],
      ['dl-A', 'yvonne'],
      ['dl-B', 'yvonne'],
      ['dl-B', 'xavier'],
    ]) {
      expectOk(await client(['lock_release', lock, requester]));
    }
  });
});

// ---- a view leader with no servers --------------------------------------------------------------

describe('with a view leader and no servers', () => {
  cleanupProcessesAfterAll();

  test('setr, delr and getr exit 4 (unavailable, nothing set); query_servers shows the empty view', async () => {
    const cluster = await startCluster(PORTS.server(10), 0);
    const client = (args: string[]): Promise<CliResult> =>
      cli(['--viewleader', cluster.vl, ...args]);

    const view = await client(['--json', 'query_servers']);
    expect(view.code).toBe(EXIT_OK);
    expect(jsonOf(view)).toEqual({ status: 'ok', epoch: 0, servers: [], rebalancing: false });

    expectPlainError(await client(['setr', 'empty view key', 'v']), EXIT_UNAVAILABLE);
    expectJsonError(
      await client(['--json', 'setr', 'empty view key', 'v']),
      EXIT_UNAVAILABLE,
      'unavailable',
    );
    expectJsonError(
      await client(['--json', 'getr', 'empty view key']),
      EXIT_UNAVAILABLE,
      'unavailable',
    );
    expectJsonError(
      await client(['--json', 'delr', 'empty view key']),
      EXIT_UNAVAILABLE,
      'unavailable',
    );

    // A server joins: the key was not set.
    const server = await cluster.startServer(0);
    await cluster.settled(1);
    const getr = await client([...WAIT, '--json', 'getr', 'empty view key']);
    expect(getr.code).toBe(EXIT_NOT_DONE);
    expect(jsonOf(getr)).toEqual({ status: 'not_found' });
    const keys = await cli(['--server', server.address, '--json', 'query_all_keys']);
    expect(jsonOf(keys)).toEqual({ status: 'ok', keys: [] });
  });
});

// ---- nothing reachable; usage errors ------------------------------------------------------------

describe('with nothing listening', () => {
  beforeAll(async () => {
    if (await isListening(CLOSED_PORT)) throw new Error(`port ${CLOSED_PORT} must be closed`);
  });

  const VIEWLEADER_COMMANDS: string[][] = [
    ['query_servers'],
    ['status'],
    ['locate', 'k'],
    ['setr', 'k', 'v'],
    ['delr', 'k'],
    ['getr', 'k'],
    ['lock_get', 'L', 'alice'],
    ['lock_release', 'L', 'alice'],
    ['deadlocks'],
  ];

  test.each(VIEWLEADER_COMMANDS)(
    'no view leader reachable: %s exits 4 (unavailable)',
    async (...command) => {
      expectPlainError(await cli(['--viewleader', CLOSED, ...command]), EXIT_UNAVAILABLE);
    },
  );

  test('no view leader reachable, --json: {"status":"unavailable","error"}', async () => {
    const results = await Promise.all([
      cli(['--viewleader', CLOSED, '--json', 'query_servers']),
      cli(['--viewleader', CLOSED, '--json', 'setr', 'k', 'v']),
    ]);
    for (const result of results) expectJsonError(result, EXIT_UNAVAILABLE, 'unavailable');
  });

  const SERVER_COMMANDS: string[][] = [
    ['print', 'hello'],
    ['set', 'k', 'v'],
    ['get', 'k'],
    ['query_all_keys'],
  ];

  test.each(SERVER_COMMANDS)(
    'no server reachable at --server HOST:PORT: %s exits 4 (unavailable)',
    async (...command) => {
      expectPlainError(await cli(['--server', CLOSED, ...command]), EXIT_UNAVAILABLE);
    },
  );

  test('no server reachable, --json: {"status":"unavailable","error"}', async () => {
    const result = await cli(['--server', CLOSED, '--json', 'get', 'k']);
    expectJsonError(result, EXIT_UNAVAILABLE, 'unavailable');
  });

  const USAGE_ERRORS: [string, string[]][] = [
    ['an unknown command', ['frobnicate']],
    ['no command', []],
    ['get without KEY', ['get']],
    ['get with two keys', ['get', 'a', 'b']],
    ['getr without KEY', ['getr']],
    ['setr without KEY', ['setr']],
    ['setr with three arguments', ['setr', 'a', 'b', 'c']],
    ['delr without KEY', ['delr']],
    ['delr with two keys', ['delr', 'a', 'b']],
    ['set without KEY', ['set']],
    ['locate without KEY', ['locate']],
    ['print without TEXT', ['print']],
    ['lock_get without REQUESTER', ['lock_get', 'L']],
    ['lock_release without arguments', ['lock_release']],
    ['query_servers with an argument', ['query_servers', 'x']],
    ['query_all_keys with an argument', ['query_all_keys', 'x']],
    ['an unknown option', ['--frobnicate', 'query_servers']],
    ['a non-numeric --timeout', ['--timeout', 'abc', 'query_servers']],
    ['a zero --timeout', ['--timeout', '0', 'query_servers']],
    ['a negative --timeout', ['--timeout=-1', 'query_servers']],
  ];

  const common = ['--viewleader', CLOSED, '--server', CLOSED];

  test.each(USAGE_ERRORS)('%s is a usage error: exit 2', async (_label, args) => {
    expectPlainError(await cli([...common, ...args]), EXIT_USAGE);
  });

  test('usage errors with --json: {"status":"error","error"}, exit 2', async () => {
    const results = await Promise.all([
      cli([...common, '--json', 'frobnicate']),
      cli([...common, '--json', 'get']),
      cli([...common, '--json', '--timeout', 'abc', 'query_servers']),
    ]);
    for (const result of results) expectJsonError(result, EXIT_USAGE, 'error');
  });
});

// ---- the executables' life cycle ----------------------------------------------------------------

describe('process life cycle', () => {
  cleanupProcessesAfterAll();
  afterEach(killOwnChildren);

  test.each([['dht-client'], ['dht-server'], ['dht-viewleader']])(
    '%s --help prints usage on stdout and exits 0',
    async (name) => {
      const run = spawnBin(name, ['--help']);
      const { code } = await run.exited;
      expect(code).toBe(EXIT_OK);
      expect(run.stdout()).toContain(name);
      expect(run.stdout()).toContain('--help');
      expect(run.stdout()).not.toContain('listening on');
    },
  );

  test.each([
    ['dht-viewleader', 'SIGTERM'],
    ['dht-viewleader', 'SIGINT'],
    ['dht-server', 'SIGTERM'],
    ['dht-server', 'SIGINT'],
  ] as const)(
    '%s prints exactly one `listening on` line and exits 0 on %s',
    async (name, signal) => {
      const port = PORTS.server(name === 'dht-server' ? 21 : 22);
      // --in-memory: a view leader's default data directory would sit in the repository.
      let args = ['--port', String(port), '--failure-timeout', '2', '--in-memory'];
      let cluster: Cluster | undefined;
      if (name === 'dht-server') {
        cluster = await startCluster(PORTS.server(20), 0);
        args = ['--port', String(port), '--viewleader', cluster.vl, '--in-memory'];
        args.push('--heartbeat-interval', '0.2');
      }
      const run = spawnBin(name, args);
      await waitReady(name, run);
      if (cluster !== undefined) await cluster.settled(1);
      run.child.kill(signal);
      const exit = await run.exited;
      expect(exit).toEqual({ code: 0, signal: null });
      expect(run.stdout()).toBe(`listening on 127.0.0.1:${port}\n`);
    },
  );

  test('--server HOST without a port scans 38000..38010', async () => {
    const busy: number[] = [];
    for (let port = SERVER_PORT_FIRST; port <= SERVER_PORT_LAST; port++) {
      if (await isListening(port)) busy.push(port);
    }
    if (busy.length > 0) {
      console.warn(
        `skipped: ports ${busy.join(', ')} of ${SERVER_PORT_FIRST}..${SERVER_PORT_LAST} are in use, ` +
          'so a client scanning the range could reach a process that is not this test’s',
      );
      return;
    }
    const cluster = await startCluster(PORTS.server(12), 0);
    // No --port: the first free port of the range.
    const server = await startProcess('dht-server', [
      '--viewleader',
      cluster.vl,
      '--heartbeat-interval',
      '0.2',
    ]);
    if (server.port !== SERVER_PORT_FIRST) {
      console.warn(`skipped: another process took port ${SERVER_PORT_FIRST} meanwhile`);
      return;
    }
    expect(server.address).toBe(`127.0.0.1:${SERVER_PORT_FIRST}`);
    const value = `scanned ${process.pid}`;
    expectOk(await cli(['--server', '127.0.0.1', 'set', 'scan key', value]));
    expectOk(await cli(['--server', server.address, 'get', 'scan key']), value);
    expectOk(await cli(['--server', '127.0.0.1', 'get', 'scan key']), value);
  });
});
