// augmentedOrganismCache / augmentedOrganismModels with worst-insertion training and DeRTa
// (notebooks 09-10): the same recipe, data, seeds and budgets as notebook 05's augmentation, keyed
// by the defence (name and resolved options) in tagged folders; the keys of plain augmentation,
// PRESTO and push-forward stay as they were.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import type { World } from '../../lib/organism/index.js';
import { dertaModel, distilledAnchor, hasCachedModel, worstInsertionModel } from '../../lib/train/index.js';
import {
  DERTA_DEFENCE_NAME, WORST_INSERTION_DEFENCE_NAME, augmentedOrganismCache, augmentedOrganismModels, defenceTag, resolveOrganismDefence,
} from '../../lib/experiments/index.js';
import type { Target } from '../../lib/metrics/index.js';
import { stable, tinyAlignedOrganism, tinyCacheOptions, tinyTrainingConfig, weightsOf } from './tinyAlignedOrganism.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-insdef-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('augmentedOrganismModels with worst-insertion training and DeRTa', () => {
  let world: World;
  let aligned: Target;
  const organismDir = path.join(tmp, 'organism');
  const cacheDir = path.join(tmp, 'defences');

  beforeAll(async () => {
    await initEngine();
    ({ world, aligned } = await tinyAlignedOrganism(organismDir));
  });

  it('keys: matched settings and data, the defence named with its resolved options; tagged folders; they stand alone', () => {
    const base = tinyCacheOptions(organismDir, cacheDir);
    const plain = augmentedOrganismCache(world, base);
    const worst = augmentedOrganismCache(world, { ...base, defence: { worstInsertion: {} } });
    const derta = augmentedOrganismCache(world, { ...base, defence: { derta: { keepFraction: 0.05 } } });
    const presto = augmentedOrganismCache(world, { ...base, defence: { presto: {} } });
    for (const c of [worst, derta]) {
      const key = c.keyFor(2, 35);
      const ref = plain.keyFor(2, 35);
      expect(key.settings).toStrictEqual(ref.settings);
      expect(key.safety).toStrictEqual(ref.safety);
      expect(key.anchor).toStrictEqual(ref.anchor);
      expect(key.dataSha256).toBe(ref.dataSha256);
      expect(key.aligned).toStrictEqual(ref.aligned);
      expect(stable(key)).not.toBe(stable(ref));
    }
    expect(worst.keyFor(1, 25).defence).toBe(WORST_INSERTION_DEFENCE_NAME);
    expect(worst.keyFor(1, 25).defenceSettings).toStrictEqual({ presto: null, pushForward: null, worstInsertion: { candidates: 4, maxSpan: 16, continuation: 8, plainProbability: 0.5 } });
    expect(derta.keyFor(1, 25).defence).toBe(DERTA_DEFENCE_NAME);
    expect(derta.keyFor(1, 25).defenceSettings).toStrictEqual({ presto: null, pushForward: null, derta: { rtoShare: 0.5, keepFraction: 0.05, refusalToken: null } });
    // PRESTO's key has no field for the new defences
    expect(presto.keyFor(1, 25).defenceSettings).toStrictEqual({ presto: { weight: 1, scale: 'tokens' }, pushForward: null });
    expect(worst.dirFor(2, 35)).toBe(path.join(cacheDir, 'worst-insertion-c4-n16-m8-p0.5_lr0.0001_steps35_seed2'));
    expect(derta.dirFor(2, 35)).toBe(path.join(cacheDir, 'derta-r0.5-k0.05_lr0.0001_steps35_seed2'));
    expect(defenceTag(resolveOrganismDefence({ derta: { refusalToken: 9 } }))).toBe('derta-r0.5-k1-t9');
    expect(defenceTag(resolveOrganismDefence({ worstInsertion: { candidates: 8, continuation: 4 } }))).toBe('worst-insertion-c8-n16-m4-p0.5');
    expect(stable(JSON.parse(JSON.stringify(worst.keyFor(1, 25))))).toBe(stable(worst.keyFor(1, 25)));
    expect(() => resolveOrganismDefence({ worstInsertion: {}, presto: {} })).toThrow(/`worstInsertion` defence stands alone; it cannot be combined with `presto`/);
    expect(() => resolveOrganismDefence({ derta: {}, worstInsertion: {} })).toThrow(/stands alone/);
    expect(() => resolveOrganismDefence({ worstInsertion: { candidates: 0 } })).toThrow(/worstInsertion: `candidates`/);
    expect(() => resolveOrganismDefence({ derta: { rtoShare: 2 } })).toThrow(/derta: `rtoShare`/);
    expect(() => resolveOrganismDefence({ dert: {} } as never)).toThrow(/unknown defence `dert` \(known: presto, pushForward, worstInsertion, derta\)/);
  });

  it('trains worst-insertion and DeRTa sweeps (snapshots = runs of that length), caches and reloads them', async () => {
    const config = tinyTrainingConfig(organismDir, cacheDir);
    const worstOptions = { candidates: 2, maxSpan: 6, continuation: 4 };
    const worst = await augmentedOrganismModels(world, aligned, { ...config, defence: { worstInsertion: worstOptions }, seeds: [1], steps: [0, 1, 2], progress: false });
    expect(worst.trainedNow).toEqual(['seed 1: 1', 'seed 1: 2']);
    expect(worst.models.map((m) => m.target.name)).toEqual(['aligned', 'worst-insertion (1 steps, seed 1)', 'worst-insertion (2 steps, seed 1)']);
    for (const steps of [1, 2]) expect(hasCachedModel(worst.cache.dirFor(1, steps), worst.cache.keyFor(1, steps))).toBe(true);
    // the record's log has the mean score of each step's chosen insertions (a log-likelihood, < 0) on steps whose batch held an insertion slot
    const log = (worst.models[2].record.log as { insertionScore?: number }[]);
    expect(log).toHaveLength(2);
    expect(log.some((l) => typeof l.insertionScore === 'number' && l.insertionScore < 0)).toBe(true);
    const anchor = await distilledAnchor(aligned, worst.cache.anchorRequests, { batchSize: 8 });
    const direct = await worstInsertionModel(aligned, worst.cache.safety, anchor.examples, worst.cache.settingsFor(1, 1), worstOptions);
    expect(weightsOf(worst.at(1, 1).model)).toEqual(weightsOf(direct.model));
    direct.model.dispose();

    const derta = await augmentedOrganismModels(world, aligned, { ...config, defence: { derta: {} }, seeds: [1], steps: [2], progress: false });
    expect(derta.trainedNow).toEqual(['seed 1: 2']);
    expect(derta.models[0].target.name).toBe('DeRTa (2 steps, seed 1)');
    expect(typeof (derta.models[0].record.last as { rto?: number }).rto).toBe('number');
    const directDerta = await dertaModel(aligned, derta.cache.safety, anchor.examples, derta.cache.settingsFor(1, 2));
    expect(weightsOf(derta.at(2, 1).model)).toEqual(weightsOf(directDerta.model));
    expect(weightsOf(derta.at(2, 1).model)).not.toEqual(weightsOf(worst.at(2, 1).model));
    directDerta.model.dispose();

    const again = await augmentedOrganismModels(world, aligned, { ...config, defence: { worstInsertion: worstOptions }, seeds: [1], steps: [1, 2], progress: false });
    expect(again.trainedNow).toEqual([]);
    expect(weightsOf(again.at(2, 1).model)).toEqual(weightsOf(worst.at(2, 1).model));
    for (const m of [...worst.models, ...derta.models, ...again.models]) if (m.steps > 0) m.target.model.dispose();
  });
});
