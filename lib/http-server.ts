// The RPC shell's server side: the RPC endpoints and the routes that serve data (the HTTP API) on
// node:http, the operator's pages on express, JSON bodies validated once at the edge, errors
// answered as `{kind, error, reason?}` with the catalogue's status, and the contract's process life
// cycle (port scan, one `listening on` line on stdout, clean exit on SIGINT/SIGTERM).

import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type * as z from 'zod/mini';
import { DhtError, toErrorBody, type DhtProcess } from './errors';
import { formatAddress } from './address';
import {
  AUTH_FAILURE_MESSAGES,
  AUTH_SCHEME,
  CONTENT_DIGEST_HEADER,
  EMPTY_BODY_DIGEST,
  RequestVerifier,
  isOpenRequest,
  type AuthFailure,
  type Secret,
} from './auth';
import { currentSecret, hostNamesOf } from './http-auth';
import { hasBody, readJsonBody } from './request-body';
import { TransportApi, type Endpoint } from './messages';
import type { Logger } from './logger';
import { OTHER_ENDPOINT, secondsSince, type ProcessMetrics } from './metrics';
import {
  BATCH_RESPONSE_CHARS_MAX,
  REQUEST_BODY_BYTES_MAX,
  TRANSFER_BODY_BYTES_MAX,
} from './limits';

export type Handler<Req extends z.ZodMiniType, Res extends z.ZodMiniType> = (
  request: z.infer<Req>,
) => z.infer<Res> | Promise<z.infer<Res>>;

export interface RouteOptions {
  readonly bodyBytesMax?: number;
}

export interface RpcServerOptions {
  /**
   * Requests must be signed with it (lib/auth.ts); default: the process's (`useSecret`); null:
   * none.
   */
  readonly secret?: Secret | null;
  /**
   * What this process is, told in the answer for an unknown endpoint (a client sent to the wrong
   * kind of process says so); tests and benchmarks may leave it out.
   */
  readonly process?: DhtProcess;
}

/** A route's answer: what it sends alone, or as one entry of a /batch response. */
interface Answer {
  readonly status: number;
  /** Sent as JSON; a RawJson is sent as it is (a /batch answer, serialised entry by entry). */
  readonly body: unknown;
  /** The metrics' outcome label: `ok` or the error kind. */
  readonly outcome: string;
}

class RawJson {
  constructor(readonly text: string) {}
}

/** An RPC route: `POST` to its exact path, its body read and answered in `serveRpc`. */
interface RpcRoute {
  readonly invoke: (body: unknown) => Promise<Answer>;
  readonly readOnly: boolean;
  readonly bodyBytesMax: number;
}

/**
 * A route served from node:http for every method under a path (the HTTP API's `/kv/KEY`,
 * server/kv-routes.ts): the shell checks the request's signature (with a secret) and `serve` does
 * the rest, reading the body with lib/request-body.ts's `readRawBody`.
 */
export interface RawRoute {
  /** Whether a request target (`req.url`, as sent) is this route's. */
  matches(target: string): boolean;
  /** The metrics' endpoint label of a request with this method (its refusals are counted there). */
  endpoint(method: string): string;
  serve(exchange: RawExchange): Promise<void>;
}

/** One request to a RawRoute. */
export interface RawExchange {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  /** With a secret, the digest the body must have (`readRawBody` checks it); else undefined. */
  readonly signedDigest: string | undefined;
  /** Answer 401 for `failure` (a body not the one signed), counted as the shell counts its own. */
  refuse(failure: AuthFailure): void;
}

type SignatureVerdict =
  | { readonly ok: true; readonly bodyDigest: string }
  | { readonly ok: false; readonly failure: AuthFailure };

/**
 * The RPC endpoints are served straight from node:http (`onRequest`, `serveRpc`): a POST to an
 * endpoint's exact path is read, validated, answered and counted here, at about a fifth of what
 * express's router, body-parser and response helpers cost per request (docs/performance.md, "RPC
 * baseline"). So are the raw routes (`rawRoute`: the HTTP API). Everything else goes to express
 * (`app`): the operator's pages and metrics, and the 404 of an unknown path.
 */
