// lib/train: AdamW, lr schedules, mixed batches, and the checkpointing training loop.
export * from './schedule.js';
export * from './optimizer.js';
export * from './data.js';
export * from './trainer.js';
export * from './organism.js';
export * from './fineTune.js';
export * from './augment.js';
export * from './cache.js';
export * from './worstInsertion.js';
export * from './derta.js';
