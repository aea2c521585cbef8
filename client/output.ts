// How a command's result reaches the user: plain text or one JSON object on stdout, errors as
// `ERROR: message` on stderr, and the exit code from the one catalogue in lib/errors.ts.

import { DhtError, ERROR_KINDS } from '../lib/errors';

export interface CommandOutput {
  /** Fields added to `{"status":"ok"}` with --json. */
  readonly json: Record<string, unknown>;
  /** Plain-mode stdout, written exactly (no newline added), or nothing. */
  readonly text?: string;
}

export function writeSuccess(output: CommandOutput, json: boolean): number {
  if (json) process.stdout.write(`${JSON.stringify({ status: 'ok', ...output.json })}\n`);
  else if (output.text !== undefined) process.stdout.write(output.text);
  return 0;
}

export function writeFailure(err: unknown, json: boolean): number {
  const error =
    err instanceof DhtError
      ? err
      : new DhtError('unknown', err instanceof Error ? err.message : String(err));
  const info = ERROR_KINDS[error.kind];
  if (json) {
    const body =
      error.kind === 'not_found'
        ? { status: info.jsonStatus }
        : { status: info.jsonStatus, error: error.message };
    process.stdout.write(`${JSON.stringify(body)}\n`);
  } else {
    process.stderr.write(`ERROR: ${error.kind === 'not_found' ? 'not_found' : error.message}\n`);
  }
  return info.exitCode;
}

/** A value printed alone: exactly its bytes, plus a newline only for a human at a terminal. */
export function valueText(value: string): string {
  return process.stdout.isTTY ? `${value}\n` : value;
}

export function linesText(lines: readonly string[]): string {
  return lines.map((l) => `${l}\n`).join('');
}
