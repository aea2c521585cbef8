// bin/dht-viewleader: heartbeats, epochs, the view, locks. Parses flags, wires the pure core
// (Membership, LockTable) to HTTP, ticks the clock, and follows the contract's process life
// cycle (one `listening on` line on stdout, logs on stderr, exit 0 on SIGINT/SIGTERM).

import { performance } from 'node:perf_hooks';
import { DhtError } from '../lib/errors';
import { announceAndRunUntilSignal, RpcServer } from '../lib/http-server';
import { portsToTry } from '../lib/cli-options';
import { VIEWLEADER_PORT_FIRST, VIEWLEADER_PORT_LAST } from '../lib/limits';
import { createLogger } from '../lib/logger';
import { parseViewLeaderArgs } from './cli';
import { probeAddress } from './address-probe';
import { LockTable } from './locks';
import { Membership } from './membership';
import { ViewLeader } from './routes';

/**
 * Requests tick the core themselves, so expiry is exact; the timer only makes a silent server
 * leave (and its locks go) without waiting for the next request. A quarter of the timeout keeps
 * that delay small; the bounds keep the timer neither busy nor lazy.
 */
const TICK_INTERVAL_MS_MIN = 10;
const TICK_INTERVAL_MS_MAX = 1000;

async function main(): Promise<void> {
  const options = parseViewLeaderArgs(process.argv.slice(2));
  const logger = createLogger('viewleader', options.logLevel);
  const viewLeader = new ViewLeader(
    new Membership(options.failureTimeoutMs),
    new LockTable(),
    logger,
    () => performance.now(),
    (address) => probeAddress(address),
  );
  const rpc = viewLeader.routes(new RpcServer(logger));
  const ports = portsToTry(options.port, VIEWLEADER_PORT_FIRST, VIEWLEADER_PORT_LAST);
  const listening = await rpc.listen(options.host, ports);
  const tickIntervalMs = Math.min(
    TICK_INTERVAL_MS_MAX,
    Math.max(TICK_INTERVAL_MS_MIN, options.failureTimeoutMs / 4),
  );
  const timer = setInterval(() => viewLeader.tick(), tickIntervalMs);
  logger.info(
    { address: listening.address, failureTimeoutMs: options.failureTimeoutMs },
    'view leader ready',
  );
  announceAndRunUntilSignal(listening, logger, () => clearInterval(timer));
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`dht-viewleader: ${message}\n`);
  process.exit(err instanceof DhtError ? err.info.exitCode : 1);
});
