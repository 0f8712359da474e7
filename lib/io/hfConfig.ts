// Hugging Face config.json -> the kit's own ModelConfig, one `switch (model_type)`.
// Every naming difference between families and between transformers 4 (`rope_theta`,
// `rope_scaling`, `rope_local_base_freq`) and transformers 5 (`rope_parameters`, possibly per
// layer type) is absorbed here, so the model code reads only ModelConfig. Off is `undefined`;
// per-layer choices are arrays.

export const SUPPORTED_MODEL_TYPES = ['llama', 'qwen2', 'qwen3', 'mistral', 'gemma', 'gemma2', 'gemma3_text', 'gpt2'] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export type LayerType = 'full' | 'sliding';
export type Activation = 'silu' | 'gelu_tanh' | 'gelu' | 'relu';

/** Rotary embedding of one layer type (transformers' `rope_parameters` entry). */
export interface RopeConfig {
  theta: number;
  /** 'default' = no scaling. 'linear' divides inv_freq by factor; 'llama3' is Llama-3.1's band-wise rule. */
  type: 'default' | 'linear' | 'llama3';
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositions?: number;
}

export interface ModelConfig {
  modelType: ModelType;
  vocabSize: number;
  dModel: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  dHead: number;
  dMlp: number;
  maxPositions: number;

  norm: 'rms' | 'layer';
  normEps: number;
  /** Gemma's RMSNorm multiplies by (1 + w) and stores w around 0; 0 for everything else. */
  normWeightOffset: 0 | 1;
  /** gated MLP: down(act(gate(x)) * up(x)); else down(act(up(x))) */
  gatedMlp: boolean;
  act: Activation;

  positional: 'rope' | 'learned';
  /** RoPE per layer type (gemma3 uses a different base for sliding layers). */
  rope?: Record<LayerType, RopeConfig>;
  layerTypes: LayerType[];
  /** a query sees keys at most slidingWindow - 1 positions back (sliding layers only) */
  slidingWindow?: number;

  /** tanh soft-cap on attention scores (gemma2) */
  attnSoftcap?: number;
  /** tanh soft-cap on the final logits (gemma2) */
  finalSoftcap?: number;
  /** attention scale is queryPreAttnScalar^-0.5 instead of dHead^-0.5 (gemma2/3) */
  queryPreAttnScalar?: number;
  /** gpt2's scale_attn_by_inverse_layer_idx: scores also divided by (layer + 1) */
  scaleAttnByInverseLayerIdx?: boolean;
  /** RMSNorm on q and k over dHead before RoPE (qwen3, gemma3) */
  qkNorm: boolean;
  /** extra norms after attention and after the MLP, before the residual add (gemma2/3) */
  sandwichNorm: boolean;
  /** token embeddings are multiplied by this (gemma: sqrt(dModel)) */
  embedScale?: number;
  tieEmbeddings: boolean;
  /** biases on q/k/v projections (qwen2, gpt2, llama attention_bias) */
  qkvBias: boolean;
  /** bias on the attention output projection (gpt2, llama attention_bias) */
  oBias: boolean;
  /** biases on MLP projections (gpt2, llama mlp_bias) */
  mlpBias: boolean;
  /** biases on norms (LayerNorm) */
  normBias: boolean;

  bosTokenId?: number;
  eosTokenId?: number | number[];
  padTokenId?: number;
  initializerRange: number;
  /** the config.json this came from (written back by saveModel); undefined for hand-made configs */
  hf?: Record<string, any>;
}

function need<T>(json: Record<string, any>, key: string, file: string): T {
  const v = json[key];
  if (v === undefined || v === null) throw new Error(`fromHF ${file}: missing required field "${key}" (model_type ${json.model_type})`);
  return v as T;
}

