// bin/dht-viewleader: heartbeats, epochs, the view, locks. Parses flags, takes its port, restores
// the saved state from its data directory (or starts empty `--in-memory`), wires the pure core
// (Membership, LockTable) to HTTP, ticks the clock, and follows the contract's process life
// cycle (one `listening on` line on stdout, logs on stderr, exit 0 on SIGINT/SIGTERM).
//
// Order at start: the port first, then the data directory, then the `listening on` line. The
// default directory is named after the port it listens on (dht-data/viewleader-PORT), and with
// the port scan of 39000..39010 that port is known only once one is taken; a port is held by one
// process, so two view leaders scanning the range never pick the same default directory. A
// directory used by another process (LevelDB's lock: `--data-dir` naming it twice), unreadable
// or corrupt ends the start with one `ERROR: ...` line and exit 1, the port released again.
// Requests that reach the port before the state is restored wait for it (viewLeaderRoutes).

import { performance } from 'node:perf_hooks';
import { DhtError } from '../lib/errors';
import { announceAndRunUntilSignal, RpcServer } from '../lib/http-server';
import { portsToTry } from '../lib/cli-options';
import { StoreOpenError } from '../lib/level-dir';
import { VIEWLEADER_PORT_FIRST, VIEWLEADER_PORT_LAST } from '../lib/limits';
import { createLogger, type Logger } from '../lib/logger';
import { dataDirFor, parseViewLeaderArgs, type ViewLeaderOptions } from './cli';
import { probeAddress } from './address-probe';
import { LockTable } from './locks';
import { Membership } from './membership';
import { viewLeaderRoutes, ViewLeader } from './routes';
import { IN_MEMORY, type StateLog } from './saved-state';
import { StateStore } from './state-store';

/**
 * Requests tick the core themselves, so expiry is exact; the timer only makes a silent server
 * leave (and its locks go) without waiting for the next request. A quarter of the timeout keeps
 * that delay small; the bounds keep the timer neither busy nor lazy.
 */
const TICK_INTERVAL_MS_MIN = 10;
const TICK_INTERVAL_MS_MAX = 1000;

interface Restored {
  readonly membership: Membership;
  readonly locks: LockTable;
  readonly state: StateLog;
  readonly store: StateStore | undefined;
}

async function main(): Promise<void> {
  const options = parseViewLeaderArgs(process.argv.slice(2));
  const logger = createLogger('viewleader', options.logLevel);
  const rpc = new RpcServer(logger);
  let started!: (leader: ViewLeader) => void;
  const leader = new Promise<ViewLeader>((resolve) => (started = resolve));
  viewLeaderRoutes(rpc, leader);
  const ports = portsToTry(options.port, VIEWLEADER_PORT_FIRST, VIEWLEADER_PORT_LAST);
  const listening = await rpc.listen(options.host, ports);
  const port = Number(listening.address.slice(listening.address.lastIndexOf(':') + 1));

  let restored: Restored;
  try {
    restored = await restore(options, port, logger);
  } catch (err) {
    listening.server.close();
    throw err;
  }
  const { membership, locks, state, store } = restored;
  const viewLeader = new ViewLeader(
    membership,
    locks,
    logger,
    () => performance.now(),
    (address) => probeAddress(address),
    state,
  );
  started(viewLeader);
  const tickIntervalMs = Math.min(
    TICK_INTERVAL_MS_MAX,
    Math.max(TICK_INTERVAL_MS_MIN, options.failureTimeoutMs / 4),
  );
  const timer = setInterval(() => viewLeader.tick(), tickIntervalMs);
  logger.info(
    {
      address: listening.address,
      failureTimeoutMs: options.failureTimeoutMs,
      dataDir: store?.dir ?? null,
    },
    'view leader ready',
  );
  announceAndRunUntilSignal(listening, logger, async () => {
    clearInterval(timer);
    await store?.close();
  });
}

/** The cores, restored from the data directory, or empty `--in-memory`. */
async function restore(
  options: ViewLeaderOptions,
  port: number,
  logger: Logger,
): Promise<Restored> {
  const { failureTimeoutMs, storage } = options;
  if (storage.kind === 'memory') {
    logger.info('in memory: nothing is saved, a restart forgets the view and the locks');
    return {
      membership: new Membership(failureTimeoutMs),
      locks: new LockTable(),
      state: IN_MEMORY,
      store: undefined,
    };
  }
  const dir = dataDirFor(storage.dir, port);
  const { store, snapshot } = await StateStore.open(dir, {
    onFailure: (err) => {
      // Memory is now ahead of the disk: nothing more may be answered. A restart recovers from
      // what is on disk, which is everything that was ever answered.
      logger.fatal({ err, dataDir: dir }, 'saving the view leader state failed; exiting');
      process.stderr.write(`ERROR: cannot save the view leader state in ${dir}: ${err.message}\n`);
      process.exit(1);
    },
  });
  let membership: Membership;
  let locks: LockTable;
  try {
    // Every member counts as heard from now: a full failure timeout from the restart.
    membership = Membership.restore(snapshot.membership, failureTimeoutMs, performance.now());
    locks = LockTable.restore(snapshot.locks);
  } catch (err) {
    await store.close();
    const message = err instanceof Error ? err.message : String(err);
    throw new StoreOpenError('corrupt', `${dir}: the saved state is inconsistent (${message})`, {
      cause: err,
    });
  }
  // Restoring changes nothing, unless the expired IDs are trimmed to a lower bound.
  store.write({ membership: membership.takeChanges(), locks: locks.takeChanges() });
  await store.durable();
  logger.info(
    {
      dataDir: dir,
      epoch: membership.epoch,
      servers: membership.view().servers.length,
      expiredIds: snapshot.membership.expired.length,
      placementEpoch: membership.placement.epoch,
      locks: snapshot.locks.locks.length,
    },
    'view leader state restored',
  );
  return { membership, locks, state: store, store };
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`ERROR: ${message}\n`);
  process.exit(err instanceof DhtError ? err.info.exitCode : 1);
});
