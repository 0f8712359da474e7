// How flags become the three things every experiment takes: a target (a Hugging Face folder, or
// the model organism), a behaviour set (a dataset file, or the organism's held-out tasks) and a
// judge (keyword, an LLM rubric, Llama Guard, or the organism's exact judge). With no --model,
// --data or --judge every experiment runs on the organism, as the notebooks do, so nothing needs a
// downloaded checkpoint.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readJsonFile } from '../lib/io/index.js';
import { buildWorld, type TaskSplit, type World } from '../lib/organism/index.js';
import { loadOrganism, organismExists, prepareOrganism, type LoadedOrganism } from '../lib/train/organism.js';
import { keywordJudge, loadTarget, type BehaviourSet, type Judge, type PromptFormat, type Target } from '../lib/metrics/index.js';
import { organismBehaviours, organismJudge, organismTarget } from '../lib/experiments/organism.js';
import { loadDataset, type DatasetFormat } from '../lib/datasets/index.js';
import { llmJudge } from '../lib/metrics/llmJudge.js';
import { loadLoraAdapter } from '../lib/model/lora.js';
import { UsageError, type FlagSpec } from './experiment.js';

/** The repository (package) root: the default organism lives in its data/organism. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const FORMATS: readonly PromptFormat[] = ['chat-template', 'llama2', 'instruction'];
const DATASET_FORMATS: readonly DatasetFormat[] = ['advbench', 'hex-phi', 'harmful-hex-phi', 'strongreject', 'malicious-instruct', 'qi-augmentation', 'chat-jsonl', 'alpaca'];
export const JUDGES = ['keyword', 'qi-harmfulness', 'strongreject', 'llama-guard', 'organism'] as const;
export type JudgeName = (typeof JUDGES)[number];

const MODEL_HELP =
  'a Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or organism (the aligned model organism), organism:base, ' +
  'organism:<folder> (any organism checkpoint; a folder with world.json is one)';
const SYSTEM_HELP =
  'system prompt: text, "none", or "default" (the format\'s own: Meta\'s safety prompt for llama2, Qi et al.\'s preamble for instruction). ' +
  'Absent: none for llama2 and chat-template (as Qi et al.\'s prefilling runs), Qi et al.\'s preamble for instruction';

export const TARGET_FLAGS: FlagSpec[] = [
  { name: 'model', type: 'string', default: 'organism', help: `the model: ${MODEL_HELP}` },
  { name: 'tokenizer', type: 'string', help: 'tokenizer folder (tokenizer.json, tokenizer_config.json) when not in the model folder' },
  { name: 'format', type: 'string', choices: FORMATS, default: 'chat-template', help: 'prompt format of an HF model: its chat template, the Llama-2 chat format, or the papers\' ### Instruction / ### Response base-model format (the organism always uses its own)' },
  { name: 'system-prompt', type: 'string', help: SYSTEM_HELP },
  { name: 'max-new-tokens', type: 'int', help: 'most tokens generated per response (default: the target\'s, 64 for HF models; a full answer for the organism)' },
  { name: 'adapter', type: 'string', help: 'a LoRA adapter folder in PEFT\'s format (adapter_config.json + adapter_model.safetensors, e.g. written by finetune --lora-r) applied to --model' },
  { name: 'organism-dir', type: 'string', help: 'where the organism\'s base/ and aligned/ checkpoints are (default: data/organism of the deepalign checkout; trained there, 3-9 min, when missing)' },
];

export const BASE_FLAGS: FlagSpec[] = [
  { name: 'base-model', type: 'string', help: `the base (unaligned) model to compare with: ${MODEL_HELP}; "none" for none. Default: organism:base when --model is an organism, else none` },
  { name: 'base-tokenizer', type: 'string', help: 'tokenizer folder of --base-model when not in its folder' },
  { name: 'base-format', type: 'string', choices: FORMATS, default: 'instruction', help: 'prompt format of an HF --base-model (default: the papers\' base-model format)' },
  { name: 'base-system-prompt', type: 'string', help: `--base-model's ${SYSTEM_HELP}` },
];

export const DATA_FLAGS: FlagSpec[] = [
  { name: 'data', type: 'string', help: 'harmful behaviours: a dataset file or folder (JSONL, JSON or CSV: AdvBench, HEx-PHI, Harmful HEx-PHI, StrongREJECT, MaliciousInstruct, ...). Default: the organism\'s held-out harmful tasks (with --model organism)' },
  { name: 'data-format', type: 'string', choices: DATASET_FORMATS, help: 'format of --data (default: inferred from the file)' },
  { name: 'benign', type: 'string', help: 'benign requests with reference answers, for utility (a dataset file; default: --data\'s own benign rows, or the organism\'s held-out benign tasks)' },
  { name: 'benign-format', type: 'string', choices: DATASET_FORMATS, help: 'format of --benign (default: inferred from the file)' },
  { name: 'limit', type: 'int', help: 'use only the first N harmful (and N benign) behaviours' },
  { name: 'split', type: 'string', choices: ['heldout', 'dev', 'train'], default: 'heldout', help: 'organism behaviours: the task split (every reported number uses heldout)' },
  { name: 'per-task', type: 'int', default: 8, help: 'organism behaviours: phrasings per task (24 held-out harmful tasks x 8 = 192 requests, as notebooks 02-04)' },
  { name: 'tasks', type: 'int', help: 'organism behaviours: only the first N tasks of each kind (default: all)' },
];

export const JUDGE_FLAGS: FlagSpec[] = [
  { name: 'judge', type: 'string', choices: JUDGES, help: 'who says a response is harmful: Qi et al.\'s keyword judge, an LLM judge with Qi et al.\'s 1-5 harmfulness rubric or StrongREJECT\'s (an OpenAI-compatible API), Llama Guard (--llama-guard folder), or the organism\'s exact judge. Default: organism with the organism\'s behaviours, else keyword' },
  { name: 'judge-base-url', type: 'string', help: 'LLM judge: the OpenAI-compatible API base URL (default: $DEEPALIGN_JUDGE_BASE_URL, then $OPENAI_BASE_URL)' },
  { name: 'judge-model', type: 'string', help: 'LLM judge: the model name (default: $DEEPALIGN_JUDGE_MODEL); the API key comes from $DEEPALIGN_JUDGE_API_KEY or $OPENAI_API_KEY' },
  { name: 'llama-guard', type: 'string', help: 'Llama Guard judge: its Hugging Face folder' },
  { name: 'judge-cache', type: 'string', help: 'LLM judge: cache folder for verdicts (default: <out>/judge-cache)' },
  { name: 'judge-concurrency', type: 'int', help: 'LLM judge: requests in flight at once' },
];

export const SEED_FLAGS: FlagSpec[] = [
  { name: 'seed', type: 'int', default: 0, help: 'the run\'s seed: which organism phrasings, and the seed of GCG, helpers and random positions' },
  { name: 'seeds', type: 'int-list', default: [0, 1, 2], help: 'sampling seeds: every sampled rate is measured once per seed (mean ± std, pooled Wilson 95% interval), as the notebooks' },
  { name: 'quiet', type: 'boolean', default: false, help: 'no progress bars or log lines on stderr (the table still goes to stdout)' },
  { name: 'out', type: 'string', help: 'output folder for results.json, figures, journal.jsonl and checkpoints (default: runs/<experiment>)' },
];

// ---------------------------------------------------------------------------------------------
// models

type ModelSpec = { kind: 'organism'; dir: string; name: string; defaultFolder: boolean } | { kind: 'hf'; dir: string; name: string };

/** --organism-dir, or the checkout's data/organism. */
export function organismDirOf(flags: Record<string, any>): string {
  return path.resolve(flags['organism-dir'] ?? path.join(PACKAGE_ROOT, 'data', 'organism'));
}

