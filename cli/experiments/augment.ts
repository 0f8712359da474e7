// `deepalign augment`: Qi et al.'s data-augmentation defence (Section 3, Table 2; notebook 05) on
// any checkpoint. A copy of --model is trained on safety-recovery examples (x, h[:k], r) built from
// --data's (request, harmful answer, refusal) triplets, loss on the refusal only, mixed with a
// utility anchor of --benign requests answered by the model itself (greedy, journaled), 16 safety :
// 64 anchor rows per step. Then the prefilling attack (k harmful tokens forced, --ks) and utility
// are measured before and after, with the judge.
//
// The same run, with another objective or data, is each of the other augmentation-family defences
// (defenceExperiment): `presto` (Vega & Singh's attention term), `worst-insertion` (Lyu et al.'s
// random worst-insertion training) and `derta` (Yuan et al.'s DeRTa), so they compare at matched
// settings, as notebooks 08-10 compare them.

import { distilledAnchor } from '../../lib/train/augment.js';
import { formatRate, trainingExample, withModel, type BenignBehaviour, type HarmfulBehaviour, type Target } from '../../lib/metrics/index.js';
import type { Decoder } from '../../lib/model/index.js';
import { AUGMENTATION_DEFAULTS, augmentModel, type AugmentationSettings, type FineTuneOptions, type TrainExample, type TrainResult } from '../../lib/train/index.js';
import { UsageError, printTable, writeExperimentResults, type Experiment, type FlagSpec } from '../experiment.js';
import { JUDGE_FLAGS, SEED_FLAGS, TARGET_FLAGS, behavioursFromFlags, modelSpec, targetFromFlags, usesOrganismBehaviours } from '../resolve.js';
import {
  EVAL_FLAGS, TRAINING_FLAGS, TrainingUnits, atLeast, checkKs, checkTrainingFlags, evaluationPlan, harmfulRows, loraFromFlags, rowCells, samplesOf, saveMerged, saveTrained, sha256Of,
  trainingDataFlags, trainingHooks, trainingJson, utilityRow, type RateRow, type TrainingHooks, type UtilityRow,
} from './finetune.js';

/** What a defence of the augmentation family adds to the shared run. */
export interface DefenceVariant {
  name: string;
  summary: string;
  /** The defence's own flags. */
  flags: FlagSpec[];
  /** The defence's options, resolved from the flags (results.json and the checkpoint's identity); null for plain augmentation. */
  options(flags: Record<string, any>): Record<string, unknown> | null;
  /** Trains a copy of the target's model (the caller disposes it), passing `hooks` on to lib. */
  train(args: {
    target: Target; safety: HarmfulBehaviour[]; anchor: TrainExample[]; settings: AugmentationSettings; options: Record<string, unknown> | null; hooks: TrainingHooks;
  }): Promise<{ model: Decoder; result: TrainResult }>;
}

/** One phase's evaluation: the prefilling rows and the utility. */
interface PhaseEvaluation {
  prefill: RateRow[];
  utility: UtilityRow | null;
}

const DATA_FORMATS = EVAL_FLAGS.find((f) => f.name === 'eval-format')!.choices!;
const QI_LR = 2e-5;
const ORGANISM_LR = 1e-4;
const ORGANISM_STEPS = 35;

