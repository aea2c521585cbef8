// bin/dht-server: parse flags, start the RPC shell, heartbeat, serve until SIGINT/SIGTERM.

import yargs from 'yargs';
import { candidateAddresses } from '../lib/address';
import {
  addressList,
  declaredFlags,
  exitWithError,
  exitWithUsage,
  portsToTry,
  positiveSeconds,
  usageText,
  withCommonBehaviour,
  withEnvironment,
  withProcessOptions,
} from '../lib/cli-options';
import { initHashing } from '../lib/hash';
import { announceAndRunUntilSignal } from '../lib/http-server';
import { setUpAuthentication } from '../lib/http-auth';
import {
  HEARTBEAT_INTERVAL_S_DEFAULT,
  PREPARE_TIMEOUT_S_DEFAULT,
  SERVER_PORT_FIRST,
  SERVER_PORT_LAST,
  VIEWLEADER_PORT_FIRST,
  VIEWLEADER_PORT_LAST,
} from '../lib/limits';
import { createProcessLogger } from '../lib/logger';
import { ProcessMetrics } from '../lib/metrics';
import { DhtClient } from '../client/sdk';
import { kvRoutes } from './kv-routes';
import { openAndListen } from './startup';
import { StorageServer } from './storage-server';

const PROGRAM = 'dht-server';
/** Flags that may not be given together. */
const CONFLICTS = [['data-dir', 'in-memory']] as const;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const parser = withCommonBehaviour(
    withProcessOptions(
      yargs(argv).usage(
        '$0 [options]\n\nA dht storage server: holds a bucket of keys, takes part in two-phase commits, rebalances on view changes, and serves GET/PUT/DELETE /kv/KEY (HTTP) to any client.',
      ),
      `port to listen on (default: first free of ${SERVER_PORT_FIRST}..${SERVER_PORT_LAST})`,
    ),
    PROGRAM,
  )
    .option('viewleader', {
      type: 'string',
      default: `127.0.0.1:${VIEWLEADER_PORT_FIRST}`,
      coerce: addressList('viewleader', VIEWLEADER_PORT_FIRST, VIEWLEADER_PORT_LAST),
      describe: 'view leader(s), HOST[:PORT][,HOST[:PORT]...]',
    })
    .option('heartbeat-interval', {
      coerce: positiveSeconds('heartbeat-interval'),
      default: HEARTBEAT_INTERVAL_S_DEFAULT,
      describe: 'seconds between heartbeats',
    })
    .option('prepare-timeout', {
      coerce: positiveSeconds('prepare-timeout'),
      default: PREPARE_TIMEOUT_S_DEFAULT,
      describe: 'seconds an undecided prepared transaction waits before asking for its outcome',
    })
    .option('data-dir', {
      type: 'string',
      describe:
        "directory of this server's data (default: dht-data/server-PORT under the working directory)",
    })
    .option('in-memory', {
      type: 'boolean',
      describe: 'keep nothing on disk: data and identity end with the process',
    })
    .requiresArg(['viewleader', 'heartbeat-interval', 'prepare-timeout', 'data-dir'])
    .strict();
  let sources: Readonly<Record<string, string>> = {};
  try {
    sources = withEnvironment(parser, argv, process.env, CONFLICTS).sources;
  } catch (err) {
    exitWithUsage(usageText(PROGRAM, err instanceof Error ? err.message : String(err), []));
  }
  const args = parser
    .fail((message, err) => {
      const text = err?.message ?? message;
      exitWithUsage(usageText(PROGRAM, text, declaredFlags(parser), sources));
    })
    .parseSync();

  await initHashing();
  const logger = await createProcessLogger('dht-server', args.logLevel, args.logFormat);
  setUpAuthentication(args, logger);
  const viewLeaders = candidateAddresses(
    args.viewleader,
    VIEWLEADER_PORT_FIRST,
    VIEWLEADER_PORT_LAST,
  );
  const config = {
    viewLeaders,
    heartbeatIntervalMs: args.heartbeatInterval * 1000,
    prepareTimeoutMs: args.prepareTimeout * 1000,
  };
  // The /kv API coordinates as a client does, with the SDK's own view cache and defaults (the
  // CLI's --timeout and --wait 0): a server that is a replica of the key is asked over loopback.
  const kvClient = new DhtClient({ viewLeader: args.viewleader });
  const metrics = new ProcessMetrics('server');
  const { storage, store, listening } = await openAndListen(
    args.host,
    portsToTry(args.port, SERVER_PORT_FIRST, SERVER_PORT_LAST),
    args.inMemory === true ? undefined : { dir: args.dataDir },
    (store, serverId) =>
      new StorageServer(
        { ...config, serverId, durable: args.inMemory !== true },
        store,
        logger,
        metrics,
      ),
    logger,
    metrics,
    (rpc) => kvRoutes(rpc, kvClient, logger, metrics),
  );
  announceAndRunUntilSignal(listening, logger, async () => {
    storage.stop();
    await store.close();
  });
  storage.start(listening.address);
}

main().catch(exitWithError);
