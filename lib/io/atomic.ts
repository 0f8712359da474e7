// Atomic file writes: readers (and a crash) see the old or the new content, never a partial file.
import * as fs from 'node:fs';

/** Write `data` to a temp file beside `file`, then rename it over `file`. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Copy `src` to `dst` through a temp file and a rename. */
export function copyFileAtomic(src: string, dst: string): void {
  const tmp = `${dst}.tmp-${process.pid}`;
  try {
    fs.copyFileSync(src, tmp);
    fs.renameSync(tmp, dst);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}
