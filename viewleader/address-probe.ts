// The shell's half of an address takeover (viewleader/membership.ts, `takeOver`): ask the process
// listening on a contested address who it is. A server answers `ServerApi.status` with its ID.
//
// A fresh connection every time (no keep-alive agent): a pooled socket to the old holder's dead
// process would fail as "broken" and hide the new process behind it. Bounded in time and size, so
// whatever listens there can stall neither the heartbeat waiting for it nor the view leader.

import http from 'node:http';
import { ADDRESS_PROBE_RESPONSE_BYTES_MAX, ADDRESS_PROBE_TIMEOUT_MS } from '../lib/limits';
import { ServerApi } from '../lib/messages';
import { authHeaders } from '../lib/http-auth';
import type { AddressProbe } from './membership';

export function probeAddress(
  address: string,
  timeoutMs = ADDRESS_PROBE_TIMEOUT_MS,
): Promise<AddressProbe> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (probe: AddressProbe): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      resolve(probe);
    };
    const request = http.request(`http://${address}${ServerApi.status.path}`, {
      method: 'POST',
      agent: false,
      headers: {
        'content-type': 'application/json',
        'content-length': 2,
        ...authHeaders('POST', address, ServerApi.status.path, '{}'),
      },
    });
    const timer = setTimeout(() => settle({ kind: 'no_answer' }), timeoutMs);
    request.on('error', (err: NodeJS.ErrnoException) => {
      // Refused: nothing listens on the address. Anything else (reset, unreachable host) says
      // nothing about who holds it.
      settle(err.code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'no_answer' });
    });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      response.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > ADDRESS_PROBE_RESPONSE_BYTES_MAX) settle({ kind: 'no_answer' });
        else chunks.push(chunk);
      });
      response.on('error', () => settle({ kind: 'no_answer' }));
      response.on('end', () => {
        settle(interpret(response.statusCode, Buffer.concat(chunks).toString('utf8')));
      });
    });
    request.end('{}');
  });
}

/** Only a well-formed status answer names who listens; anything else proves nothing. */
function interpret(status: number | undefined, text: string): AddressProbe {
  if (status !== 200) return { kind: 'no_answer' };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { kind: 'no_answer' };
  }
  const parsed = ServerApi.status.response.safeParse(body);
  return parsed.success
    ? { kind: 'answered', serverId: parsed.data.serverId }
    : { kind: 'no_answer' };
}