export class RpcServer {
  readonly app = express();
  private readonly handlers = new Map<string, RpcRoute>();
  private readonly batchRoute: RpcRoute;
  private readonly rawRoutes: RawRoute[] = [];

  private readonly secret: Secret | undefined;
  private verifier: RequestVerifier | undefined;
  private readonly process: DhtProcess | undefined;

  /**
   * `metrics`: the process's metrics (lib/metrics.ts). Every request to a route, and every entry
   * of a /batch, is one observation of `dht_requests_seconds` by endpoint and outcome; every 401
   * one of `dht_requests_unauthenticated_total`.
   */
  constructor(
    private readonly logger: Logger,
    readonly metrics?: ProcessMetrics,
    options: RpcServerOptions = {},
  ) {
    this.secret = options.secret === undefined ? currentSecret() : (options.secret ?? undefined);
    this.process = options.process;
    this.app.disable('x-powered-by');
    this.app.set('etag', false);
    // First of all: with a secret, nothing but the open pages runs for an unsigned request.
    if (this.secret !== undefined) this.app.use(this.authenticate);
    this.batchRoute = this.makeBatchRoute();
  }

  /** Every request: an RPC endpoint's POST or a raw route's request here, the rest by express. */
  private readonly onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const target = req.url ?? '';
    if (req.method === 'POST') {
      const route =
        target === TransportApi.batch.path ? this.batchRoute : this.handlers.get(target);
      if (route !== undefined) {
        this.serveRpc(req, res, target, route).catch(this.failed(res, target));
        return;
      }
    }
    for (const route of this.rawRoutes) {
      if (route.matches(target)) {
        // Logged by its endpoint, never its target: a /kv target holds a key.
        this.serveRaw(req, res, route).catch(this.failed(res, route.endpoint(req.method ?? '')));
        return;
      }
    }
    this.app(req, res);
  };

  /** A route that threw (a bug, not an operating error): 500 if nothing was sent yet, and a log. */
  private failed(res: http.ServerResponse, endpoint: string): (err: unknown) => void {
    return (err) => {
      this.logger.error({ err, endpoint }, 'request failed');
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { kind: 'unknown', error: 'internal error' });
    };
  }

  /** Signature (with a secret), body, handler, answer: what express did for these routes. */
  private async serveRpc(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    path: string,
    route: RpcRoute,
  ): Promise<void> {
    let signedDigest: string | undefined;
    if (this.secret !== undefined) {
      const verdict = this.checkSignature(req, path);
      if (!verdict.ok) {
        this.countRefusal(path, verdict.failure);
        sendUnauthenticated(res, verdict.failure);
        return;
      }
      signedDigest = verdict.bodyDigest;
    }
    const read = await readJsonBody(req, route.bodyBytesMax, signedDigest);
    if (!read.ok) {
      if (!('failure' in read)) {
        this.metrics?.observeRequest(path, 'invalid', 0);
        sendJson(res, read.status, { kind: 'invalid', error: read.error, reason: 'bad_request' });
      } else if (read.failure === 'aborted') {
        res.destroy();
      } else {
        this.countRefusal(path, read.failure);
        sendUnauthenticated(res, read.failure);
      }
      return;
    }
    const answer = await route.invoke(read.body);
    sendJson(res, answer.status, answer.body);
  }

  /** A raw route's request: its signature (with a secret), then the route. */
  private async serveRaw(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    route: RawRoute,
  ): Promise<void> {
    const endpoint = route.endpoint(req.method ?? '');
    const refuse = (failure: AuthFailure): void => {
      this.countRefusal(endpoint, failure);
      sendUnauthenticated(res, failure);
    };
    let signedDigest: string | undefined;
    if (this.secret !== undefined) {
      const verdict = this.checkSignature(req, req.url ?? '');
      if (!verdict.ok) {
        refuse(verdict.failure);
        return;
      }
      signedDigest = verdict.bodyDigest;
    }
    await route.serve({ req, res, signedDigest, refuse });
  }

  /**
   * express's routes (the RPC endpoints and raw routes check their own in `serveRpc` and
   * `serveRaw`): the signature and freshness. None of express's routes reads a body (the
   * operator's pages and metrics, the 404 of an unknown path), so nothing is taken from one.
   */
  private readonly authenticate = (req: Request, res: Response, next: NextFunction): void => {
    if (isOpenRequest(req.method, req.path)) {
      next();
      return;
    }
    const verdict = this.checkSignature(req, req.originalUrl);
    if (!verdict.ok) {
      this.countRefusal(req.path, verdict.failure);
      sendUnauthenticated(res, verdict.failure);
      return;
    }
    next();
  };

  /** The request's signature and freshness, and an empty body where it signed one. */
  private checkSignature(req: http.IncomingMessage, url: string): SignatureVerdict {
    const verifier = this.verifier;
    const verdict =
      verifier === undefined
        ? ({ ok: false, failure: 'missing' } as const)
        : verifier.check(
            req.method ?? '',
            req.headers.host,
            url,
            req.headers.authorization,
            headerValue(req.headers[CONTENT_DIGEST_HEADER]),
            Date.now(),
          );
    if (!verdict.ok) return verdict;
    if (!hasBody(req) && verdict.bodyDigest !== EMPTY_BODY_DIGEST) {
      return { ok: false, failure: 'body_mismatch' };
    }
    return { ok: true, bodyDigest: verdict.bodyDigest };
  }

  private readonly countRefusal = (path: string, failure: AuthFailure): void => {
    this.metrics?.countUnauthenticated(path);
    this.logger.debug({ failure, path }, 'request refused: not authenticated');
  };

  /** Serve `route` from node:http; the first raw route that matches a request target serves it. */
  rawRoute(route: RawRoute): this {
    this.rawRoutes.push(route);
    return this;
  }

  route<Req extends z.ZodMiniType, Res extends z.ZodMiniType>(
    endpoint: Endpoint<Req, Res>,
    handler: Handler<Req, Res>,
    options: RouteOptions = {},
  ): this {
    const { metrics } = this;
    metrics?.knowEndpoint(endpoint.path);
    const answer = async (body: unknown): Promise<Answer> => {
      const parsed = endpoint.request.safeParse(body);
      if (!parsed.success) {
        return errorAnswer(new DhtError('invalid', describeIssues(parsed.error), 'bad_request'));
      }
      try {
        return { status: 200, body: await handler(parsed.data), outcome: 'ok' };
      } catch (err) {
        if (err instanceof DhtError) return errorAnswer(err);
        this.logger.error({ err, path: endpoint.path }, 'handler failed');
        return {
          status: 500,
          body: { kind: 'unknown', error: 'internal error' },
          outcome: 'unknown',
        };
      }
    };
    const invoke =
      metrics === undefined
        ? answer
        : async (body: unknown): Promise<Answer> => {
            const startMs = performance.now();
            const result = await answer(body);
            metrics.observeRequest(endpoint.path, result.outcome, secondsSince(startMs));
            return result;
          };
    this.handlers.set(endpoint.path, {
      invoke,
      readOnly: endpoint.readOnly,
      bodyBytesMax: options.bodyBytesMax ?? REQUEST_BODY_BYTES_MAX,
    });
    return this;
  }

  /**
   * Several requests in one round trip (the client coalesces concurrent requests under load):
   * each runs through its route's validation and handler exactly as if it had come alone. They
   * are independent requests, so they run as they would have on their own connections: all
   * started at once, in order, and awaited together, so that durable handlers share one disk sync
   * (running them in smaller groups cost a sync per group on every setr's critical path).
   *
   * The answer is bounded by BATCH_RESPONSE_CHARS_MAX: once it passes that, the answers of
   * read-only entries are dropped (`batch_full`: they changed nothing, the client sends them
   * again). Entries that changed state keep their answers, which are acknowledgments and votes
   * of a few hundred characters; only reads return values.
   */
  private makeBatchRoute(): RpcRoute {
    const { metrics } = this;
    metrics?.knowEndpoint(TransportApi.batch.path);
    const invoke = async (body: unknown): Promise<Answer> => {
      const startMs = performance.now();
      const parsed = TransportApi.batch.request.safeParse(body);
      if (!parsed.success) {
        const answer = errorAnswer(
          new DhtError('invalid', describeIssues(parsed.error), 'bad_request'),
        );
        metrics?.observeRequest(TransportApi.batch.path, answer.outcome, secondsSince(startMs));
        return answer;
      }
      const requests = parsed.data.requests;
      const answers = await Promise.all(
        requests.map(({ path, body: entry }) => {
          const route = this.handlers.get(path);
          if (route !== undefined) return route.invoke(entry);
          metrics?.observeRequest(OTHER_ENDPOINT, 'invalid', 0);
          return noEndpoint(path, this.process);
        }),
      );
      const parts: string[] = [];
      let chars = 0;
      answers.forEach((answer, i) => {
        const readOnly = this.handlers.get(requests[i].path)?.readOnly ?? true;
        const sent = chars > BATCH_RESPONSE_CHARS_MAX && readOnly ? BATCH_FULL : answer;
        // The wire entry is the status and the body; the outcome is the metrics' label only.
        const part = JSON.stringify({ status: sent.status, body: sent.body });
        chars += part.length;
        parts.push(part);
      });
      // The batch itself, besides each entry counted as its own endpoint by `invoke`.
      metrics?.observeRequest(TransportApi.batch.path, 'ok', secondsSince(startMs));
      return {
        status: 200,
        body: new RawJson(`{"responses":[${parts.join(',')}]}`),
        outcome: 'ok',
      };
    };
    return { invoke, readOnly: false, bodyBytesMax: TRANSFER_BODY_BYTES_MAX };
  }

  /** Unknown paths and unparsable bodies are the client's fault: 4xx with a message. */
  private finish(): void {
    this.app.use((req: Request, res: Response) => {
      this.metrics?.observeRequest(OTHER_ENDPOINT, 'invalid', 0);
      const answer = noEndpoint(`${req.method} ${req.path}`, this.process);
      res.status(answer.status).json(answer.body);
    });
    // express's routes read no body: what reaches here is a 4xx express itself raised (a path it
    // cannot decode) or a bug in a page or metrics handler (500, logged).
    this.app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
      const status = httpStatusOf(err);
      const endpoint = this.metrics?.endpointLabel(req.path) ?? OTHER_ENDPOINT;
      if (status < 500) {
        this.metrics?.observeRequest(endpoint, 'invalid', 0);
        const message = err instanceof Error ? err.message : 'bad request';
        const body = {
          kind: 'invalid',
          error: `malformed request: ${message}`,
          reason: 'bad_request',
        };
        sendJson(res, status, body);
        return;
      }
      this.logger.error({ err, path: req.path }, 'request failed');
      this.metrics?.observeRequest(endpoint, 'unknown', 0);
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { kind: 'unknown', error: 'internal error' });
    });
  }

  /** Listen on the first free port of `ports`; throws a clear error when none is free. */
  async listen(host: string, ports: readonly number[]): Promise<ListeningServer> {
    this.finish();
    for (const port of ports) {
      if (this.secret !== undefined && port !== 0) {
        this.verifier = new RequestVerifier(this.secret, hostNamesOf(host, port));
      }
      const server = await tryListen(this.onRequest, host, port);
      if (server !== undefined) {
        const actual = (server.address() as AddressInfo).port;
        if (this.secret !== undefined && port === 0) {
          this.verifier = new RequestVerifier(this.secret, hostNamesOf(host, actual));
        }
        server.keepAliveTimeout = 65_000;
        server.on('clientError', answerClientError);
        return { server, address: formatAddress(host, actual) };
      }
    }
    const range = ports.length === 1 ? `${ports[0]}` : `${ports[0]}..${ports[ports.length - 1]}`;
    throw new DhtError('unavailable', `no free port on ${host} in ${range}`);
  }
}