/** What a --model / --base-model value names; null for "none". */
export function modelSpec(value: string, flags: Record<string, any>, flag = 'model'): ModelSpec | null {
  if (value === 'none') return null;
  const organismDir = organismDirOf(flags);
  if (value === 'organism' || value === 'organism:aligned') return { kind: 'organism', dir: path.join(organismDir, 'aligned'), name: 'aligned', defaultFolder: true };
  if (value === 'organism:base') return { kind: 'organism', dir: path.join(organismDir, 'base'), name: 'base', defaultFolder: true };
  if (value.startsWith('organism:')) {
    const dir = path.resolve(value.slice('organism:'.length));
    if (!fs.existsSync(path.join(dir, 'world.json'))) throw new UsageError(`--${flag}: ${value}: ${dir} has no world.json (expected an organism checkpoint folder, as saveOrganism writes)`);
    return { kind: 'organism', dir, name: path.basename(dir), defaultFolder: false };
  }
  const dir = path.resolve(value);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new UsageError(`--${flag}: ${JSON.stringify(value)} is not a folder (expected ${MODEL_HELP})`);
  }
  if (fs.existsSync(path.join(dir, 'world.json'))) return { kind: 'organism', dir, name: path.basename(dir), defaultFolder: false };
  return { kind: 'hf', dir, name: path.basename(dir) };
}

