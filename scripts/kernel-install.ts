// npm run kernel:install [-- <jupyter data dir>]
//
// Registers the "deepalign (TypeScript)" Jupyter kernel for this user: writes
// <jupyter data dir>/kernels/deepalign/kernel.json (default dir: `jupyter --data-dir`).
// `jupyter kernelspec list` then shows "deepalign". Re-run after moving the repository.
import { resolve } from 'node:path';
import { jupyterDataDir, writeKernelSpec } from './notebook/kernelspec.js';
import { REPO_ROOT } from './notebook/repo.js';

const path = writeKernelSpec(process.argv[2] ? resolve(process.argv[2]) : jupyterDataDir());
console.log(`kernel:install: wrote ${path} (deepalign (TypeScript): tslab at ${REPO_ROOT})`);
