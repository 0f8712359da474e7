// Checkpoint I/O: safetensors, Hugging Face config normalisation, checkpoint folders.
export * from './safetensors.js';
export * from './hfConfig.js';
export * from './checkpoint.js';
export * from './atomic.js';
export * from './json.js';
export * from './atomicFolder.js';
