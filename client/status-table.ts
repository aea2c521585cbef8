// `dht-client status` in a terminal: a line on the epoch and the rebalancing, then a table with a
// row per server (nodetool status style). The --json output is the ClusterStatus object itself.

import type { ClusterStatus, ServerStatus } from '../lib/messages';

const HEADERS = ['ADDRESS', 'ID', 'KEYS', 'SHARE', 'HEARTBEAT', 'REBALANCING'] as const;

export function statusText(status: ClusterStatus): string {
  const rows = status.servers.map((s) => [
    s.address,
    s.id,
    s.keys === null ? '?' : String(s.keys),
    `${s.share.toFixed(1)}%`,
    `${s.lastHeartbeatS.toFixed(1)} s ago${s.late ? ' (late)' : ''}`,
    stageText(s),
  ]);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const lines = [summary(status)];
  if (rows.length === 0) lines.push('no servers in the view');
  else lines.push(line(HEADERS), ...rows.map(line));
  return lines.map((l) => `${l}\n`).join('');
}

/** The first line: the epoch, and the rebalancing's progress with its rate. */
function summary(status: ClusterStatus): string {
  const { progress } = status;
  const servers = `${status.servers.length} server${status.servers.length === 1 ? '' : 's'}`;
  const copies = `${progress.copiesDone}/${progress.copiesTotal} copies`;
  if (!status.rebalancing) {
    return `epoch ${status.epoch}, ${servers}, settled (last rebalancing: ${copies})`;
  }
  const parts = [`${progress.percent.toFixed(1)}%`, copies];
  if (progress.ratePerS !== null && progress.ratePerS > 0) {
    parts.push(`${formatRate(progress.ratePerS)} copies/s`);
    const left = progress.copiesTotal - progress.copiesDone;
    if (left > 0) parts.push(`about ${Math.ceil(left / progress.ratePerS)} s left`);
  }
  return `epoch ${status.epoch}, ${servers}, rebalancing: ${parts.join(', ')}`;
}

function stageText(s: ServerStatus): string {
  const copies =
    s.copiesTotal === null ? 'its plan not reported yet' : `${s.copiesDone ?? 0}/${s.copiesTotal}`;
  switch (s.stage) {
    case 'done':
      return 'done';
    case 'copied':
      return `copied ${copies}, waiting for the others`;
    case 'copying':
      return s.copyRatePerS === null
        ? s.copiesTotal === null
          ? `copying, ${copies}`
          : `copying ${copies}`
        : `copying ${copies} (${formatRate(s.copyRatePerS)}/s)`;
  }
}

function formatRate(rate: number): string {
  return rate >= 100 ? rate.toFixed(0) : rate.toFixed(1);
}
