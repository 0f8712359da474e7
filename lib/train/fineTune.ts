// Fine-tuning a copy of any model on (request, response) examples with any objective: the engine
// of the fine-tuning attacks (Qi et al. Section 4), of augmentation and of constrained SFT. The
// caller's model is never modified; the copy is returned.

import { createModel, type Decoder } from '../model/index.js';
import { crossEntropyObjective, type Objective } from '../objectives/index.js';
import { checkSeed } from '../util/rng.js';
import { MixedBatchSampler, type DataSource, type TrainExample } from './data.js';
import { train, type PrepareExamples, type StepLog, type TrainResult } from './trainer.js';
import type { LrSchedule } from './schedule.js';

/** A copy of `model` with its own variables (the original stays untouched while the copy trains). */
export function cloneModel(model: Decoder, seed = 0): Decoder {
  const copy = createModel(model.config, { seed });
  const source = model.variables();
  for (const [name, v] of copy.variables()) v.assign(source.get(name)!);
  return copy;
}

export interface FineTuneSettings {
  steps: number;
  peakLr: number;
  warmupSteps: number;
  /** After warmup (default 'constant'). */
  decay?: LrSchedule['decay'];
  minLrRatio?: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
  /** Global-norm clip; null = none. */
  clipNorm: number | null;
  seed: number;
}

/**
 * Qi et al.'s fine-tuning attack optimiser: AdamW beta1 0.5, beta2 0.999, 10-step linear warmup,
 * then linear decay to 0 at the last step (the HF Trainer default, lr_scheduler_type 'linear', which
 * the authors' finetune.py leaves in place); the lr is scaled to the model by the caller.
 */
export const QI_FINETUNE: Omit<FineTuneSettings, 'steps' | 'peakLr' | 'seed'> = { warmupSteps: 10, decay: 'linear', minLrRatio: 0, beta1: 0.5, beta2: 0.999, weightDecay: 0, clipNorm: 1 };

export interface FineTuneOptions {
  /** Default: token-level cross-entropy on the examples' loss masks. */
  objective?: Objective;
  batchExtras?: (examples: TrainExample[]) => Record<string, unknown>;
  /** Rebuild each step's examples from the model being trained (TrainOptions.prepareExamples). */
  prepareExamples?: PrepareExamples;
  /** Called after every `evalEvery` steps (and at the end) with the model being trained. */
  evalEvery?: number;
  onEval?: (model: Decoder, step: number) => Promise<Record<string, number>> | Record<string, number>;
  onStep?: (log: StepLog, totalSteps: number) => void;
  /** Resumable runs: checkpoint folder and cadence. */
  checkpoint?: { dir: string; every: number; run?: unknown };
}

/** Fine-tune a copy of `model` on mixed sources (e.g. 16 safety + 64 anchor per step, token-level mean over all targets). */
export async function fineTune(model: Decoder, sources: DataSource[], padId: number, settings: FineTuneSettings, options: FineTuneOptions = {}): Promise<{ model: Decoder; result: TrainResult }> {
  checkSeed(settings.seed, 'fineTune: settings.seed');
  const copy = cloneModel(model);
  const sampler = new MixedBatchSampler(sources, settings.seed);
  try {
    const result = await train({
      model: copy, params: copy.variables(), objective: options.objective ?? crossEntropyObjective(), sampler, padId,
      schedule: { peakLr: settings.peakLr, warmupSteps: settings.warmupSteps, totalSteps: settings.steps, decay: settings.decay ?? 'constant', minLrRatio: settings.minLrRatio },
      optimizer: { beta1: settings.beta1, beta2: settings.beta2, weightDecay: settings.weightDecay },
      clipNorm: settings.clipNorm, batchExtras: options.batchExtras, prepareExamples: options.prepareExamples, onStep: options.onStep, checkpoint: options.checkpoint,
      evalEvery: options.evalEvery, onEval: options.onEval ? (step) => options.onEval!(copy, step) : undefined,
    });
    return { model: copy, result };
  } catch (e) {
    copy.dispose();
    throw e;
  }
}
