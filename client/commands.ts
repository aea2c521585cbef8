// Every client command of the contract: its arguments and what it does through the SDK.

import { DhtError } from '../lib/errors';
import type { DhtClient, ServerClient } from './sdk';
import { linesText, valueText, type CommandOutput } from './output';
import { statusText } from './status-table';

export interface CommandContext {
  readonly cluster: DhtClient;
  readonly server: () => ServerClient;
  readonly retryIntervalMs: number;
  readonly waitMs: number | undefined;
  /** Reads the whole of stdin (a VALUE left out of set/setr). */
  readonly readStdin: () => Promise<string>;
}

/** The client's flags that a command may use (its help lists them). */
export type ClientFlag =
  'server' | 'viewleader' | 'json' | 'timeout' | 'wait' | 'retry-interval' | 'secret-file';

const SERVER_FLAGS: readonly ClientFlag[] = ['server', 'timeout', 'json', 'secret-file'];
const VIEWLEADER_FLAGS: readonly ClientFlag[] = ['viewleader', 'timeout', 'json', 'secret-file'];
const REPLICATED_FLAGS: readonly ClientFlag[] = [
  'viewleader',
  'wait',
  'timeout',
  'json',
  'secret-file',
];

export interface Command {
  readonly name: string;
  readonly args: string;
  readonly describe: string;
  /** The flags that matter to it, for `dht-client help COMMAND`. */
  readonly flags: readonly ClientFlag[];
  /** At least one whole command line, with what it does or prints, for its help. */
  readonly examples: readonly string[];
  /** Number of arguments; `optionalLast` means the last may be read from stdin instead. */
  readonly arity: number | 'variadic';
  readonly optionalLast?: boolean;
  run(context: CommandContext, args: string[]): Promise<CommandOutput>;
}

const ok: CommandOutput = { json: {} };

