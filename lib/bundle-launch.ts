// What bin/dht-* run: a process's bundle (dist/<process>/<name>.js, built by tools/bundle.mjs
// from <process>/main.ts), compiled with V8's code cache when the build left one that this Node
// accepts. Loading and compiling some 200 modules is most of what it costs to start a process
// (docs/performance.md, "Process start"); one bundle and its cache skip most of it. A missing,
// stale or rejected cache only costs that time again: the source is always the bundle, never the
// cache. Without a bundle (tools/transpile.mjs run alone) the unbundled main.js runs as before.
//
// `DHT_CODE_CACHE=write` (the build's warm-up runs only) writes the cache of every function the
// process compiled when it exits.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

/** Runs `bundle` (or `unbundled` without one); returns what the bundle exports. */
export function launchBundle(bundle: string, unbundled: () => void): unknown {
  let source: string;
  try {
    source = fs.readFileSync(bundle, 'utf8');
  } catch {
    unbundled();
    return undefined;
  }
  const codeCache = `${bundle}.cache`;
  const writing = process.env.DHT_CODE_CACHE === 'write';
  let cachedData: Buffer | undefined;
  if (!writing) {
    try {
      cachedData = fs.readFileSync(codeCache);
    } catch {
      cachedData = undefined;
    }
  }
  // The CommonJS wrapper Node itself puts around a module, so the bundle runs as it would if
  // required (its own `require`, resolving from the bundle's folder; `module`, `__dirname`).
  const script = new vm.Script(
    `(function (exports, require, module, __filename, __dirname) {${source}\n})`,
    { filename: bundle, cachedData },
  );
  if (writing) {
    process.once('exit', () => {
      const temporary = `${codeCache}.${process.pid}.tmp`;
      fs.writeFileSync(temporary, script.createCachedData());
      fs.renameSync(temporary, codeCache);
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
  run(bundleModule.exports, createRequire(bundle), bundleModule, bundle, path.dirname(bundle));
  return bundleModule.exports;
}
