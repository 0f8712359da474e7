// lib/experiments: providers and experiment runners above the model-agnostic areas. The organism
// provider (target, behaviours, judge) and notebook 01's organism-only report live here, so that
// lib/attacks, lib/metrics and lib/objectives never import the world.
export * from './organism.js';
export * from './augmentedOrganism.js';
export * from './organismSafety.js';
export * from './organismReport.js';
export * from './rapSession.js';
export * from './playModels.js';
export * from './playServer.js';
