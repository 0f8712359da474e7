// Forward+backward time of each fused op against lib/model's plain-op composition, at the
// benchmark model's shapes (B 16, T 64, H 4, Hkv 2, dh 32, D 128, I 352).
//   npx tsx bench/fused.ts [--backend native]
import { adamwReference, adamwUpdate, crossEntropy, fusedAttention, initEngine, rmsNorm, rope, ropeReference, swiglu, tf, type BackendName } from '../lib/engine/index.js';

const args = process.argv.slice(2);
const i = args.indexOf('--backend');
const report = await initEngine({ backend: (i >= 0 ? args[i + 1] : undefined) as BackendName | undefined });
const [B, T, H, Hkv, dh, D, I] = [16, 64, 4, 2, 32, 128, 352];

function time(name: string, inputs: tf.Tensor[], f: (...xs: tf.Tensor[]) => tf.Tensor, reps = 20): number {
  const g = tf.grads((...xs: tf.Tensor[]) => tf.sum(f(...xs)));
  for (let r = 0; r < 3; r++) tf.dispose(g(inputs));
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) {
    const out = g(inputs);
    out[0].dataSync();
    tf.dispose(out);
  }
  return (performance.now() - t0) / reps;
}

const rows: [string, number, number][] = [];
const x = tf.randomNormal([B * T, D]), w = tf.randomNormal([D]);
rows.push(['rmsNorm [1024,128]',
  time('plain', [x, w], (a, b) => tf.mul(tf.mul(a, tf.rsqrt(tf.add(tf.mean(tf.square(a), -1, true), 1e-5))), b)),
  time('fused', [x, w], (a, b) => rmsNorm(a, b, 1e-5))]);
const gt = tf.randomNormal([B * T, I]), up = tf.randomNormal([B * T, I]);
rows.push(['swiglu [1024,352]', time('plain', [gt, up], (a, b) => tf.mul(tf.mul(a, tf.sigmoid(a)), b)), time('fused', [gt, up], swiglu)]);
const xr = tf.randomNormal([B, T, H, dh]);
const ang = tf.randomNormal([1, T, 1, dh / 2]);
const [cos, sin] = [tf.cos(ang), tf.sin(ang)];
rows.push(['rope [16,64,4,32]', time('plain', [xr], (a) => ropeReference(a, cos, sin)), time('fused', [xr], (a) => rope(a, cos, sin))]);
const q = tf.randomNormal([B, H, T, dh]), k = tf.randomNormal([B, Hkv, T, dh]), v = tf.randomNormal([B, Hkv, T, dh]);
const mask = tf.tensor(Float32Array.from({ length: T * T }, (_, j) => (j % T > Math.floor(j / T) ? -3.4e38 : 0)), [1, 1, T, T]);
const plainAttention = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => {
  // lib/model's attention: query heads of a group stacked along the query axis
  const g = H / Hkv;
  const s = tf.reshape(tf.matMul(tf.reshape(tf.mul(qq, dh ** -0.5), [B, Hkv, g * T, dh]), kk, false, true), [B, H, T, T]);
  const p = tf.softmax(tf.add(s, mask), -1);
  return tf.reshape(tf.matMul(tf.reshape(p, [B, Hkv, g * T, T]), vv), [B, H, T, dh]);
};
rows.push(['attention B16 H4/2 T64', time('plain', [q, k, v], plainAttention), time('fused', [q, k, v], (a, b, c) => fusedAttention(a, b, c, mask, { scale: dh ** -0.5 }).output)]);
const logits = tf.randomNormal([B, T, 512]);
const targets = tf.randomUniform([B, T], 0, 512, 'int32', 3);
rows.push(['crossEntropy [16,64,512]',
  time('plain', [logits], (l) => tf.sub(tf.logSumExp(l, -1), tf.sum(tf.mul(l, tf.oneHot(targets, 512)), -1))),
  time('fused', [logits], (l) => crossEntropy(l, targets))]);
// AdamW over every parameter of the benchmark model (shapes from its HF layout).
const paramShapes: number[][] = [[512, 128], [128], [512, 128]];
for (let l = 0; l < 4; l++) paramShapes.push([128], [128], [128, 128], [64, 128], [64, 128], [128, 128], [352, 128], [352, 128], [128, 352]);
const state = paramShapes.map((s) => [tf.randomNormal(s), tf.randomNormal(s), tf.zeros(s), tf.zeros(s)]);
const adam = (f: typeof adamwUpdate) => {
  for (let r = 0; r < 3; r++) tf.tidy(() => { state.forEach(([p, g, m, v]) => f(p, g, m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 })); });
  const t0 = performance.now();
  for (let r = 0; r < 10; r++) tf.tidy(() => { const outs = state.map(([p, g, m, v]) => f(p, g, m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 })); outs[outs.length - 1].p.dataSync(); });
  return (performance.now() - t0) / 10;
};
rows.push([`AdamW, ${paramShapes.length} params`, adam(adamwReference), adam(adamwUpdate)]);
console.log(`${report.backend}: forward+backward ms per call (AdamW: one update of all parameters)`);
for (const [name, plain, fused] of rows) console.log(`${name.padEnd(26)} plain ${plain.toFixed(2).padStart(7)}  fused ${fused.toFixed(2).padStart(7)}  x${(plain / fused).toFixed(2)}`);
