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
