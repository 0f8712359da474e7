// What an untimed generation warm-up is worth: in one process, the standard benchmark model after
// 7 training steps generates 48 tokens cold, then twice more warm, at batch 1 and 16; prints the
// milliseconds as one JSON line. Run it several times (the machine is shared; single pairs are
// noisy):  npx tsx bench/genWarmup.ts
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initEngine, tf } from '../lib/engine/index.js';
import { createBenchModel, libGenerate, libTrainStep } from './libModel.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = path.join(repoRoot, 'build', 'Release', 'deepalign_native.node');
if (!process.env.DEEPALIGN_NATIVE && existsSync(addonPath)) process.env.DEEPALIGN_NATIVE = addonPath;

const report = await initEngine();
const { model, opt } = createBenchModel();
const vocab = model.config.vocabSize;
const data = tf.randomUniform([16, 65], 0, vocab, 'int32', 1) as tf.Tensor2D;
for (let s = 0; s < 7; s++) await libTrainStep(model, opt, data);
const ms: Record<string, number> = {};
for (const b of [1, 16]) {
  // the bench's prompts
  const prompt = Array.from({ length: b }, (_, i) => Array.from({ length: 16 }, (_, j) => (i * 131 + j * 17 + 3) % vocab));
  for (const label of ['cold', 'warm', 'warm2']) {
    const t0 = performance.now();
    await libGenerate(model, prompt, 48);
    ms[`b${b}_${label}_ms`] = Math.round(performance.now() - t0);
  }
}
data.dispose();
model.dispose();
console.log(JSON.stringify({ backend: report.backend, ...ms }));
