// LoRA adapters (Hu et al. 2021) in Hugging Face PEFT's format, so an adapter trained here loads
// with PeftModel.from_pretrained and one trained with PEFT loads here.
//
// For each targeted Linear W [out, in] an adapter holds A [r, in] and B [out, r]; the layer computes
//   y = W x + b + scaling * B (A dropout(x)),   scaling = alpha / r (rsLoRA: alpha / sqrt(r)),
// PEFT's LoraLayer order (base layer with its bias first). Initialisation is PEFT's default
// (init_lora_weights=True): A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), drawn from
// the kit's seeded generator per module, and B = 0, so a fresh adapter leaves the model unchanged.
// gpt2's Conv1D layers store W as [in, out]; A and B keep the nn.Linear layout there too, as in
// PEFT (which forces fan_in_fan_out=True for Conv1D and transposes only when merging).
//
// Names: the adapter of module `model.layers.0.self_attn.q_proj` (the base weight's name without
// `.weight`) has tensors `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` and
// `...lora_B.weight`, the keys PeftModelForCausalLM saves in adapter_model.safetensors.
// target_modules match PEFT's rule: an entry matches a module whose name equals it or ends with
// "." + entry; a single string is a regular expression that must match the whole name, and
// 'all-linear' takes every Linear of the blocks (lm_head and embeddings are never adapted here).
//
// Dropout acts only while a training step has switched it on (setLoraTraining, which fineTune does
// around each loss computation), so evaluation, generation and the examples worst-insertion
// training scores are never dropped out. Its masks come from the kit's seeded generator keyed by
// (seed, step, module, call within the step), so a resumed run draws the same masks as an
// uninterrupted one. They are drawn on the CPU ([tokens, in] uniforms per adapted module per
// forward), which is cheap next to the matMuls at this kit's scale.
import * as fs from 'fs';
import * as path from 'path';
import { tf } from '../engine/tf.js';
import { readJsonFile } from '../io/json.js';
import { readSafetensorsHeader, readTensor, writeSafetensors, type SafetensorsDtype, type TensorToWrite } from '../io/safetensors.js';
import { recoverFolder, writeFolderAtomic } from '../io/atomicFolder.js';
import { checkSeed, Rng } from '../util/rng.js';
import type { Decoder, Linear, LinearAdapter } from './decoder.js';

export interface LoraConfig {
  /** rank of A [r, in] and B [out, r] */
  r: number;
  /** PEFT's lora_alpha: the update is scaled by alpha / r (alpha / sqrt(r) with useRslora) */
  alpha: number;
  /** PEFT's lora_dropout on the adapter's input, in [0, 1), training steps only (default 0) */
  dropout?: number;
  /**
   * PEFT's target_modules (default: every Linear of the blocks: q_proj, k_proj, v_proj, o_proj,
   * gate_proj, up_proj, down_proj; for gpt2 c_attn, c_proj, c_fc). A list of names or name suffixes
   * (`q_proj`, `self_attn.q_proj`, `mlp.c_proj`), a regular expression matching the whole module
   * name, or 'all-linear'.
   */
  targetModules?: string[] | string;
  /** seeds A's initialisation and the dropout masks (default 0) */
  seed?: number;
  /** rank-stabilised LoRA (PEFT's use_rslora): scaling alpha / sqrt(r) (default false) */
  useRslora?: boolean;
}

type ResolvedConfig = Required<LoraConfig>;

