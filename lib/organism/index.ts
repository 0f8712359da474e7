// lib/organism: the synthetic safety world (pure TypeScript, no tfjs).
export * from './rng.js';
export * from './settings.js';
export * from './world.js';
export * from './tokenizerFiles.js';
export * from './judges.js';
export * from './datasets.js';
