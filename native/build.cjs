// Builds the optional native addon (build/Release/deepalign_native.node) with node-gyp.
// Run by `npm install` / `npm ci` (the package's install script) and `npm run build:native`.
// Never fails the install: without a compiler or headers the kit runs on wasm, and initEngine's
// report says the addon is missing. Offline-friendly: uses local Node headers when present.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
if (process.env.DEEPALIGN_SKIP_NATIVE) {
  console.log('deepalign: DEEPALIGN_SKIP_NATIVE set, not building the native addon');
  process.exit(0);
}

function nodeGyp() {
  // npm sets npm_config_node_gyp to its bundled node-gyp during lifecycle scripts.
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] }));
  } catch {}
  return candidates.find((p) => p && existsSync(p));
}

const gyp = nodeGyp();
if (!gyp) {
  console.warn('deepalign: node-gyp not found; skipping the native addon (the wasm backend will be used)');
  process.exit(0);
}
const args = [gyp, 'rebuild'];
// Headers installed next to this node binary (e.g. /usr/include/node) avoid a download.
const prefix = path.resolve(path.dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) {
  args.push(`--nodedir=${prefix}`);
}
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.warn('deepalign: native addon build failed; the wasm backend will be used (see output above)');
} else {
  console.log('deepalign: native addon built: build/Release/deepalign_native.node');
}
process.exit(0);
