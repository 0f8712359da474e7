// The organism models `npm run play` offers: the aligned organism, notebook 05's augmented model
// and notebook 08's augmented + PRESTO model at the RAP operating point (35 steps, training seed 1),
// the base model, and any checkpoint folder of the organism (`--models name=dir`). The cached
// models are found by their cache keys (augmentedOrganismCache: the folder and the key notebook 05
// / 08 write); a missing or stale one is listed as unavailable with the command that builds it.
// Nothing is trained here.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { readJsonFile } from '../io/index.js';
import { loadModel } from '../model/index.js';
import type { Target } from '../metrics/index.js';
import type { World } from '../organism/index.js';
import { AUGMENTATION_DEFAULTS, hasCachedModel, type AugmentationSettings } from '../train/index.js';
import { augmentedOrganismCache, type AugmentedOrganismOptions } from './augmentedOrganism.js';
import { organismTarget } from './organism.js';

/** A model to offer: a built-in name (PLAY_BUILTIN_MODELS) or a named checkpoint folder. */
export type PlayModelRequest = string | { name: string; dir: string };

export interface PlayModel {
  /** Its name in the page, the API and traces. */
  name: string;
  /** What the page shows, e.g. "augmented (35 steps, seed 1)". */
  label: string;
  description: string;
  dir: string;
  available: boolean;
  /** Why it cannot be offered (unavailable only). */
  missing?: string;
  /** The command that builds it (unavailable built-ins only). */
  command?: string;
}

export interface PlayModelsOptions {
  /** The organism (its aligned and base checkpoints; the augmented models' keys hash the aligned one). Default data/organism. */
  organismDir?: string;
  /** Notebook 05's cache of augmented models. Default data/augmentation. */
  augmentationDir?: string;
  /** Notebook 08's cache of defended models. Default data/defences. */
  defencesDir?: string;
  /** Where the notebooks are (to name the one that builds a missing model). Default notebooks. */
  notebooksDir?: string;
  /** Which models, in order. Default PLAY_DEFAULT_MODELS. */
  models?: readonly PlayModelRequest[];
}

/** The built-in models. */
export const PLAY_BUILTIN_MODELS = ['aligned', 'augmented', 'presto', 'base'] as const;
/** Offered by default: the three arms of notebook 08 at the RAP operating point. */
export const PLAY_DEFAULT_MODELS: readonly string[] = ['aligned', 'augmented', 'presto'];

/**
 * Notebooks 05 and 08's training settings (their CONFIG.augmentation / CONFIG.training, full runs)
 * and the model the page offers: notebook 07's RAP operating point, 35 steps, training seed 1.
 */
export const PLAY_AUGMENTATION = {
  recipe: { ...AUGMENTATION_DEFAULTS, peakLr: 1e-4 } as Omit<AugmentationSettings, 'steps' | 'seed'>,
  safety: { perTask: 6, seed: 0, limitTasks: null },
  anchor: { perTask: 16, seed: 1, limitTasks: null },
  steps: 35,
  seed: 1,
  presto: { weight: 1 },
};

/** "aligned,augmented,mine=path/to/dir" -> requests (for --models). */
export function parsePlayModels(spec: string): PlayModelRequest[] {
  const items = spec.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new Error(`--models: give at least one model (${PLAY_BUILTIN_MODELS.join(', ')}, or name=dir)`);
  return items.map((item) => {
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (!(PLAY_BUILTIN_MODELS as readonly string[]).includes(item)) throw new Error(`--models: unknown model "${item}" (built-in: ${PLAY_BUILTIN_MODELS.join(', ')}; or name=dir for a checkpoint folder)`);
      return item;
    }
    const name = item.slice(0, eq).trim();
    const dir = item.slice(eq + 1).trim();
    if (!name || !dir) throw new Error(`--models: "${item}" must be name=dir`);
    return { name, dir };
  });
}

/** The notebook file that builds a cache, as `notebooks/<stem>.ipynb` (and whether it is there). */
function notebookOf(notebooksDir: string, prefix: string, fallback: string): { file: string; present: boolean } {
  const found = fs.existsSync(notebooksDir) ? fs.readdirSync(notebooksDir).find((f) => f.startsWith(`${prefix}_`) && f.endsWith('.ipynb')) : undefined;
  return { file: path.join(notebooksDir, found ?? fallback), present: found !== undefined };
}

