// `node dist/bench/storage-engines.js [--quick] [--dir DIR]`: the embedded storage engines a
// durable server could use, measured on this machine against an in-memory Map in the same run.
// Standalone for now (not a section of bench/main.ts). Everything runs in one temporary directory
// under --dir (default: the OS temp dir, which should be on the disk the servers would use), removed
// at the end, on error and on Ctrl-C alike.
//
// Engines and what "synced" means for each (an acknowledged write is on disk):
//   classic-level  LevelDB; a write with `{ sync: true }` appends to the log and fdatasyncs it
//                  before its callback runs.
//   lmdb           lmdb-js opened with `overlappingSync: false`: each commit of its write thread
//                  is an LMDB transaction commit (fdatasync of the data file, then the meta page
//                  through an O_DSYNC descriptor), and a write's promise resolves after it.
//   lmdb-flushed   lmdb-js with its default on Linux, `overlappingSync: true`: a write's promise
//                  resolves when the transaction is committed, BEFORE it is flushed (lmdb's
//                  write.js resolves on TXN_COMMITTED; the README's "Overlapping Sync" section),
//                  so each write also awaits `db.flushed`, the promise of the next flush.
// (better-sqlite3 is not measured: it fetches its binary from an install script, which npm 11
// skips unless the package is approved, so it does not install "without compiling" out of the box.)
//
// Cases, each bounded in ops and time (runLoad):
//   (0) the disk: fdatasync of a 100-byte append to a plain file, sequential;
//   (a) one synced write per op, sequential (concurrency 1);
//   (b) group commit: 64 writers through lib/group-commit.ts, one synced batch per commit;
//       (b+) the same with 12 ms added to every sync, as on the slowest disks we run on;
//       (b-own) 64 writers each awaiting its own synced write, the engine batching on its own;
//   (c) unsynced writes, 64 writers (classic-level without sync, lmdb with noSync);
//   (d) point reads of random keys among RECOVERY keys, synchronous (classic-level getSync);
//   (e) recovery: open a database of RECOVERY keys that was closed cleanly, then scan it all.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClassicLevel } from 'classic-level';
import { open as openLmdb } from 'lmdb';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { assert } from '../lib/assert';
import { GroupCommit } from '../lib/group-commit';
import {
  errorMessage,
  fmt,
  formatTable,
  runLoad,
  sleep,
  summarize,
  type LoadResult,
  type LoadOptions,
  type Table,
} from './stats';

export interface StorageBenchOptions {
  /** Per case: stop issuing ops after this long... */
  readonly durationMs: number;
  /** ...or after this many, whichever comes first. */
  readonly opsMax: number;
  readonly concurrency: number;
  readonly valueBytes: number;
  /** Keys in the database of the recovery and read cases. */
  readonly recoveryKeys: number;
  /** The (b+) case: added to every sync's duration. */
  readonly slowSyncMs: number;
  /** Samples of the raw fdatasync case, per round. */
  readonly diskSyncs: number;
  /** Every engine runs every case this many times, interleaved; tables show the median round. */
  readonly rounds: number;
}

export const STORAGE_FULL: StorageBenchOptions = {
  durationMs: 3_000,
  opsMax: 300_000,
  concurrency: 64,
  valueBytes: 100,
  recoveryKeys: 100_000,
  slowSyncMs: 12,
  diskSyncs: 1_000,
  rounds: 3,
};

export const STORAGE_QUICK: StorageBenchOptions = {
  ...STORAGE_FULL,
  durationMs: 1_000,
  opsMax: 100_000,
  diskSyncs: 500,
  rounds: 1,
};

/** Group commit bounds of the bench (the durable store has its own in server/durable-store.ts). */
const BENCH_BATCH_OPS_MAX = 1_024;
const BENCH_BATCH_BYTES_MAX = 4 * 1024 * 1024;
/** Keys per batch while filling the recovery database. */
const FILL_BATCH_KEYS = 2_000;
/** Distinct random values, so LevelDB's compression sees realistic (incompressible) bytes. */
const VALUE_POOL_SIZE = 1_024;