export interface ListeningServer {
  readonly server: http.Server;
  readonly address: string;
}

function tryListen(
  listener: http.RequestListener,
  host: string,
  port: number,
): Promise<http.Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = http.createServer(listener).listen(port, host);
    const onError = (err: NodeJS.ErrnoException): void => {
      server.close();
      if (err.code === 'EADDRINUSE' || err.code === 'EACCES') resolve(undefined);
      else reject(new DhtError('unavailable', `cannot listen on ${host}:${port}: ${err.message}`));
    };
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}

/**
 * A request Node's HTTP parser refuses never reaches express: a request target with raw non-ASCII
 * bytes (a /kv key sent unencoded), headers over 16 KiB (a very long encoded key), a broken
 * chunked body. Node would answer with an empty body; answer like every other refusal, with
 * the status Node would have chosen and a JSON error, then close (the stream cannot be trusted).
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? 431
      : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
        ? 413
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? 408
          : 400;
  const body = JSON.stringify({
    kind: 'invalid',
    error: `malformed HTTP request (${err.code ?? err.message})`,
    reason: 'bad_request',
  });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function noEndpoint(path: string, process: DhtProcess | undefined): Answer {
  const body = { kind: 'invalid', error: `no endpoint ${path}`, reason: 'bad_request' };
  return {
    status: 404,
    body: process === undefined ? body : { ...body, process },
    outcome: 'invalid',
  };
}

const BATCH_FULL: Answer = {
  status: 503,
  body: { kind: 'retry', error: 'batch answer full; send again', reason: 'batch_full' },
  outcome: 'retry',
};

/** 401, with the scheme to use; the message says what failed and nothing of the secret. */
function sendUnauthenticated(res: http.ServerResponse, failure: AuthFailure): void {
  const body = toErrorBody(
    new DhtError('unauthorized', AUTH_FAILURE_MESSAGES[failure], 'unauthenticated'),
  );
  sendJson(res, 401, body, { 'www-authenticate': AUTH_SCHEME });
}