/** The Linear layers of a block, as PEFT's 'all-linear' would pick them (the output layer excluded). */
export const LORA_DEFAULT_TARGETS: readonly string[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
/** gpt2's Conv1D layers under their transformers names. */
export const LORA_DEFAULT_TARGETS_GPT2: readonly string[] = ['c_attn', 'c_proj', 'c_fc'];

const CONFIG_KEYS = ['r', 'alpha', 'dropout', 'targetModules', 'seed', 'useRslora'];
const CONFIG_FILE = 'adapter_config.json';
const WEIGHTS_FILE = 'adapter_model.safetensors';
/** PeftModel's prefix: PeftModel.base_model (LoraModel) .model (the *ForCausalLM). */
const PEFT_PREFIX = 'base_model.model.';

// ---------------------------------------------------------------------------------------------
// attaching

interface TrainingContext {
  step: number;
  /** forward calls per module so far in this step (each call draws its own mask) */
  calls: Map<string, number>;
}

interface LoraState {
  config: ResolvedConfig;
  adapters: LoraAdapter[];
  training: TrainingContext | null;
}

const attached = new WeakMap<Decoder, LoraState>();
// tfjs variable names are global to the engine: every adapter gets a fresh prefix.
let adapterCounter = 0;

class LoraAdapter implements LinearAdapter {
  constructor(
    readonly module: string,
    readonly a: tf.Variable,
    readonly b: tf.Variable,
    readonly scaling: number,
    private readonly state: LoraState,
  ) {}

  delta(x2d: tf.Tensor): tf.Tensor {
    let x = x2d;
    const { dropout, seed } = this.state.config;
    const training = this.state.training;
    if (training && dropout > 0) {
      const call = training.calls.get(this.module) ?? 0;
      training.calls.set(this.module, call + 1);
      x = tf.mul(x, dropoutMask(x.shape as [number, number], dropout, `${seed}:lora_dropout:${training.step}:${this.module}:${call}`));
    }
    // scaling applied to the narrow [N, r] product rather than to [N, out] (PEFT scales the
    // output; the two differ by float rounding only)
    let h = tf.matMul(x, this.a, false, true); // [N, r]
    if (this.scaling !== 1) h = tf.mul(h, this.scaling);
    return tf.matMul(h, this.b, false, true); // [N, out]
  }

  dispose(): void {
    this.a.dispose();
    this.b.dispose();
  }
}

/** torch's dropout: each value kept with probability 1 - p and scaled by 1 / (1 - p). */
function dropoutMask(shape: [number, number], p: number, seed: string): tf.Tensor2D {
  const rng = new Rng(seed);
  const keep = 1 / (1 - p);
  const mask = new Float32Array(shape[0] * shape[1]);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.next() < p ? 0 : keep;
  return tf.tensor2d(mask, shape);
}

/** [in, out] of a Linear as nn.Linear sees them (gpt2's Conv1D stores W transposed). */
function dims(lin: Linear): { inDim: number; outDim: number } {
  const [d0, d1] = lin.w.shape as [number, number];
  return lin.inOut ? { inDim: d0, outDim: d1 } : { inDim: d1, outDim: d0 };
}

function resolveConfig(model: Decoder, config: LoraConfig, caller: string): ResolvedConfig {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new Error(`${caller}: the LoRA config must be an object { r, alpha, ... }, but is ${JSON.stringify(config)}`);
  const unknown = Object.keys(config).filter((k) => !CONFIG_KEYS.includes(k));
  if (unknown.length) throw new Error(`${caller}: unknown LoRA option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `\`${k}\``).join(', ')}; known: ${CONFIG_KEYS.join(', ')}`);
  const { r, alpha } = config;
  if (!(Number.isInteger(r) && r >= 1)) throw new Error(`${caller}: LoRA \`r\` must be a positive integer, but is ${JSON.stringify(r)}`);
  if (!(typeof alpha === 'number' && Number.isFinite(alpha) && alpha > 0)) throw new Error(`${caller}: LoRA \`alpha\` must be a finite number > 0, but is ${JSON.stringify(alpha)}`);
  const dropout = config.dropout ?? 0;
  if (!(typeof dropout === 'number' && dropout >= 0 && dropout < 1)) throw new Error(`${caller}: LoRA \`dropout\` must be a number in [0, 1), but is ${JSON.stringify(config.dropout)}`);
  const seed = config.seed === undefined ? 0 : checkSeed(config.seed, `${caller}: LoRA seed`);
  const useRslora = config.useRslora ?? false;
  if (typeof useRslora !== 'boolean') throw new Error(`${caller}: LoRA \`useRslora\` must be true or false, but is ${JSON.stringify(config.useRslora)}`);
  const targets = config.targetModules ?? (model.config.modelType === 'gpt2' ? LORA_DEFAULT_TARGETS_GPT2 : LORA_DEFAULT_TARGETS);
  if (typeof targets === 'string') {
    if (targets === '') throw new Error(`${caller}: LoRA \`targetModules\` must not be empty`);
  } else if (!Array.isArray(targets) || targets.length === 0 || targets.some((t) => typeof t !== 'string' || t === '')) {
    throw new Error(`${caller}: LoRA \`targetModules\` must be a non-empty list of module names, a regular expression or 'all-linear', but is ${JSON.stringify(targets)}`);
  }
  return { r, alpha, dropout, seed, useRslora, targetModules: typeof targets === 'string' ? targets : [...targets] };
}

