// lib/util: pure-TypeScript helpers every area may use (no tfjs, no world).
export * from './rng.js';
