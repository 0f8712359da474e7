// The organism's generator is the kit's one PRNG (lib/util/rng.ts), re-exported here so the world's
// public surface stays as it was.
export * from '../util/rng.js';