/** A JSON answer, as express's `res.json` sent it. */
export function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: http.OutgoingHttpHeaders = {},
): void {
  const text = body instanceof RawJson ? body.text : (JSON.stringify(body) ?? '');
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value;
}

function errorAnswer(err: DhtError): Answer {
  return { status: err.info.httpStatus, body: toErrorBody(err), outcome: err.kind };
}

function httpStatusOf(err: unknown): number {
  if (typeof err === 'object' && err !== null && 'status' in err) {
    const status = (err as { status: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 600) return status;
  }
  return 500;
}

function describeIssues(error: z.core.$ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message))
    .join('; ');
}

/**
 * The contract's process life cycle: print the one stdout line, then end cleanly (exit 0) on
 * SIGINT or SIGTERM after `stop` has run.
 */
export function announceAndRunUntilSignal(
  listening: ListeningServer,
  logger: Logger,
  stop: () => void | Promise<void>,
): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    void (async () => {
      try {
        await stop();
      } finally {
        listening.server.closeAllConnections();
        listening.server.close();
        process.exit(0);
      }
    })();
  };
  // The handlers go in before the line goes out: whoever reads the line may signal at once, and
  // until `process.on` runs, SIGINT and SIGTERM still kill the process (seen under load: exit by
  // signal instead of 0, when the process was descheduled between the two).
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.write(`listening on ${listening.address}\n`);
}
