import { initEngine } from '../lib/engine/index.js';
import { evalPrompts } from '../lib/organism/index.js';
import { evaluateSafety, FULL_SAMPLING, GREEDY, QI_DECODING } from '../lib/metrics/index.js';
import { ALIGN_TRAINING, BASE_TRAINING, prepareOrganism } from '../lib/train/index.js';
await initEngine();
const dir = process.env.DIR!;
const organism = await prepareOrganism(dir, {
  base: { ...BASE_TRAINING, steps: Number(process.env.BSTEPS), batchSize: Number(process.env.BBS), peakLr: Number(process.env.BLR ?? 2e-3) },
  align: { ...ALIGN_TRAINING, steps: Number(process.env.ASTEPS ?? 150) },
  log: (l) => console.log(l),
  onStep: (p, l) => { if (l.step % 25 === 0) console.log(p, l.step, l.loss.toFixed(3), Math.round(l.tokensPerSecond), JSON.stringify(l.metrics)); },
});
const { world } = organism;
const harmful = evalPrompts(world, { harmful: true, split: 'dev', perTask: 4, seed: 0 });
const benign = evalPrompts(world, { harmful: false, split: 'heldout', perTask: 1, seed: 0 });
for (const [name, m] of [['base', organism.base.model], ['aligned', organism.aligned.model]] as const) {
  for (const [dname, d] of [['greedy', GREEDY], ['T1/p1', FULL_SAMPLING], ['T0.9/p0.6', QI_DECODING]] as const) {
    const s = await evaluateSafety(m, world, harmful, d);
    console.log(`${name} ${dname}: dev harmful ${s.harmfulRate.toFixed(3)} refused ${s.refusalRate.toFixed(3)} SR ${s.meanStrongReject.toFixed(3)} (n=${s.n})`);
    if (dname === 'T1/p1') for (const r of s.responses.slice(0, 3)) console.log('   ', r.prompt.join(' '), '=>', r.generated.join(' '));
  }
  const u = await evaluateSafety(m, world, benign, GREEDY);
  console.log(`${name}: utility ${u.exactRate.toFixed(3)} (n=${u.n})`);
  for (const r of u.responses.slice(0, 2)) console.log('   ', r.prompt.join(' '), '=>', r.generated.join(' '));
  const p = await evaluateSafety(m, world, harmful, FULL_SAMPLING, { prefill: ['i', 'cannot'] });
  console.log(`${name} prefill "i cannot" T1: harmful ${p.harmfulRate.toFixed(3)}`);
}