/** Builds a defence experiment of the augmentation family (see the file comment). */
export function defenceExperiment(variant: DefenceVariant): Experiment {
  return {
    name: variant.name,
    summary: variant.summary,
    flags: [
      ...TARGET_FLAGS,
      ...trainingDataFlags(
        'safety triplets: (request, harmful answer, refusal) rows, e.g. Qi et al.\'s qi-augmentation JSONL {instruction, harmful, refusal}, or any set with harmful answers plus --refusal. Default with the organism: its harmful train tasks',
        'utility anchor: benign requests (e.g. Alpaca) answered by --model itself, greedy, as Qi et al. distil theirs. Default with the organism: its benign train tasks',
        'use the first N triplets (and N anchor requests) only',
      ),
      ...JUDGE_FLAGS,
      ...SEED_FLAGS,
      { name: 'refusal', type: 'string', help: 'a refusal for the triplets that have none (e.g. Harmful HEx-PHI rows)' },
      { name: 'steps', type: 'int', help: `optimizer steps (default: ${ORGANISM_STEPS} for the organism (notebooks 08-10's budget); else --epochs over the triplets, ceil(epochs x triplets / --safety-per-batch))` },
      { name: 'epochs', type: 'number', default: 10, help: 'without --steps: passes over the safety triplets (Qi et al.: 10)' },
      { name: 'lr', type: 'number', help: 'peak learning rate (default: 2e-5, Qi et al.\'s; 1e-4 for the organism, notebook 05)' },
      { name: 'warmup-steps', type: 'int', help: `linear warmup steps, then a constant lr (default: 0, Qi et al.'s; ${AUGMENTATION_DEFAULTS.warmupSteps} for the organism)` },
      { name: 'safety-per-batch', type: 'int', default: AUGMENTATION_DEFAULTS.safetyPerBatch, help: 'safety-recovery rows per step (Qi et al.: 16)' },
      { name: 'anchor-per-batch', type: 'int', default: AUGMENTATION_DEFAULTS.anchorPerBatch, help: 'utility-anchor rows per step (Qi et al.: 64; one token-level mean over both realises their alpha 0.2)' },
      { name: 'pool-per-triplet', type: 'int', default: AUGMENTATION_DEFAULTS.poolPerTriplet, help: 'seeded (coin, k) draws per triplet in the pool the sampler walks (one per epoch in Qi et al.\'s code)' },
      { name: 'max-k', type: 'int', default: AUGMENTATION_DEFAULTS.maxK, help: 'largest harmful prefix k of a safety-recovery example (Qi et al.\'s code: 100)' },
      ...variant.flags,
      { name: 'ks', type: 'int-list', default: [0, 5, 10, 20], help: 'evaluation: prefilled harmful tokens k (Qi et al. Table 2: 5, 10, 20, 40); k = 0 is the plain request' },
      { name: 'eval-benign', type: 'string', help: 'evaluation: benign requests with reference answers for utility (needs a judge that scores utility; default: the organism\'s benign --split tasks)' },
      { name: 'eval-benign-format', type: 'string', choices: DATA_FORMATS, help: 'format of --eval-benign (default: inferred from the file)' },
      ...TRAINING_FLAGS,
      ...EVAL_FLAGS,
    ],
    async run(ctx) {
      const { flags } = ctx;
      checkTrainingFlags(flags);
      const options = variant.options(flags);
      for (const name of ['steps', 'safety-per-batch', 'anchor-per-batch', 'pool-per-triplet', 'max-k']) atLeast(flags, name, 1);
      atLeast(flags, 'warmup-steps', 0);
      if (!(flags.epochs > 0)) throw new UsageError(`--epochs: ${flags.epochs} must be > 0`);
      const target = await targetFromFlags(flags, 'model', ctx.log);
      const organism = modelSpec(flags.model ?? 'organism', flags)!.kind === 'organism';
      const { safety, anchorRequests, source } = trainingSet(flags);
      if (anchorRequests.length === 0) {
        throw new UsageError('--benign is required: benign requests (e.g. Alpaca) whose answers, distilled from --model, anchor its utility during training (Qi et al.\'s utility anchor)');
      }
      const plan = flags.eval ? await evaluationPlan(ctx, 'eval-benign') : null;
      const ks: number[] = flags.ks;
      if (plan) checkKs(target, plan, ks);

      const steps: number = flags.steps ?? (organism ? ORGANISM_STEPS : Math.ceil((flags.epochs * safety.length) / flags['safety-per-batch']));
      const warmupSteps: number = flags['warmup-steps'] ?? (organism ? Math.min(AUGMENTATION_DEFAULTS.warmupSteps, steps) : 0);
      if (warmupSteps > steps) throw new UsageError(`--warmup-steps: ${warmupSteps} must be at most the ${steps} training steps`);
      const settings: AugmentationSettings = {
        ...AUGMENTATION_DEFAULTS, steps, warmupSteps, peakLr: flags.lr ?? (organism ? ORGANISM_LR : QI_LR), seed: flags.seed,
        safetyPerBatch: flags['safety-per-batch'], anchorPerBatch: flags['anchor-per-batch'], poolPerTriplet: flags['pool-per-triplet'], maxK: flags['max-k'],
      };
      const units = new TrainingUnits(ctx.journal);
      // The anchor's answers are the model's own (greedy): one journal unit, so a resumed run never regenerates them.
      const answers = await units.once('anchor', async () => (await distilledAnchor(target, anchorRequests, { batchSize: flags['batch-size'] })).answers);
      const anchor = anchorRequests.map((b, i) => {
        const e = trainingExample(target, b.request, answers[i]);
        return { ids: e.ids, lossMask: e.lossMask };
      });
      const data = {
        source, triplets: safety.length, anchor: anchor.length,
        sha256: sha256Of({ safety: safety.map((b) => [b.request, b.harmfulResponse, b.refusal]), anchor: anchor.map((e) => e.ids) }),
      };
      const identity = { experiment: variant.name, model: flags.model, settings, defence: options, data };
      ctx.log(`${variant.name}: ${target.name} on ${safety.length} triplets of ${source} + ${anchor.length} anchor answers; ${steps} steps of ${settings.safetyPerBatch} + ${settings.anchorPerBatch} at lr ${settings.peakLr}${flags['lora-r'] !== undefined ? `, LoRA r=${flags['lora-r']}` : ''}`);

      const before: PhaseEvaluation | null = plan ? { prefill: await harmfulRows(units, plan, target, 'before', ks), utility: await utilityRow(units, plan, target, 'before') } : null;
      const hooks = trainingHooks(ctx, variant.name, units, steps, identity);
      const { model, result } = await variant.train({ target, safety, anchor, settings, options, hooks });
      try {
        hooks.finish();
        const record = { experiment: variant.name, settings: identity, training: { steps: result.steps, completed: result.completed, wallSeconds: result.wallSeconds } };
        let saved = await saveTrained(ctx, model, record);
        const trained = withModel(target, model, `${target.name}+${variant.name}`);
        const after: PhaseEvaluation | null = plan ? { prefill: await harmfulRows(units, plan, trained, 'after', ks), utility: await utilityRow(units, plan, trained, 'after') } : null;
        saved = await saveMerged(ctx, model, saved, record);

        if (plan && before && after) {
          const rows = (phase: string, e: PhaseEvaluation) => e.prefill.map((r) => ({ model: phase, k: r.k, ...rowCells(r), utility: e.utility ? formatRate(e.utility.correct) : '' }));
          printTable([...rows('before', before), ...rows('after', after)], `${variant.name}: prefilling ASR and utility before and after (judge: ${plan.judge.name}; ${plan.source})`);
        }
        const metrics = {
          model: target.name, defence: { name: variant.name, options }, data, lora: loraFromFlags(flags, flags.seed) ?? null,
          training: { settings, ...trainingJson(result) }, saved,
          evaluation: plan ? {
            source: plan.source, requests: plan.harmful.length, judge: plan.judge.name, decoding: plan.decodingName, seeds: plan.seeds, ks, before, after,
            samples: samplesOf(units, plan, 'after', Math.max(...ks), flags.samples),
          } : null,
        };
        writeExperimentResults(ctx, { experiment: variant.name, seed: flags.seed, metrics });
        return metrics;
      } finally {
        model.dispose();
      }
    },
  };
}

