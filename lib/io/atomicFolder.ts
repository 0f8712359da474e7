// Atomic folder replacement: a reader (or the next run after a crash) sees the old folder or the
// new one, never new files beside old ones.
//
// The scheme, for a target folder `dir` and the writer's process id P:
//   1. recoverFolder(dir) repairs what an earlier, crashed writer left (see below);
//   2. everything is written into the sibling `dir.saving-P` (same parent, so the same filesystem
//      and renames are atomic);
//   3. if `dir` exists it is renamed to `dir.old-P`          <- the commit point
//   4. `dir.saving-P` is renamed to `dir`;
//   5. `dir.old-P` is removed.
// A writer killed at any point (SIGKILL, ENOSPC, an exception; the machine itself staying up: files
// are not fsynced) leaves one of these states, and recoverFolder, run at the start of every save
// and load of `dir`, turns each into a clean folder:
//   - killed during 2 (or before 3): `dir` is the old folder and `dir.saving-P` is incomplete or
//     uncommitted -> `dir.saving-P` is removed (the save never happened);
//   - killed between 3 and 4: `dir` is missing, `dir.old-P` is the old folder and `dir.saving-P`
//     the complete new one (3 runs only after 2 finished) -> `dir.saving-P` is renamed to `dir`
//     (rolled forward) and `dir.old-P` removed;
//   - killed during 5: `dir` is the new folder -> `dir.old-P` is removed.
// Leftovers of a writer that is still running (P is a live process other than this one) are left
// alone; a reader that finds `dir` missing while such a writer is between 3 and 4 waits for it (a
// few seconds at most). Writes here are synchronous, so this process never has a write in flight
// while it recovers: its own leftovers are always stale. One writer per folder at a time. A
// symlinked `dir` is followed (the swap happens beside the real folder; the link stays a link).
import * as fs from 'fs';
import * as path from 'path';

/** Test hook: called at each stage of writeFolderAtomic (e.g. to copy the on-disk state a crash at
 *  that point would leave, or to throw at 'staged' as a failed write would). */
export type FolderWriteStage = 'staged' | 'committed' | 'swapped';
let stageHook: ((stage: FolderWriteStage, dir: string) => void) | undefined;
export function setFolderWriteHook(hook: ((stage: FolderWriteStage, dir: string) => void) | undefined): void {
  stageHook = hook;
}

/** `dir` as an absolute path, following a symlink in its last component (even a dangling one, as
 *  between the two renames), so the swap happens where the folder really is and the link stays. */
function resolveTarget(dir: string): string {
  let target = path.resolve(dir);
  for (let i = 0; i < 32; i++) {
    let link: string;
    try {
      if (!fs.lstatSync(target).isSymbolicLink()) return target;
      link = fs.readlinkSync(target);
    } catch {
      return target;
    }
    target = path.resolve(path.dirname(target), link);
  }
  return target;
}

function siblings(target: string, pid: number) {
  return { saving: `${target}.saving-${pid}`, old: `${target}.old-${pid}` };
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Leftover `dir.saving-P` / `dir.old-P` siblings by writer pid. */
function leftovers(target: string): Map<number, { saving?: string; old?: string }> {
  const found = new Map<number, { saving?: string; old?: string }>();
  let entries: string[];
  try {
    entries = fs.readdirSync(path.dirname(target));
  } catch {
    return found;
  }
  const re = new RegExp(`^${escapeRegExp(path.basename(target))}\\.(saving|old)-(\\d+)$`);
  for (const name of entries) {
    const m = re.exec(name);
    if (!m) continue;
    const pid = Number(m[2]);
    const entry = found.get(pid) ?? {};
    entry[m[1] as 'saving' | 'old'] = path.join(path.dirname(target), name);
    found.set(pid, entry);
  }
  return found;
}

function removeLeftover(folder: string): void {
  try {
    fs.rmSync(folder, { recursive: true, force: true });
  } catch (e) {
    // A read-only location can still be loaded from; the leftover is harmless beside it.
    console.warn(`deepalign: could not remove ${folder}, left by an interrupted save (${(e as Error).message})`);
  }
}

/**
 * Repair what an interrupted writeFolderAtomic left beside `dir` (see the scheme above): roll an
 * interrupted swap forward, remove incomplete or superseded copies. Cheap when there is nothing to
 * do (one readdir of the parent). Waits up to `waitMs` for a live writer that is mid-swap.
 */
export function recoverFolder(dir: string, waitMs = 10_000): void {
  const target = resolveTarget(dir);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const found = leftovers(target);
    if (found.size === 0) return;
    let waiting = false;
    for (const [pid, { saving, old }] of found) {
      if (isAlive(pid)) {
        // A live writer between its two renames: the folder reappears in a moment.
        if (old && !fs.existsSync(target)) waiting = true;
        continue;
      }
      if (old && !fs.existsSync(target)) {
        const from = saving ?? old;
        try {
          fs.renameSync(from, target);
        } catch (e) {
          throw new Error(`${target} is missing after an interrupted save; restoring it from ${from} failed (${(e as Error).message}); `
            + `rename ${from} to ${target} by hand`);
        }
        if (from === old) continue;
      }
      if (old) removeLeftover(old);
      if (saving) removeLeftover(saving);
    }
    if (!waiting) return;
    if (Date.now() > deadline) {
      const olds = [...found.values()].map((f) => f.old).filter(Boolean);
      throw new Error(`${target} is missing while another process is replacing it (its ${olds.join(', ')} is still there); try again when that `
        + `save has finished (if none is running, the process id was reused: rename ${olds[0]} to ${target} by hand)`);
    }
    sleepSync(50);
  }
}

/**
 * Replace the folder `dir` as a whole: `write(staging)` fills a fresh sibling folder, which is then
 * swapped in (see the scheme above). If `write` throws, `dir` is untouched and the staging folder
 * removed. `write` must be synchronous.
 */
export function writeFolderAtomic(dir: string, write: (staging: string) => void): void {
  const target = resolveTarget(dir);
  if (target === path.parse(target).root) throw new Error(`writeFolderAtomic: cannot replace the root folder ${target}`);
  const cwd = path.resolve('.');
  if (cwd === target || cwd.startsWith(target + path.sep)) {
    throw new Error(`writeFolderAtomic: cannot replace ${target}, which holds the current working folder (it is moved away and removed)`);
  }
  recoverFolder(target);
  const { saving, old } = siblings(target, process.pid);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.rmSync(saving, { recursive: true, force: true });
  fs.mkdirSync(saving);
  try {
    write(saving);
    stageHook?.('staged', target);
  } catch (e) {
    fs.rmSync(saving, { recursive: true, force: true });
    throw e;
  }
  let replaced = false;
  try {
    if (fs.existsSync(target)) {
      fs.renameSync(target, old);
      replaced = true;
    }
    stageHook?.('committed', target);
    fs.renameSync(saving, target);
  } catch (e) {
    // Undo (the process is alive, so it can): the old folder goes back, the new one is dropped.
    if (replaced && !fs.existsSync(target)) fs.renameSync(old, target);
    fs.rmSync(saving, { recursive: true, force: true });
    throw e;
  }
  stageHook?.('swapped', target);
  if (replaced) removeLeftover(old);
}
