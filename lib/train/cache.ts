// Trained artefacts cached under data/ with the settings that made them: a model folder (a complete
// Hugging Face folder) plus `training.json`. A cached model is reused only when its settings equal
// the requested ones (compared as JSON); otherwise it is retrained and the folder replaced atomically.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel, saveModel, type Decoder } from '../model/index.js';
import { readJsonFile } from '../io/index.js';

export interface CachedModel {
  model: Decoder;
  /** true when it was loaded from the cache, false when trained now. */
  cached: boolean;
  /** What the training run recorded (loss, wall time, ...), as saved. */
  record: Record<string, unknown>;
}

const stable = (x: unknown): string => JSON.stringify(x, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));

function cachedManifest(dir: string, settings: unknown): { settings?: unknown; record?: Record<string, unknown> } | null {
  const manifest = path.join(dir, 'training.json');
  if (!fs.existsSync(manifest) || !fs.existsSync(path.join(dir, 'config.json'))) return null;
  const saved = readJsonFile(manifest, 'a cached model\'s training manifest') as { settings?: unknown; record?: Record<string, unknown> };
  return stable(saved.settings) === stable(JSON.parse(JSON.stringify(settings))) ? saved : null;
}

/** Whether `dir` holds a model trained with `settings` (what cachedModel would load instead of training). */
export function hasCachedModel(dir: string, settings: unknown): boolean {
  return cachedManifest(dir, settings) !== null;
}

/**
 * Load `dir` when it holds a model trained with `settings`, else run `trainFn` and save its model
 * there with the settings and the record it returns. `retrain` forces training.
 */
export async function cachedModel(
  dir: string, settings: unknown, trainFn: () => Promise<{ model: Decoder; record?: Record<string, unknown> }>, options: { retrain?: boolean; tokenizer?: string } = {},
): Promise<CachedModel> {
  const saved = options.retrain ? null : cachedManifest(dir, settings);
  if (saved) return { model: await loadModel(dir), cached: true, record: saved.record ?? {} };
  const { model, record = {} } = await trainFn();
  await saveModel(model, dir, { tokenizer: options.tokenizer, files: { 'training.json': `${JSON.stringify({ settings, record }, null, 2)}\n` } });
  return { model, cached: false, record };
}
