// Building a Decoder: from a Hugging Face folder (loadModel), from scratch (createModel), and
// back to a folder transformers can load (saveModel).
import * as fs from 'fs';
import * as path from 'path';
import { tf } from '../engine/tf.js';
import { fromHF, toHF, validateConfig, type ModelConfig } from '../io/hfConfig.js';
import { indexCheckpoint, readCheckpointTensor, readJson } from '../io/checkpoint.js';
import { writeSafetensors, type SafetensorsDtype, type TensorToWrite } from '../io/safetensors.js';
import { copyFileAtomic, writeFileAtomic } from '../io/atomic.js';
import { Decoder, parameterSpecs } from './decoder.js';
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
  const configFile = path.join(dir, 'config.json');
  const json = readJson(configFile);
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
  currentModelId = ++modelCounter;
  try {
    for (const spec of specs) {
      const t = readCheckpointTensor(index, fileName(spec.name));
      const value = tf.tensor(t.data, t.shape, 'float32');
      vars.set(spec.name, tf.variable(value, true, variableName(spec.name)));
      value.dispose();
    }
  } catch (e) {
    for (const v of vars.values()) v.dispose();
    throw e;
  }
  const model = new Decoder(cfg, vars);
  const genFile = path.join(dir, 'generation_config.json');
  if (fs.existsSync(genFile)) model.generationConfig = readJson(genFile);
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
  const std = opts.initStd ?? cfg.initializerRange;
  const rand = mulberry32(opts.seed ?? 0);
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
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'chat_template.jinja', 'vocab.json', 'merges.txt'];

/**
 * Write `model` as a folder transformers' from_pretrained can load: config.json,
 * generation_config.json, model.safetensors (metadata format "pt") and the tokenizer files.
 * Every file is written atomically (temp file + rename).
 */
export async function saveModel(model: Decoder, dir: string, opts: SaveModelOptions = {}): Promise<void> {
  const cfg = model.config;
  const dtype: SafetensorsDtype = opts.dtype ?? 'F32';
  // Check the tokenizer source before writing anything.
  const tokenizerFrom = opts.tokenizer === undefined ? undefined : typeof opts.tokenizer === 'string' ? opts.tokenizer : opts.tokenizer.dir;
  if (opts.tokenizer !== undefined) {
    if (!tokenizerFrom) throw new Error('saveModel: the tokenizer has no source folder to copy (load it with loadTokenizer(dir))');
    if (!fs.existsSync(path.join(tokenizerFrom, 'tokenizer.json'))) throw new Error(`saveModel: tokenizer folder ${tokenizerFrom} has no tokenizer.json`);
  }
  fs.mkdirSync(dir, { recursive: true });
  const hf = toHF(cfg);
  hf.torch_dtype = hf.dtype = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }[dtype];
  writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(hf, null, 2) + '\n');
  const gen: Record<string, unknown> = { _from_model_config: true };
  if (cfg.bosTokenId !== undefined) gen.bos_token_id = cfg.bosTokenId;
  if (cfg.eosTokenId !== undefined) gen.eos_token_id = cfg.eosTokenId;
  if (cfg.padTokenId !== undefined) gen.pad_token_id = cfg.padTokenId;
  Object.assign(gen, model.generationConfig, opts.generationConfig);
  writeFileAtomic(path.join(dir, 'generation_config.json'), JSON.stringify(gen, null, 2) + '\n');
  const vars = model.variables();
  const tensors: TensorToWrite[] = parameterSpecs(cfg).map((spec) => ({
    name: spec.name,
    shape: spec.shape,
    dtype,
    // read lazily so only one tensor is downloaded from the backend at a time
    data: () => vars.get(spec.name)!.dataSync() as Float32Array,
  }));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  if (tokenizerFrom) {
    for (const f of TOKENIZER_FILES) {
      const src = path.join(tokenizerFrom, f);
      if (fs.existsSync(src)) copyFileAtomic(src, path.join(dir, f));
    }
  }
}
