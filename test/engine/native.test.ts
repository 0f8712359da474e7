// The native addon's GEMM directly: every transpose, edge tiles, shared and broadcast operands,
// one and two threads, against the definition in float64. Skipped when the addon is not built.
import { afterAll, describe, expect, it } from 'vitest';
import { loadNative } from '../../lib/engine/native.js';
import { randomArray, randomInt, relativeError, rng } from './helpers.js';

const native = loadNative().addon;

function reference(a: Float32Array, b: Float32Array, ao: number, bo: number, m: number, n: number, k: number, ta: boolean, tb: boolean) {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let p = 0; p < k; p++) s += a[ao + (ta ? p * m + i : i * k + p)] * b[bo + (tb ? j * k + p : p * n + j)];
    out[i * n + j] = s;
  }
  return out;
}

describe.skipIf(native === null)('native sgemm', () => {
  afterAll(() => native?.setThreads(1));
  const rand = rng(2024);
  // m <= 4 takes the unpacked small-m path (decoding); larger m the packed micro-kernel.
  const shapes = [[1, 1, 1], [3, 40, 37], [4, 9, 20], [1, 130, 64], [5, 17, 3], [6, 16, 8], [13, 33, 70], [97, 50, 129], [200, 40, 64], [7, 130, 1], [64, 64, 0]];
  for (const threads of [1, 2]) {
    for (const [m, n, k] of shapes) {
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
        it(`${threads} thread(s): [${m}x${k}]${ta ? 'ᵀ' : ''} x [${k}x${n}]${tb ? 'ᵀ' : ''}, 3 batches sharing one B`, () => {
          native!.setThreads(threads);
          const batch = 3;
          // A and C live at odd offsets inside larger buffers, as tensors do on the wasm heap.
          const a = randomArray(rand, batch * m * k + 5);
          const b = randomArray(rand, k * n + 3);
          const c = new Float32Array(batch * m * n + 7).fill(NaN);
          const ao = Uint32Array.from({ length: batch }, (_, q) => 5 + q * m * k);
          const bo = new Uint32Array(batch).fill(3);
          const co = Uint32Array.from({ length: batch }, (_, q) => 7 + q * m * n);
          native!.sgemm(a, b, c, ao, bo, co, m, n, k, ta, tb);
          for (let q = 0; q < batch; q++) {
            const want = reference(a, b, ao[q], 3, m, n, k, ta, tb);
            const got = c.subarray(co[q], co[q] + m * n);
            if (k === 0) expect(Array.from(got).every((v) => v === 0)).toBe(true);
            else expect(relativeError(got, want)).toBeLessThan(1e-5);
          }
          expect(c.subarray(0, 7).every((v) => Number.isNaN(v))).toBe(true); // nothing written before C
        });
      }
    }
  }

  // (each product is above the addon's 3 MFLOP threading threshold)
  it('2 threads, one product with few row blocks: split into row x column blocks', () => {
    native!.setThreads(2);
    for (const [m, n, k, ta, tb] of [[100, 300, 64, false, true], [128, 130, 257, true, false], [60, 520, 80, false, false]] as const) {
      const a = randomArray(rand, m * k), b = randomArray(rand, k * n), c = new Float32Array(m * n);
      native!.sgemm(a, b, c, Uint32Array.of(0), Uint32Array.of(0), Uint32Array.of(0), m, n, k, ta, tb);
      expect(relativeError(c, reference(a, b, 0, 0, m, n, k, ta, tb))).toBeLessThan(1e-5);
    }
  });

  it('gives bit-identical products on 1 and 2 threads (each output is summed by one thread, in k order)', () => {
    for (const [m, n, k, ta, tb] of [[100, 300, 64, false, true], [352, 128, 1024, true, false]] as const) {
      const a = randomArray(rand, m * k), b = randomArray(rand, k * n);
      const run = (threads: number) => {
        native!.setThreads(threads);
        const c = new Float32Array(m * n);
        native!.sgemm(a, b, c, Uint32Array.of(0), Uint32Array.of(0), Uint32Array.of(0), m, n, k, ta, tb);
        return c;
      };
      expect(Array.from(run(2))).toEqual(Array.from(run(1)));
    }
  });

  it('reads and writes one shared heap in place (the wasm case)', () => {
    const heap = randomArray(rand, 4096);
    const [m, n, k] = [randomInt(rand, 5, 20), randomInt(rand, 5, 20), randomInt(rand, 5, 20)];
    const want = reference(heap, heap, 0, 1000, m, n, k, false, true);
    const buffer = heap.buffer as ArrayBuffer;
    native!.sgemm(buffer, buffer, buffer, Uint32Array.of(0), Uint32Array.of(1000), Uint32Array.of(2048), m, n, k, false, true);
    expect(relativeError(heap.subarray(2048, 2048 + m * n), want)).toBeLessThan(1e-5);
  });

  it('refuses offsets past the end of a buffer, and bad argument types', () => {
    const a = new Float32Array(10);
    expect(() => native!.sgemm(a, a, a, Uint32Array.of(5), Uint32Array.of(0), Uint32Array.of(0), 2, 2, 3, false, false)).toThrow(/runs past the end/);
    expect(() => native!.sgemm(new Float64Array(4) as unknown as Float32Array, a, a, Uint32Array.of(0), Uint32Array.of(0), Uint32Array.of(0), 1, 1, 1, false, false)).toThrow(/Float32Arrays/);
    expect(() => native!.setThreads(0)).toThrow(/positive integer/);
  });

  it('reports its SIMD level and threads', () => {
    const info = native!.info();
    expect(info.cores).toBeGreaterThan(0);
    expect(['avx+fma', 'avx', 'scalar']).toContain(info.simd);
  });
});

describe.skipIf(native === null)('finding the addon', () => {
  it('from a script started outside the repository (ESM, no __dirname): located from lib/engine itself', async () => {
    const { execFileSync } = await import('node:child_process');
    const os = await import('node:os');
    const path = await import('node:path');
    const fs = await import('node:fs');
    const repo = path.resolve(__dirname, '..', '..');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-native-'));
    try {
      const script = path.join(dir, 'probe.mts');
      fs.writeFileSync(script, `import { loadNative } from ${JSON.stringify(path.join(repo, 'lib/engine/native.ts'))};\nconsole.log(JSON.stringify({ ok: loadNative().addon !== null }));\n`);
      const env = { ...process.env };
      delete env.DEEPALIGN_NATIVE;
      const out = execFileSync(process.execPath, [path.join(repo, 'node_modules/tsx/dist/cli.mjs'), script], { cwd: dir, env, encoding: 'utf8' });
      expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual({ ok: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
