// Building a Decoder: from a Hugging Face folder (loadModel), from scratch (createModel), and
// back to a folder transformers can load (saveModel).
import * as fs from 'fs';
import * as path from 'path';
import { tf } from '../engine/tf.js';
import { fromHF, toHF, validateConfig, type ModelConfig } from '../io/hfConfig.js';
import { indexCheckpoint, readCheckpointTensor, readJson } from '../io/checkpoint.js';
import { writeSafetensors, type SafetensorsDtype, type TensorToWrite } from '../io/safetensors.js';
import { recoverFolder, writeFolderAtomic } from '../io/atomicFolder.js';
import { checkSeed } from '../util/rng.js';
import { Decoder, parameterSpecs } from './decoder.js';
import { getLoraConfig } from './lora.js';
import { fillNormal, mulberry32 } from './random.js';

// Tensors a checkpoint may carry that are not parameters of the model (buffers older
// transformers versions saved, or a redundant lm_head next to tied embeddings).
const IGNORED_TENSORS = [
  /\.attn\.bias$/,
  /\.attn\.masked_bias$/,
  /rotary_emb\.inv_freq$/,
  // the image side of multimodal checkpoints (only the language model is loaded)
  /^(model\.)?(vision_tower|vision_model|multi_modal_projector|image_newline)\b/,
];

// tfjs variable names are global to the engine, so two loaded models need distinct names; the
// HF name stays the key of model.variables().
let modelCounter = 0;
let currentModelId = 0;
function variableName(hfName: string): string {
  return `model${currentModelId}/${hfName}`;
}

/**
 * Load a Hugging Face model folder (config.json + model.safetensors or a sharded index).
 * Tensors are read and turned into variables one at a time (bf16/f16 converted to float32), so
 * peak memory is the model plus one tensor.
 */
export async function loadModel(dir: string): Promise<Decoder> {
  // Finish or undo a saveModel of this folder that a crash interrupted (lib/io/atomicFolder.ts).
  recoverFolder(dir);
  const configFile = path.join(dir, 'config.json');
  if (!fs.existsSync(configFile) && fs.existsSync(path.join(dir, 'adapter_config.json'))) {
    throw new Error(`loadModel ${dir}: this is a PEFT adapter folder (adapter_config.json, no config.json): load its base model, then loadLoraAdapter(model, '${dir}')`);
  }
  const json = readJson(configFile, 'a Hugging Face model config (config.json)');
  const cfg = fromHF(json, configFile);
  const index = indexCheckpoint(dir);
  const specs = parameterSpecs(cfg);
  // Where the causal LM's tensors live in the file, tried in this order and chosen by the token
  // embedding: as saved by *ForCausalLM; from the base model without transformers'
  // base_model_prefix (e.g. the Hub's gpt2: "h.0.…" for "transformer.h.0.…"); inside a
  // multimodal model, old layout "language_model.model.…" / "language_model.lm_head.weight" or
  // new layout "model.language_model.…" / "lm_head.weight".
  const prefix = cfg.modelType === 'gpt2' ? 'transformer.' : 'model.';
  const layouts: ((name: string) => string)[] = [
    (n) => n,
    (n) => (n.startsWith(prefix) ? n.slice(prefix.length) : n),
    (n) => `language_model.${n}`,
    (n) => (n.startsWith('model.') ? `model.language_model.${n.slice('model.'.length)}` : n),
  ];
  const fileName = layouts.find((f) => index.tensors.has(f(specs[0].name))) ?? layouts[0];
  const where = (name: string) => index.tensors.get(name)?.header.file ?? dir;
  // Check names and shapes of everything before reading any data.
  for (const spec of specs) {
    const at = index.tensors.get(fileName(spec.name));
    if (!at) {
      throw new Error(`loadModel ${dir}: checkpoint has no tensor "${fileName(spec.name)}" (expected shape [${spec.shape}] for ${cfg.modelType}${spec.name === 'lm_head.weight' ? ', tie_word_embeddings is false' : ''})`);
    }
    if (at.info.shape.join() !== spec.shape.join()) {
      throw new Error(`loadModel ${at.header.file}: tensor "${fileName(spec.name)}" has shape [${at.info.shape}], expected [${spec.shape}] from ${configFile}`);
    }
  }
  const known = new Set(specs.map((s) => fileName(s.name)));
  const unexpected = [...index.tensors.keys()].filter(
    (n) => !known.has(n) && !IGNORED_TENSORS.some((re) => re.test(n)) && !(n === fileName('lm_head.weight') && cfg.tieEmbeddings),
  );
  if (unexpected.length) {
    throw new Error(`loadModel ${where(unexpected[0])}: unexpected tensors for ${cfg.modelType}: ${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? ', …' : ''}`);
  }
  const vars = new Map<string, tf.Variable>();
  const nonFinite: string[] = [];
  currentModelId = ++modelCounter;
  try {
    for (const spec of specs) {
      const t = readCheckpointTensor(index, fileName(spec.name));
      let bad = 0;
      // x - x is 0 for finite x and NaN for NaN and ±Infinity
      for (let i = 0; i < t.data.length; i++) if (t.data[i] - t.data[i] !== 0) bad++;
      if (bad > 0) nonFinite.push(`"${fileName(spec.name)}" (${bad} of ${t.data.length})`);
      const value = tf.tensor(t.data, t.shape, 'float32');
      vars.set(spec.name, tf.variable(value, true, variableName(spec.name)));
      value.dispose();
    }
  } catch (e) {
    for (const v of vars.values()) v.dispose();
    throw e;
  }
  if (nonFinite.length) {
    console.warn(`loadModel ${dir}: ${nonFinite.length} weight tensor${nonFinite.length > 1 ? 's hold' : ' holds'} NaN or ±Infinity: `
      + `${nonFinite.slice(0, 5).join(', ')}${nonFinite.length > 5 ? ', …' : ''}; the model's outputs will not be finite`);
  }
  const model = new Decoder(cfg, vars);
  const genFile = path.join(dir, 'generation_config.json');
  if (fs.existsSync(genFile)) model.generationConfig = readJson(genFile, 'a generation config (generation_config.json)');
  return model;
}

