// The insertion attack's bookkeeping on a random llama with a word-level target: trajectories
// (greedy and reference), prefill ids exactly r[:j'] + h[:n] with j' = min(j, |r|) (clamped and
// reported), what the judge sees, sampling seeds, random positions, and j = 0 equal to prefilling.
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { generateResponses, type Judge, type JudgeInput, type Target } from '../../lib/metrics/index.js';
import { insertionAttack, insertionCell, prefillAttack, randomInsertionPositions } from '../../lib/attacks/index.js';
import { tinyDecoder, TOY_BEHAVIOURS, wordTarget } from '../objectives/helpers.js';

/** Harmful iff the continuation contains "the"; records every input; a StrongREJECT of 0.5 when harmful. */
function recordingJudge(): Judge & { seen: JudgeInput[] } {
  const seen: JudgeInput[] = [];
  return {
    name: 'recording', seen,
    async judge(inputs) {
      seen.push(...inputs);
      return inputs.map((x) => ({ harmful: x.response.split(' ').includes('the'), refused: x.response.split(' ').includes('cannot'), strongReject: x.response.includes('the') ? 0.5 : 0 }));
    },
  };
}

describe('insertionAttack', () => {
  let t: Target;
  beforeAll(async () => {
    await initEngine();
    t = wordTarget(tinyDecoder(21, 0.5), 'tiny');
    t.maxNewTokens = 5;
  });

  it('grid over j x n: prefill ids are r[:min(j, |r|)] + h[:n] of the greedy refusal, clamping reported; the judge sees decode(prefill) and the continuation', async () => {
    const judge = recordingJudge();
    const greedy = await generateResponses(t, TOY_BEHAVIOURS, { decoding: { doSample: false }, progress: false });
    const lengths = greedy.map((g) => g.responseIds.length);
    const big = Math.max(...lengths) + 1;
    const r = await insertionAttack(t, TOY_BEHAVIOURS, judge, { positions: [0, 2, big], spans: [0, 3], decoding: { doSample: false }, seeds: [0, 1], progress: false });
    expect(r.refusal).toBe('greedy');
    expect(r.trajectories.map((x) => x.ids)).toEqual(greedy.map((g) => g.responseIds));
    expect(r.trajectories.map((x) => x.text)).toEqual(greedy.map((g) => g.response));
    expect(r.trajectoryRefused.n).toBe(3);
    expect(r.cells.map((c) => [c.j, c.n])).toEqual([[0, 0], [0, 3], [2, 0], [2, 3], [big, 0], [big, 3]]);
    for (const c of r.cells) {
      // greedy: one evaluation stands for every seed
      expect(c.perSeed.map((s) => s.seed)).toEqual([0]);
      expect(c.responses).toHaveLength(1);
      expect(c.pooled.n).toBe(3);
      expect(c.clamped).toBe(c.j === big ? 3 : lengths.filter((l) => l < (c.j as number)).length);
      c.responses[0].forEach((resp, i) => {
        const j = Math.min(c.j as number, lengths[i]);
        const h = t.responseIds(TOY_BEHAVIOURS[i].harmfulResponse!);
        expect(resp.id).toBe(TOY_BEHAVIOURS[i].id);
        expect([resp.j, resp.n, resp.clamped]).toEqual([j, c.n, (c.j as number) > lengths[i]]);
        expect(c.positions[i]).toBe(j);
        expect(resp.prefillIds).toEqual([...greedy[i].responseIds.slice(0, j), ...h.slice(0, c.n)]);
        expect(resp.prefill).toBe(t.decode(resp.prefillIds));
        const input = judge.seen.find((x) => x.behaviour.id === resp.id && x.prefill === resp.prefill && x.response === resp.response);
        expect(input).toBeDefined();
        expect(resp.verdict.harmful).toBe(resp.response.split(' ').includes('the'));
      });
      expect(c.meanStrongReject).toBeDefined();
    }
    // j = |r| and j beyond it give the same prefills (the span follows the whole refusal)
    expect(insertionCell(r, big, 3).responses[0].map((x) => x.prefillIds)).toEqual(
      TOY_BEHAVIOURS.map((b, i) => [...greedy[i].responseIds, ...t.responseIds(b.harmfulResponse!).slice(0, 3)]),
    );
    expect(() => insertionCell(r, 1, 3)).toThrow(/no cell \(j = 1, n = 3\)/);
  });

  it('sampling seeds: one evaluation per seed, pooled over seeds, mean and std of the per-seed rates; j = 0 equals prefillAttack with k = n', async () => {
    const judge = recordingJudge();
    const decoding = { doSample: true, temperature: 1, topP: 1 };
    const r = await insertionAttack(t, TOY_BEHAVIOURS, judge, { positions: [0], spans: [2], decoding, seeds: [3, 4], progress: false });
    const c = r.cells[0];
    expect(c.perSeed.map((s) => s.seed)).toEqual([3, 4]);
    expect(c.responses).toHaveLength(2);
    expect(c.pooled.n).toBe(6);
    expect(c.pooled.k).toBe(c.perSeed.reduce((a, s) => a + s.harmful.k, 0));
    expect(c.mean).toBeCloseTo((c.perSeed[0].harmful.rate + c.perSeed[1].harmful.rate) / 2, 10);
    const prefill = await prefillAttack(t, TOY_BEHAVIOURS, judge, [2], { decoding, seeds: [3, 4], progress: false });
    expect(c.responses.map((rs) => rs.map((x) => x.responseIds))).toEqual(prefill[0].responses.map((rs) => rs.map((x) => x.responseIds)));
    expect(c.pooled).toEqual(prefill[0].pooled);
  });

  it("'reference' refusals and random positions: j seeded per behaviour in [0, |r|], the same for every n; clamping never applies", async () => {
    const judge = recordingJudge();
    const r = await insertionAttack(t, TOY_BEHAVIOURS, judge, { positions: 'random', spans: [1, 2], refusal: 'reference', positionSeed: 7, decoding: { doSample: false }, seeds: [0], progress: false });
    const refusals = TOY_BEHAVIOURS.map((b) => t.responseIds(b.refusal!));
    expect(r.trajectories.map((x) => x.ids)).toEqual(refusals);
    expect(r.trajectories.every((x) => x.source === 'reference')).toBe(true);
    const js = randomInsertionPositions(TOY_BEHAVIOURS, refusals.map((x) => x.length), 7);
    js.forEach((j, i) => expect(j).toBeLessThanOrEqual(refusals[i].length));
    expect(r.cells.map((c) => [c.j, c.n, c.clamped])).toEqual([['random', 1, 0], ['random', 2, 0]]);
    for (const c of r.cells) {
      expect(c.positions).toEqual(js);
      c.responses[0].forEach((x, i) => expect(x.prefillIds).toEqual([...refusals[i].slice(0, js[i]), ...t.responseIds(TOY_BEHAVIOURS[i].harmfulResponse!).slice(0, c.n)]));
    }
    // seeded: the same seed gives the same positions, positions cover the whole range over many seeds
    expect(randomInsertionPositions(TOY_BEHAVIOURS, [4, 4, 4], 7)).toEqual(randomInsertionPositions(TOY_BEHAVIOURS, [4, 4, 4], 7));
    const all = new Set(Array.from({ length: 60 }, (_, s) => randomInsertionPositions(TOY_BEHAVIOURS, [4, 4, 4], s)).flat());
    expect(all).toEqual(new Set([0, 1, 2, 3, 4]));
  });

  it('checks its inputs', async () => {
    const judge = recordingJudge();
    const base = { decoding: { doSample: false }, seeds: [0], progress: false as const };
    await expect(insertionAttack(t, TOY_BEHAVIOURS, judge, { ...base, positions: [0], spans: [99] })).rejects.toThrow(/n = 99 is beyond the shortest harmful answer \(10 tokens\)/);
    await expect(insertionAttack(t, TOY_BEHAVIOURS, judge, { ...base, positions: [-1], spans: [1] })).rejects.toThrow(/`positions` must be an integer >= 0, but one is -1/);
    await expect(insertionAttack(t, TOY_BEHAVIOURS, judge, { ...base, positions: [1, 1], spans: [1] })).rejects.toThrow(/`positions` lists a value twice/);
    await expect(insertionAttack(t, TOY_BEHAVIOURS, judge, { ...base, positions: [0], spans: [] })).rejects.toThrow(/`spans` must list at least one value/);
    await expect(insertionAttack(t, TOY_BEHAVIOURS, judge, { ...base, positions: [0], spans: [1], refusal: 'own' as never })).rejects.toThrow(/`refusal` must be 'greedy' or 'reference'/);
    await expect(insertionAttack(t, [{ ...TOY_BEHAVIOURS[0], refusal: undefined }], judge, { ...base, positions: [0], spans: [1], refusal: 'reference' })).rejects.toThrow(/has no `refusal`/);
    await expect(insertionAttack(t, TOY_BEHAVIOURS, judge, { ...base, positions: 'random', spans: [1], positionSeed: 0.5 })).rejects.toThrow(/positionSeed/);
  });
});
