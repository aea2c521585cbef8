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
//
// With `--peers`, this process is one member of a replicated view leader (runMember): its state
// is the Raft log in its data directory (viewleader/replication.ts), and it serves requests only
// while it leads; the other members answer `not_leader` with the leader's address.

import { performance } from 'node:perf_hooks';
import { assert } from '../lib/assert';
import { DhtError } from '../lib/errors';
import { initHashing } from '../lib/hash';
import { announceAndRunUntilSignal, RpcServer } from '../lib/http-server';
import { setUpAuthentication } from '../lib/http-auth';
import type { MemberStatus } from '../lib/messages';
import { exitWithError, portsToTry } from '../lib/cli-options';
import { injectedSyncFailure, StoreOpenError } from '../lib/level-dir';
import {
  VIEWLEADER_PORT_FIRST,
  VIEWLEADER_PORT_LAST,
  VIEWLEADER_TICK_INTERVAL_MS_MAX,
  VIEWLEADER_TICK_INTERVAL_MS_MIN,
} from '../lib/limits';
import { createProcessLogger, type Logger } from '../lib/logger';
import { operatorRoutes, ProcessMetrics } from '../lib/metrics';
import { aloneHealth, memberHealth } from './health';
import { ViewLeaderMetrics } from './metrics';
import { dataDirFor, parseViewLeaderArgs, type ViewLeaderOptions } from './cli';
import { probeAddress } from './address-probe';
import { LockTable } from './locks';
import { Membership } from './membership';
import { RaftStore } from './raft-store';
import { ReplicatedStateLog } from './replicated-state-log';
import { Replication } from './replication';
import { pageRoutes } from './page';
import { viewLeaderRoutes, ViewLeader } from './routes';
import { epochOfRecords, IN_MEMORY, snapshotFromRecords, type StateLog } from './saved-state';
import { StateStore } from './state-store';

interface Restored {
  readonly membership: Membership;
  readonly locks: LockTable;
  readonly state: StateLog;
  readonly store: StateStore | undefined;
  /** Hands the view leader to the store's failure handling (it then refuses changes). */
  readonly attach: (viewLeader: ViewLeader) => void;
}

async function main(): Promise<void> {
  const options = parseViewLeaderArgs(process.argv.slice(2));
  const logger = await createProcessLogger('viewleader', options.logLevel, options.logFormat);
  setUpAuthentication(options, logger);
  await initHashing(); // the ring's shares in the operator's view
  const metrics = new ProcessMetrics('viewleader');
  const rpc = new RpcServer(logger, metrics, { process: 'viewleader' });
  if (options.peers !== undefined) {
    await runMember(options, options.peers, rpc, logger, metrics);
    return;
  }
  let started!: (leader: ViewLeader) => void;
  const leader = new Promise<ViewLeader>((resolve) => (started = resolve));
  let address = '';
  /** `serving` once the state is restored; `stopping` once a signal came. */
  const live: { serving?: ViewLeader; stopping: boolean } = { stopping: false };
  const viewLeaderMetrics = new ViewLeaderMetrics(metrics, () => ({
    served: live.serving?.served(),
    epoch: live.serving?.epoch ?? -1,
    raft: undefined,
  }));
  operatorRoutes(rpc.app, metrics, () =>
    aloneHealth({
      address,
      served: live.serving?.served(),
      storageFailure: live.serving?.storageFailure?.message,
      stopping: live.stopping,
    }),
  );
  viewLeaderRoutes(rpc, {
    leader: () => leader,
    status: async () => ({ ...(await leader).status(), address }),
  });
  pageRoutes(rpc, async () => (await leader).clusterStatus(), logger);
  const ports = portsToTry(options.port, VIEWLEADER_PORT_FIRST, VIEWLEADER_PORT_LAST);
  const listening = await rpc.listen(options.host, ports);
  const port = Number(listening.address.slice(listening.address.lastIndexOf(':') + 1));
  address = listening.address;

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
    viewLeaderMetrics,
  );
  restored.attach(viewLeader);
  live.serving = viewLeader;
  started(viewLeader);
  const timer = setInterval(() => viewLeader.tick(), tickIntervalMs(options));
  logger.info(
    {
      address: listening.address,
      failureTimeoutMs: options.failureTimeoutMs,
      dataDir: store?.dir ?? null,
    },
    'view leader ready',
  );
  announceAndRunUntilSignal(listening, logger, async () => {
    live.stopping = true;
    clearInterval(timer);
    await store?.close();
  });
}

function tickIntervalMs(options: ViewLeaderOptions): number {
  return Math.min(
    VIEWLEADER_TICK_INTERVAL_MS_MAX,
    Math.max(VIEWLEADER_TICK_INTERVAL_MS_MIN, options.failureTimeoutMs / 4),
  );
}

/**
 * One member of a replicated view leader. The cores (Membership, LockTable) exist only while this
 * member leads: built from the applied log when it starts to serve (every server then counts as
 * heard from now, a full failure timeout before anyone is expelled), dropped when it stops.
 */
