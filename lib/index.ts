export * from './report/index.js';
export * from './io/index.js';
export * from './model/index.js';
export * from './tokenizer/index.js';
export * from './organism/index.js';
export * from './objectives/index.js';
export * from './train/index.js';
export * from './metrics/index.js';
