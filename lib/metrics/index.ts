// lib/metrics: model-agnostic evaluation. A target (model + formatting), a behaviour set and a judge
// go in; rates with Wilson intervals, per-token KL and token ranks come out. No import of lib/organism.
export * from './decoding.js';
export * from './behaviours.js';
export * from './target.js';
export * from './judge.js';
export * from './evaluate.js';
export * from './stats.js';
export * from './kl.js';
export * from './ranks.js';
export * from './klProfile.js';
export * from './tokenGradients.js';
export * from './rankMatch.js';
export * from './rubrics.js';
export * from './llmJudge.js';
export * from './llamaGuard.js';
