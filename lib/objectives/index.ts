// lib/objectives: the loss interface and the objectives built on it.
export * from './types.js';
export * from './crossEntropy.js';
