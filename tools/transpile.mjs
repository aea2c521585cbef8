// Build step (npm run build, before tools/bundle.mjs): compile every source file to dist/, one
// CommonJS file (and its source map) per TypeScript file, with esbuild. This is what `node
// dist/...` runs: the demo, the bench, the suite-under-load script, the unbundled entry points
// and `bin/dht-*`'s launchers.
//
// Type checking is not done here: `npm run lint` runs `tsc --noEmit` over everything (test/
// included), and CI runs lint before the tests. Emitting with tsc checked the same types a
// second time and took 8 of the build's 12 s; esbuild compiles the same files in well under one
// (docs/testing.md, "How long it takes"). tsconfig.json sets `isolatedModules`, so every file
// compiles alone with the same meaning under either compiler.

import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Every source folder but the tests (test/ is compiled by ts-jest). */
const SOURCE_FOLDERS = ['lib', 'viewleader', 'server', 'client', 'demo', 'bench', 'scripts'];

const entryPoints = SOURCE_FOLDERS.flatMap((folder) =>
  fs
    .readdirSync(path.join(root, folder), { recursive: true })
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))
    .map((file) => path.join(root, folder, file)),
);

await build({
  entryPoints,
  outdir: path.join(root, 'dist'),
  outbase: root,
  bundle: false,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  tsconfig: path.join(root, 'tsconfig.json'),
  logLevel: 'warning',
});
