// lib/attacks: attacks on any target (model + formatting), behaviour set and judge. Never imports
// lib/organism or lib/experiments.
export * from './prefill.js';
export * from './decodingExploit.js';
export * from './fineTuning.js';
export * from './gcg.js';
export * from './rap.js';
export * from './rapHelper.js';
export * from './insertion.js';