export interface CreateModelOptions {
  /** PRNG seed; the same seed gives the same weights on every backend */
  seed?: number;
  /** std of the normal init; default the config's initializer_range */
  initStd?: number;
}

/**
 * A freshly initialised model, following transformers' _init_weights: Linear and Embedding
 * weights ~ normal(0, initStd) (the padding row of the embedding zeroed), biases 0, norm weights
 * 1 (0 for Gemma's (1 + w) norms), gpt2's residual projections scaled by 1/sqrt(2 nLayers).
 */
export function createModel(config: ModelConfig | Record<string, any>, opts: CreateModelOptions = {}): Decoder {
  const cfg: ModelConfig = 'modelType' in config ? validateConfig(config as ModelConfig, 'createModel') : fromHF(config, 'createModel(config)');
  const seed = opts.seed === undefined ? 0 : checkSeed(opts.seed, 'createModel: seed');
  const std = opts.initStd ?? cfg.initializerRange;
  if (!(typeof std === 'number' && std >= 0 && Number.isFinite(std))) throw new Error(`createModel: \`initStd\` (default: the config's initializerRange) must be a finite number >= 0, but is ${std}`);
  const rand = mulberry32(seed);
  const vars = new Map<string, tf.Variable>();
  currentModelId = ++modelCounter;
  for (const spec of parameterSpecs(cfg)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    switch (spec.init) {
      case 'ones':
        data.fill(1);
        break;
      case 'zeros':
        break;
      case 'normal':
        fillNormal(data, rand, 0, std);
        break;
      case 'normal_residual':
        fillNormal(data, rand, 0, std / Math.sqrt(2 * cfg.nLayers));
        break;
      case 'embedding':
        fillNormal(data, rand, 0, std);
        if (spec.name.endsWith('embed_tokens.weight') && cfg.padTokenId !== undefined && cfg.padTokenId < cfg.vocabSize) {
          data.fill(0, cfg.padTokenId * cfg.dModel, (cfg.padTokenId + 1) * cfg.dModel);
        }
        break;
    }
    const value = tf.tensor(data, spec.shape, 'float32');
    vars.set(spec.name, tf.variable(value, true, variableName(spec.name)));
    value.dispose();
  }
  return new Decoder(cfg, vars);
}

