// What bin/dht-client runs: the bundled CLI (dist/client/cli.js, built by
// tools/bundle-client.mjs from client/main.ts), compiled with V8's code cache when the build left
// one that this Node accepts. Parsing and compiling the bundle is most of what it costs to start
// (docs/performance.md, "CLI"); the cache skips it. A missing, stale or rejected cache only costs
// that time again: the source is always the bundle, never the cache. Without a bundle (a build
// by tsc alone), the unbundled dist/client/main.js runs as before.
//
// `DHT_CLIENT_CODE_CACHE=write` (the build's last step only) runs the CLI once and writes the
// cache of every function it compiled when the process exits.

import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';

const BUNDLE = path.join(__dirname, 'cli.js');
const CODE_CACHE = `${BUNDLE}.cache`;

function launch(): void {
  let source: string;
  try {
    source = fs.readFileSync(BUNDLE, 'utf8');
  } catch {
    require('./main'); // eslint-disable-line @typescript-eslint/no-require-imports
    return;
  }
  const writing = process.env.DHT_CLIENT_CODE_CACHE === 'write';
  let cachedData: Buffer | undefined;
  if (!writing) {
    try {
      cachedData = fs.readFileSync(CODE_CACHE);
    } catch {
      cachedData = undefined;
    }
  }
  // The CommonJS wrapper Node itself puts around a module, so the bundle runs as it would if
  // required (its own `require`, `module`, `__dirname`).
  const script = new vm.Script(
    `(function (exports, require, module, __filename, __dirname) {${source}\n})`,
    { filename: BUNDLE, cachedData },
  );
  if (writing) {
    process.once('exit', () => {
      const temporary = `${CODE_CACHE}.${process.pid}.tmp`;
      fs.writeFileSync(temporary, script.createCachedData());
      fs.renameSync(temporary, CODE_CACHE);
    });
  }
  const bundleModule = { exports: {} };
  const run = script.runInThisContext() as (
    exports: unknown,
    require: NodeRequire,
    module: unknown,
    filename: string,
    dirname: string,
  ) => void;
  run(bundleModule.exports, require, bundleModule, BUNDLE, path.dirname(BUNDLE));
}

launch();
