// Build step (npm run build, after tsc): bundle the client CLI into one minified file,
// dist/client/cli.js, which bin/dht-client loads through dist/client/launch.js; then run it once
// against a stand-in cluster on loopback to write V8's code cache for it (cli.js.cache). One file
// instead of about 200 modules, no dead code, and no parsing or compiling at start: starting is
// most of what a CLI call costs (docs/performance.md, "CLI").

import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const requireFromRoot = createRequire(path.join(root, 'package.json'));

/**
 * Modules the CLI never runs, replaced in the bundle by a stand-in (each with why). A stand-in
 * that is reached after all fails loudly, naming what was left out.
 */
const LEFT_OUT = (name, why) =>
  `throw new Error('dht-client: ${name} was left out of the bundle (${why})');`;
const STAND_INS = [
  // zod's error messages in 40 languages, reachable only through `z.locales` (unused); its
  // English messages, which the CLI does use, come from locales/en.js and stay.
  { filter: /[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/, contents: 'export {};' },
  // axios requires these three when it loads; lib/http-client.ts never reaches them. form-data
  // (with mime-db, most of its size) builds multipart bodies: ours are JSON.
  {
    filter: /[\\/]node_modules[\\/]form-data[\\/]lib[\\/]form_data\.js$/,
    contents: `module.exports = function FormData() { ${LEFT_OUT('form-data', 'JSON bodies only')} };`,
  },
  // follow-redirects serves axios only when redirects are followed: maxRedirects is 0.
  {
    filter: /[\\/]node_modules[\\/]follow-redirects[\\/]index\.js$/,
    contents: `const request = () => { ${LEFT_OUT('follow-redirects', 'maxRedirects: 0')} };
module.exports = { http: { request }, https: { request } };`,
  },
  // https-proxy-agent tunnels through an HTTP proxy: `proxy: false`, and loopback has none.
  {
    filter: /[\\/]node_modules[\\/]https-proxy-agent[\\/]dist[\\/]index\.js$/,
    contents: `module.exports = function HttpsProxyAgent() { ${LEFT_OUT('https-proxy-agent', 'proxy: false')} };`,
  },
];

const standIns = {
  name: 'stand-ins',
  setup(b) {
    for (const { filter, contents } of STAND_INS) {
      b.onLoad({ filter }, () => ({ contents, loader: 'js' }));
    }
    // cliui (yargs' --help layout) as `node dist/client/main.js` runs it: its CommonJS build, with
    // wrap-ansi. The ES module one that yargs' own ES module build imports wraps lines mid-word.
    b.onResolve({ filter: /^cliui$/ }, () => ({ path: requireFromRoot.resolve('cliui') }));
  },
};

await build({
  entryPoints: [path.join(root, 'client', 'main.ts')],
  outfile: path.join(root, 'dist', 'client', 'cli.js'),
  bundle: true,
  minify: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  plugins: [standIns],
  logLevel: 'warning',
});

// ---- the code cache ------------------------------------------------------------------------------

const WARM_UP_TIMEOUT_MS = 30_000;
const CODE_CACHE = path.join(root, 'dist', 'client', 'cli.js.cache');

/**
 * A stand-in view leader and server in one (127.0.0.1, a port of the OS's choosing) answering
 * just what `getr` asks, so that the warm-up run compiles the path a real read takes.
 */
function standIn() {
  const server = http.createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      const address = `127.0.0.1:${server.address().port}`;
      const servers = [{ id: 'code-cache-warm-up', address }];
      const answers = {
        '/query_servers': {
          epoch: 1,
          servers,
          rebalancing: false,
          placement: { epoch: 1, servers },
        },
        '/read': { value: 'warm', version: 1 },
      };
      const answer = answers[request.url];
      response.writeHead(answer ? 200 : 404, { 'content-type': 'application/json' });
      response.end(JSON.stringify(answer ?? { kind: 'invalid', error: 'not in the warm-up' }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

fs.rmSync(CODE_CACHE, { force: true });
const server = await standIn();
try {
  const run = await new Promise((resolve) => {
    execFile(
      process.execPath,
      [
        path.join(root, 'dist', 'client', 'launch.js'),
        '--viewleader',
        `127.0.0.1:${server.address().port}`,
        'getr',
        'warm-up-key',
      ],
      { env: { ...process.env, DHT_CLIENT_CODE_CACHE: 'write' }, timeout: WARM_UP_TIMEOUT_MS },
      (error, stdout, stderr) => resolve({ error, stdout, stderr }),
    );
  });
  if (run.error || run.stdout !== 'warm' || !fs.existsSync(CODE_CACHE)) {
    // Only slower without it: dist/client/launch.js compiles the bundle itself then.
    process.stderr.write(
      `bundle-client: no code cache written (${run.error?.message ?? run.stderr.trim()})\n`,
    );
  }
} finally {
  server.close();
}
