// bin/dht-server: parse flags, start the RPC shell, heartbeat, serve until SIGINT/SIGTERM.

import { randomUUID } from 'node:crypto';
import yargs from 'yargs';
import { candidateAddresses } from '../lib/address';
import { portsToTry, positiveSeconds, withProcessOptions } from '../lib/cli-options';
import { DhtError } from '../lib/errors';
import { initHashing } from '../lib/hash';
import { announceAndRunUntilSignal, RpcServer } from '../lib/http-server';
import {
  HEARTBEAT_INTERVAL_S_DEFAULT,
  PREPARE_TIMEOUT_S_DEFAULT,
  SERVER_PORT_FIRST,
  SERVER_PORT_LAST,
  VIEWLEADER_PORT_FIRST,
  VIEWLEADER_PORT_LAST,
} from '../lib/limits';
import { createLogger } from '../lib/logger';
import { StorageServer } from './storage-server';
import { MemoryStore } from './store';

async function main(): Promise<void> {
  const args = withProcessOptions(
    yargs(process.argv.slice(2))
      .scriptName('dht-server')
      .usage(
        '$0 [options]\n\nA dht storage server: holds a bucket of keys, takes part in two-phase commits, rebalances on view changes.',
      ),
    `port to listen on (default: first free of ${SERVER_PORT_FIRST}..${SERVER_PORT_LAST})`,
  )
    .option('viewleader', {
      type: 'string',
      default: `127.0.0.1:${VIEWLEADER_PORT_FIRST}`,
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
    .requiresArg(['viewleader', 'heartbeat-interval', 'prepare-timeout'])
    .strict()
    .help()
    .alias('help', 'h')
    .version(false)
    .fail((message, err) => {
      process.stderr.write(`ERROR: ${err?.message ?? message}\nRun with --help for usage.\n`);
      process.exit(2);
    })
    .parseSync();

  await initHashing();
  const logger = createLogger('dht-server', args.logLevel);
  const viewLeaders = candidateAddresses(
    args.viewleader,
    VIEWLEADER_PORT_FIRST,
    VIEWLEADER_PORT_LAST,
  );
  const rpc = new RpcServer(logger);
  const storage = new StorageServer(
    {
      serverId: randomUUID(),
      viewLeaders,
      heartbeatIntervalMs: args.heartbeatInterval * 1000,
      prepareTimeoutMs: args.prepareTimeout * 1000,
    },
    new MemoryStore(),
    logger,
  );
  storage.routes(rpc);
  const listening = await rpc.listen(
    args.host,
    portsToTry(args.port, SERVER_PORT_FIRST, SERVER_PORT_LAST),
  );
  logger.info({ address: listening.address }, 'server listening');
  announceAndRunUntilSignal(listening, logger, () => storage.stop());
  storage.start(listening.address);
}

main().catch((err: unknown) => {
  process.stderr.write(`ERROR: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof DhtError ? err.info.exitCode : 1);
});
