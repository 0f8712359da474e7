import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { REPO_ROOT } from './repo.js';

/** The notebooks to run: those named on the command line, else notebooks/*.ipynb in name order
 * (00_quickstart, 01_..., so later notebooks can use what earlier ones cached under data/). */
export function listNotebooks(named: string[]): string[] {
  if (named.length > 0) {
    for (const nb of named) if (!existsSync(nb)) throw new Error(`no such notebook: ${nb}`);
    return named.map((nb) => resolve(nb));
  }
  const dir = join(REPO_ROOT, 'notebooks');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ipynb') && !f.startsWith('.'))
    .sort()
    .map((f) => join(dir, f));
}