type Entry = readonly [key: string, value: string];

/** One open database under test. `synced` says whether writes resolve only once on disk. */
interface Db {
  put(key: string, value: string): Promise<void>;
  /** All of `entries` in one engine transaction (one sync when synced). */
  batch(entries: readonly Entry[]): Promise<void>;
  getSync(key: string): string | undefined;
  /** Read every entry (key and value); returns how many. */
  scan(): Promise<number>;
  close(): Promise<void>;
}

interface Engine {
  readonly name: string;
  /** Open `dir`; `synced: false` gives the engine's fastest unsynced mode. */
  open(dir: string, synced: boolean): Promise<Db>;
  /** The engine has no unsynced mode of its own worth measuring (the same row as another). */
  readonly unsyncedSameAs?: string;
}

const memoryEngine: Engine = {
  name: 'memory (Map)',
  open: async () => {
    const map = new Map<string, string>();
    return {
      put: async (key, value) => {
        map.set(key, value);
      },
      batch: async (entries) => {
        for (const [key, value] of entries) map.set(key, value);
      },
      getSync: (key) => map.get(key),
      scan: async () => {
        let n = 0;
        for (const [key, value] of map) if (key.length + value.length > 0) n++;
        return n;
      },
      close: async () => {},
    };
  },
};

const SCAN_CHUNK = 1_000;

const classicLevelEngine: Engine = {
  name: 'classic-level',
  open: async (dir, synced) => {
    const db = new ClassicLevel<string, string>(dir, { valueEncoding: 'utf8' });
    await db.open();
    const options = { sync: synced };
    return {
      put: (key, value) => db.put(key, value, options),
      batch: (entries) =>
        db.batch(
          entries.map(([key, value]) => ({ type: 'put' as const, key, value })),
          options,
        ),
      getSync: (key) => db.getSync(key),
      scan: async () => {
        let n = 0;
        const iterator = db.iterator();
        try {
          for (;;) {
            const chunk = await iterator.nextv(SCAN_CHUNK);
            if (chunk.length === 0) break;
            n += chunk.length;
          }
        } finally {
          await iterator.close();
        }
        return n;
      },
      close: () => db.close(),
    };
  },
};

function lmdbEngine(name: string, awaitFlushed: boolean): Engine {
  return {
    name,
    unsyncedSameAs: awaitFlushed ? 'lmdb' : undefined,
    open: async (dir, synced) => {
      const db = openLmdb<string, string>({
        path: dir,
        encoding: 'string',
        // Unsynced: no flush at all. Synced: see the header comment.
        ...(synced ? { overlappingSync: awaitFlushed } : { noSync: true }),
      });
      const durable = async (written: Promise<boolean>): Promise<void> => {
        await written;
        if (synced && awaitFlushed) await db.flushed;
      };
      return {
        put: (key, value) => durable(db.put(key, value)),
        batch: (entries) =>
          durable(
            db.batch(() => {
              for (const [key, value] of entries) void db.put(key, value);
            }),
          ),
        getSync: (key) => db.get(key),
        scan: async () => {
          let n = 0;
          for (const { key, value } of db.getRange()) if (key !== undefined && value !== null) n++;
          return n;
        },
        close: () => db.close(),
      };
    },
  };
}

const ENGINES: readonly Engine[] = [
  memoryEngine,
  classicLevelEngine,
  lmdbEngine('lmdb', false),
  lmdbEngine('lmdb-flushed', true),
];

// ---- cases ----------------------------------------------------------------------------------------

interface WriteFigures {
  readonly load: LoadResult;
  /** Process CPU time (user + system, every thread: the engine's own too) per op, µs. */
  readonly cpuUsPerOp: number;
  /** Syncs the group commit made, when it was used. */
  readonly syncs?: number;
}

interface EngineResult {
  readonly engine: string;
  readonly rounds?: number;
  readonly sequentialSynced?: WriteFigures;
  readonly groupCommit?: WriteFigures;
  readonly groupCommitSlow?: WriteFigures;
  readonly ownBatching?: WriteFigures;
  readonly unsynced?: WriteFigures;
  readonly reads?: WriteFigures;
  readonly openMs?: number;
  readonly scanMs?: number;
  readonly error?: string;
}