/** True when --model names an organism checkpoint (it speaks the world's words, not English). */
export function modelIsOrganism(flags: Record<string, any>): boolean {
  return modelSpec(flags.model ?? 'organism', flags)?.kind === 'organism';
}

/** The --base-model value in effect: as given, else organism:base beside an organism --model, else 'none'. */
export function baseModelValue(flags: Record<string, any>): string {
  if (typeof flags['base-model'] === 'string') return flags['base-model'];
  const model = modelSpec(flags.model ?? 'organism', flags);
  return model?.kind === 'organism' ? 'organism:base' : 'none';
}

const organisms = new Map<string, Promise<LoadedOrganism>>();
const targets = new Map<string, Promise<Target>>();

/** An organism checkpoint, loaded once; the default folders are trained (as notebook 01 does) when missing. */
function organismAt(spec: Extract<ModelSpec, { kind: 'organism' }>, flags: Record<string, any>, log: (line: string) => void): Promise<LoadedOrganism> {
  let loading = organisms.get(spec.dir);
  if (!loading) {
    loading = (async () => {
      if (!organismExists(spec.dir)) {
        if (!spec.defaultFolder) throw new Error(`${spec.dir} is not a complete organism checkpoint (config.json, model.safetensors, tokenizer.json, world.json)`);
        log(`the organism is missing in ${organismDirOf(flags)}: training it (3-9 min; \`npm run organism\` does the same)`);
        const prepared = await prepareOrganism(organismDirOf(flags), { log });
        prepared.base.model.dispose();
        prepared.aligned.model.dispose();
      }
      return loadOrganism(spec.dir);
    })();
    organisms.set(spec.dir, loading);
  }
  return loading;
}

/** A --system-prompt value as chatTarget takes it: undefined = the format's default, null = none. */
function systemPromptOf(value: string | undefined, format: PromptFormat): string | null | undefined {
  if (value === undefined) return format === 'instruction' ? undefined : null;
  if (value === 'none') return null;
  if (value === 'default') return undefined;
  return value;
}

/**
 * The target named by --model (which = 'model') or --base-model (which = 'base-model'), loaded
 * once per invocation. An organism target uses the world's chat format; an HF folder is loaded by
 * lib/metrics' loadTarget with --format / --system-prompt (or --base-format / --base-system-prompt).
 */
export async function targetFromFlags(flags: Record<string, any>, which: 'model' | 'base-model' = 'model', log: (line: string) => void = () => undefined): Promise<Target> {
  const value = which === 'model' ? (flags.model ?? 'organism') : baseModelValue(flags);
  const spec = modelSpec(value, flags, which);
  if (spec === null) throw new UsageError(`--${which} is none, but this experiment needs it (${MODEL_HELP})`);
  const prefix = which === 'model' ? '' : 'base-';
  const maxNewTokens: number | undefined = flags['max-new-tokens'];
  const adapter: string | undefined = which === 'model' ? flags.adapter : undefined;
  const key = JSON.stringify([spec.dir, flags[`${prefix}format`], flags[`${prefix}system-prompt`], flags[`${prefix}tokenizer`], maxNewTokens, adapter]);
  let loading = targets.get(key);
  if (!loading) {
    loading = (async () => {
      let target: Target;
      if (spec.kind === 'organism') {
        const organism = await organismAt(spec, flags, log);
        const t = organismTarget(organism.model, organism.world, spec.name);
        target = maxNewTokens === undefined ? t : { ...t, maxNewTokens };
      } else {
        const format: PromptFormat = flags[`${prefix}format`] ?? (which === 'model' ? 'chat-template' : 'instruction');
        const tokenizer: string | undefined = flags[`${prefix}tokenizer`];
        target = await loadTarget(spec.dir, {
          format, systemPrompt: systemPromptOf(flags[`${prefix}system-prompt`], format), name: spec.name,
          ...(tokenizer !== undefined ? { tokenizerDir: path.resolve(tokenizer) } : {}), ...(maxNewTokens !== undefined ? { maxNewTokens } : {}),
        });
      }
      if (adapter !== undefined) {
        // The adapter goes onto this process's copy of the model; the forward then includes it.
        await loadLoraAdapter(target.model, path.resolve(adapter));
        log(`adapter: ${adapter} (LoRA) on ${target.name}`);
        target = { ...target, name: `${target.name}+${path.basename(path.resolve(adapter))}` };
      }
      return target;
    })();
    targets.set(key, loading);
  }
  return loading;
}

