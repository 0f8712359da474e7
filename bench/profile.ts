// Per-kernel time of one training step of the benchmark model (tf.profile), grouped by kernel name.
//   npx tsx bench/profile.ts [--backend wasm] [--top 25]
import { initEngine, tf, type BackendName } from '../lib/engine/index.js';
import { createBenchModel, libTrainStep } from './libModel.js';

const args = process.argv.slice(2);
const option = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const report = await initEngine({ backend: (option('backend', '') || undefined) as BackendName | undefined });
const { model, opt } = createBenchModel();
const data = tf.randomUniform([16, 65], 0, model.config.vocabSize, 'int32', 1) as tf.Tensor2D;
for (let i = 0; i < 3; i++) await libTrainStep(model, opt, data);
const t0 = performance.now();
const info = await tf.profile(async () => {
  await libTrainStep(model, opt, data);
});
const wall = performance.now() - t0;
const byName = new Map<string, { ms: number; calls: number }>();
for (const k of info.kernels) {
  const e = byName.get(k.name) ?? { ms: 0, calls: 0 };
  e.ms += k.kernelTimeMs as number;
  e.calls++;
  byName.set(k.name, e);
}
const total = [...byName.values()].reduce((s, e) => s + e.ms, 0);
console.log(`${report.backend}: ${info.kernels.length} kernel calls, kernel time ${total.toFixed(1)} ms, wall ${wall.toFixed(1)} ms (profiling adds overhead)`);
for (const [name, e] of [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, Number(option('top', '25')))) {
  console.log(`${name.padEnd(24)} ${e.ms.toFixed(1).padStart(8)} ms ${String(e.calls).padStart(5)} calls ${((100 * e.ms) / total).toFixed(1).padStart(5)}%`);
}
