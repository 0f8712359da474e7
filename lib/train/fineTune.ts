// Fine-tuning a copy of any model on (request, response) examples with any objective: the engine
// of the fine-tuning attacks (Qi et al. Section 4), of augmentation and of constrained SFT. The
// caller's model is never modified; the copy is returned. With `lora`, the copy gets fresh LoRA
// adapters (lib/model/lora.ts) and only they train; the returned model carries them
// (saveLoraAdapter writes them in PEFT's format, mergeLora folds them in).

import { addLora, copyLoraAdapters, createModel, getLoraConfig, loraParameters, mergeLora, setLoraTraining, type Decoder, type LoraConfig } from '../model/index.js';
import { crossEntropyObjective, type Objective } from '../objectives/index.js';
import { checkSeed } from '../util/rng.js';
import { MixedBatchSampler, type DataSource, type TrainExample } from './data.js';
import { train, type PrepareExamples, type StepLog, type TrainResult } from './trainer.js';
import type { LrSchedule } from './schedule.js';

/** A copy of `model` with its own variables, LoRA adapters included (the original stays untouched while the copy trains). */
export function cloneModel(model: Decoder, seed = 0): Decoder {
  const copy = createModel(model.config, { seed });
  const source = model.variables();
  for (const [name, v] of copy.variables()) v.assign(source.get(name)!);
  if (getLoraConfig(model)) copyLoraAdapters(model, copy);
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
  /**
   * Train LoRA adapters only (PEFT's LoRA): the copy gets fresh adapters with this config and the
   * trainer's parameters are loraParameters(copy); the base weights stay frozen. (A model that
   * already carries adapters has them merged into the copy's weights first, with or without this
   * option.) Dropout, if any, acts in the loss computation only, with masks seeded by (config seed,
   * step), so resume is exact.
   */
  lora?: LoraConfig;
}

/** Fine-tune a copy of `model` on mixed sources (e.g. 16 safety + 64 anchor per step, token-level mean over all targets). */
export async function fineTune(model: Decoder, sources: DataSource[], padId: number, settings: FineTuneSettings, options: FineTuneOptions = {}): Promise<{ model: Decoder; result: TrainResult }> {
  checkSeed(settings.seed, 'fineTune: settings.seed');
  const copy = cloneModel(model);
  const sampler = new MixedBatchSampler(sources, settings.seed);
  try {
    let params = copy.variables();
    let objective = options.objective ?? crossEntropyObjective();
    let prepareExamples = options.prepareExamples;
    let checkpoint = options.checkpoint;
    // A model that carries adapters is trained as its merged equivalent (in full, or with new adapters).
    if (getLoraConfig(copy)) mergeLora(copy);
    if (options.lora !== undefined) {
      addLora(copy, options.lora);
      params = loraParameters(copy);
      const lora = getLoraConfig(copy)!;
      // The adapter config is part of what makes two runs the same run (a checkpoint of rank 8
      // must not resume a rank-16 run, nor alpha 16 one of alpha 32).
      if (checkpoint) checkpoint = { ...checkpoint, run: { run: checkpoint.run ?? null, lora } };
      if (lora.dropout! > 0) ({ objective, prepareExamples } = withLoraDropout(copy, objective, prepareExamples));
    }
    const result = await train({
      model: copy, params, objective, sampler, padId,
      schedule: { peakLr: settings.peakLr, warmupSteps: settings.warmupSteps, totalSteps: settings.steps, decay: settings.decay ?? 'constant', minLrRatio: settings.minLrRatio },
      optimizer: { beta1: settings.beta1, beta2: settings.beta2, weightDecay: settings.weightDecay },
      clipNorm: settings.clipNorm, batchExtras: options.batchExtras, prepareExamples, onStep: options.onStep, checkpoint,
      evalEvery: options.evalEvery, onEval: options.onEval ? (step) => options.onEval!(copy, step) : undefined,
    });
    return { model: copy, result };
  } catch (e) {
    copy.dispose();
    throw e;
  }
}

/**
 * LoRA dropout in the loss computation only: the trainer's prepareExamples hook is the one place
 * that learns the 0-based step (restored on resume), and the objective runs with dropout switched
 * on for that step. Examples built by the caller's prepareExamples (worst insertion scores the
 * model there) see the model without dropout.
 */
function withLoraDropout(model: Decoder, objective: Objective, prepare: PrepareExamples | undefined): { objective: Objective; prepareExamples: PrepareExamples } {
  let step = 0;
  return {
    prepareExamples: (examples, context) => {
      step = context.step;
      return prepare ? prepare(examples, context) : examples;
    },
    objective: {
      name: objective.name,
      compute(m, batch) {
        setLoraTraining(model, step);
        try {
          return objective.compute(m, batch);
        } finally {
          setLoraTraining(model, null);
        }
      },
    },
  };
}
