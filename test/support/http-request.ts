// One HTTP request from a test, exactly as given, on a connection of its own: nothing is kept
// alive towards a process the test kills later, and a request to a starved process fails after
// its timeout instead of hanging the test. For what the SDK's transport would not send (a GET
// with a body, a raw scrape of /metrics) or what a test must see unparsed (status, content type).

import http from 'node:http';

export interface HttpReply {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

export interface HttpRequestOptions {
  readonly method?: string;
  readonly body?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5_000;

/** `method` (GET unless given) `http://address/target`, with `body` if given. */
export function httpRequest(
  address: string,
  target: string,
  options: HttpRequestOptions = {},
): Promise<HttpReply> {
  const method = options.method ?? 'GET';
  return new Promise((resolve, reject) => {
    const request = http.request(
      `http://${address}${target}`,
      {
        method,
        headers: options.headers,
        agent: false,
        timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        response.on('error', reject);
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers['content-type'] ?? '',
            body,
          }),
        );
      },
    );
    request.on('timeout', () => request.destroy(new Error(`${method} ${target} timed out`)));
    request.on('error', reject);
    request.end(options.body);
  });
}

/** An answer read as JSON where it parses (left as text where it does not). */
export interface JsonReply {
  readonly status: number;
  readonly contentType: string;
  readonly body: unknown;
}

export interface JsonRequestOptions {
  /** POST unless given. */
  readonly method?: string;
  /** Sent as JSON; a string is sent exactly as given, well-formed or not. None: no body. */
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A request with a JSON body (if any); the answer's body parsed as JSON where it parses. */
export async function requestJson(
  address: string,
  target: string,
  options: JsonRequestOptions = {},
): Promise<JsonReply> {
  const { method = 'POST', body, headers = {} } = options;
  const text =
    body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const reply = await httpRequest(address, target, {
    method,
    body: text,
    headers: text === undefined ? headers : { 'content-type': 'application/json', ...headers },
  });
  let parsed: unknown = reply.body;
  try {
    parsed = JSON.parse(reply.body);
  } catch {
    // left as text: the test's assertions say what was expected
  }
  return { status: reply.status, contentType: reply.contentType, body: parsed };
}