/**
 * Usage checks of the common flags that need no model or data loaded, so a bad command line fails
 * at once (exit 2) instead of after loading models: the --model / --base-model values, --data with
 * an HF model, and what --judge needs. `declared` are the flags the experiment takes.
 */
export function checkCommonFlags(flags: Record<string, any>, declared: ReadonlySet<string>): void {
  if (declared.has('model')) modelSpec(flags.model ?? 'organism', flags, 'model');
  if (declared.has('base-model') && typeof flags['base-model'] === 'string') modelSpec(flags['base-model'], flags, 'base-model');
  if (declared.has('data') && declared.has('model') && usesOrganismBehaviours(flags) && !modelIsOrganism(flags)) {
    throw new UsageError(`--data is required with a Hugging Face --model (${flags.model}): the default behaviours are the organism's, in its own vocabulary`);
  }
  if (declared.has('adapter') && typeof flags.adapter === 'string' && !fs.existsSync(path.join(flags.adapter, 'adapter_config.json'))) {
    throw new UsageError(`--adapter: ${flags.adapter} has no adapter_config.json (expected a LoRA adapter folder in PEFT's format)`);
  }
  for (const flag of ['data', 'benign']) {
    if (declared.has(flag) && typeof flags[flag] === 'string' && !fs.existsSync(flags[flag])) throw new UsageError(`--${flag}: ${flags[flag]} does not exist (expected a dataset file or folder)`);
  }
  if (declared.has('judge')) {
    const name = judgeName(flags);
    if (name === 'organism' && !usesOrganismBehaviours(flags)) throw new UsageError('--judge organism needs the organism\'s behaviours (its exact judge knows only its own tasks): leave out --data, or choose another --judge');
    if (name === 'llama-guard' && typeof flags['llama-guard'] !== 'string') throw new UsageError('--judge llama-guard needs --llama-guard <folder> (a Llama Guard Hugging Face folder)');
  }
}

// ---------------------------------------------------------------------------------------------
// behaviours

const worlds = new Map<string, World>();

/** True when no --data is given: behaviours (and the default judge) come from the organism. */
export function usesOrganismBehaviours(flags: Record<string, any>): boolean {
  return typeof flags.data !== 'string';
}

/** The organism world of --model (or of --organism-dir's aligned model), read from its world.json. */
export function organismWorld(flags: Record<string, any>): World {
  const spec = modelSpec(flags.model ?? 'organism', flags);
  const dir = spec?.kind === 'organism' ? spec.dir : path.join(organismDirOf(flags), 'aligned');
  let world = worlds.get(dir);
  if (!world) {
    const file = path.join(dir, 'world.json');
    if (!fs.existsSync(file)) throw new Error(`${file} is missing: the organism's behaviours need its world (train it with \`npm run organism\`, or pass --data)`);
    const manifest = readJsonFile<{ world?: Record<string, unknown> }>(file, 'the organism manifest written by saveOrganism ({ world, phase, training, run })');
    if (typeof manifest.world !== 'object' || manifest.world === null) throw new Error(`${file}: no "world" settings object (expected the organism manifest written by saveOrganism)`);
    world = buildWorld(manifest.world);
    worlds.set(dir, world);
  }
  return world;
}

function limited<T>(items: T[], limit: number | undefined): T[] {
  return limit === undefined ? items : items.slice(0, limit);
}

/**
 * The behaviour set: --data (and --benign) through lib/datasets' loadDataset, or, without --data,
 * the organism's tasks (--split, --per-task, --tasks, phrasings seeded by --seed). --limit keeps
 * the first N of each kind. Without --data an HF --model is a usage error: the organism's requests
 * are in its own vocabulary.
 */
