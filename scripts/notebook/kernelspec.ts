// The "deepalign (TypeScript)" kernel spec: tslab started by scripts/jupyter-kernel.cjs, which
// moves to the repository root first. Used by `npm run kernel:install` (user install) and by
// scripts/jupyter-notebooks.ts (a private JUPYTER_PATH, so CI needs no prior install).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { homedir, platform } from 'node:os';
import { join, resolve } from 'node:path';
import { REPO_ROOT } from './repo.js';

export const KERNEL_NAME = 'deepalign';

export function kernelSpec() {
  return {
    // The Node that installs the spec runs the kernel: Jupyter started from a desktop launcher
    // may not have the same PATH. Re-run kernel:install after switching Node versions.
    argv: [process.execPath, join(REPO_ROOT, 'scripts', 'jupyter-kernel.cjs'), '{connection_file}'],
    display_name: 'deepalign (TypeScript)',
    language: 'typescript',
    metadata: { deepalign: { repo: REPO_ROOT } },
  };
}

/** Jupyter's user data dir: ask jupyter when installed (it honours JUPYTER_DATA_DIR), else its default. */
export function jupyterDataDir(): string {
  try {
    return execFileSync('jupyter', ['--data-dir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    if (process.env.JUPYTER_DATA_DIR) return resolve(process.env.JUPYTER_DATA_DIR);
    if (platform() === 'darwin') return join(homedir(), 'Library', 'Jupyter');
    return join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'jupyter');
  }
}

/** Writes `<dataDir>/kernels/deepalign/kernel.json` and returns its path. */
export function writeKernelSpec(dataDir: string): string {
  const dir = join(dataDir, 'kernels', KERNEL_NAME);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'kernel.json');
  writeFileSync(path, JSON.stringify(kernelSpec(), null, 2) + '\n');
  return path;
}