export interface StorageBenchResult {
  readonly machine: Record<string, string>;
  readonly disk: { readonly p50Ms: number; readonly p99Ms: number; readonly syncs: number };
  readonly engines: readonly EngineResult[];
}

/** Fresh directories under one root; `clear` removes them (after each engine of a round). */
class Workspace {
  private next = 0;
  private readonly dirs: string[] = [];
  constructor(readonly root: string) {}
  dir(label: string): string {
    const dir = path.join(this.root, `${this.next++}-${label.replace(/[^a-z0-9]+/gi, '-')}`);
    fs.mkdirSync(dir);
    this.dirs.push(dir);
    return dir;
  }
  clear(): void {
    for (const dir of this.dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  }
}

function keyOf(i: number): string {
  return `key-${String(i).padStart(9, '0')}`;
}

function valuePool(valueBytes: number): string[] {
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  return Array.from({ length: VALUE_POOL_SIZE }, () => {
    let s = '';
    for (let i = 0; i < valueBytes; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
    return s;
  });
}

async function withDb<T>(
  engine: Engine,
  dir: string,
  synced: boolean,
  body: (db: Db) => Promise<T>,
): Promise<T> {
  const db = await engine.open(dir, synced);
  try {
    return await body(db);
  } finally {
    await db.close();
  }
}

/** runLoad, with the process's CPU time per op. */
async function measured(options: LoadOptions): Promise<WriteFigures> {
  const before = process.cpuUsage();
  const load = await runLoad(options);
  const cpu = process.cpuUsage(before);
  return { load, cpuUsPerOp: (cpu.user + cpu.system) / Math.max(1, load.ops) };
}

async function groupCommitLoad(
  db: Db,
  options: StorageBenchOptions,
  values: readonly string[],
  addedSyncMs: number,
): Promise<WriteFigures> {
  const group = new GroupCommit<Entry>({
    sync: async (entries) => {
      await db.batch(entries);
      if (addedSyncMs > 0) await sleep(addedSyncMs);
    },
    bytesOf: ([key, value]) => key.length + value.length,
    batchOpsMax: BENCH_BATCH_OPS_MAX,
    batchBytesMax: BENCH_BATCH_BYTES_MAX,
    queueOpsMax: 4 * BENCH_BATCH_OPS_MAX,
    queueBytesMax: 4 * BENCH_BATCH_BYTES_MAX,
  });
  const figures = await measured({
    concurrency: options.concurrency,
    durationMs: options.durationMs,
    maxOps: options.opsMax,
    op: (i) => group.write([keyOf(i), values[i % values.length]]),
  });
  await group.close();
  return { ...figures, syncs: group.stats.syncs };
}

async function measureEngine(
  engine: Engine,
  options: StorageBenchOptions,
  workspace: Workspace,
  values: readonly string[],
): Promise<EngineResult> {
  const value = (i: number): string => values[i % values.length];
  const sequential = { concurrency: 1, durationMs: options.durationMs, maxOps: options.opsMax };
  const concurrent = { ...sequential, concurrency: options.concurrency };

  const sequentialSynced = await withDb(engine, workspace.dir(engine.name), true, (db) =>
    measured({ ...sequential, op: (i) => db.put(keyOf(i), value(i)) }),
  );
  const groupCommit = await withDb(engine, workspace.dir(engine.name), true, (db) =>
    groupCommitLoad(db, options, values, 0),
  );
  const groupCommitSlow = await withDb(engine, workspace.dir(engine.name), true, (db) =>
    groupCommitLoad(db, options, values, options.slowSyncMs),
  );
  const ownBatching = await withDb(engine, workspace.dir(engine.name), true, (db) =>
    measured({ ...concurrent, op: (i) => db.put(keyOf(i), value(i)) }),
  );
  const unsynced =
    engine.unsyncedSameAs === undefined
      ? await withDb(engine, workspace.dir(engine.name), false, (db) =>
          measured({ ...concurrent, op: (i) => db.put(keyOf(i), value(i)) }),
        )
      : undefined;

  // Recovery: fill, close cleanly, then time a fresh open and a full scan; read from it after.
  const dir = workspace.dir(engine.name);
  if (engine === memoryEngine) {
    return {
      engine: engine.name,
      sequentialSynced,
      groupCommit,
      groupCommitSlow,
      ownBatching,
      unsynced,
      ...(await memoryScanAndReads(options, values)),
    };
  }
  await withDb(engine, dir, true, async (db) => {
    for (let first = 0; first < options.recoveryKeys; first += FILL_BATCH_KEYS) {
      const last = Math.min(options.recoveryKeys, first + FILL_BATCH_KEYS);
      const entries: Entry[] = [];
      for (let i = first; i < last; i++) entries.push([keyOf(i), value(i)]);
      await db.batch(entries);
    }
  });
  const t0 = performance.now();
  const db = await engine.open(dir, true);
  try {
    assert(db.getSync(keyOf(0)) === value(0), 'the first key reads back after reopening');
    const openMs = performance.now() - t0;
    const t1 = performance.now();
    const scanned = await db.scan();
    const scanMs = performance.now() - t1;
    assert(scanned === options.recoveryKeys, `the scan finds every key (${scanned})`);
    const reads = await pointReads(db, options);
    return {
      engine: engine.name,
      sequentialSynced,
      groupCommit,
      groupCommitSlow,
      ownBatching,
      unsynced,
      reads,
      openMs,
      scanMs,
    };
  } finally {
    await db.close();
  }
}

function pointReads(db: Db, options: StorageBenchOptions): Promise<WriteFigures> {
  return measured({
    concurrency: 1,
    durationMs: options.durationMs,
    maxOps: options.opsMax,
    op: async () => {
      const key = keyOf(Math.floor(Math.random() * options.recoveryKeys));
      if (db.getSync(key) === undefined) throw new Error(`${key} missing`);
    },
  });
}

async function memoryScanAndReads(
  options: StorageBenchOptions,
  values: readonly string[],
): Promise<Pick<EngineResult, 'reads' | 'openMs' | 'scanMs'>> {
  const db = await memoryEngine.open('', true);
  for (let i = 0; i < options.recoveryKeys; i++) await db.put(keyOf(i), values[i % values.length]);
  const t1 = performance.now();
  const scanned = await db.scan();
  const scanMs = performance.now() - t1;
  assert(scanned === options.recoveryKeys, 'the map holds every key');
  return { reads: await pointReads(db, options), openMs: 0, scanMs };
}

/** (0): what one fdatasync costs on this disk, without any engine. */
function measureDisk(dir: string, syncs: number): StorageBenchResult['disk'] {
  const file = path.join(dir, 'fdatasync-probe');
  const fd = fs.openSync(file, 'w');
  const record = Buffer.alloc(100, 'x');
  const samples = new Float64Array(syncs);
  try {
    for (let i = 0; i < syncs; i++) {
      fs.writeSync(fd, record);
      const t0 = performance.now();
      fs.fdatasyncSync(fd);
      samples[i] = performance.now() - t0;
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file);
  }
  const summary = summarize(samples);
  return { p50Ms: summary.p50Ms, p99Ms: summary.p99Ms, syncs };
}

function machineFacts(dir: string): Record<string, string> {
  const run = (cmd: string, args: readonly string[]): string => {
    try {
      return execFileSync(cmd, [...args], { encoding: 'utf8', timeout: 5_000 }).trim();
    } catch (err) {
      return `(${cmd} failed: ${errorMessage(err)})`;
    }
  };
  const mount = run('df', ['--output=source,fstype', dir]).split('\n').at(-1) ?? '';
  const device = path.basename(mount.split(/\s+/)[0] ?? '').replace(/[0-9]+$/, '');
  const sysBlock = (file: string): string => {
    try {
      return fs.readFileSync(`/sys/block/${device}/queue/${file}`, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  return {
    nproc: String(os.availableParallelism()),
    cpu: os.cpus()[0]?.model ?? '?',
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    'load average (1, 5 min)': os
      .loadavg()
      .slice(0, 2)
      .map((l) => l.toFixed(2))
      .join(', '),
    node: process.version,
    kernel: os.release(),
    dir,
    filesystem: mount.replace(/\s+/g, ' '),
    disk: `${device}: rotational=${sysBlock('rotational')}, write_cache=${sysBlock('write_cache')}`,
  };
}

export async function measureStorageEngines(
  options: StorageBenchOptions,
  root: string,
): Promise<StorageBenchResult> {
  assert(Number.isInteger(options.rounds) && options.rounds >= 1, 'at least one round');
  const workspace = new Workspace(root);
  const values = valuePool(options.valueBytes);
  const machine = machineFacts(root);
  const disks: StorageBenchResult['disk'][] = [];
  const rounds = new Map<string, EngineResult[]>(ENGINES.map((e) => [e.name, []]));
  // Other tenants' syncs go through the same ext4 journal: interleave the engines over rounds
  // (a different engine first in each) and report each figure's median round.
  for (let round = 0; round < options.rounds; round++) {
    disks.push(measureDisk(root, options.diskSyncs));
    for (let k = 0; k < ENGINES.length; k++) {
      const engine = ENGINES[(k + round) % ENGINES.length];
      try {
        rounds.get(engine.name)!.push(await measureEngine(engine, options, workspace, values));
      } catch (err) {
        rounds.get(engine.name)!.push({ engine: engine.name, error: errorMessage(err) });
      } finally {
        workspace.clear();
      }
    }
  }
  const disk = medianBy(disks, (d) => d.p50Ms);
  return { machine, disk, engines: ENGINES.map((e) => medianRound(rounds.get(e.name)!)) };
}

/** The element with the median `by` (the lower middle of an even count). */
function medianBy<T>(items: readonly T[], by: (item: T) => number): T {
  assert(items.length > 0, 'a median of something');
  const sorted = [...items].sort((a, b) => by(a) - by(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** Each figure from its median round (by ops/s, or by time for open and scan). */
function medianRound(results: readonly EngineResult[]): EngineResult {
  const failed = results.find((r) => r.error !== undefined);
  if (failed !== undefined) return failed;
  const pick = (get: (r: EngineResult) => WriteFigures | undefined): WriteFigures | undefined => {
    const present = results.map(get).filter((f): f is WriteFigures => f !== undefined);
    return present.length === 0 ? undefined : medianBy(present, (f) => f.load.opsPerSec);
  };
  const time = (get: (r: EngineResult) => number | undefined): number | undefined => {
    const present = results.map(get).filter((t): t is number => t !== undefined);
    return present.length === 0 ? undefined : medianBy(present, (t) => t);
  };
  return {
    engine: results[0].engine,
    rounds: results.length,
    sequentialSynced: pick((r) => r.sequentialSynced),
    groupCommit: pick((r) => r.groupCommit),
    groupCommitSlow: pick((r) => r.groupCommitSlow),
    ownBatching: pick((r) => r.ownBatching),
    unsynced: pick((r) => r.unsynced),
    reads: pick((r) => r.reads),
    openMs: time((r) => r.openMs),
    scanMs: time((r) => r.scanMs),
  };
}

// ---- tables ---------------------------------------------------------------------------------------

export function storageTables(result: StorageBenchResult, options: StorageBenchOptions): Table[] {
  const memory = result.engines.find((e) => e.engine === memoryEngine.name);
  const ratio = (figures: WriteFigures | undefined, base: WriteFigures | undefined): string =>
    figures === undefined || base === undefined
      ? '-'
      : fmt(figures.load.opsPerSec / base.load.opsPerSec, 4);
  const writeRow = (
    e: EngineResult,
    figures: WriteFigures | undefined,
    base: WriteFigures | undefined,
  ): string[] =>
    figures === undefined
      ? [e.engine, e.error === undefined ? '(same as lmdb)' : `ERROR ${e.error}`]
      : [
          e.engine,
          fmt(figures.load.opsPerSec),
          fmt(figures.load.latency.p50Ms, 3),
          fmt(figures.load.latency.p99Ms, 3),
          figures.syncs === undefined ? '-' : fmt(figures.load.ops / figures.syncs, 1),
          fmt(figures.cpuUsPerOp, 1),
          fmt(figures.load.errors),
          ratio(figures, base),
        ];
  const header = [
    'engine',
    'ops/s',
    'p50 ms',
    'p99 ms',
    'ops/sync',
    'CPU us/op',
    'errors',
    'x memory',
  ];
  const writeTable = (
    title: string,
    pick: (e: EngineResult) => WriteFigures | undefined,
  ): Table => ({
    title,
    header,
    rows: result.engines.map((e) => writeRow(e, pick(e), memory && pick(memory))),
  });
  const c = options.concurrency;
  return [
    {
      title: 'Machine',
      header: ['fact', 'value'],
      rows: [
        ...Object.entries(result.machine),
        [
          'fdatasync (100 B append, median round)',
          `p50 ${fmt(result.disk.p50Ms, 3)} ms, p99 ${fmt(result.disk.p99Ms, 3)} ms (${result.disk.syncs} syncs)`,
        ],
      ],
    },
    writeTable('(a) one synced write per op, sequential', (e) => e.sequentialSynced),
    writeTable(`(b) group commit, ${c} writers, one synced batch per sync`, (e) => e.groupCommit),
    writeTable(
      `(b+) group commit, ${c} writers, ${options.slowSyncMs} ms added to every sync`,
      (e) => e.groupCommitSlow,
    ),
    writeTable(`(b-own) ${c} writers, each awaiting its own synced write`, (e) => e.ownBatching),
    writeTable(`(c) unsynced writes, ${c} writers`, (e) => e.unsynced),
    writeTable(
      `(d) point reads, synchronous, random keys of ${fmt(options.recoveryKeys)}`,
      (e) => e.reads,
    ),
    {
      title: `(e) recovery: ${fmt(options.recoveryKeys)} keys of ${options.valueBytes} B values`,
      header: ['engine', 'open ms', 'full scan ms', 'scan keys/s'],
      rows: result.engines.map((e) =>
        e.error !== undefined
          ? [e.engine, `ERROR ${e.error}`]
          : [
              e.engine,
              e === memory ? '-' : fmt(e.openMs, 1),
              fmt(e.scanMs, 1),
              fmt(e.scanMs === undefined ? undefined : (options.recoveryKeys * 1000) / e.scanMs),
            ],
      ),
    },
  ];
}

// ---- command line -------------------------------------------------------------------------------

async function main(): Promise<number> {
  const argv = yargs(hideBin(process.argv))
    .scriptName('storage-engines')
    .usage('$0 [--quick] [--dir DIR]')
    .option('quick', {
      type: 'boolean',
      default: false,
      describe: 'one round of shorter cases (about 30 s instead of 3 rounds, about 4 min)',
    })
    .option('dir', {
      type: 'string',
      default: os.tmpdir(),
      requiresArg: true,
      describe: 'where the temporary databases go (the disk being measured)',
    })
    .strict()
    .parseSync();
  const options = argv.quick ? STORAGE_QUICK : STORAGE_FULL;
  const root = fs.mkdtempSync(path.join(argv.dir, 'dht-storage-bench-'));
  const removeRoot = (): void => fs.rmSync(root, { recursive: true, force: true });
  const onSignal = (): void => {
    removeRoot();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  try {
    const result = await measureStorageEngines(options, root);
    console.log(
      `node dist/bench/storage-engines.js${argv.quick ? ' --quick' : ''}: ` +
        `each figure is the median of ${options.rounds} round(s)\n`,
    );
    for (const table of storageTables(result, options)) console.log(`${formatTable(table)}\n`);
    return result.engines.some((e) => e.error !== undefined) ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    removeRoot();
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
