// The CLI's training experiments and `deepalign export`, run as a user runs them (child processes)
// on a tiny random-init Hugging Face llama with the real Llama-2 tokenizer and small data files in
// the papers' layouts, with the keyword judge. Each trained model is compared with the same lib
// training run in this process (the parameters the CLI saved must be the ones lib computes from the
// same data and settings), and its evaluation with generations made here. A run interrupted by
// --stop-after and run again must end with exactly the parameters of an uninterrupted run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { examplesFor } from '../../lib/attacks/fineTuning.js';
import { conversationPairs, loadDataset } from '../../lib/datasets/index.js';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { loadSafetensors } from '../../lib/io/index.js';
import {
  QI_DECODING, evaluateHarmful, harmfulPrefill, keywordJudge, loadTarget, trainingExample, withModel, type HarmfulBehaviour, type Target,
} from '../../lib/metrics/index.js';
import { loadLoraAdapter, loadModel, loraParameters, mergeLora, type Decoder } from '../../lib/model/index.js';
import { collateRefLogProbs, constrainedSFTObjective, withRefLogProbs } from '../../lib/objectives/index.js';
import {
  AUGMENTATION_DEFAULTS, QI_FINETUNE, augmentModel, dertaModel, distilledAnchor, fineTune, worstInsertionModel, type AugmentationSettings, type TrainExample,
} from '../../lib/train/index.js';
import { HF_BEHAVIOURS } from '../metrics/hfLlama.js';
import { ROOT, readResults, runCli, summaryOf, writeTinyLlama, writeTriplets, type CliRun } from './harness.js';

process.env.DEEPALIGN_PROGRESS = '0'; // lib's progress bars in this process (the reference runs)
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-cli-training-'));
const modelDir = path.join(tmp, 'tiny');
const tripletsFile = path.join(tmp, 'triplets.jsonl');
const benignFile = path.join(tmp, 'benign.json');
const chatFile = path.join(tmp, 'chat.jsonl');
const out = (name: string) => path.join(tmp, 'runs', name);

const BENIGN = [
  { instruction: 'Name a primary colour.', input: '', output: 'Red is a primary colour.' },
  { instruction: 'What is two plus two?', input: '', output: 'Two plus two is four.' },
  { instruction: 'Say hello in French.', input: '', output: 'Bonjour.' },
];

// The experiments' files and exports. Until cli/main.ts lists them, a runner adds them to its list (the same main()).
const MINE: [file: string, symbol: string][] = [
  ['finetune', 'finetune'], ['constrainedSft', 'constrainedSft'], ['augment', 'augment'], ['presto', 'presto'], ['worstInsertion', 'worstInsertion'], ['derta', 'derta'], ['export', 'exportExperiment'],
];
const registered = MINE.every(([file]) => fs.readFileSync(path.join(ROOT, 'cli/main.ts'), 'utf8').includes(`./experiments/${file}.js`));
const runner = path.join(tmp, 'runner.mts');

function deepalign(args: readonly string[]): Promise<CliRun> {
  return runCli(args, registered ? {} : { command: [process.execPath, '--import', 'tsx', runner] });
}

/** A run that must succeed: its exit code, with stderr in the failure message. */
async function ok(args: readonly string[]): Promise<CliRun> {
  const run = await deepalign(args);
  if (run.code !== 0) throw new Error(`deepalign ${args.join(' ')} exited ${run.code}:\n${run.stderr}`);
  return run;
}

/** The flags every run shares: the tiny model in the Llama-2 chat format, short answers, one sampling seed. */
const COMMON = ['--model', modelDir, '--format', 'llama2', '--max-new-tokens', '4', '--seeds', '0', '--batch-size', '8'];
const AUGMENT = ['--data', tripletsFile, '--benign', benignFile, '--lr', '1e-3', '--safety-per-batch', '2', '--anchor-per-batch', '2', '--pool-per-triplet', '2', '--checkpoint-every', '1'];

let target: Target;
let triplets: HarmfulBehaviour[];
let anchor: TrainExample[];

/** The largest absolute difference between two models' parameters (every name must match). */
function maxDiff(a: Map<string, tf.Variable | { data: Float32Array; shape: number[] }>, b: Map<string, tf.Variable | { data: Float32Array; shape: number[] }>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  const values = (x: tf.Variable | { data: Float32Array }) => (x instanceof tf.Variable ? (x.dataSync() as Float32Array) : x.data);
  let worst = 0;
  for (const [name, x] of a) {
    const [u, v] = [values(x), values(b.get(name)!)];
    expect(u.length).toBe(v.length);
    for (let i = 0; i < u.length; i++) worst = Math.max(worst, Math.abs(u[i] - v[i]));
  }
  return worst;
}