export interface SaveModelOptions {
  /** storage dtype of the weights (default F32) */
  dtype?: 'F32' | 'BF16' | 'F16';
  /** a folder with tokenizer.json / tokenizer_config.json (and special_tokens_map.json, ...) to
   *  copy, or a loaded Tokenizer (its source folder is copied) */
  tokenizer?: string | { dir?: string };
  /** extra fields merged into generation_config.json */
  generationConfig?: Record<string, unknown>;
  /** more files to write into the folder with the model, by file name (e.g. a manifest) */
  files?: Record<string, string | Uint8Array>;
  /** write weights that are NaN or ±Infinity (default false: refuse, naming the tensors) */
  allowNonFinite?: boolean;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'chat_template.jinja', 'vocab.json', 'merges.txt'];
const MODEL_FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'model.safetensors.index.json'];
const SAVE_OPTIONS = ['dtype', 'tokenizer', 'generationConfig', 'files', 'allowNonFinite'];
const SAVE_DTYPES: Record<string, string> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

const isPlainObject = (x: unknown): boolean => typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);

/** Non-finite (NaN, ±Infinity) element counts of each tensor, in one download. */
function nonFiniteCounts(tensors: tf.Tensor[]): number[] {
  if (tensors.length === 0) return [];
  const counts = tf.tidy(() => tf.stack(tensors.map((t) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(t)), 'int32')))));
  const out = Array.from(counts.dataSync());
  counts.dispose();
  return out;
}

/**
 * Write `model` as a folder transformers' from_pretrained can load: config.json,
 * generation_config.json, model.safetensors (metadata format "pt"), the tokenizer files and
 * `opts.files`. The folder is replaced as a whole (lib/io/atomicFolder.ts: written beside `dir`,
 * then swapped in), so a failure or a crash at any point leaves the old folder or the new one,
 * never a mix; files of the old folder that the new one does not write are gone. Every option is
 * checked, and the weights are checked to be finite, before anything is written.
 */
