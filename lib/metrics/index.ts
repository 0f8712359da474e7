// lib/metrics: evaluating models with the organism's exact judges.
export * from './safety.js';
export * from './organism.js';
