import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: notebooks run with it as working directory. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where fast (smoke) runs write notebooks and figures: git-ignored, never over committed outputs. */
export const FAST_OUTPUT_DIR = 'tmp/fast';
/** Set to "shown" by npm run reproduce once it has said that Chromium is missing, so the
 * notebooks it runs do not say it again. */
export const CHROMIUM_NOTICE_ENV = 'DEEPALIGN_CHROMIUM_NOTICE';
