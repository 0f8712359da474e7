// Shared set-up of the augmented-organism tests: a tiny random "aligned" organism saved as a
// checkpoint folder (so cache keys can hash its weights), and a weight dump for equality checks.
import * as path from 'node:path';
import { createModel, type Decoder } from '../../lib/model/index.js';
import { buildWorld, type World } from '../../lib/organism/index.js';
import { ALIGN_TRAINING, AUGMENTATION_DEFAULTS, organismConfig, saveOrganism, type AugmentationSettings } from '../../lib/train/index.js';
import { organismTarget } from '../../lib/experiments/index.js';
import type { Target } from '../../lib/metrics/index.js';

export async function tinyAlignedOrganism(organismDir: string): Promise<{ world: World; aligned: Target }> {
  const world = buildWorld();
  const model = createModel({ ...organismConfig(world), hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 16 }, { seed: 0 });
  await saveOrganism(model, world, path.join(organismDir, 'aligned'), {
    world: world.settings, phase: 'aligned', training: ALIGN_TRAINING, run: { steps: 0, tokens: 0, wallSeconds: 0, tokensPerSecond: 0, finalLoss: 0, backend: 'test' },
  });
  return { world, aligned: organismTarget(model, world, 'aligned') };
}

export const weightsOf = (m: Decoder) => [...m.variables().entries()].map(([name, v]) => [name, Array.from(v.dataSync())] as const);

/** JSON with object keys sorted at every level (key equality regardless of insertion order). */
export const stable = (x: unknown): string => JSON.stringify(x, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));

/** The small augmentedOrganismCache options the cache tests share: notebook 05's recipe on 4 tasks of each kind, one phrasing each. */
export function tinyCacheOptions(organismDir: string, cacheDir: string) {
  const recipe = { ...AUGMENTATION_DEFAULTS, peakLr: 1e-4 } as Omit<AugmentationSettings, 'steps' | 'seed'>;
  return { organismDir, cacheDir, recipe, safety: { perTask: 1, seed: 0, limitTasks: 4 }, anchor: { perTask: 1, seed: 1, limitTasks: 4 } };
}

/** The tiny training configuration the cache tests train with: a fast recipe (lr 1e-3, 4 + 4 rows per step) on 3 tasks of each kind. */
export function tinyTrainingConfig(organismDir: string, cacheDir: string) {
  const recipe = { ...AUGMENTATION_DEFAULTS, warmupSteps: 1, safetyPerBatch: 4, anchorPerBatch: 4, poolPerTriplet: 2, peakLr: 1e-3 } as Omit<AugmentationSettings, 'steps' | 'seed'>;
  return { organismDir, cacheDir, recipe, safety: { perTask: 1, seed: 0, limitTasks: 3 }, anchor: { perTask: 1, seed: 1, limitTasks: 3 }, batchSize: 8 };
}
