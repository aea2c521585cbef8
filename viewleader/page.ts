// The view leader's web page (the contract's "The operator's view"): the ring, the servers, the
// epoch and its history, the rebalancing's progress, updated live. The thin shell: plain files
// from viewleader/page/ (HTML, CSS and browser JavaScript, no build step, nothing from elsewhere),
// the same snapshot as `dht-client status` (viewleader/cluster-status.ts) as JSON and as
// server-sent events, and the ring's arcs from the allocator (lib/ring.ts).
//
// Every path here is a GET under `/` or `/ui/`, open to anyone who can reach the view leader: it
// shows server IDs, addresses and counts, never a key or a value.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Request, Response } from 'express';
import { DhtError, NotLeaderError } from '../lib/errors';
import type { RpcServer } from '../lib/http-server';
import type { Logger } from '../lib/logger';
import { PAGE_KEEPALIVE_MS, PAGE_REFRESH_MS, PAGE_STREAMS_MAX } from '../lib/limits';
import type { ClusterStatus, ServerRef } from '../lib/messages';
import { ringFor } from '../lib/ring';

/** What the page shows: the leader's status, or where the leader is. */
export type PageSnapshot =
  | { readonly role: 'leader'; readonly status: ClusterStatus }
  | { readonly role: 'follower'; readonly leader: string | null }
  | { readonly role: 'unavailable'; readonly error: string };

/**
 * The page's files, next to this module's source: viewleader/page/ from the compiled
 * dist/viewleader/, or beside this file when it runs from source (ts-jest).
 */
const PAGE_DIR =
  [path.resolve(__dirname, 'page'), path.resolve(__dirname, '..', '..', 'viewleader', 'page')].find(
    (dir) => existsSync(path.join(dir, 'index.html')),
  ) ?? path.resolve(__dirname, 'page');
const FILES = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
} as const;
/** Digits of a fraction of the circle in the ring's arcs: 1e-5 of a turn is 0.0036 degrees. */
const ARC_DIGITS = 5;

export function pageRoutes(
  rpc: RpcServer,
  status: () => Promise<ClusterStatus>,
  logger: Logger,
): void {
  const snapshot = async (): Promise<PageSnapshot> => {
    try {
      return { role: 'leader', status: await status() };
    } catch (err) {
      if (err instanceof NotLeaderError) return { role: 'follower', leader: err.leader };
      if (err instanceof DhtError) return { role: 'unavailable', error: err.message };
      throw err;
    }
  };
  const { app } = rpc;
  for (const [route, { file, type }] of Object.entries(FILES)) {
    // Read once: the page is a few kilobytes, and a missing file must stop the start, not a visit.
    const body = readFileSync(path.join(PAGE_DIR, file));
    app.get(route, (_req: Request, res: Response) => {
      res.set('Cache-Control', 'no-cache').type(type).send(body);
    });
  }
  app.get('/ui/cluster.json', async (_req: Request, res: Response) => {
    res.set('Cache-Control', 'no-store').json(await snapshot());
  });
  const arcs = new RingArcs();
  app.get('/ui/ring.json', async (_req: Request, res: Response) => {
    const current = await snapshot();
    const servers = current.role === 'leader' ? current.status.servers : [];
    const epoch = current.role === 'leader' ? current.status.epoch : null;
    res.set('Cache-Control', 'no-store').json({ epoch, servers: arcs.of(servers) });
  });
  const streams = new PageStreams(snapshot, logger);
  app.get('/ui/events', (_req: Request, res: Response) => streams.open(res));
}

/** The primary arcs of each server, for the view last asked about. */
class RingArcs {
  private last: { key: string; arcs: { id: string; arcs: number[] }[] } | undefined;

  of(servers: readonly ServerRef[]): { id: string; arcs: number[] }[] {
    const key = servers.map((s) => s.id).join(',');
    if (this.last?.key === key) return this.last.arcs;
    const scale = 10 ** ARC_DIGITS;
    const round = (f: number): number => Math.round(f * scale) / scale;
    const refs = servers.map(({ id, address }) => ({ id, address }));
    const byId = servers.length === 0 ? new Map() : ringFor(refs).primaryArcs();
    const arcs = servers.map((s) => ({
      id: s.id,
      // Flat [start, end, start, end, ...]: half the JSON of pairs.
      arcs: (byId.get(s.id) ?? []).flatMap(([a, b]: readonly [number, number]) => [
        round(a),
        round(b),
      ]),
    }));
    this.last = { key, arcs };
    return arcs;
  }
}

/**
 * The server-sent event streams of open pages: one snapshot every PAGE_REFRESH_MS for all of them
 * (computed once, sent when it changed), at most PAGE_STREAMS_MAX at once. The timer runs only
 * while a page is open.
 */
class PageStreams {
  private readonly open_ = new Set<Response>();
  private timer: NodeJS.Timeout | undefined;
  private lastSent = '';
  private lastSentMs = 0;
  private sending = false;

  constructor(
    private readonly snapshot: () => Promise<PageSnapshot>,
    private readonly logger: Logger,
  ) {}

  open(res: Response): void {
    if (this.open_.size >= PAGE_STREAMS_MAX) {
      res.status(503).json({
        kind: 'retry',
        error: `${PAGE_STREAMS_MAX} pages are open already; use /ui/cluster.json`,
        reason: 'busy',
      });
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
    });
    // The browser reconnects by itself after this long when the stream breaks.
    res.write(`retry: ${PAGE_REFRESH_MS}\n\n`);
    this.open_.add(res);
    res.on('close', () => {
      this.open_.delete(res);
      if (this.open_.size === 0) this.stop();
    });
    this.lastSent = ''; // the newcomer gets the next snapshot at once, changed or not
    void this.send();
    this.timer ??= setInterval(() => void this.send(), PAGE_REFRESH_MS);
  }

  private stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async send(): Promise<void> {
    if (this.sending) return; // a slow snapshot (an election): the next tick tries again
    this.sending = true;
    try {
      const data = JSON.stringify(await this.snapshot());
      const nowMs = Date.now();
      let chunk: string | undefined;
      if (data !== this.lastSent) chunk = `data: ${data}\n\n`;
      else if (nowMs - this.lastSentMs >= PAGE_KEEPALIVE_MS) chunk = ': keep-alive\n\n';
      if (chunk === undefined) return;
      this.lastSent = data;
      this.lastSentMs = nowMs;
      for (const res of this.open_) res.write(chunk);
    } catch (err) {
      // Not a DhtError (snapshot maps those): a bug, logged; the next tick tries again.
      this.logger.error({ err }, 'page snapshot failed');
    } finally {
      this.sending = false;
    }
  }
}
