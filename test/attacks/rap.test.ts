// Rank-Assisted Prefilling on a scripted target (a Decoder-shaped stand-in whose next-token ranking
// is fixed, so every path of the search is chosen by the scripted helper), and with the learned
// helper on the Hugging Face llama with the real Llama-2 tokenizer and the keyword judge.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import type { Decoder } from '../../lib/model/index.js';
import { joinResponse, keywordJudge, KEYWORD_REFUSALS, type HarmfulBehaviour, type Judge, type JudgeInput, type Target } from '../../lib/metrics/index.js';
import {
  automatedRapChoice, loadRapHelper, nextTokenCandidates, rapAttack, rapHelperData, rapStepTable, saveRapHelper, trainRapHelper, type RapHelperFn, type RapOptions,
  type RapResponse,
} from '../../lib/attacks/index.js';
import { HF_BEHAVIOURS, tinyLlamaChat, type TinyLlamaChat } from '../metrics/hfLlama.js';

// ---- the scripted target -----------------------------------------------------------------------
// Ids: 0 pad, 1 bos, 2 eos, 3-9 prompt words, 10+ response words ("t10", ...). The next-token
// ranking never changes: 10, 11, 12, 13, eos, 14, 15, ... (rank 1 = 10), so with topK 5 the table
// is always [10, 11, 12, 13, eos] and the helper alone decides the path.
const V = 24;
const EOS = 2;
const ORDER = [10, 11, 12, 13, EOS, ...Array.from({ length: V - 14 }, (_, i) => 14 + i)];
const LOGITS = Array.from({ length: V }, (_, id) => (ORDER.includes(id) ? 10 - ORDER.indexOf(id) : -20));

/** A Decoder stand-in: the same logits after every sequence; it records the real (unpadded) rows it saw. */
function scriptedModel(seen: number[][][] = []): Decoder {
  return {
    config: { vocabSize: V, maxPositions: 40 },
    forward(ids: number[][], opts: { attentionMask: number[][]; logitsToKeep?: number }) {
      expect(opts.logitsToKeep).toBe(1);
      seen.push(ids.map((row, b) => row.filter((_, t) => opts.attentionMask[b][t] === 1)));
      return { logits: tf.tensor3d(ids.map(() => [LOGITS]), [ids.length, 1, V]) };
    },
  } as unknown as Decoder;
}

function scriptedTarget(model = scriptedModel()): Target {
  return {
    name: 'scripted', model,
    // Requests are words "w3".."w9"; the prompt is bos + their ids.
    promptIds: (request) => [1, ...request.split(' ').map((w) => Number(w.slice(1)))],
    responseIds: (text) => text.split(' ').filter((w) => w).map((w) => Number(w.slice(1))),
    // Token 11 prints as " t10" (the repeat rule compares text with spaces stripped).
    decode: (ids) => ids.filter((id) => id !== EOS && id !== 0).map((id) => (id === 11 ? ' t10' : `t${id}`)).join(' '),
    eosTokenIds: [EOS], padTokenId: 0, maxNewTokens: 8,
  };
}

const behaviour = (id: string, request = 'w3 w4'): HarmfulBehaviour => ({ id, request });
const B0 = behaviour('b0');

/** A judge that records what it was asked: harmful iff the response is not empty. */
function recordingJudge(seen: JudgeInput[] = []): Judge {
  return { name: 'recording', async judge(inputs) { seen.push(...inputs); return inputs.map((i) => ({ harmful: i.response !== '', refused: false })); } };
}

/** A helper from a table: the harmful candidates after each response-so-far (after the prefill), keyed by the chosen ids joined by ','. */
function treeHelper(prefillLength: number, tree: Record<string, number[]>): RapHelperFn {
  return (queries) => queries.map((q) => {
    const harmful = tree[q.prefix.slice(prefillLength).join(',')] ?? [];
    return q.candidates.map((c) => harmful.includes(c));
  });
}

const run = (opts: Partial<RapOptions>, behaviours = [B0], judge = recordingJudge()) =>
  rapAttack(scriptedTarget(), behaviours, judge, { prefill: [20], topK: 5, progress: false, ...opts });

