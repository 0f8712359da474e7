// augmentedOrganismCache / augmentedOrganismModels: notebook 05's augmented models as a lib
// provider. The keys and folders must be exactly notebook 05's (so notebook 07 reuses 05's cache):
// the reference below is 05's construction (cell 3), copied as it is, on a small organism saved to
// a temporary folder. Then the provider trains a sweep, caches it, reloads it, and its snapshots
// equal a plain augmentModel run of the same length.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { readJsonFile } from '../../lib/io/index.js';
import type { World } from '../../lib/organism/index.js';
import {
  AUGMENTATION_DEFAULTS, augmentModel, distilledAnchor, hasCachedModel, type AugmentationSettings,
} from '../../lib/train/index.js';
import { augmentedOrganismCache, augmentedOrganismModels, organismBehaviours } from '../../lib/experiments/index.js';
import type { Target } from '../../lib/metrics/index.js';
import { stable, tinyAlignedOrganism, tinyTrainingConfig, weightsOf } from './tinyAlignedOrganism.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-augorg-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** JSON with sorted keys, as cachedModel compares keys. */

/** Notebook 05's cell 3 (cache key and folders), copied verbatim but for CONFIG and world coming in as arguments. */
function notebook05Reference(world: World, CONFIG: {
  organismDir: string; cacheDir: string; recipe: Omit<AugmentationSettings, 'steps' | 'seed'>;
  safety: { perTask: number; seed: number; limitTasks: number | null }; anchor: { perTask: number; seed: number; limitTasks: number | null };
}) {
  const behaviours = (split: 'train' | 'dev' | 'heldout', o: { perTask: number; seed: number; limitTasks: number | null }) =>
    organismBehaviours(world, { split, perTask: o.perTask, seed: o.seed, limitTasks: o.limitTasks ?? undefined });
  const safety = behaviours('train', CONFIG.safety).harmful;
  const anchorRequests = behaviours('train', CONFIG.anchor).benign;
  const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
  const alignedDir = path.join(CONFIG.organismDir, 'aligned');
  const alignedRecord = readJsonFile(path.join(alignedDir, 'world.json'), 'the aligned checkpoint\'s world.json') as { world: unknown; training: unknown };
  const ALIGNED_ID = { weightsSha256: sha256(fs.readFileSync(path.join(alignedDir, 'model.safetensors'))), world: alignedRecord.world, training: alignedRecord.training };
  const DATA_ID = sha256(JSON.stringify({ safety: safety.map((b) => [b.request, b.harmfulResponse, b.refusal]), anchor: anchorRequests.map((b) => b.request) }));
  const settingsFor = (seed: number, steps: number): AugmentationSettings => ({ ...CONFIG.recipe, steps, seed });
  const keyFor = (seed: number, steps: number) => ({
    defence: 'Qi et al. data augmentation (augmentModel)', settings: settingsFor(seed, steps),
    safety: { split: 'train', ...CONFIG.safety, triplets: safety.length }, anchor: { split: 'train', ...CONFIG.anchor, requests: anchorRequests.length, answers: 'aligned model, greedy' },
    dataSha256: DATA_ID, aligned: ALIGNED_ID,
  });
  const dirFor = (seed: number, steps: number) => path.join(CONFIG.cacheDir, `lr${CONFIG.recipe.peakLr}_steps${steps}_seed${seed}`);
  return { safety, anchorRequests, ALIGNED_ID, DATA_ID, settingsFor, keyFor, dirFor };
}