async function runMember(
  options: ViewLeaderOptions,
  peers: readonly string[],
  rpc: RpcServer,
  logger: Logger,
  metrics: ProcessMetrics,
): Promise<void> {
  assert(options.storage.kind === 'disk', 'a member keeps its vote and log on disk (cli.ts)');
  assert(options.port !== undefined, 'a member listens on its own port (cli.ts)');
  /** Set once the log is read; until then Raft messages are dropped. */
  const opening: { member?: Replication } = {};
  let current: ViewLeader | undefined;
  let opened!: (replication: Replication) => void;
  const ready = new Promise<Replication>((resolve) => (opened = resolve));
  let stopping = false;
  let address = '';
  const memberStatus = (): MemberStatus | undefined => {
    const member = opening.member;
    return member?.status(current?.epoch ?? epochOfRecords(member.appliedRecords));
  };
  const viewLeaderMetrics = new ViewLeaderMetrics(metrics, () => {
    const status = memberStatus();
    return { served: current?.served(), epoch: status?.epoch ?? -1, raft: status };
  });
  operatorRoutes(rpc.app, metrics, () =>
    memberHealth({ address, status: memberStatus(), stopping }),
  );
  viewLeaderRoutes(rpc, {
    leader: async () => {
      const member = await ready;
      if (current === undefined) throw member.notLeader();
      return current;
    },
    status: async () => {
      const member = await ready;
      return member.status(current?.epoch ?? epochOfRecords(member.appliedRecords));
    },
    // Messages that arrive before the log is read are dropped: Raft sends them again.
    raft: (request) => opening.member?.receive(request.from, request.messages),
  });
  // The page of a member that does not lead says where the leader is.
  pageRoutes(
    rpc,
    async () => {
      const member = await ready;
      if (current === undefined) throw member.notLeader();
      return current.clusterStatus();
    },
    logger,
  );
  const listening = await rpc.listen(options.host, [options.port]);
  address = listening.address;
  const dir = dataDirFor(options.storage.dir, options.port);
  let fromDisk: Awaited<ReturnType<typeof RaftStore.open>>;
  try {
    fromDisk = await RaftStore.open(dir, peers);
  } catch (err) {
    listening.server.close();
    throw err;
  }
  const { store, persisted } = fromDisk;
  const member: Replication = new Replication(
    listening.address,
    peers,
    store,
    persisted,
    {
      onLead: (records) => {
        const snapshot = snapshotFromRecords(records);
        const membership = Membership.restore(
          snapshot.membership,
          options.failureTimeoutMs,
          performance.now(),
        );
        const locks = LockTable.restore(snapshot.locks);
        const log = new ReplicatedStateLog(member);
        // Restoring changes nothing, unless the expired IDs are trimmed to a lower bound.
        log.write({ membership: membership.takeChanges(), locks: locks.takeChanges() });
        current = new ViewLeader(
          membership,
          locks,
          logger,
          () => performance.now(),
          (address) => probeAddress(address),
          log,
          viewLeaderMetrics,
        );
        logger.info(
          { epoch: membership.epoch, servers: membership.view().servers.length },
          'leading: the view leader state is rebuilt from the log',
        );
      },
      onFollow: () => {
        current = undefined;
      },
      onFailure: (err) => {
        logger.fatal({ err, dataDir: dir }, 'saving the Raft log failed; exiting');
        process.stderr.write(`ERROR: cannot save the Raft log in ${dir}: ${err.message}\n`);
        process.exit(1);
      },
    },
    logger,
  );
  opening.member = member;
  member.start();
  opened(member);
  const timer = setInterval(() => current?.tick(), tickIntervalMs(options));
  logger.info(
    {
      address: listening.address,
      peers,
      failureTimeoutMs: options.failureTimeoutMs,
      dataDir: dir,
      term: persisted?.hardState.term ?? 0,
    },
    'view leader member ready',
  );
  announceAndRunUntilSignal(listening, logger, async () => {
    stopping = true;
    clearInterval(timer);
    await member.stop();
    await store.close();
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
      attach: () => undefined,
    };
  }
  const dir = dataDirFor(storage.dir, port);
  // Saving failed: serve reads of what is on disk and refuse every change until a restart (the
  // contract's "Disk full or a failed write"). Until the disk is read back, answers fail anyway:
  // they wait for a durability that will not come.
  let readOnly: ((membership: Membership, locks: LockTable, failure: DhtError) => void) | undefined;
  const { store, snapshot } = await StateStore.open(dir, {
    beforeSync: injectedSyncFailure(),
    onFailure: (err) => {
      logger.error(
        { err, dataDir: dir },
        'saving the view leader state failed: serving reads of what is on disk, refusing changes until restarted',
      );
      const failure = new DhtError(
        'unavailable',
        `the view leader cannot save its state in ${dir} (${err.message}); it refuses changes until restarted`,
        'storage_failed',
      );
      store
        .readBack()
        .then((saved) =>
          readOnly?.(
            Membership.restore(saved.membership, failureTimeoutMs, performance.now()),
            LockTable.restore(saved.locks),
            failure,
          ),
        )
        .catch((readErr: unknown) => {
          // Not even readable: nothing can be served that is known to be on disk.
          logger.fatal({ err: readErr, dataDir: dir }, 'cannot read the saved state back; exiting');
          process.stderr.write(
            `ERROR: cannot save the view leader state in ${dir}: ${err.message}\n`,
          );
          process.exit(1);
        });
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
  return {
    membership,
    locks,
    state: store,
    store,
    attach: (viewLeader) => {
      readOnly = (m, l, failure) => viewLeader.refuseChanges(m, l, failure);
    },
  };
}

main().catch(exitWithError);
