// Build step (npm run build, after tools/transpile.mjs): bundle each executable into one
// minified file (dist/client/cli.js, dist/server/server.js, dist/viewleader/viewleader.js), which
// bin/dht-* load through dist/*/launch.js (lib/bundle-launch.ts); then run a view leader, a server
// and the client once on loopback as a cluster of their own, writing V8's code cache of each
// (<bundle>.cache). One file instead of about 200 modules, no dead code, and little parsing or
// compiling at start: starting is most of what a CLI call costs, and a good part of a restart
// (docs/performance.md, "CLI" and "Process start").

import { build } from 'esbuild';
import { execFile, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import process from 'node:process';
import { clearTimeout, setTimeout } from 'node:timers';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const requireFromRoot = createRequire(path.join(root, 'package.json'));

/** Modules no dht process runs, replaced in every bundle by a stand-in (each with why). */
const STAND_INS = [
  // zod's error messages in 60-odd languages, reachable only through `z.locales`: all but English go.
  // lib/messages.ts sets English (zod/mini sets no locale of its own) with `z.config(z.locales.en())`.
  {
    filter: /[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/,
    contents: "export { default as en } from './en.js';",
  },
];

const BUILTIN_STAND_INS = [
  // yargs' two invariant checks, strictEqual and notStrictEqual, are all it takes from node:assert,
  // whose AssertionError machinery costs more to load than the rest of yargs. Same semantics
  // (Object.is), a plain Error for the message.
  {
    module: 'assert',
    importer: /[\\/]node_modules[\\/]yargs[\\/]/,
    contents: `const fail = (message, fallback) => { throw message instanceof Error ? message : new Error(message ?? fallback); };
export function strictEqual(actual, expected, message) {
  if (!Object.is(actual, expected)) fail(message, 'Expected values to be strictly equal');
}
export function notStrictEqual(actual, expected, message) {
  if (Object.is(actual, expected)) fail(message, 'Expected "actual" to be strictly unequal to "expected"');
}`,
  },
];

const standIns = {
  name: 'stand-ins',
  setup(b) {
    for (const { filter, contents } of STAND_INS) {
      // Relative imports in a stand-in resolve from the folder of the file it replaces.
      b.onLoad({ filter }, (args) => ({
        contents,
        loader: 'js',
        resolveDir: path.dirname(args.path),
      }));
    }
    // Built-in modules a dependency requires when it loads but whose use we never reach, each
    // costing a share of a CLI call's start (docs/performance.md, "CLI").
    for (const { module, importer, contents } of BUILTIN_STAND_INS) {
      b.onResolve({ filter: new RegExp(`^(node:)?${module}$`) }, (args) =>
        importer.test(args.importer) ? { path: module, namespace: 'stand-in' } : undefined,
      );
      b.onLoad({ filter: new RegExp(`^${module}$`), namespace: 'stand-in' }, () => ({
        contents,
        loader: 'js',
      }));
    }
    // cliui (yargs' --help layout) as `node dist/client/main.js` runs it: its CommonJS build, with
    // wrap-ansi. The ES module one that yargs' own ES module build imports wraps lines mid-word.
    b.onResolve({ filter: /^cliui$/ }, () => ({ path: requireFromRoot.resolve('cliui') }));
  },
};

const COMMON = {
  bundle: true,
  minify: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
  // import() becomes require(): a bundle runs in a vm.Script (lib/bundle-launch.ts), which has no
  // loader for dynamic imports (pino-pretty is loaded that way, for `--log-format pretty`).
  supported: { 'dynamic-import': false },
};

await build({
  ...COMMON,
  entryPoints: [path.join(root, 'client', 'main.ts')],
  outfile: path.join(root, 'dist', 'client', 'cli.js'),
  plugins: [standIns],
});

/**
 * Left to Node's own loader: classic-level loads a native addon (and only for a data directory,
 * lib/level-dir.ts); pino-pretty is loaded only for `--log-format pretty`. pino itself is bundled:
 * we log to a synchronous destination (lib/logger.ts), never through a transport, which is the one
 * part of pino that starts a worker from its own files by path.
 */
const PROCESS_EXTERNALS = ['classic-level', 'pino-pretty'];
for (const [folder, name] of [
  ['server', 'server'],
  ['viewleader', 'viewleader'],
]) {
  await build({
    ...COMMON,
    entryPoints: [path.join(root, folder, 'main.ts')],
    outfile: path.join(root, 'dist', folder, `${name}.js`),
    external: PROCESS_EXTERNALS,
    plugins: [standIns],
  });
}

// ---- the code caches: a view leader, a server and a client, a cluster of their own --------------

const WARM_UP_TIMEOUT_MS = 30_000;

/** A port the OS says is free now (the warm-up cluster's, on loopback, for a few seconds). */
function freePort() {
  const probe = net.createServer();
  return new Promise((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** Start `dist/<folder>/launch.js args` writing its code cache; resolves once it is listening. */
function startWritingCache(folder, args) {
  const child = spawn(process.execPath, [path.join(root, 'dist', folder, 'launch.js'), ...args], {
    env: { ...process.env, DHT_CODE_CACHE: 'write' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const listening = new Promise((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(
      () => reject(new Error(`${folder} did not start`)),
      WARM_UP_TIMEOUT_MS,
    );
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      stdout += chunk;
      if (stdout.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr.resume();
    exited.then(() => reject(new Error(`${folder} exited before listening`)));
  });
  return { child, listening, exited };
}

function client(args, env = {}) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(root, 'dist', 'client', 'launch.js'), ...args],
      { env: { ...process.env, ...env }, timeout: WARM_UP_TIMEOUT_MS },
      (error, stdout) => resolve({ error, stdout }),
    );
  });
}

const CACHES = [
  path.join(root, 'dist', 'client', 'cli.js.cache'),
  path.join(root, 'dist', 'server', 'server.js.cache'),
  path.join(root, 'dist', 'viewleader', 'viewleader.js.cache'),
];
for (const cache of CACHES) fs.rmSync(cache, { force: true });
const started = [];
try {
  const viewLeaderAddress = `127.0.0.1:${await freePort()}`;
  const viewLeader = startWritingCache('viewleader', [
    '--port',
    viewLeaderAddress.split(':')[1],
    '--in-memory',
  ]);
  started.push(viewLeader);
  await viewLeader.listening;
  const server = startWritingCache('server', [
    '--port',
    String(await freePort()),
    '--in-memory',
    '--viewleader',
    viewLeaderAddress,
    '--heartbeat-interval',
    '0.1',
  ]);
  started.push(server);
  await server.listening;
  // The paths a live cluster takes: a join, a setr's two-phase commit, a read (the client's
  // cache is written by that read, the path a real `getr` takes).
  const deadline = Date.now() + WARM_UP_TIMEOUT_MS;
  for (;;) {
    const view = await client(['--viewleader', viewLeaderAddress, '--json', 'query_servers']);
    if (!view.error && JSON.parse(view.stdout).servers.length === 1) break;
    if (Date.now() > deadline) throw new Error('the warm-up server did not join');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const common = ['--viewleader', viewLeaderAddress, '--wait', '10'];
  const set = await client([...common, 'setr', 'warm-up-key', 'warm']);
  const get = await client([...common, 'getr', 'warm-up-key'], { DHT_CODE_CACHE: 'write' });
  if (set.error || get.stdout !== 'warm') throw new Error('the warm-up setr/getr failed');
} catch (err) {
  // Only slower without them: each launcher compiles its bundle itself then.
  process.stderr.write(`bundle: no code caches (${err.message})\n`);
} finally {
  // SIGTERM: each closes cleanly and writes its cache as it exits (SIGKILL if it hangs: then
  // without its cache, which only costs the compile).
  for (const { child, exited } of started.reverse()) {
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), WARM_UP_TIMEOUT_MS);
    await exited;
    clearTimeout(killer);
  }
}
for (const cache of CACHES) {
  if (!fs.existsSync(cache)) {
    process.stderr.write(`bundle: ${path.relative(root, cache)} was not written\n`);
  }
}