/** PEFT's check_target_module_exists for one module name. */
function matcher(targets: string[] | string, caller: string): (name: string) => boolean {
  if (targets === 'all-linear') return () => true;
  if (typeof targets === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${targets})$`);
    } catch (e) {
      throw new Error(`${caller}: LoRA \`targetModules\` "${targets}" is not a valid regular expression (${(e as Error).message})`);
    }
    return (name) => re.test(name);
  }
  return (name) => targets.some((t) => name === t || name.endsWith(`.${t}`));
}

/** The modules a config adapts, in forward order; errors list what the model has. */
function targetedModules(model: Decoder, config: ResolvedConfig, strict: boolean, caller: string): [string, Linear][] {
  const layers = [...model.linearLayers()];
  const matches = matcher(config.targetModules, caller);
  const chosen = layers.filter(([name]) => matches(name));
  const kinds = [...new Set(layers.map(([name]) => name.split('.').slice(-2).join('.')))].join(', ');
  const shown = JSON.stringify(config.targetModules);
  if (chosen.length === 0) {
    throw new Error(`${caller}: LoRA target modules ${shown} match no Linear layer of this ${model.config.modelType} model; its block layers are ${kinds} `
      + `(module names like "${layers[0]?.[0]}"; lm_head and the embeddings cannot be adapted)`);
  }
  // A listed name that matches nothing is almost always a typo or another family's name (PEFT
  // accepts it silently when others match; adapters written elsewhere are loaded that way).
  if (strict && Array.isArray(config.targetModules)) {
    const unused = config.targetModules.filter((t) => !layers.some(([name]) => matcher([t], caller)(name)));
    if (unused.length) throw new Error(`${caller}: LoRA target module${unused.length > 1 ? 's' : ''} ${unused.map((t) => `"${t}"`).join(', ')} match${unused.length > 1 ? '' : 'es'} no Linear layer of this ${model.config.modelType} model; its block layers are ${kinds}`);
  }
  return chosen;
}

function attach(model: Decoder, config: ResolvedConfig, strict: boolean, caller: string, init: (module: string, lin: Linear) => { a: Float32Array; b: Float32Array }): LoraState {
  if (attached.has(model)) throw new Error(`${caller}: the model already has LoRA adapters; mergeLora(model) first, or use a fresh model`);
  const modules = targetedModules(model, config, strict, caller);
  const scaling = config.useRslora ? config.alpha / Math.sqrt(config.r) : config.alpha / config.r;
  const state: LoraState = { config, adapters: [], training: null };
  const prefix = `lora${++adapterCounter}/`;
  try {
    for (const [module, lin] of modules) {
      if (lin.adapter) throw new Error(`${caller}: module "${module}" already has an adapter`);
      const { inDim, outDim } = dims(lin);
      const values = init(module, lin);
      const a = tf.tidy(() => tf.variable(tf.tensor2d(values.a, [config.r, inDim]), true, `${prefix}${peftName(module, 'A')}`));
      const b = tf.tidy(() => tf.variable(tf.tensor2d(values.b, [outDim, config.r]), true, `${prefix}${peftName(module, 'B')}`));
      state.adapters.push(new LoraAdapter(module, a, b, scaling, state));
    }
  } catch (e) {
    for (const ad of state.adapters) ad.dispose();
    throw e;
  }
  const layers = model.linearLayers();
  for (const ad of state.adapters) layers.get(ad.module)!.adapter = ad;
  attached.set(model, state);
  return state;
}

function peftName(module: string, which: 'A' | 'B'): string {
  return `${PEFT_PREFIX}${module}.lora_${which}.weight`;
}