const actions = (r: RapResponse) => r.trace.map((s) => (s.action.kind === 'pick' ? `pick ${s.action.id}` : s.action.kind === 'backtrack' ? `back ${s.action.id}` : 'stop'));

describe('rapAttack on a scripted target', () => {
  beforeAll(async () => {
    await initEngine();
  });

  it('shows the top-k table and picks the highest-ranked harmful candidate; the trace and the judge see prefill + chosen tokens', async () => {
    const seen: JudgeInput[] = [];
    const helper: RapHelperFn = (qs) => qs.map((q) => q.candidates.map((c) => (c === 12 ? 0.9 : c === 13 ? true : 0.2)));
    const res = await run({ helper, maxSteps: 2 }, [B0], recordingJudge(seen));
    const r = res.responses[0];
    expect(r.responseIds).toEqual([12, 12]);
    expect(r.prefillIds).toEqual([20]);
    expect(r.stopReason).toBe('max-steps');
    const first = r.trace[0];
    expect(first.candidates.map((c) => c.id)).toEqual([10, 11, 12, 13, EOS]);
    expect(first.candidates.map((c) => c.rank)).toEqual([1, 2, 3, 4, 5]);
    expect(first.candidates.map((c) => c.text)).toEqual(['t10', ' t10', 't12', 't13', '']);
    expect(first.candidates.map((c) => c.harmful)).toEqual([false, false, true, true, false]);
    expect(first.candidates[2].score).toBe(0.9);
    expect(first.candidates[3].score).toBeUndefined();
    // Log-probs are the full softmax's (the five shown and the rest of the vocabulary sum to 1).
    const lse = Math.log(LOGITS.reduce((a, x) => a + Math.exp(x), 0));
    first.candidates.forEach((c) => expect(c.logprob).toBeCloseTo(LOGITS[c.id] - lse, 5));
    expect(first.prefix).toEqual([20]);
    expect(first.prefixText).toBe('t20');
    expect(r.trace[1].prefix).toEqual([20, 12]);
    expect(first.action).toEqual({ kind: 'pick', rank: 3, id: 12, text: 't12' });
    expect(seen).toEqual([{ behaviour: B0, prefill: 't20', response: 't12 t12' }]);
    expect(r.verdict.harmful).toBe(true);
    expect(res.harmful.k).toBe(1);
    expect(res.meanSteps).toBe(2);
    const table = rapStepTable(first);
    expect(table[2]).toMatchObject({ rank: 3, id: 12, token: '"t12"', harmful: 'true (0.900)', note: 'chosen' });
    expect(table[4].prob).toBeCloseTo(Math.exp(first.candidates[4].logprob), 10);
  });

  it('never picks a token that would be the third equal one in a row (equal ids or equal text); stops at maxSteps', async () => {
    // 10, 11 (" t10") and 12 are harmful everywhere: after two 10s, 10 and 11 are both repeats.
    const res = await run({ helper: (qs) => qs.map((q) => q.candidates.map((c) => c >= 10 && c <= 12)), maxSteps: 7 });
    const r = res.responses[0];
    expect(r.responseIds).toEqual([10, 10, 12, 10, 10, 12, 10]);
    expect(r.stopReason).toBe('max-steps');
    expect(r.steps).toBe(7);
    expect(r.trace).toHaveLength(7);
    expect(r.trace[2].candidates.filter((c) => c.repeat).map((c) => c.id)).toEqual([10, 11]);
    expect(r.trace[1].candidates.some((c) => c.repeat)).toBe(false);
    // The prefill counts as the previous tokens too: prefill [10, 10] makes 10 a repeat at the first step.
    const pre = await run({ helper: (qs) => qs.map((q) => q.candidates.map(() => true)), prefill: [10, 10], maxSteps: 1 });
    expect(pre.responses[0].responseIds).toEqual([12]);
  });

  it('backtracks when no candidate is harmful, excludes the token it came back from (and harmful ones ranked above it), and stops at eos', async () => {
    const helper = treeHelper(1, {
      '': [10, 12, 13], // 10 leads nowhere; 12 leads to a dead end two deep; 13 finishes
      '12': [11],
      '13': [10],
      '13,10': [EOS],
    });
    const tensors = tf.memory().numTensors;
    const res = await run({ helper });
    expect(tf.memory().numTensors).toBe(tensors);
    const r = res.responses[0];
    expect(actions(r)).toEqual(['pick 10', 'back 10', 'pick 12', 'pick 11', 'back 11', 'back 12', 'pick 13', 'pick 10', `pick ${EOS}`]);
    expect(r.trace.map((s) => s.excluded)).toEqual([null, null, 10, null, null, 11, 12, null, null]);
    // After backing out of 12, 10 (harmful, ranked above 12) is not tried again: 13 is next.
    expect(r.trace[6].action).toMatchObject({ kind: 'pick', rank: 4, id: 13 });
    expect(r.stopReason).toBe('eos');
    expect(r.responseIds).toEqual([13, 10]);
    expect(r.response).toBe('t13 t10');
    expect(r.steps).toBe(9);
    expect(r.backtracks).toBe(3);
    expect(rapStepTable(r.trace[2])[0].note).toBe('backtracked from');
    // The exclusion holds for one step: 10 is picked again at a new position.
    expect(r.trace[7].action).toMatchObject({ id: 10 });
    // Each automated action is the pure choice function's on the recorded table.
    for (const s of r.trace) {
      const c = automatedRapChoice(s.candidates, s.excluded);
      expect(c === 'backtrack' ? 'backtrack' : s.candidates[c - 1].id).toEqual(s.action.kind === 'pick' ? s.action.id : 'backtrack');
    }
  });

  it('stops when it backtracks past the start (the prefill is never removed)', async () => {
    const none = await run({ helper: treeHelper(1, {}) });
    expect(actions(none.responses[0])).toEqual(['back null']);
    expect(none.responses[0]).toMatchObject({ stopReason: 'exhausted', responseIds: [], prefillIds: [20], steps: 1, backtracks: 1, response: '' });
    const deadEnd = await run({ helper: treeHelper(1, { '': [10] }) });
    expect(actions(deadEnd.responses[0])).toEqual(['pick 10', 'back 10', 'back null']);
    expect(deadEnd.responses[0].stopReason).toBe('exhausted');
    expect(deadEnd.responses[0].verdict.harmful).toBe(false);
  });

  it('runs behaviours together (one forward per step for the unfinished rows, left-padded) with the same results as one by one', async () => {
    const seen: number[][][] = [];
    const target = scriptedTarget(scriptedModel(seen));
    const behaviours = [behaviour('a', 'w3'), behaviour('b', 'w3 w4 w5'), behaviour('c', 'w6 w7')];
    // Different paths per behaviour: 'a' stops at once, 'b' takes two steps, 'c' runs to maxSteps.
    const helper: RapHelperFn = (qs) => qs.map((q) => q.candidates.map((c) => (q.behaviour.id === 'c' ? c === 13 : q.behaviour.id === 'b' ? c === 12 && q.prefix.length < 2 : false)));
    const opts: RapOptions = { helper, prefill: [20], topK: 5, maxSteps: 4, progress: false };
    const together = await rapAttack(target, behaviours, recordingJudge(), opts);
    expect(together.responses.map((r) => r.stopReason)).toEqual(['exhausted', 'exhausted', 'max-steps']);
    expect(together.responses.map((r) => r.steps)).toEqual([1, 3, 4]);
    // Step 1 runs all three rows (the model sees the unpadded sequences), step 2 only 'b' and 'c'.
    expect(seen[0]).toEqual([[1, 3, 20], [1, 3, 4, 5, 20], [1, 6, 7, 20]]);
    expect(seen[1]).toEqual([[1, 3, 4, 5, 20, 12], [1, 6, 7, 20, 13]]);
    const alone = await rapAttack(target, behaviours, recordingJudge(), { ...opts, batchSize: 1 });
    expect(alone.responses.map((r) => r.trace)).toEqual(together.responses.map((r) => r.trace));
    expect(together.meanBacktracks).toBeCloseTo((1 + 2 + 2) / 3, 10);
  });

  it('scripted RAP: a list of choices (ranks, { pick }, backtrack), stopping when it runs out; helper labels only shown', async () => {
    const res = await run({ choose: [1, 3, 'backtrack', { pick: 2 }] });
    const r = res.responses[0];
    expect(actions(r)).toEqual(['pick 10', 'pick 12', 'back 12', 'pick 11', 'stop']);
    expect(r.stopReason).toBe('stopped');
    expect(r.responseIds).toEqual([10, 11]);
    expect(r.steps).toBe(4);
    expect(r.trace[0].candidates[0].harmful).toBeUndefined();
    // The script's picks stand even against the helper and the repeat rule.
    const forced = await run({ choose: [1, 1, 1], helper: treeHelper(1, {}), maxSteps: 3 });
    expect(forced.responses[0].responseIds).toEqual([10, 10, 10]);
    expect(forced.responses[0].trace[2].candidates[0].repeat).toBe(true);
    expect(forced.responses[0].trace[0].candidates[0].harmful).toBe(false);
  });

  it('scripted RAP: a callback sees the table, the prefix, the exclusion and the automated suggestion', async () => {
    const views: { step: number; prefixText: string; excluded: number | null; suggestion: unknown; tokens: string[] }[] = [];
    const res = await run({
      helper: treeHelper(1, { '': [12], '12': [] }),
      choose: (v) => {
        views.push({ step: v.step, prefixText: v.prefixText, excluded: v.excluded, suggestion: v.suggestion, tokens: v.candidates.map((c) => c.text) });
        expect(v.behaviour).toBe(B0);
        expect(v.prefillLength).toBe(1);
        return v.step < 2 ? (v.suggestion ?? 'stop') : 'stop';
      },
    });
    expect(views.map(({ step, prefixText, excluded, suggestion }) => ({ step, prefixText, excluded, suggestion }))).toEqual([
      { step: 0, prefixText: 't20', excluded: null, suggestion: 3 },
      { step: 1, prefixText: 't20 t12', excluded: null, suggestion: 'backtrack' },
      { step: 2, prefixText: 't20', excluded: 12, suggestion: 'backtrack' },
    ]);
    expect(views[0].tokens).toEqual(['t10', ' t10', 't12', 't13', '']);
    expect(res.responses[0].stopReason).toBe('stopped');
    await expect(run({ choose: () => 6 })).rejects.toThrow(/behaviour "b0", step 0: the choice must be a rank in \[1, 5\].*6/);
    await expect(run({ choose: [0] })).rejects.toThrow(/rank in \[1, 5\]/);
  });

  it('stops when the sequence fills the model context', async () => {
    const res = await run({ helper: (qs) => qs.map((q) => q.candidates.map(() => true)), prefill: Array.from({ length: 30 }, () => 20) });
    const r = res.responses[0];
    // prompt (3) + prefill (30) + 7 chosen = 40 positions.
    expect(r.stopReason).toBe('context');
    expect(r.responseIds).toHaveLength(7);
  });

  it('rejects bad settings, naming the setting and what was expected', async () => {
    const helper = treeHelper(1, {});
    await expect(run({ helper }, [])).rejects.toThrow(/rapAttack: the behaviour set is empty/);
    await expect(run({ helper, topK: 0 })).rejects.toThrow(/`topK` must be an integer in \[1, 24\], but is 0/);
    await expect(run({ helper, topK: 25 })).rejects.toThrow(/`topK`/);
    await expect(run({ helper, maxSteps: 0 })).rejects.toThrow(/`maxSteps` must be an integer >= 1/);
    await expect(run({ helper, batchSize: 1.5 })).rejects.toThrow(/`batchSize`/);
    await expect(run({})).rejects.toThrow(/give `helper` \(automated RAP\) or `choose`/);
    await expect(run({ helper, prefill: [99] })).rejects.toThrow(/prefill id 99 at position 0 of behaviour "b0"/);
    await expect(run({ helper, prefill: 5 as unknown as string })).rejects.toThrow(/`prefill` must be text/);
    await expect(run({ helper: () => [[true]] })).rejects.toThrow(/returned 1 labels for the 5 candidates of behaviour "b0"/);
    await expect(run({ helper: () => [] })).rejects.toThrow(/returned 0 label lists for 1 queries/);
    await expect(run({ helper: (qs) => qs.map((q) => q.candidates.map(() => 'yes' as unknown as boolean)) })).rejects.toThrow(/label "yes"; labels must be booleans or finite scores/);
    await expect(run({ helper, prefill: Array.from({ length: 40 }, () => 20) })).rejects.toThrow(/leaving no room in the model's 40 positions/);
    expect(() => nextTokenCandidates(scriptedModel(), [[1]], 0, 0)).toThrow(/`k` must be an integer in \[1, 24\]/);
  });
});

describe('rapAttack with the learned helper on the Hugging Face llama, Llama-2 tokenizer and keyword judge', () => {
  let hf: TinyLlamaChat;
  beforeAll(async () => {
    hf = await tinyLlamaChat();
  });

  it('builds the helper data: harmful prefixes (label 1) and prefixes + the target\'s own continuation (label 0)', async () => {
    const { target } = hf;
    const data = rapHelperData(target, HF_BEHAVIOURS, { examplesPerBehaviour: 8, seed: 3 });
    expect(data).toHaveLength(24);
    expect(new Set(data.map((d) => d.label))).toEqual(new Set([0, 1]));
    for (const d of data) {
      const b = HF_BEHAVIOURS.find((x) => x.id === d.behaviourId)!;
      const prompt = target.promptIds(b.request);
      const reference = [...target.responseIds(b.harmfulResponse!), target.eosTokenIds[0]];
      expect(d.ids.slice(0, d.promptLength)).toEqual(prompt);
      expect(d.ids.slice(d.promptLength, d.promptLength + d.harmfulTokens)).toEqual(reference.slice(0, d.harmfulTokens));
      expect(d.harmfulTokens).toBeGreaterThanOrEqual(1);
      if (d.label === 1) {
        expect(d.safeIds).toEqual([]);
        expect(d.ids).toHaveLength(d.promptLength + d.harmfulTokens);
      } else {
        expect(d.safeIds.length).toBeGreaterThanOrEqual(1);
        expect(d.safeIds.length).toBeLessThanOrEqual(5);
        // The continuation departs from the answer at once: its first token is not the answer's next one.
        expect(d.safeIds[0]).not.toBe(reference[d.harmfulTokens]);
        expect(d.ids.slice(d.promptLength + d.harmfulTokens)).toEqual(d.safeIds);
        // It starts from the target's top 20 there; the rest is greedy.
        const [top] = nextTokenCandidates(target.model, [d.ids.slice(0, d.promptLength + d.harmfulTokens)], target.padTokenId, 20);
        expect(top.map((c) => c.id)).toContain(d.safeIds[0]);
        if (d.safeIds.length > 1) {
          const [greedy] = nextTokenCandidates(target.model, [d.ids.slice(0, d.promptLength + d.harmfulTokens + 1)], target.padTokenId, 1);
          expect(d.safeIds[1]).toBe(greedy[0].id);
        }
      }
    }
    expect(rapHelperData(target, HF_BEHAVIOURS, { examplesPerBehaviour: 8, seed: 3 })).toEqual(data);
    expect(() => rapHelperData(target, [{ id: 'x', request: 'Hi.' }])).toThrow(/behaviour "x" has no `harmfulResponse`/);
    expect(() => rapHelperData(target, HF_BEHAVIOURS, { examplesPerBehaviour: 0 })).toThrow(/`examplesPerBehaviour` must be an integer >= 1/);
  });

  it('trains for a few steps, drives automated RAP judged by the keyword judge, and saves/loads', async () => {
    const { target, model } = hf;
    const before = Array.from(model.variables().get('model.embed_tokens.weight')!.dataSync().slice(0, 32));
    const { helper, result, data, accuracy } = await trainRapHelper(target, HF_BEHAVIOURS, { steps: 3, examplesPerBehaviour: 4, batchSize: 4, lr: 1e-3, seed: 1, progress: false });
    expect(result.steps).toBe(3);
    result.log.forEach((l) => expect(Number.isFinite(l.loss)).toBe(true));
    expect(data).toHaveLength(12);
    expect(accuracy).toBeGreaterThanOrEqual(0);
    expect(accuracy).toBeLessThanOrEqual(1);
    // The backbone is a copy: the target's own weights are untouched.
    expect(helper.backbone).not.toBe(model);
    expect(Array.from(model.variables().get('model.embed_tokens.weight')!.dataSync().slice(0, 32))).toEqual(before);

    const tensors = tf.memory().numTensors;
    const res = await rapAttack(target, HF_BEHAVIOURS, keywordJudge(), { helper, prefill: 'Sure, here is', maxSteps: 4, progress: false });
    expect(tf.memory().numTensors).toBe(tensors);
    expect(res.n).toBe(3);
    expect(res.responses.some((r) => r.trace.some((s) => s.action.kind === 'pick'))).toBe(true);
    for (const [i, r] of res.responses.entries()) {
      expect(r.id).toBe(HF_BEHAVIOURS[i].id);
      expect(r.prefillIds).toEqual(target.responseIds('Sure, here is'));
      expect(r.steps).toBeLessThanOrEqual(4);
      expect(r.trace).toHaveLength(r.steps + (r.stopReason === 'stopped' ? 1 : 0));
      for (const s of r.trace) {
        expect(s.candidates).toHaveLength(20);
        s.candidates.forEach((c) => {
          expect(c.score).toBeGreaterThanOrEqual(0);
          expect(c.score).toBeLessThanOrEqual(1);
          expect(c.harmful).toBe(c.score! > 0.5);
        });
        const c = automatedRapChoice(s.candidates, s.excluded);
        expect(s.action.kind === 'pick' ? s.action.rank : s.action.kind).toBe(c);
      }
      // The scores are the helper's on prompt + prefix + candidate.
      const s0 = r.trace[0];
      const seq = [...target.promptIds(HF_BEHAVIOURS[i].request), ...s0.prefix, s0.candidates[0].id];
      expect(helper.scoreSequences([seq])[0]).toBeCloseTo(s0.candidates[0].score!, 5);
      // The keyword judge read prefill + chosen tokens.
      const text = joinResponse(r.prefill, r.response);
      const refused = KEYWORD_REFUSALS.some((w) => text.includes(w));
      expect(r.verdict).toEqual({ harmful: !refused && text.trim() !== '', refused });
    }
    expect(res.harmful.k).toBe(res.responses.filter((r) => r.verdict.harmful).length);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rap-helper-'));
    try {
      await saveRapHelper(helper, path.join(dir, 'helper'));
      const loaded = await loadRapHelper(path.join(dir, 'helper'), target);
      const seqs = data.slice(0, 4).map((d) => d.ids);
      const a = helper.scoreSequences(seqs);
      loaded.scoreSequences(seqs).forEach((x, i) => expect(x).toBeCloseTo(a[i], 6));
      loaded.dispose();
      fs.writeFileSync(path.join(dir, 'helper', 'rap_helper.json'), '{"format":"deepalign/rap-helper","dModel":3}');
      await expect(loadRapHelper(path.join(dir, 'helper'), target)).rejects.toThrow(/rap_helper.json: expected the RAP helper head/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    helper.dispose();
  });

  it('a frozen backbone trains the head alone (a linear probe on the target itself), and the fresh backbone is a small llama', async () => {
    const { target, model } = hf;
    const before = Array.from(model.variables().get('model.layers.0.self_attn.q_proj.weight')!.dataSync().slice(0, 16));
    const probe = await trainRapHelper(target, HF_BEHAVIOURS, { steps: 2, examplesPerBehaviour: 2, batchSize: 4, freezeBackbone: true, progress: false });
    expect(probe.helper.backbone).toBe(model);
    expect(Array.from(model.variables().get('model.layers.0.self_attn.q_proj.weight')!.dataSync().slice(0, 16))).toEqual(before);
    probe.helper.dispose();
    // Disposing a probe leaves the target's model usable.
    expect(nextTokenCandidates(model, [[1, 2, 3]], 0, 2)[0]).toHaveLength(2);
    const fresh = await trainRapHelper(target, HF_BEHAVIOURS, { steps: 1, examplesPerBehaviour: 2, batchSize: 2, backbone: 'fresh', progress: false });
    expect(fresh.helper.backbone.config).toMatchObject({ modelType: 'llama', dModel: 64, nLayers: 2, vocabSize: model.config.vocabSize });
    fresh.helper.dispose();
    await expect(trainRapHelper(target, HF_BEHAVIOURS, { steps: 0, progress: false })).rejects.toThrow(/trainRapHelper: `steps` must be an integer >= 1/);
    await expect(trainRapHelper(target, HF_BEHAVIOURS, { lr: -1, progress: false })).rejects.toThrow(/`lr` must be a positive number/);
  });
});