export async function saveModel(model: Decoder, dir: string, opts: SaveModelOptions = {}): Promise<void> {
  const cfg = model.config;
  // ---- check everything before writing anything
  // The adapters are not in model.variables(): saving without them would silently drop the fine-tune.
  if (getLoraConfig(model)) {
    throw new Error(`saveModel: the model carries LoRA adapters, which a full checkpoint cannot hold; saveLoraAdapter(model, dir) writes them in PEFT's format, or mergeLora(model) first folds them into the weights`);
  }
  if (!isPlainObject(opts)) throw new Error(`saveModel: options must be an object, but are ${JSON.stringify(opts)}`);
  const unknown = Object.keys(opts).filter((k) => !SAVE_OPTIONS.includes(k));
  if (unknown.length) throw new Error(`saveModel: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `\`${k}\``).join(', ')}; known: ${SAVE_OPTIONS.join(', ')}`);
  const dtype = (opts.dtype ?? 'F32') as SafetensorsDtype;
  if (!(typeof dtype === 'string' && dtype in SAVE_DTYPES)) {
    throw new Error(`saveModel: \`dtype\` must be one of ${Object.keys(SAVE_DTYPES).join(', ')}, but is ${JSON.stringify(opts.dtype)}`);
  }
  if (opts.allowNonFinite !== undefined && typeof opts.allowNonFinite !== 'boolean') {
    throw new Error(`saveModel: \`allowNonFinite\` must be true or false, but is ${JSON.stringify(opts.allowNonFinite)}`);
  }
  const tokenizerFrom = opts.tokenizer === undefined ? undefined : typeof opts.tokenizer === 'string' ? opts.tokenizer : opts.tokenizer?.dir;
  if (opts.tokenizer !== undefined) {
    if (typeof opts.tokenizer !== 'string' && !isPlainObject(opts.tokenizer)) {
      throw new Error(`saveModel: \`tokenizer\` must be a folder path or a loaded Tokenizer, but is ${JSON.stringify(opts.tokenizer)}`);
    }
    if (!tokenizerFrom) throw new Error('saveModel: the tokenizer has no source folder to copy (load it with loadTokenizer(dir))');
    if (!fs.existsSync(path.join(tokenizerFrom, 'tokenizer.json'))) throw new Error(`saveModel: tokenizer folder ${tokenizerFrom} has no tokenizer.json`);
  }
  if (opts.generationConfig !== undefined && !isPlainObject(opts.generationConfig)) {
    throw new Error(`saveModel: \`generationConfig\` must be an object, but is ${JSON.stringify(opts.generationConfig)}`);
  }
  const files: Record<string, string | Uint8Array> = opts.files ?? {};
  if (!isPlainObject(files)) throw new Error('saveModel: `files` must be an object mapping file names to contents');
  for (const [name, content] of Object.entries(files)) {
    if (name === '' || name === '.' || name === '..' || name !== path.basename(name) || name.includes('\\')) {
      throw new Error(`saveModel: \`files\` key "${name}" must be a plain file name (no folders)`);
    }
    if (MODEL_FILES.includes(name)) throw new Error(`saveModel: \`files\` cannot replace ${name}, which saveModel writes itself`);
    if (typeof content !== 'string' && !(content instanceof Uint8Array)) throw new Error(`saveModel: \`files\` entry "${name}" must be a string or a Uint8Array`);
  }
  // JSON files are serialised now, so a value JSON cannot hold (a BigInt, a cycle) fails before any write.
  const hf = toHF(cfg);
  hf.torch_dtype = hf.dtype = SAVE_DTYPES[dtype];
  const gen: Record<string, unknown> = { _from_model_config: true };
  if (cfg.bosTokenId !== undefined) gen.bos_token_id = cfg.bosTokenId;
  if (cfg.eosTokenId !== undefined) gen.eos_token_id = cfg.eosTokenId;
  if (cfg.padTokenId !== undefined) gen.pad_token_id = cfg.padTokenId;
  Object.assign(gen, model.generationConfig, opts.generationConfig);
  let configText: string;
  let genText: string;
  try {
    configText = JSON.stringify(hf, null, 2) + '\n';
    genText = JSON.stringify(gen, null, 2) + '\n';
  } catch (e) {
    throw new Error(`saveModel: the config or generation config cannot be written as JSON (${(e as Error).message})`);
  }
  const target = path.resolve(dir);
  if (fs.existsSync(target)) {
    const stat = fs.statSync(target);
    if (!stat.isDirectory()) throw new Error(`saveModel: ${dir} exists and is not a folder`);
    // The folder is replaced whole: refuse to replace one that is not a model folder (e.g. '.').
    if (fs.readdirSync(target).length > 0 && !fs.existsSync(path.join(target, 'config.json'))) {
      throw new Error(`saveModel: ${dir} is a non-empty folder without config.json; saveModel replaces the whole folder, so it writes only to a new, empty or model folder`);
    }
  }
  const vars = model.variables();
  const specs = parameterSpecs(cfg);
  for (const spec of specs) if (!vars.get(spec.name)) throw new Error(`saveModel: the model has no variable "${spec.name}"`);
  if (!opts.allowNonFinite) {
    const counts = nonFiniteCounts(specs.map((s) => vars.get(s.name)!));
    const bad = specs.map((s, i) => [s.name, counts[i], vars.get(s.name)!.size] as const).filter(([, c]) => c > 0);
    if (bad.length) {
      const shown = bad.slice(0, 5).map(([n, c, size]) => `"${n}" (${c} of ${size})`).join(', ');
      throw new Error(`saveModel: refusing to write ${dir}: ${bad.length} of ${specs.length} weight tensors hold NaN or ±Infinity: ${shown}${bad.length > 5 ? ', …' : ''}; `
        + 'pass { allowNonFinite: true } to write them anyway');
    }
  }
  // ---- write the folder beside `dir`, then swap it in
  writeFolderAtomic(target, (out) => {
    fs.writeFileSync(path.join(out, 'config.json'), configText);
    fs.writeFileSync(path.join(out, 'generation_config.json'), genText);
    const tensors: TensorToWrite[] = specs.map((spec) => ({
      name: spec.name,
      shape: spec.shape,
      dtype,
      // read lazily so only one tensor is downloaded from the backend at a time
      data: () => vars.get(spec.name)!.dataSync() as Float32Array,
    }));
    writeSafetensors(path.join(out, 'model.safetensors'), tensors, { format: 'pt' });
    if (tokenizerFrom) {
      for (const f of TOKENIZER_FILES) {
        const src = path.join(tokenizerFrom, f);
        if (fs.existsSync(src)) fs.copyFileSync(src, path.join(out, f));
      }
    }
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(out, name), content);
  });
}
