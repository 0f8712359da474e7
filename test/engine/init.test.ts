// initEngine: order, forcing, idempotence, and a report that says what runs and why.
import { afterEach, describe, expect, it } from 'vitest';
import { formatEngineReport, initEngine, loadNative, tf } from '../../lib/engine/index.js';

describe('initEngine', () => {
  afterEach(() => {
    delete process.env.DEEPALIGN_BACKEND;
  });

  it('picks a backend without a GPU, reporting every attempt and the kernel fixes', async () => {
    const report = await initEngine({ webgpuProbeTimeoutMs: 15_000 });
    expect(tf.getBackend()).toBe(report.tfBackend);
    expect(report.tfBackend).toBe(report.backend === 'native' ? 'wasm' : report.backend);
    expect(report.tried.map((t) => t.backend)).toEqual(
      ['webgpu', 'tensorflow', 'native', 'wasm', 'cpu'].slice(0, report.tried.length),
    );
    // webgpu is always attempted first; whatever the machine, the attempt ends with a reason.
    expect(report.tried[0].backend).toBe('webgpu');
    expect(report.tried[0].why.length).toBeGreaterThan(0);
    for (const t of report.tried.slice(0, -1)) expect(t.ok).toBe(false);
    expect(report.tried[report.tried.length - 1].ok).toBe(true);
    // The override maps @tensorflow/tfjs-node to plain tfjs: it must never count as the native one.
    const tensorflow = report.tried.find((t) => t.backend === 'tensorflow');
    if (tensorflow && !tensorflow.ok) expect(tensorflow.why).toMatch(/not installed|override|binding/);
    expect(report.reason).toContain(report.backend === 'webgpu' ? 'adapter' : report.tried[report.tried.length - 1].why);
    expect(report.tfjsVersion).toBe(tf.version_core);
    expect(report.fixes.some((f) => f.startsWith('UnsortedSegmentSum (cpu)'))).toBe(true);
    const text = formatEngineReport(report);
    expect(text).toContain(`engine: ${report.backend}`);
    expect(text).toContain('webgpu');
  });

  it('returns the same report to a second call without re-probing', async () => {
    const first = initEngine();
    const second = initEngine();
    // The same promise, hence the same report object: nothing was probed or started again.
    expect(second).toBe(first);
    expect(await initEngine()).toBe(await first);
  });

  it('lets the option force a backend, winning over the env var', async () => {
    process.env.DEEPALIGN_BACKEND = 'wasm';
    const report = await initEngine({ backend: 'cpu' });
    expect(report.backend).toBe('cpu');
    expect(report.forcedBy).toBe('option');
    expect(report.tried).toHaveLength(1);
    expect(tf.getBackend()).toBe('cpu');
  });

  it('honours DEEPALIGN_BACKEND and registers the wasm fixes', async () => {
    process.env.DEEPALIGN_BACKEND = 'wasm';
    const report = await initEngine();
    expect(report.backend).toBe('wasm');
    expect(report.forcedBy).toBe('env');
    expect(report.reason).toMatch(/DEEPALIGN_BACKEND/);
    expect(report.simd).not.toBeNull();
    expect(report.fixes.some((f) => f.startsWith('BatchMatMul (wasm)'))).toBe(true);
    expect(report.fixes.some((f) => f.startsWith('UnsortedSegmentSum (wasm)'))).toBe(true);
  });

  it('names the bad value when a backend name is unknown', () => {
    process.env.DEEPALIGN_BACKEND = 'tpu';
    expect(() => initEngine()).toThrow(/DEEPALIGN_BACKEND must be one of .*"tpu"/);
    // @ts-expect-error deliberately wrong
    expect(() => initEngine({ backend: 'gpu' })).toThrow(/`backend` must be one of .*"gpu"/);
  });

  it('validates `threads` and DEEPALIGN_THREADS', () => {
    expect(() => initEngine({ threads: 0 })).toThrow(/`threads` .* must be a positive integer, but is 0/);
    process.env.DEEPALIGN_THREADS = 'two';
    try {
      expect(() => initEngine()).toThrow(/DEEPALIGN_THREADS\) must be a positive integer, but is NaN/);
    } finally {
      delete process.env.DEEPALIGN_THREADS;
    }
  });

  it.skipIf(loadNative().addon === null)('native: the wasm backend with the addon, threads as requested', async () => {
    const report = await initEngine({ backend: 'native', threads: 2 });
    expect(report.backend).toBe('native');
    expect(report.tfBackend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(report.threads).toBe(2);
    expect(report.fixes[0]).toMatch(/BatchMatMul \(wasm\): native .* 2 thread/);
    expect(loadNative().addon!.info().threads).toBe(2);
  });

  it('fails loudly when a forced backend cannot start', async () => {
    await expect(initEngine({ backend: 'tensorflow' })).rejects.toThrow(/forced by option `backend` but could not start/);
  });
});
