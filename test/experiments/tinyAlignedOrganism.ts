// Shared set-up of the augmented-organism tests: a tiny random "aligned" organism saved as a
// checkpoint folder (so cache keys can hash its weights), and a weight dump for equality checks.
import * as path from 'node:path';
import { createModel, type Decoder } from '../../lib/model/index.js';
import { buildWorld, type World } from '../../lib/organism/index.js';
import { ALIGN_TRAINING, organismConfig, saveOrganism } from '../../lib/train/index.js';
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
