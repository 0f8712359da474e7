import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import {
  collateRefLogProbs, constrainedSFTLoss, constrainedSFTObjective, constrainedSFTTokenLosses, referenceLogProbs, resolveConstrainedSFTOptions,
  stopGradient, targetBetas, withRefLogProbs, type ConstrainedSFTOptions,
} from '../../lib/objectives/constrainedSFT.js';
import { crossEntropyObjective, targetLogProbs } from '../../lib/objectives/crossEntropy.js';
import { collate, MixedBatchSampler, train, type TrainExample } from '../../lib/train/index.js';
import { Rng } from '../../lib/util/rng.js';
import { tinyModel } from '../train/tinyModel.js';

beforeAll(async () => {
  await initEngine();
});
afterAll(async () => {
  await initEngine(); // the last test switches to the cpu backend; leave the default behind
});

// ---------------------------------------------------------------------------------------------
// float64 references

function logSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
  return row.map((x) => x - lse);
}
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const softplus = (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

/** log p(ids[r][t] | < t) for t >= 1 (entry 0 = 0), float64. */
function logProbsRef(logits: number[][][], ids: number[][]): number[][] {
  return ids.map((row, r) => row.map((id, t) => (t === 0 ? 0 : logSoftmax(logits[r][t - 1])[id])));
}

/** beta of each target by its ordinal within the row (0 off targets and in column 0). */
function betasRef(mask: number[][], o = resolveConstrainedSFTOptions()): number[][] {
  return mask.map((row) => {
    let k = 0;
    return row.map((m, t) => {
      if (t === 0 || !m) return 0;
      k++;
      return k === 1 ? o.betaFirst : k <= o.earlyUntil ? o.betaEarly : o.betaLate;
    });
  });
}

function lossRef(logits: number[][][], ref: number[][], ids: number[][], mask: number[][], options: ConstrainedSFTOptions = {}): number {
  const o = resolveConstrainedSFTOptions(options);
  const logp = logProbsRef(logits, ids);
  const betas = betasRef(mask, o);
  let sum = 0;
  let count = 0;
  mask.forEach((row, r) => row.forEach((m, t) => {
    if (t === 0 || !m) return;
    const beta = betas[r][t];
    const d = logp[r][t] - ref[r][t];
    sum += o.form === 'eq3' ? (2 / beta) * softplus(-beta * d) : -Math.max(2 * sigmoid(beta * -d), 1e-3) * logp[r][t];
    count++;
  }));
  return sum / Math.max(count, 1);
}

function randomLogits(rng: Rng, b: number, t: number, v: number, scale = 6): number[][][] {
  return Array.from({ length: b }, () => Array.from({ length: t }, () => Array.from({ length: v }, () => (rng.next() - 0.5) * scale)));
}

/** A right-padded batch whose rows' targets start at different columns (prompt lengths 1..4). */
function randomBatch(seed: number, v = 11) {
  const rng = new Rng(seed);
  const lengths = [12, 9, 12, 6];
  const prompts = [1, 4, 2, 3];
  const t = 12;
  const ids = lengths.map((len) => Array.from({ length: t }, (_, s) => (s < len ? rng.int(v) : 0)));
  const mask: number[][] = lengths.map((len, r) => Array.from({ length: t }, (_, s) => (s >= prompts[r] && s < len ? 1 : 0)));
  const logits = randomLogits(rng, lengths.length, t, v);
  return { rng, ids, mask, logits, b: lengths.length, t, v };
}

function maxRelErr(a: number[], b: number[]): number {
  const scale = Math.max(...b.map(Math.abs));
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]) / scale));
}

// ---------------------------------------------------------------------------------------------