function ropeFromHF(entry: Record<string, any> | undefined | null, theta: number, file: string): RopeConfig {
  const type = entry?.rope_type ?? entry?.type ?? 'default';
  const t = entry?.rope_theta ?? theta;
  switch (type) {
    case 'default':
      return { theta: t, type: 'default' };
    case 'linear':
      return { theta: t, type: 'linear', factor: entry!.factor };
    case 'llama3':
      return {
        theta: t,
        type: 'llama3',
        factor: entry!.factor,
        lowFreqFactor: entry!.low_freq_factor,
        highFreqFactor: entry!.high_freq_factor,
        originalMaxPositions: entry!.original_max_position_embeddings,
      };
    default:
      throw new Error(`fromHF ${file}: unsupported rope_type "${type}"; supported: default, linear, llama3`);
  }
}

/**
 * RoPE settings per layer type, from either spelling:
 *  - transformers 5: `rope_parameters` = {rope_type, rope_theta, ...} or {full_attention: {...}, sliding_attention: {...}}
 *  - transformers 4: `rope_theta` + `rope_scaling`, and gemma3's `rope_local_base_freq` for sliding layers
 *    (where `rope_scaling` applies to global layers only).
 */
function ropeTable(json: Record<string, any>, file: string, defaultTheta: number, localThetaDefault?: number): Record<LayerType, RopeConfig> {
  const p = json.rope_parameters;
  if (p && (p.full_attention || p.sliding_attention)) {
    const full = ropeFromHF(p.full_attention, defaultTheta, file);
    const sliding = p.sliding_attention ? ropeFromHF(p.sliding_attention, localThetaDefault ?? full.theta, file) : full;
    return { full, sliding };
  }
  if (p) {
    const r = ropeFromHF(p, json.rope_theta ?? defaultTheta, file);
    if (localThetaDefault !== undefined || json.rope_local_base_freq !== undefined) {
      return { full: r, sliding: { theta: json.rope_local_base_freq ?? localThetaDefault!, type: 'default' } };
    }
    return { full: r, sliding: r };
  }
  const theta = json.rope_theta ?? defaultTheta;
  const full = ropeFromHF(json.rope_scaling, theta, file);
  if (localThetaDefault !== undefined || json.rope_local_base_freq !== undefined) {
    return { full, sliding: { theta: json.rope_local_base_freq ?? localThetaDefault!, type: 'default' } };
  }
  return { full, sliding: full };
}

function layerTypesFromHF(json: Record<string, any>, nLayers: number, file: string, fallback: (i: number) => LayerType): LayerType[] {
  const lt = json.layer_types;
  if (Array.isArray(lt)) {
    if (lt.length !== nLayers) throw new Error(`fromHF ${file}: layer_types has ${lt.length} entries, expected num_hidden_layers = ${nLayers}`);
    return lt.map((t: string, i: number) => {
      if (t === 'full_attention') return 'full';
      if (t === 'sliding_attention') return 'sliding';
      throw new Error(`fromHF ${file}: layer_types[${i}] = "${t}"; expected "full_attention" or "sliding_attention"`);
    });
  }
  return Array.from({ length: nLayers }, (_, i) => fallback(i));
}

function activationFromHF(name: string, file: string): Activation {
  switch (name) {
    case 'silu':
    case 'swish':
      return 'silu';
    case 'gelu_pytorch_tanh':
    case 'gelu_new':
    case 'gelu_fast':
      return 'gelu_tanh';
    case 'gelu':
      return 'gelu';
    case 'relu':
      return 'relu';
    default:
      throw new Error(`fromHF ${file}: unsupported activation "${name}"; supported: silu, gelu_pytorch_tanh, gelu_new, gelu, relu`);
  }
}

/**
 * Gemma3TextConfig's defaults (transformers configuration_gemma3.py): the text_config inside a
 * multimodal Gemma 3 config.json lists only the fields that differ from them.
 */
const GEMMA3_TEXT_DEFAULTS: Record<string, unknown> = {
  vocab_size: 262208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  rope_local_base_freq: 10_000,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  sliding_window_pattern: 6,
  pad_token_id: 0,
  eos_token_id: 1,
  bos_token_id: 2,
  tie_word_embeddings: true,
};

