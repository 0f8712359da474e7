// Makes tslab type-check with `strict: true`, like our tsconfig.json.
//
// tslab compiles notebook cells *and* the lib/ files they import with its bundled TypeScript 5.0
// and hard-coded compiler options that leave `strict` off. Non-strict checking differs from the
// strict checking `npm run typecheck` does (e.g. `x !== undefined` does not narrow `number | void`
// without strictNullChecks), so lib code that passes tsc could fail in a notebook. With `strict`
// injected, lib and cells are checked the same way everywhere.
//
// How: tslab's converter calls `ts.createWatchCompilerHost(rootFiles, options, ...)` on the module
// it requires. That module's exports are non-writable getters, so we put a Proxy into the require
// cache in its place, whose createWatchCompilerHost adds `strict: true`. Must be loaded before
// tslab's converter (scripts/notebook/runner.ts and scripts/jupyter-kernel.cjs do so first).
'use strict';
const path = require('node:path');

const tsPath = require.resolve('@tslab/typescript-for-tslab', {
  paths: [path.join(__dirname, '..', '..', 'node_modules', 'tslab')],
});
const ts = require(tsPath);
const cached = require.cache[tsPath];
if (cached && !ts.__deepalignStrict) {
  const createWatchCompilerHost = (rootFiles, options, ...rest) => ts.createWatchCompilerHost(rootFiles, { ...options, strict: true }, ...rest);
  cached.exports = new Proxy(ts, {
    get(target, key) {
      if (key === 'createWatchCompilerHost') return createWatchCompilerHost;
      if (key === '__deepalignStrict') return true;
      return target[key];
    },
  });
}
