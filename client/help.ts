// The client's help texts: the list of commands (`dht-client --help`, `dht-client help`) and one
// command's usage with examples (`dht-client help setr`, `dht-client setr --help`). Pure strings.

import { suggest } from '../lib/suggest';
import type { ClientFlag, Command } from './commands';

export const PROGRAM = 'dht-client';

/** Words the client takes in a command's place besides its commands. */
export const META_COMMANDS = [
  { name: 'help', args: '[COMMAND]', describe: "a command's usage and examples" },
  { name: 'completion', args: '', describe: 'print a bash/zsh completion script (docs/cli.md)' },
] as const;

const EXIT_CODES = [
  'Exit codes: 0 done, 1 not done (not found, aborted, rejected), 2 usage, 3 outcome unknown,',
  '4 unavailable, 75 refused for now (rebalancing or view changing): retry later.',
];

const NAME_COLUMN = 30;

/** The usage line of `dht-client --help`. */
export const USAGE_LINE = `${PROGRAM} [options] COMMAND ARGS...`;

/**
 * `dht-client --help`: yargs' text (the usage line, the options, the epilogue) with every command,
 * one line each, and the exit codes after the usage line. Written here rather than as yargs'
 * usage, whose wrapping drops the indentation.
 */
export function generalHelp(yargsHelp: string, commands: readonly Command[]): string {
  const [usageLine, ...rest] = yargsHelp.split('\n');
  return [usageLine, '', commandList(commands), ...rest].join('\n');
}

/** Every command, one line each, and the exit codes. */
export function commandList(commands: readonly Command[]): string {
  const row = (name: string, args: string, describe: string) =>
    `  ${`${name} ${args}`.trimEnd().padEnd(NAME_COLUMN)} ${describe}`;
  return [
    'Commands:',
    ...commands.map((c) => row(c.name, c.args, c.describe)),
    ...META_COMMANDS.map((c) => row(c.name, c.args, c.describe)),
    '',
    `'${PROGRAM} help COMMAND' shows a command's usage and examples.`,
    'A VALUE left out of set/setr is read from stdin, exactly. `--` ends the options.',
    ...EXIT_CODES,
  ].join('\n');
}

/**
 * One command's help: its usage line, what it does, its examples (comments aligned), and the
 * flags that matter to it with their descriptions (`describeFlag`).
 */
export function commandHelp(command: Command, describeFlag: (flag: ClientFlag) => string): string {
  const usage = `${PROGRAM} [options] ${command.name} ${command.args}`.trimEnd();
  const examples = command.examples.map((line) => {
    const comment = /\s{2,}#\s*(.*)$/.exec(line);
    return comment === null
      ? { text: line, comment: undefined }
      : { text: line.slice(0, comment.index), comment: comment[1] };
  });
  const width = Math.max(...examples.map((e) => e.text.length));
  const flagWidth = Math.max(...command.flags.map((f) => f.length)) + 2;
  return [
    `Usage: ${usage}`,
    '',
    `${command.describe[0].toUpperCase()}${command.describe.slice(1)}.`,
    '',
    'Examples:',
    ...examples.map((e) =>
      e.comment === undefined ? `  ${e.text}` : `  ${e.text.padEnd(width)}  # ${e.comment}`,
    ),
    '',
    'Options:',
    ...command.flags.map((flag) => `  ${`--${flag}`.padEnd(flagWidth)}  ${describeFlag(flag)}`),
    '',
    ...EXIT_CODES,
    `'${PROGRAM} --help' lists every command and option.`,
  ].join('\n');
}

/** The usage error for a word that is no command, with the nearest command if there is one. */
export function unknownCommandMessage(word: string, commands: readonly Command[]): string {
  const names = [...commands.map((c) => c.name), ...META_COMMANDS.map((c) => c.name)];
  const near = suggest(word, names);
  const hint = near === undefined ? '' : `; did you mean '${near}'?`;
  return `unknown command '${word}'${hint} (see '${PROGRAM} help')`;
}