export const COMMANDS: readonly Command[] = [
  {
    name: 'print',
    args: 'TEXT...',
    describe: 'the server prints TEXT (to its stderr)',
    flags: SERVER_FLAGS,
    examples: [
      'dht-client print hello from the client     # the server logs: hello from the client',
    ],
    arity: 'variadic',
    run: async (c, args) => (await c.server().print(args.join(' ')), ok),
  },
  {
    name: 'set',
    args: 'KEY [VALUE]',
    describe: 'local set on one server (VALUE from stdin if left out)',
    flags: SERVER_FLAGS,
    examples: [
      'dht-client --server 127.0.0.1:38001 set colour blue',
      'dht-client set notes < notes.txt          # VALUE from stdin, exactly',
    ],
    arity: 2,
    optionalLast: true,
    run: async (c, [key, value]) => (await c.server().set(key, value), ok),
  },
  {
    name: 'get',
    args: 'KEY',
    describe: 'local get from one server',
    flags: SERVER_FLAGS,
    examples: ['dht-client --server 127.0.0.1:38001 get colour   # prints: blue'],
    arity: 1,
    run: async (c, [key]) => {
      const value = await c.server().get(key);
      return { json: { value }, text: valueText(value) };
    },
  },
  {
    name: 'query_all_keys',
    args: '',
    describe: "the keys of one server's bucket",
    flags: SERVER_FLAGS,
    examples: ['dht-client --server 127.0.0.1:38001 query_all_keys   # one key a line'],
    arity: 0,
    run: async (c) => {
      const keys = await c.server().queryAllKeys();
      return { json: { keys }, text: linesText(keys) };
    },
  },
  {
    name: 'query_servers',
    args: '',
    describe: 'the epoch and the view (from the view leader)',
    flags: VIEWLEADER_FLAGS,
    examples: [
      'dht-client query_servers                   # epoch 2, then ADDRESS ID per server',
      'dht-client --json query_servers',
    ],
    arity: 0,
    run: async (c) => {
      const view = await c.cluster.queryServers();
      return {
        json: { epoch: view.epoch, servers: view.servers, rebalancing: view.rebalancing },
        text: linesText([
          `epoch ${view.epoch}${view.rebalancing ? ' (rebalancing)' : ''}`,
          ...view.servers.map((s) => `${s.address} ${s.id}`),
        ]),
      };
    },
  },
  {
    name: 'status',
    args: '',
    describe: 'every server: keys, share of the ring, last heartbeat, rebalancing progress',
    flags: VIEWLEADER_FLAGS,
    examples: [
      'dht-client status          # the epoch, rebalancing progress, a row per server',
      'dht-client status --json   # the same as one JSON object, for scripts',
    ],
    arity: 0,
    run: async (c) => {
      const status = await c.cluster.clusterStatus();
      return { json: { ...status }, text: statusText(status) };
    },
  },
  {
    name: 'lock_get',
    args: 'LOCK REQUESTER',
    describe: 'wait until the lock is granted, asking every --retry-interval seconds',
    flags: ['viewleader', 'retry-interval', 'wait', 'timeout', 'json'],
    examples: [
      "dht-client lock_get backup alice            # waits until alice holds 'backup'",
      'dht-client --wait 30 --retry-interval 1 lock_get backup bob',
    ],
    arity: 2,
    run: async (c, [lock, requester]) => (
      await c.cluster.lockGet(lock, requester, c.retryIntervalMs, c.waitMs),
      ok
    ),
  },
  {
    name: 'lock_release',
    args: 'LOCK REQUESTER',
    describe: 'release a held lock, or leave its queue',
    flags: VIEWLEADER_FLAGS,
    examples: ['dht-client lock_release backup alice'],
    arity: 2,
    run: async (c, [lock, requester]) => (await c.cluster.lockRelease(lock, requester), ok),
  },
  {
    name: 'deadlocks',
    args: '',
    describe: 'cycles among lock waiters (who waits for whom)',
    flags: VIEWLEADER_FLAGS,
    examples: ['dht-client deadlocks                       # e.g. alice -> bob -> alice'],
    arity: 0,
    run: async (c) => {
      const cycles = await c.cluster.deadlocks();
      return { json: { cycles }, text: linesText(cycles.map((cycle) => cycle.join(' -> '))) };
    },
  },
  {
    name: 'viewleader_status',
    args: '',
    describe: 'each view leader member of --viewleader: role, term, how far its log is applied',
    flags: VIEWLEADER_FLAGS,
    examples: [
      'dht-client --viewleader 127.0.0.1:39001,127.0.0.1:39002,127.0.0.1:39003 viewleader_status',
    ],
    arity: 0,
    run: async (c) => {
      const members = await c.cluster.viewLeaderStatus();
      const rows = members.map((m) =>
        m.role === 'unreachable'
          ? `${m.address} unreachable`
          : m.replicated
            ? `${m.address} ${m.role} term ${m.term} applied ${m.appliedIndex}/${m.commitIndex}` +
              ` epoch ${m.epoch}${m.leader !== null && m.role !== 'leader' ? ` leader ${m.leader}` : ''}`
            : `${m.address} ${m.role} (alone) epoch ${m.epoch}`,
      );
      return { json: { members }, text: linesText(rows) };
    },
  },
  {
    name: 'setr',
    args: 'KEY [VALUE]',
    describe: 'replicated set by two-phase commit (VALUE from stdin if left out)',
    flags: REPLICATED_FLAGS,
    examples: [
      "dht-client setr greeting 'hello world'",
      'dht-client --wait 10 setr greeting hello    # waits out a rebalancing',
      "printf 'two\\nlines' | dht-client setr multi  # VALUE from stdin, exactly",
      'dht-client setr -- -key -value              # a key or value starting with -',
    ],
    arity: 2,
    optionalLast: true,
    run: async (c, [key, value]) => {
      const { version } = await c.cluster.setr(key, value);
      return { json: { version } };
    },
  },
  {
    name: 'delr',
    args: 'KEY',
    describe: 'replicated delete by two-phase commit (a tombstone)',
    flags: REPLICATED_FLAGS,
    examples: ['dht-client delr greeting'],
    arity: 1,
    run: async (c, [key]) => (await c.cluster.delr(key), ok),
  },
  {
    name: 'getr',
    args: 'KEY',
    describe: 'replicated get: the replicas in order',
    flags: REPLICATED_FLAGS,
    examples: [
      'dht-client getr greeting                    # prints: hello world',
      'dht-client --json getr greeting             # {"status":"ok","value":"hello world"}',
    ],
    arity: 1,
    run: async (c, [key]) => {
      const { value } = await c.cluster.getr(key);
      return { json: { value }, text: valueText(value) };
    },
  },
  {
    name: 'locate',
    args: 'KEY',
    describe: 'the replicas of KEY in the current view, primary first',
    flags: VIEWLEADER_FLAGS,
    examples: [
      "dht-client locate greeting                  # the replicas' addresses, primary first",
    ],
    arity: 1,
    run: async (c, [key]) => {
      const { epoch, replicas } = await c.cluster.locate(key);
      return { json: { epoch, replicas }, text: linesText(replicas) };
    },
  },
];

/** Check the argument count; fill a left-out last VALUE from stdin. */
export async function resolveArgs(
  command: Command,
  args: string[],
  context: CommandContext,
): Promise<string[]> {
  if (command.arity === 'variadic') {
    if (args.length === 0) throw new DhtError('usage', usageOf(command));
    return args;
  }
  if (command.optionalLast && args.length === command.arity - 1) {
    return [...args, await context.readStdin()];
  }
  if (args.length !== command.arity) {
    throw new DhtError('usage', usageOf(command));
  }
  return args;
}

function usageOf(command: Command): string {
  return `usage: ${`dht-client ${command.name} ${command.args}`.trimEnd()} (see 'dht-client help ${command.name}')`;
}
