// npm run kernel:install — registers the "deepalign (TypeScript)" Jupyter kernel for this user.
//
// Writes <jupyter data dir>/kernels/deepalign/kernel.json, whose argv runs
// scripts/jupyter-kernel.cjs (tslab with the repository root as working directory) with the Node
// that ran this script. Re-run it after moving the repository or switching Node versions.
// `jupyter kernelspec list` then shows "deepalign".
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { homedir, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Jupyter's user data dir: ask jupyter when installed (it honours JUPYTER_DATA_DIR), else its default. */
function jupyterDataDir(): string {
  try {
    return execFileSync('jupyter', ['--data-dir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    if (process.env.JUPYTER_DATA_DIR) return resolve(process.env.JUPYTER_DATA_DIR);
    if (platform() === 'darwin') return join(homedir(), 'Library', 'Jupyter');
    return join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'jupyter');
  }
}

export const KERNEL_NAME = 'deepalign';

export function kernelSpec() {
  return {
    argv: [process.execPath, join(repoRoot, 'scripts', 'jupyter-kernel.cjs'), '{connection_file}'],
    display_name: 'deepalign (TypeScript)',
    language: 'typescript',
    metadata: { deepalign: { repo: repoRoot } },
  };
}

const dir = join(process.argv[2] ? resolve(process.argv[2]) : jupyterDataDir(), 'kernels', KERNEL_NAME);
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'kernel.json'), JSON.stringify(kernelSpec(), null, 2) + '\n');
console.log(`kernel:install: wrote ${join(dir, 'kernel.json')} (deepalign (TypeScript) -> tslab at ${repoRoot})`);
