// Structured logs (pino) to stderr: stdout belongs to the `listening on` line alone. JSON lines by
// default (the demo and scripts read them); `--log-format pretty` for a person at a terminal, one
// readable line per record (pino-pretty, synchronous like the JSON destination, so nothing is
// lost on exit; loaded only when asked for, so the JSON default costs nothing more at start).

import pino from 'pino';
import type { LogFormat, LogLevel } from './log-options';

export type { LogFormat, LogLevel } from './log-options';
export type Logger = pino.Logger;

export function createLogger(name: string, level: LogLevel = 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}

/** The logger of a long-running process, in the format its `--log-format` asks for. */
export async function createProcessLogger(
  name: string,
  level: LogLevel,
  format: LogFormat,
): Promise<Logger> {
  if (format === 'json') return createLogger(name, level);
  const { default: pretty } = await import('pino-pretty');
  const destination = pretty({
    destination: 2,
    sync: true,
    colorize: process.stderr.isTTY,
    translateTime: 'SYS:HH:MM:ss.l',
  });
  return pino({ name, level, base: { pid: process.pid } }, destination);
}
