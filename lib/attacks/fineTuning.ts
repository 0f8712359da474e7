// Fine-tuning attacks (Qi et al. Section 4): fine-tune a copy of the target on attack data (harmful
// answers, identity shifting, a backdoor trigger, or benign data) and measure harmfulness along the
// way. The objective is pluggable, so the same run measures standard SFT and constrained SFT.

import type { Decoder, LoraConfig } from '../model/index.js';
import { trainingExample, withModel, type Decoding, type HarmfulBehaviour, type Judge, type Target } from '../metrics/index.js';
import { evaluateHarmful } from '../metrics/evaluate.js';
import { checkBehaviours } from '../metrics/behaviours.js';
import type { Objective } from '../objectives/index.js';
import { fineTune, type FineTuneSettings } from '../train/fineTune.js';
import type { TrainExample } from '../train/data.js';
import type { StepLog, TrainResult } from '../train/trainer.js';
import type { ProgressOptions } from '../report/index.js';
import { evaluateOverSeeds, type SeededRate } from './prefill.js';

/** Training examples (loss on the response and its end token) for (request, response) pairs. */
export function examplesFor(target: Target, pairs: readonly { request: string; response: string }[]): TrainExample[] {
  if (pairs.length === 0) throw new Error('examplesFor: no (request, response) pairs (the attack data set is empty)');
  return pairs.map((p) => {
    const e = trainingExample(target, p.request, p.response);
    return { ids: e.ids, lossMask: e.lossMask };
  });
}

export interface FineTuningAttackOptions {
  settings: FineTuneSettings;
  /** Examples per step. */
  batchSize: number;
  /** Steps after which harmfulness is measured; 0 = the model before fine-tuning. */
  evalAt: number[];
  decoding: Decoding;
  seeds: number[];
  objective?: Objective;
  batchExtras?: (examples: TrainExample[]) => Record<string, unknown>;
  /** Requests as the attacker sends them at evaluation (identity preamble, backdoor trigger); default: as written. */
  evalRequest?: (b: HarmfulBehaviour) => string;
  onStep?: (log: StepLog, totalSteps: number) => void;
  label?: string;
  evalBatchSize?: number;
  /** Progress bars of the evaluations: options merged with the default label, or false for none (default: one bar per evaluation). */
  progress?: ProgressOptions | false;
  /** Train LoRA adapters only (FineTuneOptions.lora): the attack of a LoRA fine-tuning API. */
  lora?: LoraConfig;
  /**
   * Resumable training (FineTuneOptions.checkpoint). A resumed run does not repeat the evaluations of steps taken
   * before the interruption, so the returned curve then starts after them: keep each evaluation as it arrives
   * (onEvaluation) if the whole curve is needed across an interruption, as the CLI does.
   */
  checkpoint?: { dir: string; every: number; run?: unknown };
  /** Called with each evaluation as it is made (step 0 first, then in step order). */
  onEvaluation?: (row: { step: number } & SeededRate) => void;
}

export interface FineTuningAttackResult {
  curve: ({ step: number } & SeededRate)[];
  /** The fine-tuned copy (the caller disposes it). */
  model: Decoder;
  result: TrainResult;
}

/** Fine-tune a copy of the target's model on `examples`, measuring harmfulness on `behaviours` at `evalAt` steps. */
export async function fineTuningAttack(
  target: Target, examples: TrainExample[], behaviours: readonly HarmfulBehaviour[], judge: Judge, options: FineTuningAttackOptions,
): Promise<FineTuningAttackResult> {
  checkBehaviours(behaviours, 'fineTuningAttack');
  const evalAt = [...new Set(options.evalAt)].sort((a, b) => a - b);
  for (const s of evalAt) {
    if (!Number.isInteger(s) || s < 0 || s > options.settings.steps) throw new Error(`fineTuningAttack: evalAt steps must be integers in [0, settings.steps=${options.settings.steps}], but one is ${s}`);
  }
  const asked = options.evalRequest ? behaviours.map((b) => ({ ...b, request: options.evalRequest!(b) })) : behaviours;
  const measure = async (model: Decoder, step: number) => {
    const t = withModel(target, model, `${target.name}+ft${step}`);
    const s = await evaluateOverSeeds(
      (d) => evaluateHarmful(t, asked, judge, { decoding: d, batchSize: options.evalBatchSize, progress: options.progress === false ? false : { label: `${options.label ?? 'fine-tuning'} step ${step} seed ${d.seed}`, ...(options.progress ?? {}) } }),
      options.decoding, options.seeds, 'fineTuningAttack',
    );
    return { step, perSeed: s.perSeed, mean: s.mean, std: s.std, pooled: s.pooled, meanStrongReject: s.meanStrongReject };
  };
  const curve: FineTuningAttackResult['curve'] = [];
  const record = (row: { step: number } & SeededRate) => {
    curve.push(row);
    options.onEvaluation?.(row);
    return row;
  };
  if (evalAt.includes(0)) record(await measure(target.model, 0));
  const { model, result } = await fineTune(target.model, [{ name: 'attack', examples, perBatch: options.batchSize }], target.padTokenId, options.settings, {
    objective: options.objective, batchExtras: options.batchExtras, onStep: options.onStep, evalEvery: 1, lora: options.lora, checkpoint: options.checkpoint,
    onEval: async (m, step): Promise<Record<string, number>> => {
      if (!evalAt.includes(step)) return {};
      const row = record(await measure(m, step));
      return { harmful: row.mean };
    },
  });
  return { curve, model, result };
}
