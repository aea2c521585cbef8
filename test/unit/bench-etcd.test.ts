// The etcd bench section's pure parts (bench/etcd.ts): the dht-over-etcd ratios and the goal flags
// read from them, the table of a skipped section; and the stop of a child that bench/stats.ts
// uses for etcd's members (SIGTERM, then SIGKILL after the grace period, by PID).

import { spawn } from 'node:child_process';
import {
  etcdTables,
  ratiosOf,
  type PeerCase,
  type PeerOp,
  type PeerSystem,
} from '../../bench/etcd';
import {
  formatTable,
  killAllChildrenNow,
  runningChildren,
  terminateChild,
  track,
} from '../../bench/stats';

function peerCase(
  system: PeerSystem,
  op: PeerOp,
  concurrency: number,
  opsPerSec: number,
  [p50Ms, p99Ms, p999Ms]: readonly [number, number, number],
): PeerCase {
  return {
    system,
    op,
    concurrency,
    ops: Math.round(opsPerSec),
    errors: 0,
    firstErrors: [],
    opsPerSec,
    p50Ms,
    p99Ms,
    p999Ms,
    maxMs: p999Ms,
    serverCpuMsPerOp: 0.1,
    clientCpuMsPerOp: 0.1,
    otherCores: 0,
  };
}

describe('dht over etcd ratios', () => {
  const cases = [
    peerCase('etcd', 'write', 1, 400, [2, 4, 8]),
    peerCase('dht durable', 'write', 1, 200, [4, 6, 16]),
    peerCase('dht in-memory', 'write', 1, 800, [1, 2, 4]),
    peerCase('etcd', 'read', 64, 1_000, [50, 80, 100]),
    peerCase('dht durable', 'read', 64, 2_000, [25, 100, 50]),
  ];
  const ratios = ratiosOf(cases);

  test('one ratio per dht case that has an etcd case of the same op and concurrency', () => {
    expect(ratios.map((r) => [r.op, r.concurrency, r.storage])).toEqual([
      ['write', 1, 'durable'],
      ['write', 1, 'in-memory'],
      ['read', 64, 'durable'],
    ]);
  });

  test('ops/s and latencies are dht over etcd', () => {
    expect(ratios[0]).toMatchObject({ opsPerSec: 0.5, p50: 2, p99: 1.5, p999: 2 });
    expect(ratios[1]).toMatchObject({ opsPerSec: 2, p50: 0.5, p99: 0.5, p999: 0.5 });
  });

  test('ahead on ops/s and on latency are separate: one slow percentile is not ahead', () => {
    expect(ratios.map((r) => [r.aheadOnOpsPerSec, r.aheadOnLatency])).toEqual([
      [false, false],
      [true, true],
      [true, false], // p99 100 ms against etcd's 80
    ]);
  });
});

test('a skipped section says why and how to install etcd', () => {
  const text = etcdTables({
    skipped: true,
    reason: 'etcd is not on PATH',
    install: 'DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server',
  })
    .map(formatTable)
    .join('\n');
  expect(text).toContain('SKIPPED');
  expect(text).toContain('etcd is not on PATH');
  expect(text).toContain('apt-get install -y etcd-server');
});

describe('terminateChild', () => {
  const GRACE_MS = 300;
  // Should a test fail before its terminateChild, its child still goes (by PID).
  afterEach(() => killAllChildrenNow());

  test('a child that exits on SIGTERM is gone without a SIGKILL', async () => {
    const child = track(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']));
    await new Promise((resolve) => child.once('spawn', resolve));
    await terminateChild(child, 5_000);
    expect(child.signalCode).toBe('SIGTERM');
    expect(runningChildren()).toBe(0);
  });

  test('a child that ignores SIGTERM is SIGKILLed after the grace period', async () => {
    const child = track(
      spawn(
        process.execPath,
        [
          '-e',
          "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)",
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      ),
    );
    // Its handler is installed once it printed: a SIGTERM before that would end it at once.
    await new Promise((resolve) => child.stdout!.once('data', resolve));
    const t0 = performance.now();
    await terminateChild(child, GRACE_MS);
    expect(child.signalCode).toBe('SIGKILL');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(GRACE_MS - 10);
    expect(runningChildren()).toBe(0);
  });
});
