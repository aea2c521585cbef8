// The operator's view of one process: its Prometheus metrics (`GET /metrics`) and its health
// (`GET /health`). One registry per process, created by the process's shell (server/main.ts,
// viewleader/main.ts) and handed to what counts; nothing here is a global, and the pure cores
// never import it: what they decide comes back to the shell as values, and the shell counts them.
// docs/operations.md lists every metric, what it means and what to alert on.
//
// The hot path is one histogram observation per request (the RPC shell, lib/http-server.ts; the
// /kv API, server/kv-routes.ts), with two labels of bounded cardinality: the endpoint (a route
// path the process registered, or `other`) and the outcome (`ok` or an error kind). Request
// counts are that histogram's `_count`. Everything else (keys held, the epoch, Raft's term) is
// read when Prometheus scrapes, by the gauges' `collect`.

import type { Express, Request, Response } from 'express';
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type LabelValues,
} from 'prom-client';
import type { Health } from './messages';
import { EVENT_LOOP_MONITORING_MS, REQUEST_SECONDS_BUCKETS } from './limits';

export type ProcessKind = 'server' | 'viewleader';

/** The outcome label: `ok`, or the error kind (lib/errors.ts) of a refused request. */
export type Outcome = string;

/** The endpoint label of a request to a path the process does not serve (bounded cardinality). */
export const OTHER_ENDPOINT = 'other';

export const METRICS_PATH = '/metrics';
export const HEALTH_PATH = '/health';

type RequestLabel = 'endpoint' | 'outcome';

export class ProcessMetrics {
  readonly registry = new Registry();
  private readonly requestSeconds: Histogram<RequestLabel>;
  /** One histogram child per (endpoint, outcome): `labels()` hashes its arguments on each call. */
  private readonly children = new Map<string, Histogram.Internal<RequestLabel>>();
  private readonly unauthenticated: Counter<'endpoint'>;
  /** Endpoints that get a label of their own; anything else is `other`. */
  private readonly endpoints = new Set<string>();

  constructor(readonly kind: ProcessKind) {
    collectDefaultMetrics({
      register: this.registry,
      eventLoopMonitoringPrecision: EVENT_LOOP_MONITORING_MS,
    });
    this.requestSeconds = new Histogram({
      name: 'dht_requests_seconds',
      help: 'Time to answer a request (from its parsed body to its answer), by endpoint and outcome (ok or the error kind); each entry of a /batch counts as a request to its own endpoint',
      labelNames: ['endpoint', 'outcome'],
      buckets: [...REQUEST_SECONDS_BUCKETS],
      registers: [this.registry],
    });
    this.unauthenticated = new Counter({
      name: 'dht_requests_unauthenticated_total',
      help: 'Requests refused with 401 because they did not prove they know the shared secret',
      labelNames: ['endpoint'],
      registers: [this.registry],
    });
    this.gauge('dht_process_info', 'Always 1; the label says which kind of dht process this is', [
      'kind',
    ]).set({ kind }, 1);
  }

  /** A path this process serves: its requests are labelled with it (others are `other`). */
  knowEndpoint(endpoint: string): void {
    this.endpoints.add(endpoint);
  }

  /** The endpoint label for a request to `path`. */
  endpointLabel(path: string): string {
    return this.endpoints.has(path) ? path : OTHER_ENDPOINT;
  }

  /** One answered request. `endpoint` must be a known endpoint or OTHER_ENDPOINT. */
  observeRequest(endpoint: string, outcome: Outcome, seconds: number): void {
    const id = `${endpoint} ${outcome}`;
    let child = this.children.get(id);
    if (child === undefined) {
      child = this.requestSeconds.labels(endpoint, outcome);
      this.children.set(id, child);
    }
    child.observe(seconds);
  }

  /** A request refused as unauthenticated (401), to `path`. */
  countUnauthenticated(path: string): void {
    this.unauthenticated.inc({ endpoint: this.endpointLabel(path) });
  }

  /**
   * A counter. A metric registered again under the same name replaces the earlier one:
   * server/startup.ts builds a StorageServer for each port it tries, and the one that listens is
   * the one that counts (nothing was counted by the others).
   */
  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    this.registry.removeSingleMetric(name);
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  /** A gauge; with `collect`, its value is read at every scrape. */
  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    collect?: (set: (value: number, labels?: LabelValues<L>) => void) => void,
  ): Gauge<L> {
    this.registry.removeSingleMetric(name);
    const gauge: Gauge<L> = new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      ...(collect === undefined
        ? {}
        : {
            collect() {
              collect((value, labels) => {
                if (labels === undefined) gauge.set(value);
                else gauge.set(labels, value);
              });
            },
          }),
    });
    return gauge;
  }

  /** The Prometheus text exposition of every metric of this process. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * For the authentication check: count a request it refused (401). The check runs in the RPC
 * shell's middleware, which has the process's metrics (`RpcServer.metrics`).
 */
export function countUnauthenticated(metrics: ProcessMetrics | undefined, path: string): void {
  metrics?.countUnauthenticated(path);
}

/**
 * `GET /metrics` and `GET /health` on `app`. Both are open (no authentication): they show no key
 * and no value. The health body is built by the process (`health`); its `status` decides 200 or
 * 503.
 */
export function operatorRoutes(
  app: Express,
  metrics: ProcessMetrics,
  health: () => Health | Promise<Health>,
): void {
  app.get(METRICS_PATH, (_req: Request, res: Response) => {
    metrics
      .exposition()
      .then((text) => res.status(200).set('Content-Type', metrics.contentType).send(text))
      .catch((err: unknown) => {
        res.status(500).json({ kind: 'unknown', error: `metrics failed: ${String(err)}` });
      });
  });
  app.get(HEALTH_PATH, (_req: Request, res: Response) => {
    Promise.resolve()
      .then(health)
      .then((body) => {
        res
          .status(body.status === 'ok' ? 200 : 503)
          .set('Cache-Control', 'no-store')
          .json(body);
      })
      .catch((err: unknown) => {
        res.status(503).json({ kind: 'unavailable', error: `health failed: ${String(err)}` });
      });
  });
}

/** Seconds since `startMs` (a performance.now() reading). */
export function secondsSince(startMs: number): number {
  return (performance.now() - startMs) / 1000;
}