/** Why `dir` is not a checkpoint of this world's organism (null when it is). */
function checkpointProblem(world: World, dir: string): string | null {
  if (!fs.existsSync(path.join(dir, 'config.json')) || !fs.existsSync(path.join(dir, 'model.safetensors'))) return `${dir} holds no checkpoint (config.json and model.safetensors)`;
  try {
    const config = readJsonFile<{ vocab_size?: number }>(path.join(dir, 'config.json'), 'a Hugging Face config.json');
    if (config.vocab_size !== world.vocab.length) return `${dir} has ${config.vocab_size} tokens, the organism ${world.vocab.length}: not a model of this organism`;
    const tokenizer = path.join(dir, 'tokenizer.json');
    if (fs.existsSync(tokenizer)) {
      const vocab = readJsonFile<{ model?: { vocab?: Record<string, number> } }>(tokenizer, 'a tokenizers tokenizer.json').model?.vocab;
      const bad = vocab ? world.vocab.findIndex((w, i) => vocab[w] !== i) : -1;
      if (bad >= 0) return `${dir}/tokenizer.json maps "${world.vocab[bad]}" to ${vocab![world.vocab[bad]]}, the organism to ${bad}: not a model of this organism`;
    }
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

/** The models to offer, each available or not (with why and how to build it); nothing is loaded. */
export function organismPlayModels(world: World, options: PlayModelsOptions = {}): PlayModel[] {
  const organismDir = options.organismDir ?? 'data/organism';
  const notebooksDir = options.notebooksDir ?? 'notebooks';
  const requests = options.models ?? PLAY_DEFAULT_MODELS;
  const names = new Set<string>();
  const cacheOptions = (cacheDir: string): AugmentedOrganismOptions => ({
    organismDir, cacheDir, recipe: PLAY_AUGMENTATION.recipe, safety: PLAY_AUGMENTATION.safety, anchor: PLAY_AUGMENTATION.anchor,
  });
  const { steps, seed } = PLAY_AUGMENTATION;
  return requests.map((request): PlayModel => {
    const name = typeof request === 'string' ? request : request.name;
    if (names.has(name)) throw new Error(`organismPlayModels: the model name "${name}" is given twice`);
    names.add(name);
    if (typeof request !== 'string') {
      const problem = checkpointProblem(world, request.dir);
      return { name, label: name, description: `checkpoint ${request.dir}`, dir: request.dir, available: problem === null, ...(problem ? { missing: problem } : {}) };
    }
    if (request === 'aligned' || request === 'base') {
      const dir = path.join(organismDir, request);
      const problem = checkpointProblem(world, dir);
      const description = request === 'aligned' ? 'the aligned organism (SFT on refusals; notebook 01)' : 'the base organism before alignment (notebook 01)';
      return { name, label: request, description, dir, available: problem === null, ...(problem ? { missing: problem, command: 'npm run organism -- --retrain' } : {}) };
    }
    if (request !== 'augmented' && request !== 'presto') throw new Error(`organismPlayModels: unknown model "${request}" (built-in: ${PLAY_BUILTIN_MODELS.join(', ')})`);
    const presto = request === 'presto';
    const cache = augmentedOrganismCache(world, {
      ...cacheOptions(presto ? (options.defencesDir ?? 'data/defences') : (options.augmentationDir ?? 'data/augmentation')),
      ...(presto ? { defence: { presto: PLAY_AUGMENTATION.presto } } : {}),
    });
    const dir = cache.dirFor(seed, steps);
    const label = `${presto ? 'augmented + PRESTO' : 'augmented'} (${steps} steps, seed ${seed})`;
    const description = presto
      ? `Qi et al.'s augmentation with Vega & Singh's PRESTO term (weight ${PLAY_AUGMENTATION.presto.weight}), notebook 08's model`
      : `Qi et al.'s data augmentation, notebook 05's model (lr ${PLAY_AUGMENTATION.recipe.peakLr})`;
    if (hasCachedModel(dir, cache.keyFor(seed, steps))) return { name, label, description, dir, available: true };
    const nb = presto ? notebookOf(notebooksDir, '08', '08_presto.ipynb') : notebookOf(notebooksDir, '05', '05_data_augmentation.ipynb');
    const why = fs.existsSync(path.join(dir, 'training.json'))
      ? `${dir} was trained with other settings or from another aligned checkpoint (its training.json key differs)`
      : `${dir} is absent (the cache is git-ignored: a fresh clone has none)`;
    return {
      name, label, description, dir, available: false, command: `npm run reproduce -- ${nb.file}`,
      missing: `${why}${nb.present ? '' : `; ${nb.file} is not in this checkout`}`,
    };
  });
}

/** Loads an available model as an organism target named after its label. */
export async function loadPlayModel(world: World, model: PlayModel): Promise<Target> {
  if (!model.available) throw new Error(`loadPlayModel: "${model.name}" is not available: ${model.missing}`);
  return organismTarget(await loadModel(model.dir), world, model.label);
}
