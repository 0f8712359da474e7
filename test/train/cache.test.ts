// cachedModel / hasCachedModel: a model is reused only under the settings that made it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { createModel } from '../../lib/model/index.js';
import { buildWorld } from '../../lib/organism/index.js';
import { cachedModel, hasCachedModel, organismConfig } from '../../lib/train/index.js';

beforeAll(async () => {
  await initEngine();
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-cache-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('cachedModel', () => {
  it('trains once, then loads under equal settings (key order ignored) and retrains when they change', async () => {
    const config = organismConfig(buildWorld());
    const dir = path.join(tmp, 'm');
    let calls = 0;
    const trainFn = async () => {
      calls++;
      return { model: createModel(config, { seed: calls }), record: { calls } };
    };
    const settings = { lr: 1e-4, steps: 3, nested: { a: 1, b: [1, 2] } };
    expect(hasCachedModel(dir, settings)).toBe(false);
    const first = await cachedModel(dir, settings, trainFn);
    expect(first.cached).toBe(false);
    expect(hasCachedModel(dir, { nested: { b: [1, 2], a: 1 }, steps: 3, lr: 1e-4 })).toBe(true);
    expect(hasCachedModel(dir, { ...settings, steps: 4 })).toBe(false);
    const again = await cachedModel(dir, { nested: { b: [1, 2], a: 1 }, steps: 3, lr: 1e-4 }, trainFn);
    expect(again.cached).toBe(true);
    expect(again.record).toEqual({ calls: 1 });
    expect(calls).toBe(1);
    const w1 = first.model.variables().get('model.embed_tokens.weight')!.dataSync();
    expect(Array.from(again.model.variables().get('model.embed_tokens.weight')!.dataSync())).toEqual(Array.from(w1));
    const changed = await cachedModel(dir, { ...settings, steps: 4 }, trainFn);
    expect(changed.cached).toBe(false);
    expect(calls).toBe(2);
    expect(hasCachedModel(dir, settings)).toBe(false);
    expect(hasCachedModel(dir, { ...settings, steps: 4 })).toBe(true);
    for (const m of [first, again, changed]) m.model.dispose();
  });
});
