// A strict reader of the Prometheus text exposition format (version 0.0.4), for the tests of
// GET /metrics: `# HELP` and `# TYPE` lines, then samples `name{label="value",...} number`. Any
// other line is an error, so a malformed exposition fails the test rather than being skipped.
// https://prometheus.io/docs/instrumenting/exposition_formats/

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Exposition {
  /** Metric family name -> its TYPE (counter, gauge, histogram, summary, untyped). */
  readonly types: ReadonlyMap<string, string>;
  readonly help: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Exposition {
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  const samples: Sample[] = [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    const where = `line ${i + 1} (${JSON.stringify(line.slice(0, 80))})`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (match === null) return; // a comment
      const [, keyword, name, rest] = match;
      if (!NAME.test(name)) throw new Error(`bad metric name at ${where}`);
      if (keyword === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`bad TYPE at ${where}`);
        if (types.has(name)) throw new Error(`second TYPE for ${name} at ${where}`);
        types.set(name, rest);
      } else {
        help.set(name, rest);
      }
      return;
    }
    samples.push(parseSample(line, where));
  });
  for (const sample of samples) {
    if (familyOf(sample.name, types) === undefined) {
      throw new Error(`sample ${sample.name} has no TYPE line`);
    }
  }
  return { types, help, samples };
}

function parseSample(line: string, where: string): Sample {
  const nameEnd = line.search(/[{ ]/);
  if (nameEnd <= 0) throw new Error(`no sample at ${where}`);
  const name = line.slice(0, nameEnd);
  if (!NAME.test(name)) throw new Error(`bad metric name at ${where}`);
  let i = nameEnd;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const eq = line.indexOf('=', i);
      if (eq < 0) throw new Error(`bad label at ${where}`);
      const labelName = line.slice(i, eq);
      if (!LABEL_NAME.test(labelName)) throw new Error(`bad label name at ${where}`);
      if (line[eq + 1] !== '"') throw new Error(`unquoted label value at ${where}`);
      let value = '';
      let j = eq + 2;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === '\\') {
          const escaped = line[++j];
          if (escaped === 'n') value += '\n';
          else if (escaped === '\\' || escaped === '"') value += escaped;
          else throw new Error(`bad escape in a label value at ${where}`);
        } else {
          value += line[j];
        }
      }
      if (j >= line.length) throw new Error(`unterminated label value at ${where}`);
      if (labelName in labels) throw new Error(`label ${labelName} twice at ${where}`);
      labels[labelName] = value;
      i = j + 1;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`expected , or } at ${where}`);
    }
    i++;
  }
  if (line[i] !== ' ') throw new Error(`no value at ${where}`);
  const parts = line.slice(i + 1).split(' ');
  if (parts.length > 2) throw new Error(`trailing text at ${where}`);
  const value = parseValue(parts[0], where);
  if (parts.length === 2 && !/^-?\d+$/.test(parts[1])) throw new Error(`bad timestamp at ${where}`);
  return { name, labels, value };
}

function parseValue(text: string, where: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  // Prometheus reads floats with Go's ParseFloat, which takes NaN in any letter case; prom-client
  // writes `Nan` for a gauge with no sample yet (the event loop's mean lag right after start).
  if (/^nan$/i.test(text)) return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) {
    throw new Error(`bad value ${JSON.stringify(text)} at ${where}`);
  }
  return Number(text);
}

/** The family a sample belongs to: its own name, or a histogram's/summary's with a suffix. */
function familyOf(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const family = name.slice(0, -suffix.length);
    const type = types.get(family);
    if (type === 'histogram' || (type === 'summary' && suffix !== '_bucket')) return family;
  }
  return undefined;
}

/**
 * The sum of the samples named `name` whose labels include `labels` (0 when there is none): a
 * counter over every label value not given.
 */
export function sumOf(
  exposition: Exposition,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  let sum = 0;
  for (const s of exposition.samples) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/** The one sample named `name` with exactly these labels; throws when absent. */
export function valueOf(
  exposition: Exposition,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  const found = exposition.samples.filter(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length !== 1) {
    throw new Error(`${found.length} samples ${name}${JSON.stringify(labels)} in the exposition`);
  }
  return found[0].value;
}
