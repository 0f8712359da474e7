// RapSession (RAP played one action at a time) against rapAttack itself, on small random-init
// organism models: the helper's steps through a session are automated RAP's (same picks,
// backtracks, exclusions and end), human picks are limited to the top k, undo and model switches
// replay the path by token id, and an exported trace replays exactly (replayRapTrace).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { createModel, type Decoder } from '../../lib/model/index.js';
import { buildWorld, type World } from '../../lib/organism/index.js';
import { organismConfig } from '../../lib/train/index.js';
import {
  organismBehaviours, organismJudge, organismRapHelper, organismTarget, parseRapTrace, RapSession, readRapTrace, replayRapTrace, writeRapTrace,
} from '../../lib/experiments/index.js';
import { nextTokenCandidates, rapAttack, type RapHelper } from '../../lib/attacks/rap.js';
import type { HarmfulBehaviour, Judge, Target } from '../../lib/metrics/index.js';

const PREFILL = 'sure , here is how .';

describe('RapSession', () => {
  let world: World;
  let targets: Target[];
  let helper: RapHelper;
  let judge: Judge;
  let harmful: HarmfulBehaviour[];
  const tiny = (seed: number): Decoder =>
    createModel({ ...organismConfig(world), hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 16 }, { seed });

  beforeAll(async () => {
    await initEngine();
    world = buildWorld();
    targets = [organismTarget(tiny(0), world, 'tiny-0'), organismTarget(tiny(1), world, 'tiny-1')];
    helper = organismRapHelper(world);
    judge = organismJudge(world);
    harmful = organismBehaviours(world, { split: 'heldout', perTask: 1, limitTasks: 3, seed: 2 }).harmful;
  });

  it("the helper's steps are automated RAP's: the same actions, backtracks with exclusion, and end", async () => {
    // A small top-k on a random model: few harmful candidates, so RAP backtracks and may exhaust.
    const options = { prefill: PREFILL, topK: 40, maxSteps: 60 };
    const auto = await rapAttack(targets[0], harmful, judge, { ...options, helper, progress: false });
    let backtracks = 0;
    for (const [i, b] of harmful.entries()) {
      const session = await RapSession.start(targets[0], b, judge, { ...options, helper });
      await session.runHelper();
      const result = await session.finish();
      const expected = auto.responses[i];
      expect(result.responseIds).toEqual(expected.responseIds);
      expect([result.stopReason, result.steps, result.backtracks]).toEqual([expected.stopReason, expected.steps, expected.backtracks]);
      expect(result.verdict).toEqual(expected.verdict);
      // Step by step: the same action, the same exclusion, the same table (the session shows the top k).
      expect(session.steps.map((s) => s.step.action)).toEqual(expected.trace.map((s) => s.action));
      expect(session.steps.map((s) => s.step.excluded)).toEqual(expected.trace.map((s) => s.excluded));
      session.steps.forEach((s, j) => {
        const want = expected.trace[j].candidates;
        expect(s.step.candidates.map((c) => [c.id, c.rank, c.harmful, c.repeat])).toEqual(want.map((c) => [c.id, c.rank, c.harmful, c.repeat]));
      });
      // The verdict after the last action is the run's final verdict.
      if (session.steps.length) expect(session.steps[session.steps.length - 1].verdict).toEqual(result.verdict);
      backtracks += result.backtracks;
    }
    expect(backtracks).toBeGreaterThan(0);
  });

  it('human picks come from the top k; backtrack, undo and a model switch replay the path by token id', async () => {
    const b = harmful[0];
    const session = await RapSession.start(targets[0], b, judge, { prefill: PREFILL, topK: 20, helper, tokenName: (id) => world.vocab[id] });
    const view = session.view!;
    expect(view.candidates.length).toBe(world.vocab.length); // the whole vocabulary is ranked...
    const outside = view.candidates[25];
    await expect(session.pick(outside.id)).rejects.toThrow(/rank 26 here; RAP picks from the top 20/); // ...a human picks from the top 20
    const picks = [view.candidates[0].id];
    await session.pick(picks[0]);
    const second = session.view!.candidates[4].id;
    await session.pick(second);
    expect(session.state.prefix.slice(-2)).toEqual([picks[0], second]);
    await session.backtrack();
    // Backtracking excludes the removed token at that position (rapAttack's rule).
    expect(session.view!.excluded).toBe(second);
    expect(session.state.prefix.slice(session.prefillIds.length)).toEqual(picks);
    await session.helperStep();
    expect(session.steps.map((s) => [s.step.action.kind, s.by])).toEqual([['pick', 'human'], ['pick', 'human'], ['backtrack', 'human'], [session.steps[3].step.action.kind, 'helper']]);
    const text = session.state.response;
    // Switch: the same ids on another model, ranked there.
    await session.switchModel(targets[1]);
    expect(session.model.name).toBe('tiny-1');
    expect(session.state.response).toBe(text);
    expect(session.steps.map((s) => s.step.action.kind)).toEqual(['pick', 'pick', 'backtrack', session.steps[3].step.action.kind]);
    // Its ranks are the other model's own: the first pick's rank is where tiny-1 ranks that token after the prefill.
    const [first] = nextTokenCandidates(targets[1].model, [[...targets[1].promptIds(b.request), ...session.prefillIds]], targets[1].padTokenId, world.vocab.length);
    expect(session.steps[0].step.action).toMatchObject({ kind: 'pick', id: picks[0], rank: first.find((c) => c.id === picks[0])!.rank });
    // Undo takes back the last action only.
    await session.undo();
    expect(session.steps.length).toBe(3);
    expect(session.state.prefix.slice(session.prefillIds.length)).toEqual(picks);
    expect(session.view!.excluded).toBe(second);
    await session.close();
  });

  it('an exported trace replays exactly; on another model the text and verdicts are the same', async () => {
    const b = harmful[1];
    const session = await RapSession.start(targets[0], b, judge, { prefill: PREFILL, topK: 20, helper, maxSteps: 30, tokenName: (id) => world.vocab[id] });
    for (const rank of [1, 3, 2]) await session.pick(session.view!.candidates[rank - 1].id);
    await session.backtrack();
    await session.pick(session.view!.candidates[3].id);
    await session.helperStep();
    const trace = session.toTrace({ set: { name: 'organism/heldout', split: 'heldout', perTask: 1, seed: 2, limitTasks: 3 }, created: new Date(0) });
    await session.close();
    expect(trace).toMatchObject({ format: 'deepalign-rap-trace', version: 1, request: { id: b.id, text: b.request }, model: { name: 'tiny-0' }, prefill: { text: PREFILL }, topK: 20, maxSteps: 30 });
    expect(trace.steps.length).toBeGreaterThanOrEqual(3);
    expect(trace.backtracks).toBeGreaterThanOrEqual(1);
    expect(trace.steps[0]).toMatchObject({ action: 'pick', by: 'human', rank: 1, token: world.vocab[trace.steps[0].id!] });
    expect(trace.steps.map((s) => [s.action, s.by, s.rank])).toEqual([
      ['pick', 'human', 1], ['pick', 'human', 3], ['pick', 'human', 2], ['backtrack', 'human', null], ['pick', 'human', 4], [trace.steps[5].action, 'helper', trace.steps[5].rank],
    ]);
    expect(trace.final.responseIds.length).toBe(trace.steps[5].action === 'pick' ? 4 : 2);
    // Through a file, as the notebook would load it.
    const file = join(mkdtempSync(join(tmpdir(), 'deepalign-rap-trace-')), 'trace.json');
    writeRapTrace(file, trace);
    const loaded = readRapTrace(file);
    expect(loaded).toEqual(trace);
    const same = await replayRapTrace(targets[0], b, loaded, judge);
    expect(same.differences).toEqual([]);
    expect([same.sameText, same.sameVerdict, same.sameRanks]).toEqual([true, true, true]);
    expect(same.response).toBe(trace.final.response);
    expect(same.verdict).toEqual(trace.final.verdict);
    expect(same.result.stopReason).toBe('stopped');
    const other = await replayRapTrace(targets[1], b, loaded, judge);
    expect([other.sameText, other.sameVerdict]).toEqual([true, true]);
    expect(other.ranks.filter((r) => r !== null).length).toBe(trace.steps.filter((s) => s.action === 'pick').length);
    // The wrong request, and damaged traces, are refused with the reason.
    await expect(replayRapTrace(targets[0], harmful[2], loaded, judge)).rejects.toThrow(/the trace is for request/);
    expect(() => parseRapTrace({ ...trace, format: 'x' })).toThrow(/`format`/);
    expect(() => parseRapTrace({ ...trace, steps: [{ ...trace.steps[0], action: 'jump' }] })).toThrow(/step 0: `action`/);
    expect(() => parseRapTrace('{"format": "deepalign-rap-trace"')).toThrow();
  });
});
