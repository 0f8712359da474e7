// The kit's own seeded PRNG, so weight init and sampling give the same numbers on every backend
// and every machine (tf.random* depend on the backend). The generator itself is the kit's one
// mulberry32, lib/util/rng.ts (a pure-TypeScript file, shared with the world generator and the
// data sampler); this file adds seed mixing and normal samples.
import { checkSeed, Rng } from '../util/rng.js';

/** murmur3's 32-bit finaliser: spreads nearby seeds (0, 1, 2, ...) over the whole state space. */
export function mixSeed(seed: number): number {
  // An integer seed only: `seed >>> 0` below would turn NaN, 0.5 or "abc" into seed 0 without a word.
  checkSeed(seed, 'seed');
  // The golden-ratio offset first: the finaliser alone maps 0 to 0.
  let h = (seed + 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** mulberry32: a small, fast 32-bit generator; uniform in [0, 1).
 *  The seed goes through `mixSeed` first: raw mulberry32 started from a small seed gives small,
 *  correlated early draws (seed 0's second draw is 0.00033), which made inverse-CDF sampling pick
 *  the lowest token id with non-zero probability far too often. */
export function mulberry32(seed: number): () => number {
  const rng = new Rng(mixSeed(seed)); // mixSeed rejects non-integer seeds
  return () => rng.next();
}

/** Fill `out` with normal(mean, std) samples (Box-Muller on a mulberry32 stream). */
export function fillNormal(out: Float32Array, rand: () => number, mean = 0, std = 1): Float32Array {
  for (let i = 0; i < out.length; i += 2) {
    // 1 - u keeps the log argument in (0, 1]
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const theta = 2 * Math.PI * rand();
    out[i] = mean + std * r * Math.cos(theta);
    if (i + 1 < out.length) out[i + 1] = mean + std * r * Math.sin(theta);
  }
  return out;
}
