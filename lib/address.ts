// HOST:PORT addresses and the contract's port-scanning rules.

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

/** Parse `HOST[:PORT]`; IPv6 hosts are written `[::1]:PORT`. A missing port is undefined. */
export function parseHostPort(text: string): { host: string; port?: number } {
  const trimmed = text.trim();
  if (trimmed === '') throw new DhtError('usage', 'empty address');
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(trimmed);
  if (bracketed) {
    const [, host, port] = bracketed;
    return port === undefined ? { host } : { host, port: parsePort(port, trimmed) };
  }
  const parts = trimmed.split(':');
  if (parts.length === 1) return { host: trimmed };
  if (parts.length === 2 && parts[0] !== '') {
    return { host: parts[0], port: parsePort(parts[1], trimmed) };
  }
  if (parts.length > 2) return { host: trimmed }; // a bare IPv6 address
  throw new DhtError('usage', `bad address '${trimmed}': expected HOST:PORT`);
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