/**
 * Attach fresh LoRA adapters to `model` (in place): A from PEFT's default init seeded by
 * `config.seed`, B = 0, so the outputs do not change until B is trained. Every listed target
 * module must match at least one layer. Returns the model.
 */
export function addLora(model: Decoder, config: LoraConfig): Decoder {
  const cfg = resolveConfig(model, config, 'addLora');
  attach(model, cfg, true, 'addLora', (module, lin) => {
    const { inDim, outDim } = dims(lin);
    const rng = new Rng(`${cfg.seed}:lora_A:${module}`);
    // kaiming_uniform_(a=sqrt(5)) on [r, in]: gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / in) = 1 / sqrt(in)
    const bound = 1 / Math.sqrt(inDim);
    const a = new Float32Array(cfg.r * inDim);
    for (let i = 0; i < a.length; i++) a[i] = (2 * rng.next() - 1) * bound;
    return { a, b: new Float32Array(outDim * cfg.r) };
  });
  return model;
}

/** The model's LoRA config (defaults filled in), or undefined when it has no adapters. */
export function getLoraConfig(model: Decoder): LoraConfig | undefined {
  const state = attached.get(model);
  if (!state) return undefined;
  const c = state.config;
  return { ...c, targetModules: typeof c.targetModules === 'string' ? c.targetModules : [...c.targetModules] };
}

function stateOf(model: Decoder, caller: string): LoraState {
  const state = attached.get(model);
  if (!state) throw new Error(`${caller}: the model has no LoRA adapters (addLora or loadLoraAdapter first)`);
  return state;
}

/**
 * The adapter weights by the names PEFT writes in adapter_model.safetensors
 * (`base_model.model.<module>.lora_A.weight` [r, in], `...lora_B.weight` [out, r]), module by
 * module in forward order. These are the parameters a LoRA fine-tune trains.
 */
export function loraParameters(model: Decoder): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const ad of stateOf(model, 'loraParameters').adapters) {
    out.set(peftName(ad.module, 'A'), ad.a);
    out.set(peftName(ad.module, 'B'), ad.b);
  }
  return out;
}

/**
 * Switch dropout on for one training step (`step`: the 0-based optimizer step, which seeds the
 * masks with the config's seed) or off (null, the default state). fineTune does this around each
 * loss computation; nothing else needs to.
 */
export function setLoraTraining(model: Decoder, step: number | null): void {
  const state = stateOf(model, 'setLoraTraining');
  if (step !== null && !(Number.isInteger(step) && step >= 0)) throw new Error(`setLoraTraining: \`step\` must be an integer >= 0 or null, but is ${step}`);
  state.training = step === null ? null : { step, calls: new Map() };
}

/** Give `target` (same config, no adapters yet) copies of `source`'s adapters (cloneModel). */
export function copyLoraAdapters(source: Decoder, target: Decoder): void {
  const from = stateOf(source, 'copyLoraAdapters');
  if (source.config.modelType !== target.config.modelType || source.linearLayers().size !== target.linearLayers().size) {
    throw new Error('copyLoraAdapters: the target is not the same architecture as the source');
  }
  const byModule = new Map(from.adapters.map((ad) => [ad.module, ad]));
  attach(target, from.config, false, 'copyLoraAdapters', (module) => {
    const ad = byModule.get(module)!;
    return { a: ad.a.dataSync() as Float32Array, b: ad.b.dataSync() as Float32Array };
  });
}

/**
 * Fold every adapter into its base weight, W += scaling * B A (transposed for gpt2's [in, out]
 * Conv1D weights, as PEFT's merge does), and remove the adapters: the model is then a plain model
 * (saveModel writes a full checkpoint) with the same outputs up to float rounding.
 */
export function mergeLora(model: Decoder): Decoder {
  const state = stateOf(model, 'mergeLora');
  const layers = model.linearLayers();
  for (const ad of state.adapters) {
    const lin = layers.get(ad.module)!;
    tf.tidy(() => {
      const delta = tf.mul(tf.matMul(ad.b, ad.a), ad.scaling); // [out, in]
      lin.w.assign(tf.add(lin.w, lin.inOut ? delta.transpose() : delta));
    });
    lin.adapter = undefined;
    ad.dispose();
  }
  attached.delete(model);
  return model;
}