const CAUSAL_LM_CLASS: Record<ModelType, string> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  mistral: 'MistralForCausalLM',
  gemma: 'GemmaForCausalLM',
  gemma2: 'Gemma2ForCausalLM',
  gemma3_text: 'Gemma3ForCausalLM',
  gpt2: 'GPT2LMHeadModel',
};

/**
 * The text model of a multimodal config.json (Gemma 3, LLaVA, Mistral 3: {model_type, text_config,
 * vision_config}) as a stand-alone causal-LM config, or undefined for a plain text config. The
 * vision tower is not loaded; saveModel writes this text-only config back.
 */
export function textConfigOf(json: Record<string, any>): Record<string, any> | undefined {
  if (!json.text_config || typeof json.text_config !== 'object') return undefined;
  const text = { ...json.text_config };
  text.model_type ??= json.model_type === 'gemma3' ? 'gemma3_text' : undefined;
  if (text.model_type === 'gemma3_text') {
    for (const [k, v] of Object.entries(GEMMA3_TEXT_DEFAULTS)) text[k] ??= v;
  }
  text.architectures = [CAUSAL_LM_CLASS[text.model_type as ModelType] ?? `${text.model_type}ForCausalLM`];
  if (json.tie_word_embeddings !== undefined) text.tie_word_embeddings ??= json.tie_word_embeddings;
  return text;
}