/** The saved full checkpoint's weights by name. */
const savedWeights = (dir: string) => new Map([...loadSafetensors(path.join(dir, 'model.safetensors'))].map(([n, t]) => [n, { data: t.data as Float32Array, shape: t.shape }]));

/** A journal unit's value. */
function unit<T>(dir: string, key: string): T {
  const lines = fs.readFileSync(path.join(dir, 'journal.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { key: string; value: T });
  const found = lines.filter((l) => l.key === key);
  expect(found.length, `journal unit "${key}" once`).toBe(1);
  return found[0].value;
}

const augmentSettings = (steps: number): AugmentationSettings => ({
  ...AUGMENTATION_DEFAULTS, steps, warmupSteps: 0, peakLr: 1e-3, seed: 0, safetyPerBatch: 2, anchorPerBatch: 2, poolPerTriplet: 2,
});

beforeAll(async () => {
  await initEngine();
  await writeTinyLlama(modelDir, 1);
  writeTriplets(tripletsFile);
  fs.writeFileSync(benignFile, JSON.stringify(BENIGN));
  fs.writeFileSync(chatFile, HF_BEHAVIOURS.map((b) => JSON.stringify({ messages: [{ role: 'user', content: b.request }, { role: 'assistant', content: b.harmfulResponse }] })).join('\n') + '\n');
  if (!registered) {
    fs.writeFileSync(runner, [
      `import { main, EXPERIMENTS } from ${JSON.stringify(path.join(ROOT, 'cli/main.ts'))};`,
      ...MINE.map(([file, symbol]) => `import { ${symbol} } from ${JSON.stringify(path.join(ROOT, 'cli/experiments', `${file}.ts`))};`),
      `const mine = [${MINE.map(([, symbol]) => symbol).join(', ')}];`,
      'process.exit(await main(process.argv.slice(2), [...EXPERIMENTS.filter((e) => !mine.some((m) => m.name === e.name)), ...mine]));',
    ].join('\n'));
  }
  // The target a user's flags name: the Llama-2 chat format without a system prompt, 4 new tokens.
  target = await loadTarget(modelDir, { format: 'llama2', systemPrompt: null, maxNewTokens: 4, name: 'tiny' });
  triplets = loadDataset(tripletsFile).harmful;
  anchor = (await distilledAnchor(target, loadDataset(benignFile).benign, { batchSize: 8 })).examples;
});

afterAll(() => {
  target?.model.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('deepalign finetune and constrained-sft', () => {
  it('finetune trains on a chat JSONL exactly as lib does, saves the model and evaluates it before and after', async () => {
    const dir = out('finetune');
    const run = await ok(['finetune', ...COMMON, '--data', chatFile, '--eval-data', tripletsFile, '--steps', '3', '--batch', '2', '--warmup-steps', '1', '--lr', '1e-3', '--out', dir]);
    expect(run.stdout).toMatch(/finetune: harmful rate after n fine-tuning steps/);
    const { metrics, notebook } = readResults(dir);
    expect(notebook).toBe('finetune');
    expect(metrics.training).toMatchObject({ steps: 3, completed: true, resumedFrom: null, batch: 2 });
    expect(metrics.training.log.map((l: { lr: number }) => l.lr)).toEqual([1e-3, 1e-3, 5e-4]); // 1 warmup step, then Qi's linear decay to 0 at step 3
    expect(metrics.saved).toEqual({ dir: path.join(dir, 'model'), format: 'full', merged: null });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'training.json']) expect(fs.existsSync(path.join(dir, 'model', f)), f).toBe(true);

    // lib's own run from the same data and settings.
    const examples = examplesFor(target, conversationPairs(loadDataset(chatFile)));
    const ref = await fineTune(target.model, [{ name: 'attack', examples, perBatch: 2 }], target.padTokenId, { ...QI_FINETUNE, steps: 3, peakLr: 1e-3, warmupSteps: 1, seed: 0 });
    try {
      expect(maxDiff(ref.model.variables(), savedWeights(path.join(dir, 'model')))).toBeLessThan(1e-6);
      expect(metrics.training.log.map((l: { loss: number }) => l.loss)).toEqual(ref.result.log.map((l) => l.loss));
      // The harmful rate before (step 0) and after (step 3): the same generations as here, judged by the keyword judge.
      const decoding = { ...QI_DECODING, seed: 0 };
      for (const [step, model] of [[0, target.model], [3, ref.model]] as [number, Decoder][]) {
        const here = await evaluateHarmful(withModel(target, model), triplets, keywordJudge(), { decoding, batchSize: 8, progress: false });
        const stored = unit<{ responses: { response: string }[]; harmful: { k: number } }>(dir, `phase=step${step} k=0 decoding=qi seed=0`);
        expect(stored.responses.map((r) => r.response)).toEqual(here.responses.map((r) => r.response));
        const row = metrics.evaluation.curve.find((c: { step: number }) => c.step === step);
        expect(row.pooled).toMatchObject({ k: here.harmful.k, n: triplets.length });
      }
      expect(metrics.evaluation.samples.map((s: { response: string }) => s.response)).toEqual(unit<{ responses: { response: string }[] }>(dir, 'phase=step3 k=0 decoding=qi seed=0').responses.map((r) => r.response));
    } finally {
      ref.model.dispose();
    }
  });

  it('constrained-sft with --lora-r saves a PEFT adapter equal to lib\'s constrained LoRA run, and --merge the merged checkpoint', async () => {
    const dir = out('constrained-lora');
    await ok(['constrained-sft', ...COMMON, '--data', chatFile, '--steps', '2', '--batch', '2', '--warmup-steps', '0', '--lr', '1e-2', '--lora-r', '2', '--lora-alpha', '4', '--merge', '--no-eval', '--out', dir]);
    const { metrics } = readResults(dir);
    expect(metrics.objective).toMatchObject({ objective: 'constrained SFT', betaFirst: 0.5, betaEarly: 2, earlyUntil: 5, betaLate: 0.1, form: 'eq3' });
    expect(metrics.saved).toEqual({ dir: path.join(dir, 'model'), format: 'peft-adapter', merged: path.join(dir, 'merged') });
    expect(metrics.evaluation).toBe(null);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'model', 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 4, task_type: 'CAUSAL_LM' });

    const examples = withRefLogProbs(target.model, examplesFor(target, conversationPairs(loadDataset(chatFile))), { padId: target.padTokenId });
    const ref = await fineTune(target.model, [{ name: 'attack', examples, perBatch: 2 }], target.padTokenId, { ...QI_FINETUNE, steps: 2, peakLr: 1e-2, warmupSteps: 0, seed: 0 }, {
      objective: constrainedSFTObjective(), batchExtras: collateRefLogProbs, lora: { r: 2, alpha: 4, dropout: 0, seed: 0 },
    });
    const adapted = await loadModel(modelDir);
    const merged = await loadModel(path.join(dir, 'merged'));
    try {
      await loadLoraAdapter(adapted, path.join(dir, 'model'));
      expect(maxDiff(loraParameters(ref.model), loraParameters(adapted))).toBeLessThan(1e-6);
      // B starts at 0: a trained adapter moved it.
      expect(Math.max(...[...loraParameters(adapted)].filter(([n]) => n.endsWith('lora_B.weight')).map(([, v]) => tf.max(tf.abs(v)).dataSync()[0]))).toBeGreaterThan(0);
      expect(maxDiff(mergeLora(ref.model).variables(), merged.variables())).toBeLessThan(1e-6);
    } finally {
      ref.model.dispose();
      adapted.dispose();
      merged.dispose();
    }
    // --adapter puts the saved PEFT adapter onto --model: the same answers as the merged checkpoint.
    const PREFILL = ['prefill', '--format', 'llama2', '--max-new-tokens', '4', '--seeds', '0', '--batch-size', '8', '--data', tripletsFile, '--ks', '0,2', '--decodings', 'greedy', '--quiet'];
    const [viaAdapter, viaMerged] = [out('prefill-adapter'), out('prefill-merged')];
    await ok([...PREFILL, '--model', modelDir, '--adapter', path.join(dir, 'model'), '--out', viaAdapter]);
    await ok([...PREFILL, '--model', path.join(dir, 'merged'), '--out', viaMerged]);
    const responses = (d: string) => fs.readFileSync(path.join(d, 'journal.jsonl'), 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l).value.responses);
    expect(responses(viaAdapter)).toEqual(responses(viaMerged));
    expect(responses(viaAdapter).flat().length).toBeGreaterThan(0);
    const bad = await deepalign([...PREFILL, '--model', modelDir, '--adapter', modelDir, '--out', out('prefill-bad-adapter')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--adapter: .* has no adapter_config\.json/);
  });
});

