// lib/bundle-launch.ts, what bin/dht-* run: a bundle runs as a CommonJS module of its own folder,
// with or without a code cache; a cache that is garbage only costs the compile; the cache is
// written when asked, at exit; without a bundle, the unbundled entry point runs.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { launchBundle } from '../../lib/bundle-launch';

/** lib/bundle-launch.ts as plain JavaScript, for a child process (unit tests need no build). */
function writeLauncher(into: string): string {
  const source = fs.readFileSync(
    path.resolve(__dirname, '..', '..', 'lib', 'bundle-launch.ts'),
    'utf8',
  );
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
    },
  });
  const file = path.join(into, 'launcher.js');
  fs.writeFileSync(file, outputText);
  return file;
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dht-bundle-launch-'));
  // What the bundle sees of its surroundings: its folder, its file, a module next to it.
  fs.writeFileSync(path.join(dir, 'beside.js'), 'module.exports = "found beside the bundle";');
  fs.writeFileSync(
    path.join(dir, 'app.js'),
    `module.exports = { dirname: __dirname, filename: __filename, beside: require('./beside') };`,
  );
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the bundle runs as a module of its own folder; the unbundled entry point does not', () => {
  const unbundled = jest.fn();
  const exported = launchBundle(path.join(dir, 'app.js'), unbundled);
  expect(unbundled).not.toHaveBeenCalled();
  expect(exported).toEqual({
    dirname: dir,
    filename: path.join(dir, 'app.js'),
    beside: 'found beside the bundle',
  });
});

test('no bundle (tools/transpile.mjs run alone): the unbundled entry point runs', () => {
  const unbundled = jest.fn();
  expect(launchBundle(path.join(dir, 'missing.js'), unbundled)).toBeUndefined();
  expect(unbundled).toHaveBeenCalledTimes(1);
});

test('a cache that is garbage is rejected by V8 and only costs the compile', () => {
  fs.writeFileSync(path.join(dir, 'app.js.cache'), 'not a code cache at all');
  expect(launchBundle(path.join(dir, 'app.js'), jest.fn())).toMatchObject({
    beside: 'found beside the bundle',
  });
});

test('DHT_CODE_CACHE=write writes the cache at exit; a run without it reads it and leaves it as it was', () => {
  const launcher = writeLauncher(dir);
  const run = (env: Record<string, string>): string =>
    execFileSync(
      process.execPath,
      [
        '-e',
        `const exported = require(${JSON.stringify(launcher)}).launchBundle(${JSON.stringify(path.join(dir, 'app.js'))}, () => { throw new Error('unbundled'); });
         process.stdout.write(exported.beside);`,
      ],
      { env: { ...process.env, ...env }, encoding: 'utf8' },
    );
  expect(run({ DHT_CODE_CACHE: 'write' })).toBe('found beside the bundle');
  const cache = fs.readFileSync(path.join(dir, 'app.js.cache'));
  expect(cache.length).toBeGreaterThan(0);
  expect(run({ DHT_CODE_CACHE: '' })).toBe('found beside the bundle');
  expect(fs.readFileSync(path.join(dir, 'app.js.cache')).equals(cache)).toBe(true);
});
