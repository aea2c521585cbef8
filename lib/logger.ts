// Structured logs (pino) to stderr: stdout belongs to the `listening on` line alone. JSON lines by
// default (the demo and scripts read them); `--log-format pretty` for a person at a terminal, one
// readable line per record (pino-pretty, synchronous like the JSON destination, so nothing is
// lost on exit; loaded only when asked for, so the JSON default costs nothing more at start).

import pino from 'pino';

export type Logger = pino.Logger;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

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