/**
 * The safety triplets (every behaviour with a harmful answer and a refusal, --refusal filling in
 * missing refusals) and the anchor requests: --data / --benign, or the organism's train tasks.
 */
export function trainingSet(flags: Record<string, any>): { safety: HarmfulBehaviour[]; anchorRequests: BenignBehaviour[]; source: string } {
  const organism = usesOrganismBehaviours(flags);
  // The organism trains on its train tasks and is evaluated on --split (heldout), as the notebooks.
  const set = behavioursFromFlags(organism ? { ...flags, split: 'train' } : flags);
  const source = organism ? 'organism train tasks' : flags.data;
  const refusal: string | undefined = flags.refusal;
  if (refusal !== undefined && refusal.trim() === '') throw new UsageError('--refusal is empty (expected the refusal text to train on)');
  const safety = set.harmful.map((b) => (b.refusal === undefined && refusal !== undefined ? { ...b, refusal } : b));
  if (safety.length === 0) throw new UsageError(`${source} has no harmful requests to build safety triplets from (expected (request, harmful answer, refusal) rows, e.g. qi-augmentation)`);
  const noAnswer = safety.filter((b) => typeof b.harmfulResponse !== 'string' || b.harmfulResponse.trim() === '');
  if (noAnswer.length) throw new UsageError(`${source}: ${noAnswer.length} of ${safety.length} behaviours have no harmful answer (e.g. "${noAnswer[0].id}"); augmentation trains on (request, harmful answer, refusal) triplets (qi-augmentation, or Harmful HEx-PHI with --refusal)`);
  const noRefusal = safety.filter((b) => typeof b.refusal !== 'string' || b.refusal.trim() === '');
  if (noRefusal.length) throw new UsageError(`${source}: ${noRefusal.length} of ${safety.length} behaviours have no refusal (e.g. "${noRefusal[0].id}"); pass --refusal TEXT to train them on one, or use qi-augmentation triplets`);
  return { safety, anchorRequests: set.benign, source };
}

/** The FineTuneOptions of a defence run: the hooks' checkpoint, LoRA and progress, and its stop check at each step's start. */
export function hookOptions(hooks: TrainingHooks): Pick<FineTuneOptions, 'checkpoint' | 'lora' | 'onStep' | 'prepareExamples'> {
  return { ...hooks.options, prepareExamples: hooks.prepareExamples };
}

export const augment: Experiment = defenceExperiment({
  name: 'augment',
  summary: 'Qi et al. Table 2: safety-recovery data augmentation (x, h[:k], r) with a distilled utility anchor; prefilling ASR and utility before and after',
  flags: [],
  options: () => null,
  train: ({ target, safety, anchor, settings, hooks }) => augmentModel(target, safety, anchor, settings, hookOptions(hooks)),
});