describe('constrained SFT: beta schedule and options', () => {
  it('beta follows each row\'s own targets (first 0.5, 2nd-5th 2, later 0.1), whatever column they start at', () => {
    const mask = [
      [0, 1, 1, 1, 1, 1, 1, 1, 0, 0],
      [0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
      [1, 0, 1, 1, 0, 0, 1, 1, 1, 1], // column 0 ignored; a gap keeps counting (2nd segment continues at k = 3)
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    const got = targetBetas(tf.tensor2d(mask)).arraySync();
    const want = [
      [0, 0.5, 2, 2, 2, 2, 0.1, 0.1, 0, 0],
      [0, 0, 0, 0, 0.5, 2, 2, 2, 2, 0.1],
      [0, 0, 0.5, 2, 0, 0, 2, 2, 2, 0.1],
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    got.forEach((row, r) => row.forEach((x, t) => expect(x).toBeCloseTo(want[r][t], 6)));
    expect(want).toEqual(betasRef(mask));
    // Uniform beta, and earlyUntil = 1 (no early block).
    const uniform = targetBetas(tf.tensor2d(mask), { beta: 0.3 }).arraySync();
    uniform.forEach((row, r) => row.forEach((x, t) => expect(x).toBeCloseTo(want[r][t] ? 0.3 : 0, 6)));
    const noEarly = targetBetas(tf.tensor2d([mask[1]]), { earlyUntil: 1 }).arraySync()[0];
    noEarly.forEach((x, t) => expect(x).toBeCloseTo([0, 0, 0, 0, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1][t], 6));
  });

  it('validates options, naming the option', () => {
    expect(resolveConstrainedSFTOptions()).toEqual({ betaFirst: 0.5, betaEarly: 2, earlyUntil: 5, betaLate: 0.1, form: 'eq3' });
    expect(resolveConstrainedSFTOptions({ beta: 0.7, form: 'reference' })).toEqual({ betaFirst: 0.7, betaEarly: 0.7, earlyUntil: 5, betaLate: 0.7, form: 'reference' });
    expect(() => resolveConstrainedSFTOptions({ betaFirst: 0 })).toThrow(/`betaFirst`/);
    expect(() => resolveConstrainedSFTOptions({ betaEarly: -1 })).toThrow(/`betaEarly`/);
    expect(() => resolveConstrainedSFTOptions({ betaLate: NaN })).toThrow(/`betaLate`/);
    expect(() => resolveConstrainedSFTOptions({ betaLate: Infinity })).toThrow(/`betaLate`/);
    expect(() => resolveConstrainedSFTOptions({ beta: 0 })).toThrow(/`beta`/);
    expect(() => resolveConstrainedSFTOptions({ beta: 1, betaLate: 0.1 })).toThrow(/`beta`.*`betaLate`/);
    expect(() => resolveConstrainedSFTOptions({ earlyUntil: 2.5 })).toThrow(/`earlyUntil`/);
    expect(() => resolveConstrainedSFTOptions({ earlyUntil: 0 })).toThrow(/`earlyUntil`/);
    expect(() => resolveConstrainedSFTOptions({ form: 'dpo' as never })).toThrow(/`form`/);
    expect(() => resolveConstrainedSFTOptions({ betafirst: 1 } as never)).toThrow(/unknown option `betafirst`/);
    expect(() => constrainedSFTObjective({ betaEarly: 0 })).toThrow(/`betaEarly`/);
  });
});

describe('constrained SFT loss', () => {
  it('matches a float64 reference on random inputs, both forms, default and uniform betas', () => {
    const { rng, ids, mask, logits, b, t, v } = randomBatch(21);
    // Reference log-probs from another random "model"; garbage (1000, NaN) off the targets must not matter.
    const refModel = logProbsRef(randomLogits(rng, b, t, v), ids);
    const refTensorData = refModel.map((row, r) => row.map((x, s) => (mask[r][s] && s > 0 ? x : s % 2 ? 1000 : NaN)));
    const before = tf.memory().numTensors;
    const [tl, tr, ti, tm] = [tf.tensor3d(logits), tf.tensor2d(refTensorData), tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(mask)];
    for (const options of [{}, { form: 'reference' as const }, { beta: 0.1 }, { beta: 0.1, form: 'reference' as const }, { betaFirst: 1, betaEarly: 3, earlyUntil: 3, betaLate: 0.05 }]) {
      const loss = constrainedSFTLoss(tl, tr, ti, tm, options);
      const want = lossRef(logits, refModel, ids, mask, options);
      expect(Math.abs(loss.dataSync()[0] - want)).toBeLessThan(2e-5 * Math.abs(want));
      loss.dispose();
    }
    // Per-token pieces: aligned with inputIds, 0 off targets.
    const pieces = constrainedSFTTokenLosses(tl, tr, ti, tm);
    const logp = logProbsRef(logits, ids);
    const betas = betasRef(mask);
    const per = pieces.losses.arraySync();
    mask.forEach((row, r) => row.forEach((m, s) => {
      if (s === 0 || !m) return expect(per[r][s]).toBe(0);
      const want = (2 / betas[r][s]) * softplus(-betas[r][s] * (logp[r][s] - refModel[r][s]));
      expect(Math.abs(per[r][s] - want)).toBeLessThan(1e-5 * Math.max(1, want));
    }));
    expect(pieces.count.dataSync()[0]).toBe(mask.flat().filter((x, i) => x && i % t !== 0).length);
    tf.dispose([tl, tr, ti, tm, pieces.losses, pieces.logProbs, pieces.targets, pieces.count]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the same row gives the same per-token losses whatever its prompt length (beta by target position, not column)', () => {
    const rng = new Rng(22);
    const v = 7;
    const response = [3, 1, 4, 1, 5, 2, 6, 5];
    const short = [2, ...response]; // prompt of 1 token
    const long = [0, 6, 6, 2, ...response]; // prompt of 4 tokens
    const respLogits = randomLogits(rng, 1, response.length, v)[0];
    const padLogits = randomLogits(rng, 1, 3, v)[0];
    const refs = Array.from({ length: response.length }, () => -1 - 2 * rng.next());
    const mk = (ids: number[], offset: number) => {
      // Response token j sits at column offset + 1 + j, predicted from logits column offset + j.
      const logits = ids.map((_, s) => (s >= offset && s - offset < response.length ? respLogits[s - offset] : padLogits[s % 3]));
      const mask = ids.map((_, s) => (s > offset ? 1 : 0));
      const ref = ids.map((_, s) => (s > offset ? refs[s - offset - 1] : 0));
      return constrainedSFTTokenLosses(tf.tensor3d([logits]), tf.tensor2d([ref]), tf.tensor2d([ids], undefined, 'int32'), tf.tensor2d([mask])).losses.arraySync()[0];
    };
    const a = mk(short, 0).slice(1);
    const bLong = mk(long, 3).slice(4);
    expect(a.length).toBe(response.length);
    a.forEach((x, j) => expect(bLong[j]).toBeCloseTo(x, 5));
  });

  it('eq3 and reference forms have the same gradient w.r.t. logits (clamp inactive), = weighted cross-entropy gradient', () => {
    const { rng, ids, mask, logits, b, t, v } = randomBatch(23);
    const logp = logProbsRef(logits, ids);
    // Reference within +-1.5 nats of the current log-prob: 2 sigmoid(beta (ref - logp)) >= 2 sigmoid(-3) >> 1e-3.
    const ref = logp.map((row) => row.map((x) => x + (rng.next() - 0.5) * 3));
    const [tr, ti, tm] = [tf.tensor2d(ref), tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(mask)];
    const grad = (form: 'eq3' | 'reference') => {
      const x = tf.tensor3d(logits);
      const g = tf.grad((y: tf.Tensor) => constrainedSFTLoss(y as tf.Tensor3D, tr, ti, tm, { form }))(x);
      const out = Array.from(g.dataSync());
      tf.dispose([x, g]);
      return out;
    };
    const before = tf.memory().numTensors;
    const gEq3 = grad('eq3');
    const gRef = grad('reference');
    expect(tf.memory().numTensors).toBe(before);
    expect(gEq3.length).toBe(b * t * v);
    for (let i = 0; i < gEq3.length; i++) expect(Math.abs(gEq3[i] - gRef[i])).toBeLessThanOrEqual(1e-4 * Math.max(Math.abs(gEq3[i]), Math.abs(gRef[i])) + 1e-9);
    // Float64 analytic gradient: d/dlogits[r][s-1] = (w / N) (softmax - onehot(ids[r][s])), w = 2 sigmoid(beta (ref - logp)).
    const betas = betasRef(mask);
    const n = mask.flat().filter((x, i) => x && i % t !== 0).length;
    const want = new Array(b * t * v).fill(0);
    mask.forEach((row, r) => row.forEach((m, s) => {
      if (s === 0 || !m) return;
      const w = 2 * sigmoid(betas[r][s] * (ref[r][s] - logp[r][s]));
      const p = logSoftmax(logits[r][s - 1]).map(Math.exp);
      p.forEach((pj, j) => (want[(r * t + s - 1) * v + j] += (w / n) * (pj - (j === ids[r][s] ? 1 : 0))));
    }));
    expect(maxRelErr(gEq3, want)).toBeLessThan(1e-5);
    expect(maxRelErr(gRef, want)).toBeLessThan(1e-5);
  });

  it('the reference form clamps its weight at 1e-3 where eq3\'s gradient vanishes', () => {
    const { ids, mask, logits, t, v } = randomBatch(24);
    const logp = logProbsRef(logits, ids);
    const beta = 2;
    // The model is 10 nats above the reference everywhere: eq3's weight 2 sigmoid(-20) ~ 4e-9.
    const ref = logp.map((row) => row.map((x) => x - 10));
    const [tr, ti, tm] = [tf.tensor2d(ref), tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(mask)];
    const grad = (form: 'eq3' | 'reference') =>
      Array.from(tf.grad((x: tf.Tensor) => constrainedSFTLoss(x as tf.Tensor3D, tr, ti, tm, { form, beta }))(tf.tensor3d(logits)).dataSync());
    const n = mask.flat().filter((x, i) => x && i % t !== 0).length;
    const ce = new Array(logits.length * t * v).fill(0);
    mask.forEach((row, r) => row.forEach((m, s) => {
      if (s === 0 || !m) return;
      logSoftmax(logits[r][s - 1]).map(Math.exp).forEach((pj, j) => (ce[(r * t + s - 1) * v + j] += (pj - (j === ids[r][s] ? 1 : 0)) / n));
    }));
    const gRef = grad('reference');
    const gEq3 = grad('eq3');
    expect(maxRelErr(gRef, ce.map((x) => 1e-3 * x))).toBeLessThan(1e-4);
    expect(maxRelErr(gEq3, ce.map((x) => 2 * sigmoid(-beta * 10) * x))).toBeLessThan(1e-3);
    // Values: reference = -1e-3 * mean log p; eq3 = mean (2/beta) softplus(-20).
    const meanLogp = mask.flat().reduce((a, m, i) => a + (m && i % t !== 0 ? logp[Math.floor(i / t)][i % t] : 0), 0) / n;
    expect(constrainedSFTLoss(tf.tensor3d(logits), tr, ti, tm, { form: 'reference', beta }).dataSync()[0]).toBeCloseTo(-1e-3 * meanLogp, 7);
    expect(constrainedSFTLoss(tf.tensor3d(logits), tr, ti, tm, { beta }).dataSync()[0]).toBeCloseTo((2 / beta) * softplus(-20), 10);
  });

  it('stopGradient: identity forward, zero gradient backward', () => {
    const x = tf.tensor1d([1, -2, 3]);
    expect(Array.from(stopGradient(x).dataSync())).toEqual([1, -2, 3]);
    // d/dx sum(sg(x) * x) = sg(x) = x (not 2x); d/dx sum(sg(x)) = 0.
    expect(Array.from(tf.grad((a: tf.Tensor) => tf.sum(tf.mul(stopGradient(a), a)))(x).dataSync())).toEqual([1, -2, 3]);
    expect(Array.from(tf.grad((a: tf.Tensor) => tf.sum(tf.mul(stopGradient(a), 5)))(x).dataSync())).toEqual([0, 0, 0]);
  });

  it('checks shapes', () => {
    const l = tf.zeros([2, 4, 5]) as tf.Tensor3D;
    const i = tf.zeros([2, 4], 'int32') as tf.Tensor2D;
    const m = tf.ones([2, 4]) as tf.Tensor2D;
    expect(() => constrainedSFTLoss(l, tf.zeros([2, 3]) as tf.Tensor2D, i, m)).toThrow(/refLogprobs/);
    expect(() => constrainedSFTLoss(l, m, i, tf.ones([1, 4]) as tf.Tensor2D)).toThrow(/targetMask/);
    expect(() => constrainedSFTLoss(tf.zeros([2, 3, 5]) as tf.Tensor3D, m, i, m)).toThrow(/logits/);
  });
});

// ---------------------------------------------------------------------------------------------

const VOCAB = 13;

function corpus(seed: number, n: number): TrainExample[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const len = 4 + rng.int(7);
    const prompt = 1 + rng.int(3);
    const ids = Array.from({ length: len }, () => rng.int(VOCAB));
    return { ids, lossMask: ids.map((_, t) => (t >= prompt ? 1 : 0)) };
  });
}

describe('constrained SFT objective and reference log-probs', () => {
  it('referenceLogProbs: examples (any chunking) and Batch forms agree with targetLogProbs', () => {
    const { model } = tinyModel(VOCAB, 8, 5);
    const examples = corpus(31, 7);
    const batch = collate(examples, examples.map(() => 'a'), 0);
    const before = tf.memory().numTensors;
    const fromBatch = referenceLogProbs(model, batch);
    const rows = fromBatch.arraySync();
    fromBatch.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const direct = tf.tidy(() => targetLogProbs(model.forward(batch.inputIds).logits, batch.inputIds).arraySync());
    const a = referenceLogProbs(model, examples, { batchSize: 2, padId: 5 });
    const b = referenceLogProbs(model, examples);
    expect(tf.memory().numTensors).toBe(before);
    examples.forEach((e, r) => {
      expect(a[r].length).toBe(e.ids.length);
      expect(a[r][0]).toBe(0);
      for (let t = 1; t < e.ids.length; t++) {
        expect(a[r][t]).toBeCloseTo(direct[r][t - 1], 5);
        expect(b[r][t]).toBeCloseTo(a[r][t], 5);
        expect(rows[r][t]).toBeCloseTo(a[r][t], 5);
      }
      for (let t = e.ids.length; t < rows[r].length; t++) expect(rows[r][t]).toBe(0);
    });
    // withRefLogProbs + collateRefLogProbs: the trainer's path.
    const prepared = withRefLogProbs(model, examples);
    expect(prepared[0].extras!.refLogprobs).toEqual(b[0]);
    expect(prepared[0].ids).toBe(examples[0].ids);
    const extras = collateRefLogProbs(prepared);
    expect(extras.refLogprobs.shape).toEqual(batch.inputIds.shape);
    const collated = extras.refLogprobs.arraySync();
    collated.forEach((row, r) => row.forEach((x, t) => expect(x).toBeCloseTo(rows[r][t], 5)));
    expect(() => collateRefLogProbs(examples)).toThrow(/extras\.refLogprobs/);
  });

  it('at the reference point: eq3 loss = mean (2/beta_t) log 2; the reference form = cross-entropy, with the same gradients', () => {
    const { model, params } = tinyModel(VOCAB, 8, 6);
    const examples = withRefLogProbs(model, corpus(32, 6));
    const sources = examples.map((_, i) => (i < 2 ? 'safety' : 'utility'));
    const batch = collate(examples, sources, 0, collateRefLogProbs(examples));
    const vars = [...params.values()];
    const run = (objective: ReturnType<typeof crossEntropyObjective>) => {
      let metrics: Record<string, number> = {};
      const { value, grads } = tf.variableGrads(() => {
        const out = objective.compute(model, batch);
        metrics = Object.fromEntries(Object.entries(out.metrics ?? {}).map(([k, x]) => [k, x.dataSync()[0]]));
        return out.loss;
      }, vars);
      const g = vars.map((x) => Array.from(grads[x.name].dataSync()));
      const loss = value.dataSync()[0];
      tf.dispose([value, ...Object.values(grads)]);
      return { loss, g, metrics };
    };
    const betas = betasRef(examples.map((e) => e.lossMask));
    const flat = betas.flat().filter((x) => x > 0);
    const eq3 = run(constrainedSFTObjective());
    expect(eq3.loss).toBeCloseTo(flat.reduce((a, beta) => a + (2 / beta) * Math.LN2, 0) / flat.length, 4);
    expect(eq3.metrics.tokens).toBe(flat.length);
    const ce = run(crossEntropyObjective());
    expect(eq3.metrics.nll).toBeCloseTo(ce.loss, 5);
    expect(Object.keys(eq3.metrics).sort()).toEqual(['loss/safety', 'loss/utility', 'nll', 'tokens']);
    const reference = run(constrainedSFTObjective({ form: 'reference' }));
    expect(reference.loss).toBeCloseTo(ce.loss, 5);
    // Weight 2 sigmoid(0) = 1 at every token: all three gradients are the cross-entropy gradient.
    for (let k = 0; k < vars.length; k++) {
      expect(maxRelErr(reference.g[k], ce.g[k])).toBeLessThan(1e-5);
      expect(maxRelErr(eq3.g[k], ce.g[k])).toBeLessThan(1e-5);
    }
    expect(constrainedSFTObjective().name).toBe('constrained_sft[form=eq3,betaFirst=0.5,betaEarly=2,earlyUntil=5,betaLate=0.1]');
    const noRef = collate(examples, sources, 0);
    expect(() => constrainedSFTObjective().compute(model, noRef)).toThrow(/batch\.extras\.refLogprobs/);
  });

  it('trains with the kit\'s trainer (default backend and cpu): finite losses, the model moves, nll falls', async () => {
    for (const backend of [undefined, 'cpu'] as const) {
      if (backend) await initEngine({ backend });
      const { model, params } = tinyModel(VOCAB, 8, 7);
      const data = withRefLogProbs(model, corpus(33, 12));
      const sampler = new MixedBatchSampler([{ name: 'd', examples: data, perBatch: 4 }], 1);
      for (const form of ['eq3', 'reference'] as const) {
        const result = await train({
          model, params, sampler, padId: 0, objective: constrainedSFTObjective({ form, beta: 0.1 }),
          schedule: { peakLr: 0.05, warmupSteps: 1, totalSteps: 6, decay: 'cosine', minLrRatio: 0.1 },
          batchExtras: collateRefLogProbs,
        });
        expect(result.completed).toBe(true);
        result.log.forEach((s) => expect(Number.isFinite(s.loss) && Number.isFinite(s.gradNorm) && s.gradNorm > 0).toBe(true));
      }
      const nll = (ex: TrainExample[]) => {
        const all = referenceLogProbs(model, ex);
        let sum = 0;
        let n = 0;
        ex.forEach((e, r) => e.lossMask.forEach((m, t) => { if (t > 0 && m) { sum -= all[r][t]; n++; } }));
        return sum / n;
      };
      const trainedNll = nll(data);
      // referenceLogProbs of the trained model vs the stored (initial) ones: training lowered the NLL.
      const initialNll = data.reduce((a, e) => a - e.lossMask.reduce((s, m, t) => s + (t > 0 && m ? (e.extras!.refLogprobs as number[])[t] : 0), 0), 0)
        / data.reduce((a, e) => a + e.lossMask.filter((m, t) => t > 0 && m).length, 0);
      expect(trainedNll).toBeLessThan(initialNll);
    }
  });
});
