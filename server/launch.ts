// What bin/dht-server runs: the bundled server (dist/server/server.js) with its code cache
// (lib/bundle-launch.ts), or the unbundled dist/server/main.js when the bundles were not built
// (tools/transpile.mjs alone).

import path from 'node:path';
import { launchBundle } from '../lib/bundle-launch';

launchBundle(path.join(__dirname, 'server.js'), () => require('./main')); // eslint-disable-line @typescript-eslint/no-require-imports
