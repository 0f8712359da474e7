#!/usr/bin/env node
// The "deepalign (TypeScript)" Jupyter kernel: tslab, started with the repository root as its
// working directory wherever the notebook lives, so `import ... from './lib/index.js'` resolves
// the same way in Jupyter as under `npm run nb`. Registered by `npm run kernel:install`.
// CommonJS on purpose: Jupyter runs it with plain `node`, before any TypeScript loader.
'use strict';
const path = require('node:path');

const repoRoot = path.resolve(__dirname, '..');
const connectionFile = process.argv[2];
if (!connectionFile) {
  process.stderr.write('jupyter-kernel.cjs: missing the connection file argument ({connection_file} in kernel.json)\n');
  process.exit(2);
}
process.chdir(repoRoot);
require('./notebook/tslab-strict.cjs');
// tslab reports a failed cell to Jupyter as a bare status "error" (the diagnostics go to the cell's
// stderr only), so nbconvert/nbclient would fail with an empty message. Put the cell's stderr into
// the execute_reply's ename/evalue/traceback, which nbclient quotes in CellExecutionError.
const tslabJupyter = require(path.join(repoRoot, 'node_modules', 'tslab', 'dist', 'jupyter.js'));
const handleExecute = tslabJupyter.JupyterHandlerImpl.prototype.handleExecute;
tslabJupyter.JupyterHandlerImpl.prototype.handleExecute = async function (req, writeStream, writeDisplayData) {
  let stderr = '';
  const captureStderr = (name, text) => {
    if (name === 'stderr') stderr += text;
    writeStream(name, text);
  };
  const reply = await handleExecute.call(this, req, captureStderr, writeDisplayData);
  if (reply.status === 'error') {
    const lines = stderr.trim().split('\n');
    Object.assign(reply, { ename: 'CellError', evalue: lines[0] || 'the cell failed', traceback: lines });
  }
  return reply;
};

// Use the repo's pinned tslab directly (not a global one), and skip tslab's search for another copy.
const { startKernel } = require(path.join(repoRoot, 'node_modules', 'tslab', 'dist', 'main.js'));
startKernel({ configPath: path.resolve(connectionFile), enableFindLocal: false, jsKernel: false, globalVersion: '' });