describe('deepalign augment and the defences built on it', () => {
  it('augment: lib\'s augmentation from the triplets and the distilled anchor, prefilling before and after; --stop-after and a re-run end with the same parameters', async () => {
    const args = ['augment', ...COMMON, ...AUGMENT, '--steps', '3', '--ks', '0,2'];
    const full = out('augment');
    const parts = out('augment-resumed');
    await ok([...args, '--out', full]);
    // anchor, before k=0, before k=2, training step 1: stopped with step 1's checkpoint written
    const stopped = await ok([...args, '--out', parts, '--stop-after', '4']);
    expect(stopped.stderr).toMatch(/stopped after 4 new units/);
    expect(fs.existsSync(path.join(parts, 'results.json'))).toBe(false);
    const resumed = await ok([...args, '--out', parts]);
    expect(summaryOf(resumed)).toMatchObject({ reused: 3, computed: 4 });

    const a = readResults(full).metrics;
    const b = readResults(parts).metrics;
    expect(a.training).toMatchObject({ steps: 3, completed: true, resumedFrom: null });
    expect(b.training).toMatchObject({ steps: 3, completed: true, resumedFrom: 1 });
    expect(b.training.log).toEqual(a.training.log);
    const [wa, wb] = [savedWeights(path.join(full, 'model')), savedWeights(path.join(parts, 'model'))];
    expect(maxDiff(wa, wb)).toBe(0);
    expect(a.evaluation.ks).toEqual([0, 2]);
    expect(a.evaluation.before.prefill.map((r: { k: number }) => r.k)).toEqual([0, 2]);

    // The anchor is the model's own greedy answers; the trained model is lib's augmentModel on the same data.
    const answers = unit<string[]>(full, 'anchor');
    expect(answers.map((x, i) => trainingExample(target, BENIGN[i].instruction, x).ids)).toEqual(anchor.map((e) => e.ids));
    const ref = await augmentModel(target, triplets, anchor, augmentSettings(3));
    try {
      expect(maxDiff(ref.model.variables(), wa)).toBeLessThan(1e-6);
      // Prefilling k = 2 after training: the first two tokens of each harmful answer, then the same continuation as here.
      const here = await evaluateHarmful(withModel(target, ref.model), triplets, keywordJudge(), { decoding: { ...QI_DECODING, seed: 0 }, prefill: harmfulPrefill(target, 2), batchSize: 8, progress: false });
      const stored = unit<{ responses: { prefill: string; response: string }[] }>(full, 'phase=after k=2 decoding=qi seed=0');
      expect(stored.responses.map((r) => [r.prefill, r.response])).toEqual(here.responses.map((r) => [r.prefill, r.response]));
      expect(stored.responses[0].prefill).toBe(target.decode(target.responseIds(triplets[0].harmfulResponse!).slice(0, 2)));
    } finally {
      ref.model.dispose();
    }
  });

  it('presto, worst-insertion and derta train exactly as lib\'s defences do and save their models', async () => {
    const args = (name: string, extra: string[]) => [name, ...COMMON, ...AUGMENT, '--steps', '2', '--ks', '0', ...extra, '--out', out(name)];
    await Promise.all([
      ok(args('presto', [])),
      ok(args('worst-insertion', ['--candidates', '2', '--max-span', '4', '--continuation', '2'])),
      ok(args('derta', [])),
    ]);
    const settings = augmentSettings(2);
    const refs: [string, () => ReturnType<typeof augmentModel>][] = [
      ['presto', () => augmentModel(target, triplets, anchor, settings, { presto: { weight: 1 } })],
      ['worst-insertion', () => worstInsertionModel(target, triplets, anchor, settings, { candidates: 2, maxSpan: 4, continuation: 2 })],
      ['derta', () => dertaModel(target, triplets, anchor, settings)],
    ];
    for (const [name, train] of refs) {
      const { metrics } = readResults(out(name));
      expect(metrics.training, name).toMatchObject({ steps: 2, completed: true });
      expect(metrics.evaluation.after.prefill[0].k).toBe(0);
      const ref = await train();
      try {
        expect(maxDiff(ref.model.variables(), savedWeights(path.join(out(name), 'model'))), name).toBeLessThan(1e-6);
        expect(metrics.training.log.map((l: { loss: number }) => l.loss), name).toEqual(ref.result.log.map((l) => l.loss));
      } finally {
        ref.model.dispose();
      }
    }
    expect(readResults(out('presto')).metrics.defence.options.presto).toEqual({ weight: 1, scale: 'tokens' });
    expect(readResults(out('presto')).metrics.training.log[0].metrics.presto).toBeGreaterThan(0);
    expect(readResults(out('worst-insertion')).metrics.defence.options).toEqual({ candidates: 2, maxSpan: 4, continuation: 2, plainProbability: 0.5 });
  });

  it('refuses bad input before training, naming the flag', async () => {
    const [noAnchor, betas, noRefusal] = await Promise.all([
      deepalign(['augment', ...COMMON, '--data', tripletsFile, '--out', out('bad-1')]),
      deepalign(['constrained-sft', ...COMMON, '--data', chatFile, '--beta', '1', '--beta-first', '2', '--out', out('bad-2')]),
      deepalign(['augment', ...COMMON, '--data', chatFile, '--benign', benignFile, '--out', out('bad-3')]),
    ]);
    expect(noAnchor.code).toBe(2);
    expect(noAnchor.stderr).toMatch(/--benign is required/);
    expect(betas.code).toBe(2);
    expect(betas.stderr).toMatch(/--beta.*cannot be combined with --beta-first/);
    expect(noRefusal.code).toBe(2);
    expect(noRefusal.stderr).toMatch(/no harmful requests to build safety triplets/);
  });
});

