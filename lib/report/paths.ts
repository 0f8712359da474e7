// Where reports go. Everything is relative to the working directory, which is the repository
// root under `npm run nb`, the deepalign Jupyter kernel and vitest.
import { isAbsolute, join, relative, resolve } from 'node:path';

/**
 * The figures root: `$DEEPALIGN_FIGURES_DIR` if set (the runner's --fast mode points it at
 * tmp/fast/figures so smoke runs never overwrite committed figures), else `./figures`.
 */
export function figuresDir(): string {
  const fromEnv = process.env.DEEPALIGN_FIGURES_DIR;
  return fromEnv ? resolve(fromEnv) : resolve('figures');
}

/**
 * Resolves a report name such as `00_quickstart/loss` to an absolute path without extension.
 * Names are relative paths of letters, digits, `-`, `_` and `.`; anything else is rejected so a
 * typo cannot write outside the figures directory.
 */
export function reportPath(name: string, dir: string = figuresDir(), where = 'report'): string {
  if (!/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(name) || name.split('/').some((part) => part === '..' || part === '.')) {
    throw new Error(`${where}: name ${JSON.stringify(name)} must be a relative path like "00_quickstart/loss" (letters, digits, -, _, .)`);
  }
  return join(dir, name);
}

/** A path for messages: relative to the working directory when inside it. */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}