export function behavioursFromFlags(flags: Record<string, any>): BehaviourSet {
  const limit: number | undefined = flags.limit;
  if (limit !== undefined && limit < 1) throw new UsageError(`--limit: ${limit} must be at least 1`);
  let set: BehaviourSet;
  if (usesOrganismBehaviours(flags)) {
    const spec = modelSpec(flags.model ?? 'organism', flags);
    if (spec?.kind === 'hf') {
      throw new UsageError(`--data is required with a Hugging Face --model (${flags.model}): the default behaviours are the organism's, in its own vocabulary`);
    }
    const perTask: number = flags['per-task'] ?? 8;
    const tasks: number | undefined = flags.tasks;
    if (perTask < 1) throw new UsageError(`--per-task: ${perTask} must be at least 1`);
    if (tasks !== undefined && tasks < 1) throw new UsageError(`--tasks: ${tasks} must be at least 1`);
    set = organismBehaviours(organismWorld(flags), { split: (flags.split ?? 'heldout') as TaskSplit, perTask, limitTasks: tasks, seed: flags.seed ?? 0 });
  } else {
    const dataset = loadDataset(path.resolve(flags.data), { ...(flags['data-format'] ? { format: flags['data-format'] } : {}) });
    set = { name: dataset.name, harmful: dataset.harmful, benign: dataset.benign };
  }
  if (typeof flags.benign === 'string') {
    const file = path.resolve(flags.benign);
    const benign = loadDataset(file, { ...(flags['benign-format'] ? { format: flags['benign-format'] } : {}) }).benign;
    if (benign.length === 0) throw new Error(`--benign: ${file} has no benign requests with reference answers (expected e.g. alpaca rows: instruction, output)`);
    set = { ...set, benign };
  }
  return { name: set.name, harmful: limited(set.harmful, limit), benign: limited(set.benign, limit) };
}

// ---------------------------------------------------------------------------------------------
// judges

/** What the judges did in this invocation (cli/main.ts prints it; the resume tests read it). */
export const judgeStats = { calls: 0, judged: 0, utility: 0 };

/** The judge in effect: --judge, else organism with the organism's behaviours, else keyword. */
export function judgeName(flags: Record<string, any>): JudgeName {
  return flags.judge ?? (usesOrganismBehaviours(flags) ? 'organism' : 'keyword');
}

function counted(judge: Judge): Judge {
  const utility = judge.utility?.bind(judge);
  return {
    name: judge.name,
    async judge(inputs) {
      judgeStats.calls++;
      judgeStats.judged += inputs.length;
      return judge.judge(inputs);
    },
    ...(utility
      ? {
          async utility(inputs: Parameters<NonNullable<Judge['utility']>>[0]) {
            judgeStats.utility += inputs.length;
            return utility(inputs);
          },
        }
      : {}),
  };
}

/** The judge named by the flags (see JUDGE_FLAGS), counting what it judges in judgeStats. */
export async function judgeFromFlags(flags: Record<string, any>, outDir: string): Promise<Judge> {
  const name = judgeName(flags);
  switch (name) {
    case 'keyword':
      return counted(keywordJudge());
    case 'organism':
      if (!usesOrganismBehaviours(flags)) throw new UsageError('--judge organism needs the organism\'s behaviours (its exact judge knows only its own tasks): leave out --data, or choose another --judge');
      return counted(organismJudge(organismWorld(flags)));
    case 'qi-harmfulness':
    case 'strongreject':
      return counted(llmJudge({
        rubric: name, cacheDir: path.resolve(flags['judge-cache'] ?? path.join(outDir, 'judge-cache')),
        ...(flags['judge-base-url'] !== undefined ? { baseUrl: flags['judge-base-url'] } : {}),
        ...(flags['judge-model'] !== undefined ? { model: flags['judge-model'] } : {}),
        ...(flags['judge-concurrency'] !== undefined ? { concurrency: flags['judge-concurrency'] } : {}),
      }));
    case 'llama-guard': {
      const dir = flags['llama-guard'];
      if (typeof dir !== 'string') throw new UsageError('--judge llama-guard needs --llama-guard <folder> (a Llama Guard Hugging Face folder)');
      if (!fs.existsSync(dir)) throw new UsageError(`--llama-guard: ${dir} does not exist (expected a Llama Guard Hugging Face folder)`);
      // Loaded only when asked for: it pulls in a second model.
      const { llamaGuardJudge } = await import('../lib/metrics/llamaGuard.js');
      return counted(await llamaGuardJudge(path.resolve(dir)));
    }
    default:
      throw new UsageError(`--judge: ${JSON.stringify(name)} is not one of ${JUDGES.join(', ')}`);
  }
}
