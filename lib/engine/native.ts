// The optional native addon (native/deepalign_native.cc, built by `npm install` through node-gyp).
// When it is missing or fails to load, everything runs on wasm and the engine report says why.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRequire } from './probe.js';

export interface NativeAddon {
  /** C[q] = op(A[q]) x op(B[q]) for each batch q; offsets are element offsets into a, b, c. */
  sgemm(
    a: Float32Array | ArrayBuffer, b: Float32Array | ArrayBuffer, c: Float32Array | ArrayBuffer,
    aOffsets: Uint32Array, bOffsets: Uint32Array, cOffsets: Uint32Array,
    m: number, n: number, k: number, transposeA: boolean, transposeB: boolean,
  ): void;
  /** One AdamW update (see fused.ts adamwUpdate); arrays: p, g, m, v, pOut, mOut, vOut. */
  adamw(
    arrays: (Float32Array | ArrayBuffer)[], offsets: Uint32Array, n: number,
    consts: Float32Array, decay: boolean,
  ): void;
  /** Row-wise cross-entropy on one heap; offsets [logits, targets, nll, lse]; returns -1 or the first bad row. */
  crossEntropy(heap: ArrayBuffer, offsets: Uint32Array, n: number, vocab: number): number;
  /** Its gradient; offsets [logits, lse, targets, dy, out]. */
  crossEntropyGrad(heap: ArrayBuffer, offsets: Uint32Array, n: number, vocab: number): void;
  setThreads(threads: number): void;
  info(): { threads: number; cores: number; simd: string };
}

export interface NativeLoad {
  addon: NativeAddon | null;
  why: string;
  path?: string;
}

const ADDON = path.join('build', 'Release', 'deepalign_native.node');

/**
 * The folder of this file, under CommonJS (tslab, __dirname) and under ESM (tsx, vitest), where
 * neither __dirname exists nor import.meta may be used (tslab's TypeScript 5.0 rejects it in lib
 * files): then our own stack frame names the file.
 */
function thisFileDir(): string | undefined {
  if (typeof __dirname === 'string') return __dirname;
  const frame = (new Error().stack ?? '').split('\n').find((line) => /[\\/]engine[\\/]native\.[cm]?[jt]s/.test(line));
  const match = frame && /(file:\/\/\S+?|\/\S+?)\.[cm]?[jt]s:\d+:\d+/.exec(frame);
  if (!match) return undefined;
  const file = match[0].replace(/:\d+:\d+$/, '');
  try {
    return path.dirname(file.startsWith('file://') ? fileURLToPath(file) : file);
  } catch {
    return undefined;
  }
}

/** Where to look: env DEEPALIGN_NATIVE, the repo root above lib/engine, then upwards from the cwd. */
function candidates(): string[] {
  const out: string[] = [];
  if (process.env.DEEPALIGN_NATIVE) out.push(path.resolve(process.env.DEEPALIGN_NATIVE));
  const here = thisFileDir();
  if (here) out.push(path.resolve(here, '..', '..', ADDON));
  let dir = process.cwd();
  for (let i = 0; i < 6; i++) {
    out.push(path.join(dir, ADDON));
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return [...new Set(out)];
}

let cached: NativeLoad | null = null;

export function loadNative(): NativeLoad {
  if (cached !== null) return cached;
  const found = candidates().find((p) => existsSync(p));
  if (found === undefined) {
    cached = { addon: null, why: `native addon not built (no ${ADDON}; run \`npm run build:native\`)` };
    return cached;
  }
  try {
    const addon = packageRequire()(found) as NativeAddon;
    addon.info();
    cached = { addon, why: `loaded ${found}`, path: found };
  } catch (err) {
    cached = { addon: null, why: `native addon at ${found} failed to load: ${(err as Error).message}`, path: found };
  }
  return cached;
}