// ---------------------------------------------------------------------------------------------
// PEFT files

export interface SaveLoraOptions {
  /** adapter_config.json's base_model_name_or_path (PEFT fills it from the base model's name; default null) */
  baseModelNameOrPath?: string | null;
  /** storage dtype of the adapter weights (default F32) */
  dtype?: 'F32' | 'BF16' | 'F16';
}

const SAVE_OPTIONS = ['baseModelNameOrPath', 'dtype'];

/** adapter_config.json as PeftModel.save_pretrained writes it (LoraConfig's fields, keys sorted). */
function peftConfigJson(model: Decoder, c: ResolvedConfig, baseModel: string | null): string {
  const fields: Record<string, unknown> = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    corda_config: null,
    eva_config: null,
    exclude_modules: null,
    // PEFT sets it for Conv1D targets (gpt2) whatever the user asked
    fan_in_fan_out: model.config.modelType === 'gpt2',
    // save_pretrained always writes inference_mode true
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: c.alpha,
    lora_bias: false,
    lora_dropout: c.dropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: {},
    revision: null,
    // PEFT keeps a list as a set and writes it in no particular order; sorted here
    target_modules: typeof c.targetModules === 'string' ? c.targetModules : [...new Set(c.targetModules)].sort(),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: c.useRslora,
  };
  const sorted = Object.fromEntries(Object.keys(fields).sort().map((k) => [k, fields[k]]));
  return JSON.stringify(sorted, null, 2);
}

/**
 * Write the model's adapters as a PEFT adapter folder: adapter_config.json and
 * adapter_model.safetensors (metadata format "pt"). The folder is replaced as a whole
 * (lib/io/atomicFolder.ts): a crash leaves the old folder or the new one. Refuses a non-empty
 * folder that is not an adapter folder, and adapter weights that are NaN or ±Infinity.
 */
export async function saveLoraAdapter(model: Decoder, dir: string, options: SaveLoraOptions = {}): Promise<void> {
  const state = stateOf(model, 'saveLoraAdapter');
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new Error(`saveLoraAdapter: options must be an object, but are ${JSON.stringify(options)}`);
  const unknown = Object.keys(options).filter((k) => !SAVE_OPTIONS.includes(k));
  if (unknown.length) throw new Error(`saveLoraAdapter: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `\`${k}\``).join(', ')}; known: ${SAVE_OPTIONS.join(', ')}`);
  const dtype = (options.dtype ?? 'F32') as SafetensorsDtype;
  if (!['F32', 'BF16', 'F16'].includes(dtype)) throw new Error(`saveLoraAdapter: \`dtype\` must be one of F32, BF16, F16, but is ${JSON.stringify(options.dtype)}`);
  const baseModel = options.baseModelNameOrPath ?? null;
  if (baseModel !== null && typeof baseModel !== 'string') throw new Error(`saveLoraAdapter: \`baseModelNameOrPath\` must be a string or null, but is ${JSON.stringify(baseModel)}`);
  const target = path.resolve(dir);
  if (fs.existsSync(target)) {
    if (!fs.statSync(target).isDirectory()) throw new Error(`saveLoraAdapter: ${dir} exists and is not a folder`);
    if (fs.readdirSync(target).length > 0 && !fs.existsSync(path.join(target, CONFIG_FILE))) {
      throw new Error(`saveLoraAdapter: ${dir} is a non-empty folder without ${CONFIG_FILE}; saveLoraAdapter replaces the whole folder, so it writes only to a new, empty or adapter folder`);
    }
  }
  const params = loraParameters(model);
  const names = [...params.keys()];
  const bad = tf.tidy(() => tf.stack(names.map((n) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(params.get(n)!)), 'int32')))));
  const counts = Array.from(bad.dataSync());
  bad.dispose();
  const nonFinite = names.filter((_, i) => counts[i] > 0);
  if (nonFinite.length) throw new Error(`saveLoraAdapter: refusing to write ${dir}: adapter weights ${nonFinite.slice(0, 5).map((n) => `"${n}"`).join(', ')}${nonFinite.length > 5 ? ', …' : ''} hold NaN or ±Infinity`);
  const configText = peftConfigJson(model, state.config, baseModel);
  writeFolderAtomic(target, (out) => {
    fs.writeFileSync(path.join(out, CONFIG_FILE), configText);
    const tensors: TensorToWrite[] = names.map((name) => ({
      name, shape: params.get(name)!.shape, dtype, data: () => params.get(name)!.dataSync() as Float32Array,
    }));
    writeSafetensors(path.join(out, WEIGHTS_FILE), tensors, { format: 'pt' });
  });
}

