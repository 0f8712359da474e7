// The transformer (every supported family), its hooks, loading/creating/saving, and generation.
export { Decoder, ActivationCache, attention, registerAttention, parameterSpecs, ropeInvFreq, disposeCache, MASK_VALUE } from './decoder.js';
export type { ForwardOptions, ForwardOutput, KVCache, IdsInput, ParamSpec, AttentionOptions, AttentionFn, KernelChoice } from './decoder.js';
export { HookSet, act, BLOCK_HOOK_SUFFIXES } from './hooks.js';
export type { HookName, HookFn, HookFilter, HookContext, BlockHookSuffix } from './hooks.js';
export { loadModel, createModel, saveModel } from './load.js';
export { addLora, loraParameters, saveLoraAdapter, loadLoraAdapter, mergeLora, getLoraConfig, copyLoraAdapters, setLoraTraining, LORA_DEFAULT_TARGETS, LORA_DEFAULT_TARGETS_GPT2 } from './lora.js';
export type { LoraConfig, SaveLoraOptions } from './lora.js';
export type { CreateModelOptions, SaveModelOptions } from './load.js';
export { generate, positionsFromMask } from './generate.js';
export type { GenerateOptions, GenerateOutput, StepInfo, StepRecord, Candidate } from './generate.js';
export { temperatureProcessor, topKProcessor, topPProcessor, minPProcessor, buildProcessors } from './sampling.js';
export type { LogitsProcessor, SamplingOptions } from './sampling.js';
export { padRows } from './inputs.js';
export type { ContextPolicy } from './inputs.js';
