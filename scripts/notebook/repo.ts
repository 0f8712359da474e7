import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: notebooks run with it as working directory. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where fast (smoke) runs write notebooks and figures: git-ignored, never over committed outputs. */
export const FAST_OUTPUT_DIR = 'tmp/fast';
