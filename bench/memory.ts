// Memory: the resident set (VmRSS in /proc/PID/status) of one server process before and after it
// holds N keys of 100-byte values. One server in the view, so min(3, 1) = 1 replica: it holds
// every key. The keys arrive through the transfer endpoint (how rebalancing fills a server), in
// batches; what a server holds per key does not depend on how the key arrived. (A server that
// takes setr also remembers up to DECISIONS_REMEMBERED_MAX decided transaction IDs, bounded:
// not measured here.)

import { initHashing } from '../lib/hash';
import { call } from '../lib/http-client';
import { ServerApi } from '../lib/messages';
import { placeDirectly } from './rebalancing';
import { fmt, residentBytes, settled, sleep, waitForView, withCluster, type Table } from './stats';

export interface MemoryOptions {
  readonly keys: number;
  readonly valueBytes: number;
  /** A pause before each reading: the server's garbage collector gets a chance to run. */
  readonly settleMs: number;
  readonly settleTimeoutMs: number;
}

export const MEMORY_FULL: MemoryOptions = {
  keys: 100_000,
  valueBytes: 100,
  settleMs: 1_000,
  settleTimeoutMs: 30_000,
};
export const MEMORY_QUICK: MemoryOptions = {
  keys: 20_000,
  valueBytes: 100,
  settleMs: 500,
  settleTimeoutMs: 30_000,
};

const MEMORY_TIMINGS = { failureTimeoutS: 2, heartbeatIntervalS: 0.2 };

export interface MemoryResult {
  readonly keys: number;
  readonly valueBytes: number;
  /** Key and value bytes, the payload itself (UTF-8, here ASCII). */
  readonly payloadBytesPerKey: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  readonly rssPerKeyBytes: number;
  /** RSS per key over the payload per key: 1 would mean no overhead at all. */
  readonly overPayload: number;
  readonly loadMs: number;
}

export async function measureMemory(options: MemoryOptions): Promise<MemoryResult> {
  await initHashing();
  const value = 'm'.repeat(options.valueBytes);
  const keyOf = (i: number): string => `memory-key-${String(i).padStart(7, '0')}`;
  return withCluster(
    MEMORY_TIMINGS,
    () => {},
    async (cluster) => {
      const leader = await cluster.startViewLeader();
      const server = await cluster.startServer();
      const pid = server.child.pid;
      if (pid === undefined) throw new Error('the server has no PID');
      const { view } = await waitForView(leader.address, settled(1), options.settleTimeoutMs, 50);
      await sleep(options.settleMs);
      const rssBeforeBytes = residentBytes(pid);

      const t0 = performance.now();
      await placeDirectly(
        view,
        Array.from({ length: options.keys }, (_, i) => ({ key: keyOf(i), value, version: 1 })),
      );
      const loadMs = performance.now() - t0;
      const status = await call(server.address, ServerApi.status, {}, { timeoutMs: 5_000 });
      if (status.keyCount !== options.keys) {
        throw new Error(`the server holds ${status.keyCount} keys, not ${options.keys}`);
      }
      await sleep(options.settleMs);
      const rssAfterBytes = residentBytes(pid);
      const rssPerKeyBytes = (rssAfterBytes - rssBeforeBytes) / options.keys;
      const payloadBytesPerKey = keyOf(options.keys - 1).length + options.valueBytes;
      return {
        keys: options.keys,
        valueBytes: options.valueBytes,
        payloadBytesPerKey,
        rssBeforeBytes,
        rssAfterBytes,
        rssPerKeyBytes,
        overPayload: rssPerKeyBytes / payloadBytesPerKey,
        loadMs,
      };
    },
  );
}

export function memoryTables(r: MemoryResult): Table[] {
  const mib = (bytes: number): string => fmt(bytes / (1024 * 1024), 1);
  return [
    {
      title: `Memory: one server holding ${fmt(r.keys)} keys of ${r.valueBytes} B values (VmRSS)`,
      header: ['measure', 'value'],
      rows: [
        ['RSS before (idle server)', `${mib(r.rssBeforeBytes)} MiB`],
        ['RSS after', `${mib(r.rssAfterBytes)} MiB`],
        ['RSS per key', `${fmt(r.rssPerKeyBytes)} B`],
        ['payload per key (key + value)', `${fmt(r.payloadBytesPerKey)} B`],
        ['RSS per key / payload', fmt(r.overPayload, 2)],
        ['load time (transfer batches)', `${fmt(r.loadMs / 1000, 2)} s`],
      ],
    },
  ];
}
