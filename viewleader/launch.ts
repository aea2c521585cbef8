// What bin/dht-viewleader runs: the bundled view leader (dist/viewleader/viewleader.js) with its
// code cache (lib/bundle-launch.ts), or the unbundled dist/viewleader/main.js when the bundles were
// not built (tools/transpile.mjs alone).

import path from 'node:path';
import { launchBundle } from '../lib/bundle-launch';

launchBundle(path.join(__dirname, 'viewleader.js'), () => require('./main')); // eslint-disable-line @typescript-eslint/no-require-imports