/** Map a transformers config.json object onto ModelConfig. `file` is only used in error messages. */
export function fromHF(json: Record<string, any>, file = 'config.json'): ModelConfig {
  const text = textConfigOf(json);
  if (text) return fromHF(text, `${file} (text_config)`);
  const modelType = json.model_type;
  const common = () => {
    const dModel = need<number>(json, 'hidden_size', file);
    const nHeads = need<number>(json, 'num_attention_heads', file);
    const nLayers = need<number>(json, 'num_hidden_layers', file);
    return {
      vocabSize: need<number>(json, 'vocab_size', file),
      dModel,
      nLayers,
      nHeads,
      nKvHeads: json.num_key_value_heads ?? nHeads,
      dHead: json.head_dim ?? dModel / nHeads,
      dMlp: need<number>(json, 'intermediate_size', file),
      maxPositions: json.max_position_embeddings ?? 2048,
      norm: 'rms' as const,
      normEps: json.rms_norm_eps ?? 1e-6,
      positional: 'rope' as const,
      gatedMlp: true,
      bosTokenId: json.bos_token_id ?? undefined,
      eosTokenId: json.eos_token_id ?? undefined,
      padTokenId: json.pad_token_id ?? undefined,
      initializerRange: json.initializer_range ?? 0.02,
      normBias: false,
      hf: json,
    };
  };
  let cfg: ModelConfig;
  switch (modelType) {
    case 'llama':
    case 'mistral':
    case 'qwen2':
    case 'qwen3': {
      const c = common();
      const sliding = json.sliding_window ?? undefined;
      const fallback = (i: number): LayerType => {
        // mistral: one window for every layer when set. qwen2/3: `use_sliding_window` turns it on
        // for layers >= max_window_layers (transformers' Qwen2Config default layer_types).
        if (modelType === 'mistral') return sliding ? 'sliding' : 'full';
        if ((modelType === 'qwen2' || modelType === 'qwen3') && json.use_sliding_window && sliding) {
          return i >= (json.max_window_layers ?? 28) ? 'sliding' : 'full';
        }
        return 'full';
      };
      const attnBias = modelType === 'qwen2' ? true : !!json.attention_bias;
      cfg = {
        ...c,
        modelType,
        normWeightOffset: 0,
        act: activationFromHF(json.hidden_act ?? 'silu', file),
        rope: ropeTable(json, file, 10000),
        layerTypes: layerTypesFromHF(json, c.nLayers, file, fallback),
        slidingWindow: sliding,
        qkNorm: modelType === 'qwen3',
        sandwichNorm: false,
        tieEmbeddings: json.tie_word_embeddings ?? false,
        qkvBias: attnBias,
        oBias: modelType === 'qwen2' ? false : !!json.attention_bias,
        mlpBias: !!json.mlp_bias,
      };
      break;
    }
    case 'gemma':
    case 'gemma2':
    case 'gemma3_text': {
      const c = common();
      const isG1 = modelType === 'gemma';
      const isG3 = modelType === 'gemma3_text';
      const act = json.hidden_activation ?? json.hidden_act ?? 'gelu_pytorch_tanh';
      // Gemma's config forces the tanh approximation even if hidden_act says "gelu".
      const fallback = (i: number): LayerType => {
        if (modelType === 'gemma2') return (i + 1) % 2 ? 'sliding' : 'full';
        const pattern = json.sliding_window_pattern ?? json._sliding_window_pattern ?? 6;
        return (i + 1) % pattern ? 'sliding' : 'full';
      };
      cfg = {
        ...c,
        modelType,
        normEps: json.rms_norm_eps ?? 1e-6,
        normWeightOffset: 1,
        act: activationFromHF(act === 'gelu' ? 'gelu_pytorch_tanh' : act, file),
        rope: ropeTable(json, file, isG3 ? 1_000_000 : 10000, isG3 ? 10000 : undefined),
        layerTypes: isG1 ? Array(c.nLayers).fill('full') : layerTypesFromHF(json, c.nLayers, file, fallback),
        slidingWindow: isG1 ? undefined : (json.sliding_window ?? 4096),
        attnSoftcap: isG1 ? undefined : (json.attn_logit_softcapping ?? undefined),
        finalSoftcap: isG1 ? undefined : (json.final_logit_softcapping ?? undefined),
        queryPreAttnScalar: isG1 ? undefined : (json.query_pre_attn_scalar ?? 256),
        qkNorm: isG3,
        sandwichNorm: !isG1,
        embedScale: Math.sqrt(c.dModel),
        tieEmbeddings: json.tie_word_embeddings ?? true,
        qkvBias: !!json.attention_bias,
        oBias: !!json.attention_bias,
        mlpBias: false,
      };
      break;
    }
    case 'gpt2': {
      const dModel = need<number>(json, 'n_embd', file);
      const nHeads = need<number>(json, 'n_head', file);
      const nLayers = need<number>(json, 'n_layer', file);
      cfg = {
        modelType,
        vocabSize: need<number>(json, 'vocab_size', file),
        dModel,
        nLayers,
        nHeads,
        nKvHeads: nHeads,
        dHead: dModel / nHeads,
        dMlp: json.n_inner ?? 4 * dModel,
        maxPositions: need<number>(json, 'n_positions', file),
        norm: 'layer',
        normEps: json.layer_norm_epsilon ?? 1e-5,
        normWeightOffset: 0,
        gatedMlp: false,
        act: activationFromHF(json.activation_function ?? 'gelu_new', file),
        positional: 'learned',
        layerTypes: Array(nLayers).fill('full'),
        qkNorm: false,
        sandwichNorm: false,
        scaleAttnByInverseLayerIdx: json.scale_attn_by_inverse_layer_idx ? true : undefined,
        // scale_attn_weights=false (unscaled dot products) is expressed as queryPreAttnScalar=1.
        queryPreAttnScalar: json.scale_attn_weights === false ? 1 : undefined,
        tieEmbeddings: json.tie_word_embeddings ?? true,
        qkvBias: true,
        oBias: true,
        mlpBias: true,
        normBias: true,
        bosTokenId: json.bos_token_id ?? undefined,
        eosTokenId: json.eos_token_id ?? undefined,
        padTokenId: json.pad_token_id ?? undefined,
        initializerRange: json.initializer_range ?? 0.02,
        hf: json,
      };
      break;
    }
    default:
      throw new Error(`fromHF ${file}: unsupported model_type ${JSON.stringify(modelType)}; supported: ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  }
  try {
    validateConfig(cfg, `fromHF ${file}`);
  } catch (err) {
    // validateConfig speaks the kit's field names; a reader of config.json needs the HF key too.
    const message = (err as Error).message;
    const keys = [...message.matchAll(/`([A-Za-z.]+)`/g)]
      .map((m) => HF_KEY_OF[m[1].split('.').pop()!])
      .filter((k): k is string => k !== undefined);
    throw new Error(keys.length ? `${message} (config.json: ${[...new Set(keys)].join('; ')})` : message);
  }
  return cfg;
}

/** The config.json key(s) behind each ModelConfig field, for error messages. */
const HF_KEY_OF: Record<string, string> = {
  vocabSize: 'vocab_size', dModel: 'hidden_size (gpt2: n_embd)', nLayers: 'num_hidden_layers (gpt2: n_layer)',
  nHeads: 'num_attention_heads (gpt2: n_head)', nKvHeads: 'num_key_value_heads', dHead: 'head_dim',
  dMlp: 'intermediate_size (gpt2: n_inner)', layerTypes: 'layer_types', slidingWindow: 'sliding_window',
  normEps: 'rms_norm_eps (gpt2: layer_norm_epsilon)', maxPositions: 'max_position_embeddings (gpt2: n_positions)',
  theta: 'rope_theta / rope_parameters.rope_theta (gemma3 local layers: rope_local_base_freq)',
  factor: 'rope_scaling.factor / rope_parameters.factor', lowFreqFactor: 'rope_scaling.low_freq_factor',
  highFreqFactor: 'rope_scaling.high_freq_factor', originalMaxPositions: 'rope_scaling.original_max_position_embeddings',
  attnSoftcap: 'attn_logit_softcapping', finalSoftcap: 'final_logit_softcapping',
};

/** Check the invariants the model relies on; `where` prefixes the message. */
export function validateConfig(cfg: ModelConfig, where = 'validateConfig'): ModelConfig {
  const posInt = (k: keyof ModelConfig) => {
    const v = cfg[k];
    if (!Number.isInteger(v) || (v as number) <= 0) throw new Error(`${where}: \`${String(k)}\` must be a positive integer, got ${v}`);
  };
  for (const k of ['vocabSize', 'dModel', 'nLayers', 'nHeads', 'nKvHeads', 'dHead', 'dMlp', 'maxPositions'] as const) posInt(k);
  if (!SUPPORTED_MODEL_TYPES.includes(cfg.modelType)) {
    throw new Error(`${where}: unsupported modelType "${cfg.modelType}"; supported: ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  }
  if (cfg.nHeads % cfg.nKvHeads !== 0) throw new Error(`${where}: \`nHeads\` (${cfg.nHeads}) must be a multiple of \`nKvHeads\` (${cfg.nKvHeads})`);
  if (cfg.layerTypes.length !== cfg.nLayers) throw new Error(`${where}: \`layerTypes\` has ${cfg.layerTypes.length} entries, expected nLayers = ${cfg.nLayers}`);
  if (cfg.layerTypes.includes('sliding') && !(Number.isInteger(cfg.slidingWindow) && cfg.slidingWindow! > 0)) {
    throw new Error(`${where}: sliding layers need a positive integer \`slidingWindow\`, got ${cfg.slidingWindow}`);
  }
  if (cfg.positional === 'rope') {
    if (!cfg.rope) throw new Error(`${where}: positional 'rope' needs \`rope\``);
    if (cfg.dHead % 2 !== 0) throw new Error(`${where}: RoPE needs an even \`dHead\`, got ${cfg.dHead}`);
    for (const lt of ['full', 'sliding'] as const) {
      const r = cfg.rope[lt];
      if (!(r.theta > 0)) throw new Error(`${where}: \`rope.${lt}.theta\` must be > 0, got ${r.theta}`);
      if (r.type !== 'default' && !(r.factor! > 0)) throw new Error(`${where}: \`rope.${lt}.factor\` must be > 0 for rope type ${r.type}, got ${r.factor}`);
      if (r.type === 'llama3') {
        for (const k of ['lowFreqFactor', 'highFreqFactor', 'originalMaxPositions'] as const) {
          if (!(r[k]! > 0)) throw new Error(`${where}: llama3 rope needs \`rope.${lt}.${k}\` > 0, got ${r[k]}`);
        }
      }
    }
  }
  for (const k of ['attnSoftcap', 'finalSoftcap', 'queryPreAttnScalar', 'embedScale'] as const) {
    const v = cfg[k];
    if (v !== undefined && !(v > 0)) throw new Error(`${where}: \`${k}\` must be > 0 or undefined (off), got ${v}`);
  }
  if (!(cfg.normEps > 0)) throw new Error(`${where}: \`normEps\` must be > 0, got ${cfg.normEps}`);
  return cfg;
}

/**
 * The config.json to write next to saved weights. A config that came from a file is written back
 * as it was read; a hand-made one (createModel from a ModelConfig) is translated to the family's
 * transformers 4/5-compatible spelling.
 */
export function toHF(cfg: ModelConfig): Record<string, any> {
  if (cfg.hf) return { ...cfg.hf };
  const base = {
    architectures: [CAUSAL_LM_CLASS[cfg.modelType]],
    model_type: cfg.modelType,
    vocab_size: cfg.vocabSize,
    bos_token_id: cfg.bosTokenId ?? null,
    eos_token_id: cfg.eosTokenId ?? null,
    pad_token_id: cfg.padTokenId ?? null,
    initializer_range: cfg.initializerRange,
    tie_word_embeddings: cfg.tieEmbeddings,
    torch_dtype: 'float32',
  };
  if (cfg.modelType === 'gpt2') {
    return {
      ...base,
      n_embd: cfg.dModel,
      n_layer: cfg.nLayers,
      n_head: cfg.nHeads,
      n_inner: cfg.dMlp,
      n_positions: cfg.maxPositions,
      layer_norm_epsilon: cfg.normEps,
      activation_function: cfg.act === 'gelu_tanh' ? 'gelu_new' : cfg.act,
      scale_attn_by_inverse_layer_idx: !!cfg.scaleAttnByInverseLayerIdx,
      scale_attn_weights: cfg.queryPreAttnScalar !== 1,
    };
  }
  const ropeOut = (r: RopeConfig) =>
    r.type === 'default'
      ? null
      : r.type === 'linear'
        ? { rope_type: 'linear', factor: r.factor }
        : {
            rope_type: 'llama3',
            factor: r.factor,
            low_freq_factor: r.lowFreqFactor,
            high_freq_factor: r.highFreqFactor,
            original_max_position_embeddings: r.originalMaxPositions,
          };
  const rope = cfg.rope!;
  const out: Record<string, any> = {
    ...base,
    hidden_size: cfg.dModel,
    intermediate_size: cfg.dMlp,
    num_hidden_layers: cfg.nLayers,
    num_attention_heads: cfg.nHeads,
    num_key_value_heads: cfg.nKvHeads,
    head_dim: cfg.dHead,
    max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.normEps,
    // transformers 4 spelling (transformers 5 still reads it and converts to rope_parameters)
    rope_theta: rope.full.theta,
    rope_scaling: ropeOut(rope.full),
    attention_bias: cfg.qkvBias,
    layer_types: cfg.layerTypes.map((t) => (t === 'full' ? 'full_attention' : 'sliding_attention')),
    sliding_window: cfg.slidingWindow ?? null,
  };
  if (cfg.modelType.startsWith('gemma')) {
    out.hidden_activation = cfg.act === 'gelu_tanh' ? 'gelu_pytorch_tanh' : cfg.act;
    out.query_pre_attn_scalar = cfg.queryPreAttnScalar ?? null;
    out.attn_logit_softcapping = cfg.attnSoftcap ?? null;
    out.final_logit_softcapping = cfg.finalSoftcap ?? null;
    if (cfg.modelType === 'gemma3_text') out.rope_local_base_freq = rope.sliding.theta;
  } else {
    out.hidden_act = cfg.act;
    out.mlp_bias = cfg.mlpBias;
    if (cfg.modelType === 'qwen2' || cfg.modelType === 'qwen3') out.use_sliding_window = cfg.layerTypes.includes('sliding');
  }
  return out;
}
