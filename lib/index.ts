export * from './report/index.js';
export * from './io/index.js';
export * from './model/index.js';
export * from './tokenizer/index.js';
