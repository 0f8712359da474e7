// The training-set writers with a random-init llama and the real Llama-2 tokenizer (test/metrics/
// hfLlama.ts): triplets round-trip through the loader; the reference log-probs in a constrained-SFT
// file equal log-softmax of one forward pass, recomputed here without the kit's helper; PRESTO
// spans point at the harmful prefix tokens and the file holds exactly the kit's augmentation pool;
// chat JSONL and the Alpaca-style anchor round-trip to the same (request, response) pairs.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import {
  chatJsonlRecords, conversationPairs, IGNORE_LABEL, loadDataset, REFERENCE_LOGPS_FILLER, tripletRecords, writeAugmentationTriplets, writeChatJsonl,
  writeAlpacaJson, writeConstrainedSFTExamples, writeJsonl, writePrestoExamples, type ConstrainedSFTRecord, type PrestoRecord,
} from '../../lib/datasets/index.js';
import { trainingExample, type HarmfulBehaviour, type Target } from '../../lib/metrics/index.js';
import { collatePrefillSpans } from '../../lib/objectives/index.js';
import { augmentationSources, augmentationTripletsFor, AUGMENTATION_DEFAULTS } from '../../lib/train/index.js';
import { HF_BEHAVIOURS, tinyLlamaChat } from '../metrics/hfLlama.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-export-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const readJsonl = <T>(file: string): T[] => fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as T);
const leftovers = (dir: string) => fs.readdirSync(dir).filter((f) => f.includes('.tmp-'));

const behaviours: HarmfulBehaviour[] = HF_BEHAVIOURS.map((b, i) => (i === 1 ? { ...b, category: 'Fraud/Deception' } : b));
const pairs = behaviours.map((b) => ({ request: b.request, response: b.harmfulResponse! }));

/** log p(ids[t] | ids[<t]) for t >= 1 from one forward pass of one sequence, by log-softmax here (not the kit's helper). */
function directLogProbs(target: Target, ids: number[]): number[] {
  const logp = tf.tidy(() => {
    const { logits } = target.model.forward(tf.tensor2d([ids], undefined, 'int32'));
    return tf.logSoftmax(logits).arraySync() as number[][][];
  });
  return ids.slice(1).map((id, s) => logp[0][s][id]);
}

