// HOST:PORT addresses and the contract's port-scanning rules.

import { isIPv6 } from 'node:net';
import { DhtError } from './errors';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

function parsePort(text: string, original: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new DhtError('usage', `bad port in address '${original}'`);
  }
  return port;
}

/** A host name (RFC 1123 labels) or an IPv4 address; IPv6 goes in brackets. */
const HOST_NAME =
  /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;

/**
 * Parse `HOST[:PORT]`; IPv6 hosts are written in brackets, `[::1]` or `[::1]:PORT`. A missing port
 * is undefined. An unbracketed IPv6 address is refused: `::1:39000` could be an address and a port
 * or an address alone, and `nope:1:2:3` is a typo, not a host.
 */
export function parseHostPort(text: string): { host: string; port?: number } {
  const trimmed = text.trim();
  if (trimmed === '') throw new DhtError('usage', 'empty address');
  if (trimmed.includes('://')) {
    throw new DhtError('usage', `bad address '${trimmed}': expected HOST:PORT, not a URL`);
  }
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(trimmed);
  if (bracketed) {
    const [, host, port] = bracketed;
    if (!isIPv6(host)) {
      throw new DhtError(
        'usage',
        `bad address '${trimmed}': only an IPv6 address goes in brackets`,
      );
    }
    return port === undefined ? { host } : { host, port: parsePort(port, trimmed) };
  }
  const parts = trimmed.split(':');
  if (parts.length > 2) {
    throw new DhtError(
      'usage',
      `bad address '${trimmed}': expected HOST:PORT (an IPv6 host goes in brackets: [::1]:39000)`,
    );
  }
  const [host, port] = parts;
  if (!HOST_NAME.test(host)) {
    throw new DhtError('usage', `bad address '${trimmed}': '${host}' is not a host name`);
  }
  return port === undefined ? { host } : { host, port: parsePort(port, trimmed) };
}

/**
 * The addresses to try, in order, for a comma-separated `HOST[:PORT][,...]` list: an entry with a
 * port is tried as is; a HOST alone means every port of [portFirst, portLast] in order.
 */
export function candidateAddresses(list: string, portFirst: number, portLast: number): string[] {
  const out: string[] = [];
  for (const item of list.split(',')) {
    if (item.trim() === '') continue;
    const { host, port } = parseHostPort(item);
    if (port !== undefined) out.push(formatAddress(host, port));
    else for (let p = portFirst; p <= portLast; p++) out.push(formatAddress(host, p));
  }
  if (out.length === 0) throw new DhtError('usage', `no address in '${list}'`);
  return out;
}

/** 127.0.0.0/8, ::1 (and `localhost`, which names them): reachable from this machine only. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (bare === 'localhost' || bare === '::1' || bare === '0:0:0:0:0:0:0:1') return true;
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(bare);
  return v4 !== null && v4.slice(1).every((n) => Number(n) <= 255) && v4[1] === '127';
}

/** An address that means "every interface of this machine". */
export function isWildcardHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  return bare === '0.0.0.0' || bare === '::' || bare === '0:0:0:0:0:0:0:0';
}