/** PEFT's default target_modules by model type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
function peftDefaultTargets(modelType: string): string[] {
  return modelType === 'gpt2' ? ['c_attn'] : ['q_proj', 'v_proj'];
}

const isEmpty = (v: unknown) => v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0)
  || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);

/** adapter_config.json fields that change what the adapter computes and are not implemented. */
const UNSUPPORTED_FIELDS: [string, string][] = [
  ['use_dora', 'DoRA (weight-decomposed LoRA, a learned magnitude per output)'],
  ['lora_bias', 'a trainable bias on lora_B'],
  ['modules_to_save', 'full copies of other modules saved with the adapter'],
  ['rank_pattern', 'per-module ranks'],
  ['alpha_pattern', 'per-module alphas'],
  ['layers_to_transform', 'adapting only some layers'],
  ['exclude_modules', 'excluded modules'],
  ['layer_replication', 'replicated layers'],
  ['trainable_token_indices', 'trainable token embeddings'],
  ['target_parameters', 'adapters on parameters rather than modules'],
  ['alora_invocation_tokens', 'activated LoRA (aLoRA)'],
  ['use_qalora', 'QALoRA'],
  ['use_bdlora', 'block-diagonal LoRA'],
  ['arrow_config', 'Arrow routing'],
];

/** The checked adapter_config.json as a LoraConfig. */
function readPeftConfig(model: Decoder, file: string): LoraConfig {
  const json = readJsonFile<Record<string, unknown>>(file, 'a PEFT adapter config (adapter_config.json)');
  const field = (name: string, want: string): never => {
    throw new Error(`loadLoraAdapter ${file}: \`${name}\` is ${JSON.stringify(json[name])}; ${want}`);
  };
  if (json.peft_type !== 'LORA') field('peft_type', 'only LoRA adapters ("LORA") are supported');
  if (json.bias !== undefined && json.bias !== 'none') field('bias', 'only "none" is supported (trained biases of the base layers are not saved in the LoRA weights here)');
  for (const [name, what] of UNSUPPORTED_FIELDS) if (!isEmpty(json[name])) field(name, `${what} is not supported; only plain LoRA`);
  if (!(Number.isInteger(json.r) && (json.r as number) >= 1)) field('r', 'expected a positive integer');
  if (!(typeof json.lora_alpha === 'number' && Number.isFinite(json.lora_alpha) && json.lora_alpha > 0)) field('lora_alpha', 'expected a number > 0');
  const dropout = json.lora_dropout ?? 0;
  if (!(typeof dropout === 'number' && dropout >= 0 && dropout < 1)) field('lora_dropout', 'expected a number in [0, 1)');
  if (json.use_rslora !== undefined && typeof json.use_rslora !== 'boolean') field('use_rslora', 'expected true or false');
  let targets = json.target_modules ?? peftDefaultTargets(model.config.modelType);
  if (typeof targets !== 'string' && !(Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string' && t !== ''))) {
    field('target_modules', 'expected a list of module names, a regular expression or "all-linear"');
  }
  if (Array.isArray(targets)) targets = [...targets] as string[];
  return { r: json.r as number, alpha: json.lora_alpha as number, dropout: dropout as number, targetModules: targets as string[] | string, useRslora: (json.use_rslora as boolean | undefined) ?? false };
}

/**
 * Where the adapted modules' tensors live in the file, chosen by the first module: as
 * PeftModelForCausalLM saves them; from an adapter on the bare base model (task_type other than
 * CAUSAL_LM: no `model.` / `transformer.` level); inside a multimodal model (old and new layout).
 */
function fileLayouts(modelType: string): ((module: string) => string)[] {
  const inner = modelType === 'gpt2' ? 'transformer.' : 'model.';
  return [
    (m) => m,
    (m) => (m.startsWith(inner) ? m.slice(inner.length) : m),
    (m) => (m.startsWith('model.') ? `model.language_model.${m.slice('model.'.length)}` : m),
    (m) => `language_model.${m}`,
  ];
}

/**
 * Load a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) into `model`
 * (in place; the model must have no adapters yet). Every tensor is checked before any is used:
 * errors name the file, the tensor and the shape expected. Configs that compute something else
 * than plain LoRA (DoRA, biases, per-module ranks, ...) are refused, naming the field. rsLoRA is
 * supported. Returns the adapter's config.
 */
export async function loadLoraAdapter(model: Decoder, dir: string): Promise<LoraConfig> {
  recoverFolder(dir);
  const configFile = path.join(dir, CONFIG_FILE);
  const weightsFile = path.join(dir, WEIGHTS_FILE);
  if (!fs.existsSync(configFile)) throw new Error(`loadLoraAdapter ${dir}: no ${CONFIG_FILE} (a PEFT adapter folder holds ${CONFIG_FILE} and ${WEIGHTS_FILE})`);
  if (!fs.existsSync(weightsFile)) {
    const bin = fs.existsSync(path.join(dir, 'adapter_model.bin'));
    throw new Error(`loadLoraAdapter ${dir}: no ${WEIGHTS_FILE}${bin ? ' (adapter_model.bin, a pickled PyTorch file, is not read: save the adapter with safe_serialization=True)' : ''}`);
  }
  const config = readPeftConfig(model, configFile);
  const resolved = resolveConfig(model, config, `loadLoraAdapter ${configFile}`);
  const modules = targetedModules(model, resolved, false, `loadLoraAdapter ${configFile}`);
  const header = readSafetensorsHeader(weightsFile);
  const layouts = fileLayouts(model.config.modelType);
  const layout = layouts.find((f) => header.tensors.has(peftName(f(modules[0][0]), 'A'))) ?? layouts[0];
  const expected = new Map<string, { module: string; which: 'A' | 'B'; shape: number[] }>();
  for (const [module, lin] of modules) {
    const { inDim, outDim } = dims(lin);
    expected.set(peftName(layout(module), 'A'), { module, which: 'A', shape: [resolved.r, inDim] });
    expected.set(peftName(layout(module), 'B'), { module, which: 'B', shape: [outDim, resolved.r] });
  }
  for (const [name, e] of expected) {
    const info = header.tensors.get(name);
    if (!info) throw new Error(`loadLoraAdapter ${weightsFile}: no tensor "${name}" (expected shape [${e.shape}]: r=${resolved.r} and target_modules ${JSON.stringify(resolved.targetModules)} of ${configFile})`);
    if (info.shape.join() !== e.shape.join()) throw new Error(`loadLoraAdapter ${weightsFile}: tensor "${name}" has shape [${info.shape}], expected [${e.shape}] (r=${resolved.r} of ${configFile}, module "${e.module}" of this ${model.config.modelType} model)`);
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw new Error(`loadLoraAdapter ${weightsFile}: tensor "${name}" has dtype ${info.dtype}, expected F32, F16 or BF16`);
  }
  const unexpected = [...header.tensors.keys()].filter((n) => !expected.has(n));
  if (unexpected.length) {
    throw new Error(`loadLoraAdapter ${weightsFile}: tensors this config does not account for: ${unexpected.slice(0, 5).map((n) => `"${n}"`).join(', ')}${unexpected.length > 5 ? ', …' : ''} `
      + `(target_modules ${JSON.stringify(resolved.targetModules)} of ${configFile} adapt ${modules.length} modules of this ${model.config.modelType} model)`);
  }
  const fd = fs.openSync(weightsFile, 'r');
  try {
    attach(model, resolved, false, `loadLoraAdapter ${configFile}`, (module) => ({
      a: readTensor(header, peftName(layout(module), 'A'), fd).data as Float32Array,
      b: readTensor(header, peftName(layout(module), 'B'), fd).data as Float32Array,
    }));
  } finally {
    fs.closeSync(fd);
  }
  return getLoraConfig(model)!;
}