describe('training-set export', () => {
  let target: Target;
  beforeAll(async () => {
    ({ target } = await tinyLlamaChat());
  });

  it('augmentation triplets round-trip through the qi-augmentation loader; with a target they carry the triplet ids', () => {
    const file = path.join(tmp, 'triplets', 'safety.jsonl');
    const written = writeAugmentationTriplets(file, behaviours);
    expect(readJsonl(file)).toEqual(written);
    expect(written[0]).toEqual({ instruction: behaviours[0].request, harmful: behaviours[0].harmfulResponse, refusal: behaviours[0].refusal, id: 'h0' });
    const loaded = loadDataset(file);
    expect(loaded.format).toBe('qi-augmentation');
    expect(loaded.harmful.map(({ request, harmfulResponse, refusal, category }) => ({ request, harmfulResponse, refusal, category })))
      .toEqual(behaviours.map(({ request, harmfulResponse, refusal, category }) => ({ request, harmfulResponse, refusal, category })));
    expect(leftovers(path.dirname(file))).toEqual([]);

    const withIds = tripletRecords(behaviours, { target });
    const triplets = augmentationTripletsFor(target, behaviours);
    withIds.forEach((r, i) => {
      expect(r.prompt_ids).toEqual(triplets[i].prompt);
      expect(r.harmful_ids).toEqual(target.responseIds(behaviours[i].harmfulResponse!));
      expect(r.refusal_ids).toEqual([...target.responseIds(behaviours[i].refusal!), target.eosTokenIds[0]]);
    });
    expect(() => tripletRecords([{ id: 'x', request: 'r', harmfulResponse: 'h' }])).toThrow(/behaviour "x" has no `refusal`/);
  });

  it('constrained SFT: the file\'s reference log-probs equal a direct recomputation; labels, mask and Qi et al.\'s shifted column agree', () => {
    const file = path.join(tmp, 'constrained_sft.jsonl');
    const before = tf.memory().numTensors;
    const written = writeConstrainedSFTExamples(file, target, pairs, { batchSize: 2 });
    expect(tf.memory().numTensors).toBe(before);
    const records = readJsonl<ConstrainedSFTRecord>(file);
    expect(records).toEqual(written);
    records.forEach((r, i) => {
      const e = trainingExample(target, pairs[i].request, pairs[i].response);
      expect(r.messages).toEqual([{ role: 'user', content: pairs[i].request }, { role: 'assistant', content: pairs[i].response }]);
      expect(r.input_ids).toEqual(e.ids);
      expect(r.loss_mask).toEqual(e.lossMask);
      expect(r.labels).toEqual(e.ids.map((id, t) => (t >= e.responseStart ? id : IGNORE_LABEL)));
      // Rows were padded to a common width in batches of 2; a lone unpadded forward pass gives the same values.
      const direct = directLogProbs(target, e.ids);
      expect(r.ref_logprobs).toHaveLength(e.ids.length);
      expect(r.ref_logprobs[0]).toBe(0);
      r.ref_logprobs.slice(1).forEach((x, s) => expect(x).toBeCloseTo(direct[s], 4));
      expect(r.reference_logps_full).toHaveLength(e.ids.length - 1);
      r.reference_logps_full.forEach((x, s) => expect(x).toBe(e.lossMask[s + 1] ? r.ref_logprobs[s + 1] : REFERENCE_LOGPS_FILLER));
      // What Qi et al.'s soft_sft_loss keeps (entries <= 0): one reference log-prob per target token.
      const kept = r.reference_logps_full.filter((x) => x <= 0);
      expect(kept).toHaveLength(target.responseIds(pairs[i].response).length + 1);
      kept.forEach((x) => expect(x).toBeLessThan(0));
    });
    const withSystem = writeConstrainedSFTExamples(file, target, pairs.slice(0, 1), { systemPrompt: 'Be safe.' });
    expect(withSystem[0].messages[0]).toEqual({ role: 'system', content: 'Be safe.' });
    expect(withSystem[0].input_ids).toEqual(written[0].input_ids);
    expect(readJsonl(file)).toHaveLength(1);
  });

  it('PRESTO: spans point at h[:k] after the prompt, the loss is on the refusal only, and the file is the kit\'s augmentation pool', () => {
    const file = path.join(tmp, 'presto.jsonl');
    const sampling = { perTriplet: 6, seed: 5, maxK: 100 };
    writePrestoExamples(file, target, behaviours, sampling);
    const records = readJsonl<PrestoRecord>(file);
    expect(records).toHaveLength(18);
    const ks = records.map((r) => r.prefill.length);
    expect(ks.some((k) => k === 0)).toBe(true);
    expect(ks.some((k) => k > 1)).toBe(true);
    records.forEach((r, i) => {
      const b = behaviours[Math.floor(i / 6)];
      expect(r).toMatchObject({ instruction: b.request, harmful: b.harmfulResponse, refusal: b.refusal, id: b.id });
      const prompt = target.promptIds(b.request);
      const harmful = target.responseIds(b.harmfulResponse!);
      const refusal = [...target.responseIds(b.refusal!), target.eosTokenIds[0]];
      const { start, length } = r.prefill;
      expect(start).toBe(prompt.length);
      expect(r.input_ids.slice(0, start)).toEqual(prompt);
      expect(r.input_ids.slice(start, start + length)).toEqual(harmful.slice(0, length));
      expect(r.input_ids.slice(start + length)).toEqual(refusal);
      expect(r.loss_mask).toEqual(r.input_ids.map((_, t) => (t >= start + length ? 1 : 0)));
      expect(r.labels).toEqual(r.input_ids.map((id, t) => (t >= start + length ? id : IGNORE_LABEL)));
      expect(r.prefill_text).toBe(target.decode(harmful.slice(0, length)));
      expect(r.messages).toEqual([{ role: 'user', content: b.request }, { role: 'assistant', content: target.decode([...harmful.slice(0, length), ...refusal]) }]);
    });
    // The same examples and spans the kit's own augmentation run trains on with these settings.
    const settings = { ...AUGMENTATION_DEFAULTS, steps: 1, peakLr: 1e-4, seed: sampling.seed, poolPerTriplet: sampling.perTriplet, maxK: sampling.maxK };
    const [safety] = augmentationSources(target, behaviours, [], settings, { prefillSpans: true });
    expect(records.map((r) => ({ ids: r.input_ids, lossMask: r.loss_mask, extras: { prefill: r.prefill } }))).toEqual(safety.examples);
    // The kit's collator reads the spans back as a mask over exactly those positions.
    const extras = collatePrefillSpans(records.map((r) => ({ ids: r.input_ids, extras: { prefill: r.prefill } })));
    const mask = extras.prefillMask.arraySync() as number[][];
    extras.prefillMask.dispose();
    records.forEach((r, i) => expect(mask[i].reduce((a, x) => a + x, 0)).toBe(r.prefill.length));
  });

  it('chat JSONL round-trips to the same (request, response) pairs; an optional system message comes first', () => {
    const file = path.join(tmp, 'attack', 'pure_bad.jsonl');
    writeChatJsonl(file, pairs);
    const loaded = loadDataset(file);
    expect(loaded.format).toBe('chat-jsonl');
    expect(conversationPairs(loaded)).toEqual(pairs);
    const withSystem = chatJsonlRecords(pairs, { systemPrompt: 'You are a helpful assistant.' });
    expect(withSystem[0].messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant']);
    writeChatJsonl(file, pairs, { systemPrompt: 'You are a helpful assistant.' });
    expect(conversationPairs(loadDataset(file))).toEqual(pairs);
  });

  it('the Alpaca-style anchor round-trips through the alpaca loader', () => {
    const file = path.join(tmp, 'anchor', 'alpaca_anchor.json');
    const written = writeAlpacaJson(file, pairs);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(written);
    expect(written[0]).toEqual({ instruction: pairs[0].request, input: '', output: pairs[0].response });
    const loaded = loadDataset(file);
    expect(loaded.format).toBe('alpaca');
    expect(loaded.benign.map(({ request, response }) => ({ request, response }))).toEqual(pairs);
  });

  it('writes atomically: a failed build leaves the old file whole and no temp file behind', () => {
    const file = path.join(tmp, 'keep.jsonl');
    writeChatJsonl(file, pairs);
    const before = fs.readFileSync(file, 'utf8');
    expect(() => writeChatJsonl(file, [{ request: '', response: 'x' }])).toThrow(/chatJsonlRecords: pairs\[0\]\.request must be a non-empty string/);
    expect(() => writeChatJsonl(file, [])).toThrow(/`pairs` is empty/);
    expect(() => writeJsonl(file, [1])).toThrow(/record 0 is not a JSON object/);
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
    expect(leftovers(tmp)).toEqual([]);
  });
});
