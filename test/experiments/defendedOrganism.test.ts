// augmentedOrganismCache / augmentedOrganismModels with a defence (notebook 08): PRESTO and
// push-forward models are trained with the same recipe, data, seeds and budgets as notebook 05's
// plain augmentation, and cached under the plain key plus the defence (name and resolved settings)
// in a tagged folder. Plain keys and folders must stay notebook 05's.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import type { World } from '../../lib/organism/index.js';
import {
  augmentModel, distilledAnchor, hasCachedModel,
} from '../../lib/train/index.js';
import {
  AUGMENTATION_DEFENCE_NAME, PRESTO_DEFENCE_NAME, PUSH_FORWARD_DEFENCE_NAME, augmentedOrganismCache, augmentedOrganismModels, defenceTag, resolveOrganismDefence,
} from '../../lib/experiments/index.js';
import type { Target } from '../../lib/metrics/index.js';
import { stable, tinyAlignedOrganism, tinyCacheOptions, tinyTrainingConfig, weightsOf } from './tinyAlignedOrganism.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-defended-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('augmentedOrganismCache / augmentedOrganismModels with a defence (notebook 08)', () => {
  let world: World;
  let aligned: Target;
  const organismDir = path.join(tmp, 'organism');
  const cacheDir = path.join(tmp, 'defences');

  beforeAll(async () => {
    await initEngine();
    ({ world, aligned } = await tinyAlignedOrganism(organismDir));
  });

  it('keys: the plain key plus the defence (name, resolved settings); tagged folders; plain and empty defences keep notebook 05\'s keys', () => {
    const base = tinyCacheOptions(organismDir, cacheDir);
    const plain = augmentedOrganismCache(world, base);
    const empty = augmentedOrganismCache(world, { ...base, defence: {} });
    const presto = augmentedOrganismCache(world, { ...base, defence: { presto: { weight: 1 } } });
    const push = augmentedOrganismCache(world, { ...base, defence: { pushForward: {} } });
    const listmle = augmentedOrganismCache(world, { ...base, defence: { pushForward: { form: 'listmle', topK: 5, weight: 0.5 } } });
    expect(plain.defence).toBeNull();
    expect(plain.tag).toBe('');
    expect(plain.keyFor(1, 35).defence).toBe(AUGMENTATION_DEFENCE_NAME);
    expect('defenceSettings' in plain.keyFor(1, 35)).toBe(false);
    expect(stable(empty.keyFor(1, 35))).toBe(stable(plain.keyFor(1, 35)));
    expect(plain.dirFor(2, 35)).toBe(path.join(cacheDir, 'lr0.0001_steps35_seed2'));

    // Matched: the same settings, data and aligned checkpoint; only the defence differs.
    for (const c of [presto, push, listmle]) {
      const key = c.keyFor(2, 35);
      const ref = plain.keyFor(2, 35);
      expect(key.settings).toStrictEqual(ref.settings);
      expect(key.safety).toStrictEqual(ref.safety);
      expect(key.anchor).toStrictEqual(ref.anchor);
      expect(key.dataSha256).toBe(ref.dataSha256);
      expect(key.aligned).toStrictEqual(ref.aligned);
      expect(c.safety).toStrictEqual(plain.safety);
      expect(stable(key)).not.toBe(stable(ref));
    }
    expect(presto.keyFor(1, 25).defence).toBe(PRESTO_DEFENCE_NAME);
    expect(presto.keyFor(1, 25).defenceSettings).toStrictEqual({ presto: { weight: 1, scale: 'tokens' }, pushForward: null });
    expect(push.keyFor(1, 25).defence).toBe(PUSH_FORWARD_DEFENCE_NAME);
    expect(push.keyFor(1, 25).defenceSettings).toStrictEqual({ presto: null, pushForward: { weight: 1, form: 'kl', topK: 20, normalise: 'examples' } });
    expect(presto.dirFor(2, 35)).toBe(path.join(cacheDir, 'presto-w1_lr0.0001_steps35_seed2'));
    expect(push.dirFor(2, 35)).toBe(path.join(cacheDir, 'push-kl-w1_lr0.0001_steps35_seed2'));
    expect(listmle.dirFor(1, 6)).toBe(path.join(cacheDir, 'push-listmle-w0.5-k5_lr0.0001_steps6_seed1'));
    expect(defenceTag(resolveOrganismDefence({ pushForward: { form: 'listmle', normalise: 'tokens' } }))).toBe('push-listmle-w1-k20-tok');
    expect(defenceTag(resolveOrganismDefence({ presto: { weight: 10, scale: 2 }, pushForward: {} }))).toBe('presto-w10-s2+push-kl-w1');
    // Different weights: different keys and folders (a cached model of one is never read as the other).
    const presto10 = augmentedOrganismCache(world, { ...base, defence: { presto: { weight: 10 } } });
    expect(presto10.dirFor(1, 25)).not.toBe(presto.dirFor(1, 25));
    expect(stable(presto10.keyFor(1, 25))).not.toBe(stable(presto.keyFor(1, 25)));
    // JSON round trip (what training.json stores) keeps the key equal.
    expect(stable(JSON.parse(JSON.stringify(presto.keyFor(1, 25))))).toBe(stable(presto.keyFor(1, 25)));
    expect(() => augmentedOrganismCache(world, { ...base, defence: { prest: {} } as never })).toThrow(/unknown defence `prest`/);
    expect(() => augmentedOrganismCache(world, { ...base, defence: { presto: { weight: -1 } } })).toThrow(/presto: `weight`/);
    expect(() => augmentedOrganismCache(world, { ...base, defence: { pushForward: { form: 'l2' as never } } })).toThrow(/pushForward: `form`/);
  });

  it('trains PRESTO and push-forward sweeps (snapshots = runs of that length), caches them in their folders and reloads them', async () => {
    const config = tinyTrainingConfig(organismDir, cacheDir);
    const plain = await augmentedOrganismModels(world, aligned, { ...config, seeds: [1], steps: [2], progress: false });
    const presto = await augmentedOrganismModels(world, aligned, { ...config, defence: { presto: { weight: 1 } }, seeds: [1], steps: [0, 2, 3], progress: false });
    expect(presto.trainedNow).toEqual(['seed 1: 2', 'seed 1: 3']);
    expect(presto.models.map((m) => m.target.name)).toEqual(['aligned', 'augmented + PRESTO (2 steps, seed 1)', 'augmented + PRESTO (3 steps, seed 1)']);
    expect(presto.at(0, 1)).toBe(aligned);
    for (const steps of [2, 3]) {
      expect(hasCachedModel(presto.cache.dirFor(1, steps), presto.cache.keyFor(1, steps))).toBe(true);
      expect(presto.cache.dirFor(1, steps)).toBe(path.join(cacheDir, `presto-w1_lr0.001_steps${steps}_seed1`));
    }
    expect(typeof (presto.models[1].record.last as { presto?: number }).presto).toBe('number');
    // The 2-step snapshot is a plain 2-step augmentModel run with PRESTO, and differs from augmentation alone.
    const anchor = await distilledAnchor(aligned, presto.cache.anchorRequests, { batchSize: 8 });
    const direct = await augmentModel(aligned, presto.cache.safety, anchor.examples, presto.cache.settingsFor(1, 2), { presto: { weight: 1 } });
    expect(weightsOf(presto.at(2, 1).model)).toEqual(weightsOf(direct.model));
    expect(weightsOf(presto.at(2, 1).model)).not.toEqual(weightsOf(plain.at(2, 1).model));
    direct.model.dispose();

    const push = await augmentedOrganismModels(world, aligned, { ...config, defence: { pushForward: { weight: 1 } }, seeds: [1], steps: [2], progress: false });
    expect(push.trainedNow).toEqual(['seed 1: 2']);
    expect(push.models[0].target.name).toBe('augmented + push-forward (2 steps, seed 1)');
    expect(typeof (push.models[0].record.last as { pushForward?: number }).pushForward).toBe('number');
    expect(weightsOf(push.at(2, 1).model)).not.toEqual(weightsOf(plain.at(2, 1).model));

    // Again: from the cache; the plain models were not touched by the defences.
    const again = await augmentedOrganismModels(world, aligned, { ...config, defence: { presto: { weight: 1 } }, seeds: [1], steps: [2, 3], progress: false });
    expect(again.trainedNow).toEqual([]);
    expect(again.models.map((m) => m.cached)).toEqual([true, true]);
    expect(weightsOf(again.at(3, 1).model)).toEqual(weightsOf(presto.at(3, 1).model));
    const plainAgain = await augmentedOrganismModels(world, aligned, { ...config, seeds: [1], steps: [2], progress: false });
    expect(plainAgain.trainedNow).toEqual([]);
    for (const m of [...plain.models, ...presto.models, ...push.models, ...again.models, ...plainAgain.models]) if (m.steps > 0) m.target.model.dispose();
  });
});
