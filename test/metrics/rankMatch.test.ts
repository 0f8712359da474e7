import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { kendallTauB, rankMatchDiagnostic, spearmanRho } from '../../lib/metrics/index.js';
import { tinyDecoder, TOY_BEHAVIOURS, wordTarget } from '../objectives/helpers.js';

describe('rank correlations', () => {
  it('Spearman and Kendall tau-b on known cases, with ties', () => {
    expect(spearmanRho([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])).toBeCloseTo(0.8, 10);
    expect(kendallTauB([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])).toBeCloseTo(0.6, 10);
    expect(spearmanRho([1, 2, 3], [30, 20, 10])).toBeCloseTo(-1, 10);
    expect(kendallTauB([1, 2, 3], [30, 20, 10])).toBeCloseTo(-1, 10);
    expect(kendallTauB([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo(5 / Math.sqrt(30), 10);
    // ties get average ranks: x ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    expect(spearmanRho([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo(0.9486832980505138, 10);
    expect(Number.isNaN(spearmanRho([1, 1, 1], [1, 2, 3]))).toBe(true);
    expect(() => kendallTauB([1], [1])).toThrow(/length >= 2/);
  });
});

describe('rankMatchDiagnostic', () => {
  let t: ReturnType<typeof wordTarget>;
  beforeAll(async () => {
    await initEngine();
    t = wordTarget(tinyDecoder(7));
  });

  it('k = 0: the post-prefill distribution is the bare one (correlations 1, ranks unchanged)', async () => {
    const r = await rankMatchDiagnostic(t, TOY_BEHAVIOURS, { prefillTokens: 0 });
    expect(r.k).toBe(0);
    expect(r.topN).toBe(20);
    for (const row of r.perBehaviour) {
      expect(row.spearman).toBeCloseTo(1, 10);
      expect(row.kendall).toBeCloseTo(1, 10);
      expect(row.overlap).toBe(20);
      expect(row.postRanksOfBareTop).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(row.refusalRank).toBe(row.refusalRankBare);
      expect(row.refusalSource).toBe('refusal');
      expect(row.refusalToken).toBe(t.responseIds(TOY_BEHAVIOURS.find((b) => b.id === row.id)!.refusal!)[0]);
    }
  });

  it('k = 3: matches a direct computation from one unpadded forward pass of x + h[:3], whatever the batching', async () => {
    const r = await rankMatchDiagnostic(t, TOY_BEHAVIOURS, { prefillTokens: 3, topN: 8 });
    const again = await rankMatchDiagnostic(t, TOY_BEHAVIOURS, { prefillTokens: 3, topN: 8, batchSize: 1 });
    TOY_BEHAVIOURS.forEach((b, i) => {
      const prompt = t.promptIds(b.request);
      const [bare, post] = tf.tidy(() => {
        const { logits } = t.model.forward([[...prompt, ...t.responseIds(b.harmfulResponse!).slice(0, 3)]]);
        const rows = logits.arraySync()[0];
        return [rows[prompt.length - 1], rows[prompt.length + 2]];
      });
      const top = bare.map((x, v) => [x, v]).sort((p, q) => q[0] - p[0]).slice(0, 8).map(([, v]) => v);
      const rank = (row: number[], id: number) => 1 + row.filter((x) => x > row[id]).length;
      const row = r.perBehaviour[i];
      expect(row.bareTop).toEqual(top);
      expect(row.postRanksOfBareTop).toEqual(top.map((v) => rank(post, v)));
      expect(row.spearman).toBeCloseTo(spearmanRho(top.map((v) => bare[v]), top.map((v) => post[v])), 4);
      expect(row.kendall).toBeCloseTo(kendallTauB(top.map((v) => bare[v]), top.map((v) => post[v])), 4);
      expect(row.refusalRank).toBe(rank(post, row.refusalToken));
      expect(row.refusalRankBare).toBe(rank(bare, row.refusalToken));
      expect(again.perBehaviour[i].refusalRank).toBe(row.refusalRank);
      expect(again.perBehaviour[i].spearman).toBeCloseTo(row.spearman, 4);
    });
    expect(r.refusalRank.mean).toBeCloseTo(r.perBehaviour.reduce((a, x) => a + x.refusalRank, 0) / 3, 10);
    expect(r.spearman.n).toBe(3);
  });

  it("'bare-argmax' (or no refusal) uses the no-prefill argmax; k beyond an answer is an error", async () => {
    const r = await rankMatchDiagnostic(t, TOY_BEHAVIOURS, { prefillTokens: 2, refusalToken: 'bare-argmax' });
    for (const row of r.perBehaviour) {
      expect(row.refusalSource).toBe('bare-argmax');
      expect(row.refusalToken).toBe(row.bareTop[0]);
      expect(row.refusalRankBare).toBe(1);
    }
    const noRefusal = await rankMatchDiagnostic(t, [{ ...TOY_BEHAVIOURS[0], refusal: undefined }], { prefillTokens: 2 });
    expect(noRefusal.perBehaviour[0].refusalSource).toBe('bare-argmax');
    await expect(rankMatchDiagnostic(t, TOY_BEHAVIOURS, { prefillTokens: 99 })).rejects.toThrow(/k = 99 is beyond the harmful answer/);
    await expect(rankMatchDiagnostic(t, TOY_BEHAVIOURS, { prefillTokens: -1 })).rejects.toThrow(/`prefillTokens`/);
  });
});