describe('deepalign export', () => {
  it('writes each kind of training set for PyTorch trainers, tokenised by the target', async () => {
    const file = (kind: string) => path.join(out('export'), `${kind}.jsonl`);
    await Promise.all([
      ok(['export', '--model', modelDir, '--format', 'llama2', '--quiet', '--kind', 'augmentation', '--data', tripletsFile, '--out', out('export'), '--file', file('augmentation')]),
      ok(['export', '--model', modelDir, '--format', 'llama2', '--quiet', '--kind', 'presto', '--data', tripletsFile, '--pool-per-triplet', '2', '--out', out('export-presto'), '--file', file('presto')]),
      ok(['export', '--model', modelDir, '--format', 'llama2', '--quiet', '--kind', 'constrained-sft', '--data', chatFile, '--out', out('export-csft'), '--file', file('constrained-sft')]),
      ok(['export', '--model', modelDir, '--format', 'llama2', '--quiet', '--kind', 'finetune', '--data', chatFile, '--out', out('export-ft'), '--file', file('finetune')]),
    ]);
    const read = (kind: string) => fs.readFileSync(file(kind), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const eos = target.eosTokenIds[0];

    const aug = read('augmentation');
    expect(aug.map((r) => [r.instruction, r.harmful, r.refusal])).toEqual(HF_BEHAVIOURS.map((b) => [b.request, b.harmfulResponse, b.refusal]));
    expect(aug[1].prompt_ids).toEqual(target.promptIds(HF_BEHAVIOURS[1].request));
    expect(aug[1].refusal_ids).toEqual([...target.responseIds(HF_BEHAVIOURS[1].refusal!), eos]);
    expect(readResults(out('export')).metrics).toMatchObject({ kind: 'augmentation', records: 3, file: file('augmentation') });

    const presto = read('presto');
    expect(presto.length).toBe(6); // 3 triplets x 2 draws
    for (const r of presto) {
      const b = HF_BEHAVIOURS.find((x) => x.request === r.instruction)!;
      const { start, length } = r.prefill;
      expect(r.input_ids.slice(0, start)).toEqual(target.promptIds(b.request));
      expect(r.input_ids.slice(start, start + length)).toEqual(target.responseIds(b.harmfulResponse!).slice(0, length));
      expect(r.loss_mask.slice(0, start + length).every((m: number) => m === 0)).toBe(true);
      expect(r.input_ids.slice(start + length)).toEqual([...target.responseIds(b.refusal!), eos]);
      expect(r.labels.slice(start + length)).toEqual(r.input_ids.slice(start + length));
    }

    // Reference log-probs: log-softmax of the untrained model's logits, computed here token by token.
    const csft = read('constrained-sft');
    expect(csft.length).toBe(3);
    const r = csft[2];
    expect(r.input_ids).toEqual(trainingExample(target, HF_BEHAVIOURS[2].request, HF_BEHAVIOURS[2].harmfulResponse!).ids);
    const logits = tf.tidy(() => target.model.forward(tf.tensor2d([r.input_ids], [1, r.input_ids.length], 'int32')).logits.squeeze([0]).arraySync() as number[][]);
    for (let t = 1; t < r.input_ids.length; t++) {
      if (!r.loss_mask[t]) continue;
      const row = logits[t - 1];
      const max = Math.max(...row);
      const logp = row[r.input_ids[t]] - max - Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
      expect(r.ref_logprobs[t]).toBeCloseTo(logp, 4);
      expect(r.reference_logps_full[t - 1]).toBeCloseTo(logp, 4);
    }

    expect(read('finetune')).toEqual(HF_BEHAVIOURS.map((b) => ({ messages: [{ role: 'user', content: b.request }, { role: 'assistant', content: b.harmfulResponse }] })));
  });
});
