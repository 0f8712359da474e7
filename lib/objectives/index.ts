// lib/objectives: the loss interface and the objectives built on it.
export * from './types.js';
export * from './crossEntropy.js';
export * from './augmentation.js';
export * from './responseCE.js';
export * from './constrainedSFT.js';
export * from './prefillSpans.js';
export * from './presto.js';
export * from './pushForward.js';
export * from './augmentationObjective.js';
export * from './worstInsertion.js';
export * from './derta.js';
