// The values of --log-level and --log-format, apart from lib/logger.ts so that parsing options
// (lib/cli-options.ts, shared with the CLI, which never logs) does not load pino.

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