describe('augmentedOrganismCache and augmentedOrganismModels (notebook 05\'s augmented models)', () => {
  let world: World;
  let aligned: Target;
  const organismDir = path.join(tmp, 'organism');
  const cacheDir = path.join(tmp, 'augmentation');

  beforeAll(async () => {
    await initEngine();
    ({ world, aligned } = await tinyAlignedOrganism(organismDir));
  });

  it('keys, data and folders equal notebook 05\'s, field by field (full and FAST-style settings)', () => {
    const recipe = { ...AUGMENTATION_DEFAULTS, peakLr: 1e-4 } as Omit<AugmentationSettings, 'steps' | 'seed'>;
    for (const limitTasks of [null, 4]) {
      const config = { organismDir, cacheDir, recipe, safety: { perTask: limitTasks ? 1 : 6, seed: 0, limitTasks }, anchor: { perTask: limitTasks ? 1 : 16, seed: 1, limitTasks } };
      const ref = notebook05Reference(world, config);
      const ours = augmentedOrganismCache(world, config);
      expect(ours.safety).toStrictEqual(ref.safety);
      expect(ours.anchorRequests).toStrictEqual(ref.anchorRequests);
      expect(ours.aligned).toStrictEqual(ref.ALIGNED_ID);
      expect(ours.dataSha256).toBe(ref.DATA_ID);
      for (const [seed, steps] of [[1, 10], [2, 35], [3, 60], [1, 6]]) {
        const key = ours.keyFor(seed, steps);
        const refKey = ref.keyFor(seed, steps);
        expect(Object.keys(key).sort()).toEqual(Object.keys(refKey).sort());
        for (const field of Object.keys(refKey) as (keyof typeof refKey)[]) expect(key[field]).toStrictEqual(refKey[field]);
        expect(stable(key)).toBe(stable(refKey));
        expect(ours.settingsFor(seed, steps)).toStrictEqual(ref.settingsFor(seed, steps));
        expect(ours.dirFor(seed, steps)).toBe(ref.dirFor(seed, steps));
      }
      // limitTasks stays null (JSON keeps null; a missing field would be a different key).
      expect(JSON.parse(JSON.stringify(ours.keyFor(1, 10))).safety.limitTasks).toBe(limitTasks);
    }
    expect(augmentedOrganismCache(world, { organismDir, cacheDir, recipe, safety: { perTask: 1, seed: 0, limitTasks: null }, anchor: { perTask: 1, seed: 1, limitTasks: null } }).dirFor(2, 45))
      .toBe(path.join(cacheDir, 'lr0.0001_steps45_seed2'));
    expect(() => augmentedOrganismCache(world, { organismDir: path.join(tmp, 'none'), cacheDir, recipe, safety: { perTask: 1, seed: 0, limitTasks: null }, anchor: { perTask: 1, seed: 1, limitTasks: null } }))
      .toThrow(/model\.safetensors is missing/);
    expect(() => augmentedOrganismCache(world, { organismDir, cacheDir, recipe, safety: { perTask: 0, seed: 0, limitTasks: null }, anchor: { perTask: 1, seed: 1, limitTasks: null } })).toThrow(/safety\.perTask/);
  });

  it('trains a sweep as notebook 05 does (snapshots of one run = runs of that length), caches it under 05\'s keys and reloads it', async () => {
    const config = tinyTrainingConfig(organismDir, cacheDir);
    const first = await augmentedOrganismModels(world, aligned, { ...config, seeds: [1], steps: [0, 2, 3], progress: false });
    expect(first.trainedNow).toEqual(['seed 1: 2', 'seed 1: 3']);
    expect(first.models.map((m) => [m.steps, m.seed, m.target.name])).toEqual([[0, 1, 'aligned'], [2, 1, 'augmented (2 steps, seed 1)'], [3, 1, 'augmented (3 steps, seed 1)']]);
    expect(first.at(0, 1)).toBe(aligned);
    expect(() => first.at(5, 1)).toThrow(/no model at 5 steps/);
    const ref = notebook05Reference(world, config);
    for (const steps of [2, 3]) expect(hasCachedModel(ref.dirFor(1, steps), ref.keyFor(1, steps))).toBe(true);
    expect(first.models[1].record.snapshotOf).toMatch(/3-step run/);

    // The 2-step snapshot is the model of a plain 2-step augmentModel run.
    const anchor = await distilledAnchor(aligned, ref.anchorRequests, { batchSize: 8 });
    const direct = await augmentModel(aligned, ref.safety, anchor.examples, ref.settingsFor(1, 2));
    expect(weightsOf(first.at(2, 1).model)).toEqual(weightsOf(direct.model));
    direct.model.dispose();

    // Again: everything from the cache; a new budget trains only itself.
    const again = await augmentedOrganismModels(world, aligned, { ...config, seeds: [1], steps: [2, 3, 4], progress: false });
    expect(again.trainedNow).toEqual(['seed 1: 4']);
    expect(again.models.map((m) => m.cached)).toEqual([true, true, true]);
    expect(weightsOf(again.at(3, 1).model)).toEqual(weightsOf(first.at(3, 1).model));
    for (const m of [...first.models, ...again.models]) if (m.steps > 0) m.target.model.dispose();
  });
});
