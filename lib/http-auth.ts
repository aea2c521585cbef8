// The process side of authentication (the scheme is lib/auth.ts): reading the secret's file,
// the rule that a process reachable from other machines needs one, the Host names a process
// answers to, and the one secret a process signs its outgoing requests with.
//
// A process has one secret, as it has one keep-alive agent (lib/http-client.ts): the executables
// set it once after parsing their flags (`useSecret`), and every RPC, heartbeat, Raft message,
// transfer and /kv coordination of the process signs with it. An RpcServer created afterwards
// checks requests against it.

import fs from 'node:fs';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { formatAddress, isLoopbackHost, isWildcardHost, parseHostPort } from './address';
import { RequestSigner, Secret, sha256Hex, EMPTY_BODY_DIGEST } from './auth';
import { DhtError } from './errors';
import { AUTH_SECRET_FILE_BYTES_MAX } from './limits';
import type { Logger } from './logger';

let processSecret: Secret | undefined;
let signer: RequestSigner | undefined;
/** `--public-address`: Host names this process also answers to. */
let publicAddresses: readonly string[] = [];

/** Sign every request this process sends from now on with `secret` (undefined: none). */
export function useSecret(secret: Secret | undefined): void {
  processSecret = secret;
  signer = secret === undefined ? undefined : new RequestSigner(secret, newSenderId());
}

export function currentSecret(): Secret | undefined {
  return processSecret;
}

/** A random ID per signer: request numbers restart at 1 in every process. */
function newSenderId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * The headers of an outgoing request to `address` (HOST:PORT, also its Host header): none
 * without a secret.
 */
export function authHeaders(
  method: string,
  address: string,
  target: string,
  body: string | Buffer | undefined,
): Record<string, string> {
  if (signer === undefined) return {};
  const bodyDigest = body === undefined || body.length === 0 ? EMPTY_BODY_DIGEST : sha256Hex(body);
  return {
    host: address,
    ...signer.headers({ method, host: address, target, bodyDigest }, Date.now()),
  };
}

/**
 * `--secret-file` (or DHT_SECRET_FILE): the secret, or a usage error that names the file and
 * what is wrong with it, never its content.
 */
export function readSecretFile(file: string): { secret: Secret; warning?: string } {
  let content: Buffer;
  let mode: number;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new DhtError('usage', `secret file ${file} is not a regular file`);
    if (stat.size > AUTH_SECRET_FILE_BYTES_MAX) {
      throw new DhtError('usage', `secret file ${file} is too large to be a secret file`);
    }
    mode = stat.mode;
    content = fs.readFileSync(file);
  } catch (err) {
    if (err instanceof DhtError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new DhtError('usage', `cannot read secret file ${file} (${code})`);
  }
  const secret = Secret.fromFileContent(content);
  if (typeof secret === 'string') throw new DhtError('usage', `secret file ${file}: ${secret}`);
  const warning =
    (mode & 0o077) !== 0
      ? `secret file ${file} can be read by other users (chmod 600 ${file})`
      : undefined;
  return { secret, warning };
}

/**
 * The contract: a view leader or server bound to an address outside 127.0.0.0/8 and ::1 refuses
 * to start without a secret unless `--insecure` is given.
 */
export function checkExposure(host: string, secret: Secret | undefined, insecure: boolean): void {
  if (secret !== undefined || insecure || isLoopbackHost(host)) return;
  throw new DhtError(
    'usage',
    `--host ${host} is reachable from other machines: give --secret-file FILE ` +
      '(or DHT_SECRET_FILE), or --insecure to run without authentication',
  );
}

/**
 * The Host headers a process listening on `host`:`port` answers to: its address, `localhost` if
 * it listens on loopback, and every interface address and the machine's name if it listens on
 * all of them. A request signed for any other host was meant for another process.
 */
export function hostNamesOf(host: string, port: number): Set<string> {
  const names = new Set<string>([formatAddress(host, port), ...publicAddresses]);
  if (isLoopbackHost(host)) names.add(formatAddress('localhost', port));
  if (isWildcardHost(host)) {
    names.add(formatAddress('localhost', port));
    names.add(formatAddress(os.hostname(), port));
    for (const list of Object.values(os.networkInterfaces())) {
      for (const nic of list ?? []) names.add(formatAddress(nic.address.split('%')[0], port));
    }
  }
  return new Set([...names].map((name) => name.toLowerCase()));
}

/**
 * An executable's start: read `--secret-file`, refuse an exposed address without it (servers and
 * view leaders; `host` undefined for the client), and sign with it from now on.
 */
export function setUpAuthentication(
  flags: {
    readonly secretFile: string | undefined;
    readonly host?: string;
    readonly insecure?: boolean;
    readonly publicAddress?: readonly string[];
  },
  logger?: Logger,
): Secret | undefined {
  let secret: Secret | undefined;
  if (flags.secretFile !== undefined) {
    const read = readSecretFile(flags.secretFile);
    secret = read.secret;
    if (read.warning !== undefined) logger?.warn(read.warning);
  }
  if (flags.host !== undefined) checkExposure(flags.host, secret, flags.insecure === true);
  publicAddresses = (flags.publicAddress ?? []).map((address) => {
    const { host, port } = parseHostPort(address);
    if (port === undefined) throw new DhtError('usage', `--public-address ${address} needs a port`);
    return formatAddress(host, port).toLowerCase();
  });
  useSecret(secret);
  return secret;
}
