// Opening a server's data and its port together. The default data directory is named after the
// port (dht-data/server-PORT), and with no --port the port is the first free one of a range, so
// the two are taken as a pair: for each port in turn, lock that port's directory first (LevelDB's
// lock; a directory locked by another process means that process serves this port), then listen.
// Two servers scanning the range at once therefore never share a directory, and a restarted
// server on its port finds its own data.

import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { DhtError } from '../lib/errors';
import { RpcServer, type ListeningServer } from '../lib/http-server';
import type { Logger } from '../lib/logger';
import { operatorRoutes, type ProcessMetrics } from '../lib/metrics';
import { injectedSyncFailure } from '../lib/level-dir';
import { DurableStore, StoreOpenError } from './durable-store';
import { META_TABLE, SERVER_ID_RECORD, type StorageServer } from './storage-server';
import { MemoryStore, type Store } from './store';

/** The default data directory of a server on `port`, under the working directory. */
export function defaultDataDir(port: number): string {
  return path.join('dht-data', `server-${port}`);
}

export interface Started {
  readonly storage: StorageServer;
  readonly store: Store & { close(): Promise<void> };
  readonly listening: ListeningServer;
}

/**
 * `durable` undefined: in memory. `durable.dir` undefined: the default directory of each port
 * tried. Throws StoreOpenError (a clear message) when a directory cannot be used.
 */
export async function openAndListen(
  host: string,
  ports: readonly number[],
  durable: { readonly dir: string | undefined } | undefined,
  makeServer: (store: Store, serverId: string) => StorageServer,
  logger: Logger,
  /** The process's metrics: every request counted, served at GET /metrics. */
  metrics: ProcessMetrics,
  /** Routes of the process's own besides the storage server's (the /kv API). */
  moreRoutes: (rpc: RpcServer) => void = () => {},
): Promise<Started> {
  if (durable !== undefined && durable.dir === undefined && ports.includes(0)) {
    throw new DhtError('usage', '--port 0 needs --data-dir DIR or --in-memory');
  }
  const fixed = durable?.dir === undefined ? undefined : await openStore(durable.dir, logger);
  for (const port of ports) {
    let store: Store & { close(): Promise<void> };
    if (durable === undefined) store = new MemoryStore();
    else if (fixed !== undefined) store = fixed;
    else {
      try {
        store = await openStore(defaultDataDir(port), logger);
      } catch (err) {
        // Another server holds this port's directory: it serves (or is about to serve) this port.
        if (err instanceof StoreOpenError && err.code === 'locked' && ports.length > 1) continue;
        throw err;
      }
    }
    const storage = makeServer(store, await serverIdOf(store));
    const rpc = new RpcServer(logger, metrics, { process: 'server' });
    operatorRoutes(rpc.app, metrics, () => storage.health());
    storage.routes(rpc);
    moreRoutes(rpc);
    try {
      const listening = await rpc.listen(host, [port]);
      return { storage, store, listening };
    } catch (err) {
      if (fixed === undefined) await store.close();
      if (!(err instanceof DhtError) || err.kind !== 'unavailable') throw err;
    }
  }
  const range = ports.length === 1 ? `${ports[0]}` : `${ports[0]}..${ports[ports.length - 1]}`;
  throw new DhtError(
    'unavailable',
    `no free port (with a free data directory) on ${host} in ${range}`,
  );
}

async function openStore(dir: string, logger: Logger): Promise<DurableStore> {
  const store = await DurableStore.open(dir, { beforeSync: injectedSyncFailure() });
  const { bucketKeys, records, openMs } = store.recovery;
  logger.info(
    { dir, keys: bucketKeys, records, openMs: Math.round(openMs) },
    'data directory open',
  );
  return store;
}

/** The stored ID of a durable server (resumed), or a new one, stored before it is used. */
async function serverIdOf(store: Store): Promise<string> {
  const stored = store.getRecord(META_TABLE, SERVER_ID_RECORD);
  if (stored !== undefined) return stored;
  const serverId = randomUUID();
  store.putRecord(META_TABLE, SERVER_ID_RECORD, serverId);
  await store.flush();
  return serverId;
}
