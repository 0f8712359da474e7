// lib/datasets: the benchmark and training files researchers bring (AdvBench, HEx-PHI, Harmful
// HEx-PHI, StrongREJECT, MaliciousInstruct, Qi et al.'s augmentation triplets, chat fine-tuning
// JSONL, Alpaca) loaded as the kit's behaviour sets, and the kit's training sets written back out
// as JSONL for PyTorch trainers.
export * from './csv.js';
export * from './formats.js';
export * from './export.js';
