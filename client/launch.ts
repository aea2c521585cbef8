// What bin/dht-client runs: the bundled CLI (dist/client/cli.js) with its code cache
// (lib/bundle-launch.ts), or the unbundled dist/client/main.js when the bundles were not built
// (tools/transpile.mjs alone).

import path from 'node:path';
import { launchBundle } from '../lib/bundle-launch';

launchBundle(path.join(__dirname, 'cli.js'), () => require('./main')); // eslint-disable-line @typescript-eslint/no-require-imports
