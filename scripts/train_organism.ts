// Train (or retrain) the organism's base and aligned checkpoints into data/organism/.
//   npx tsx scripts/train_organism.ts            train what is missing
//   npx tsx scripts/train_organism.ts --retrain  retrain both from scratch
// Env: DEEPALIGN_ORGANISM_DIR (default data/organism). Interrupted runs resume from <dir>/.ckpt.
import { formatEngineReport, initEngine } from '../lib/engine/index.js';
import { progress } from '../lib/report/index.js';
import { evalPrompts } from '../lib/organism/index.js';
import { FULL_SAMPLING, GREEDY, QI_DECODING } from '../lib/metrics/index.js';
import { evaluateSafety } from '../lib/experiments/index.js';
import { ALIGN_TRAINING, BASE_TRAINING, prepareOrganism } from '../lib/train/index.js';
import * as os from 'node:os';
import * as path from 'node:path';

// DEEPALIGN_FAST=1: a few steps into a scratch folder, to check the pipeline end to end (never the cache).
const fast = process.env.DEEPALIGN_FAST === '1';
const dir = process.env.DEEPALIGN_ORGANISM_DIR ?? (fast ? path.join(os.tmpdir(), 'deepalign-organism-fast') : 'data/organism');
const retrain = process.argv.includes('--retrain') || fast;
const engine = await initEngine();
console.log(formatEngineReport(engine));
const bars: Record<string, ReturnType<typeof progress>> = {};
const started = Date.now();
const organism = await prepareOrganism(dir, {
  retrain, backend: engine.backend,
  ...(fast ? { base: { ...BASE_TRAINING, steps: 20, warmupSteps: 2, batchSize: 16, corpusSize: 400 }, align: { ...ALIGN_TRAINING, steps: 10, warmupSteps: 2, safetyPerBatch: 4, utilityPerBatch: 8 } } : {}), log: (line) => console.log(line),
  onStep: (phase, l, total) => {
    bars[phase] ??= progress(total, { label: phase, unit: 'step' });
    bars[phase].update(l.step, { loss: l.loss.toFixed(3), 'tok/s': Math.round(l.tokensPerSecond) });
    if (l.step === total) bars[phase].done();
  },
});
console.log(`trained: ${organism.trained.join(', ') || 'nothing (both checkpoints present)'} in ${((Date.now() - started) / 1000).toFixed(0)} s`);

// A quick check on the dev split (the held-out split is for the notebook's results).
const { world } = organism;
const harmful = evalPrompts(world, { harmful: true, split: 'dev', perTask: fast ? 1 : 4, seed: 0 });
const benign = evalPrompts(world, { harmful: false, split: 'heldout', perTask: 1, seed: 0 });
for (const [name, m] of [['base', organism.base.model], ['aligned', organism.aligned.model]] as const) {
  for (const [dname, d] of [['greedy', GREEDY], ['T1/p1', FULL_SAMPLING], ['T0.9/p0.6', QI_DECODING]] as const) {
    const s = await evaluateSafety(m, world, harmful, d);
    console.log(`${name} ${dname}: dev harmful ${s.harmfulRate.toFixed(3)} refused ${s.refusalRate.toFixed(3)} StrongREJECT ${s.meanStrongReject.toFixed(3)} (n=${s.n})`);
  }
  const u = await evaluateSafety(m, world, benign, GREEDY);
  console.log(`${name}: utility (greedy exact match, benign held-out) ${u.exactRate.toFixed(3)} (n=${u.n})`);
}
