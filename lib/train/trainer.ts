// The training loop. Stages per step, in order: lr from the schedule -> batch -> forward/backward
// (objective inside the gradient tape) -> global-norm clip -> AdamW step -> log -> eval callback ->
// checkpoint. Checkpoints hold parameters, optimizer moments, step, sampler state and the log, are
// written atomically (temp folder + rename), and a run pointed at a folder that holds one resumes
// from it, giving bit-identical parameters to an uninterrupted run on the same backend.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../engine/tf.js';
import { loadSafetensors, writeSafetensors } from '../io/index.js';
import type { Batch, CausalLM, Objective } from '../objectives/index.js';
import { collate, disposeBatch, MixedBatchSampler, SamplerState, TrainExample } from './data.js';
import { AdamW, AdamWOptions, clipByGlobalNorm } from './optimizer.js';
import { learningRateAt, LrSchedule, validateSchedule } from './schedule.js';

export interface StepLog {
  /** 1-based: the number of optimizer steps taken after this one. */
  step: number;
  lr: number;
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Non-padding tokens in the batch. */
  tokens: number;
  /** Non-padding tokens per second of this step (forward, backward and update). */
  tokensPerSecond: number;
  metrics: Record<string, number>;
}

export interface EvalLog {
  step: number;
  metrics: Record<string, number>;
}

export interface TrainOptions {
  model: CausalLM;
  /** Trainable parameters by (Hugging Face) name. */
  params: Map<string, tf.Variable>;
  objective: Objective;
  sampler: MixedBatchSampler;
  padId: number;
  /** totalSteps is the run's length. */
  schedule: LrSchedule;
  optimizer?: AdamWOptions;
  /** Global gradient-norm clip; default 1.0; null disables. */
  clipNorm?: number | null;
  /** Checkpoint folder and cadence (in steps). A folder holding a checkpoint is resumed from,
   *  only if it was written by the same run: objective, schedule, optimizer, clipping, parameter
   *  names and `run` (the caller's description of its data and settings, any JSON) must match. */
  checkpoint?: { dir: string; every: number; run?: unknown };
  /** Return after this many total steps, as if interrupted (for resume tests and time budgets). */
  stopAfter?: number;
  evalEvery?: number;
  onEval?: (step: number) => Promise<Record<string, number>> | Record<string, number>;
  /** Called after each step (progress bars). */
  onStep?: (log: StepLog, totalSteps: number) => void;
  /** Build objective-specific batch extras from the examples (e.g. prefill spans). */
  batchExtras?: (examples: TrainExample[]) => Record<string, unknown>;
}

export interface TrainResult {
  /** Steps completed in total (including steps before a resume). */
  steps: number;
  completed: boolean;
  resumedFrom: number | null;
  log: StepLog[];
  evals: EvalLog[];
  /** This run only (excluding resumed-over steps). */
  wallSeconds: number;
  /** Non-padding tokens per second over this run's steps. */
  tokensPerSecond: number;
  tokens: number;
}

interface CheckpointState {
  version: 1;
  objective: string;
  step: number;
  optimizerStep: number;
  sampler: SamplerState;
  schedule: LrSchedule;
  log: StepLog[];
  evals: EvalLog[];
  /** What makes two runs the same run (compared field by field on resume). */
  identity?: RunIdentity;
}

interface RunIdentity {
  objective: string;
  schedule: LrSchedule;
  optimizer: AdamWOptions;
  clipNorm: number | null;
  parameters: string[];
  run: unknown;
}

/** The first path at which two JSON values differ, or null. */
function firstDifference(a: unknown, b: unknown, at = ''): string | null {
  if (a === b) return null;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return at || '(root)';
  const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
  for (const k of keys) {
    const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k);
    if (d) return d;
  }
  return null;
}

const CKPT = 'trainer';

function checkpointPaths(dir: string) {
  return { live: path.join(dir, CKPT), tmp: path.join(dir, `${CKPT}.tmp`), old: path.join(dir, `${CKPT}.old`) };
}

/** The folder of the latest complete checkpoint under dir, or null. */
export function findCheckpoint(dir: string): string | null {
  const { live, old } = checkpointPaths(dir);
  for (const candidate of [live, old]) if (fs.existsSync(path.join(candidate, 'state.json'))) return candidate;
  return null;
}

function writeCheckpoint(dir: string, params: Map<string, tf.Variable>, optimizer: AdamW, state: CheckpointState): void {
  const { live, tmp, old } = checkpointPaths(dir);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const asWrite = (name: string, t: tf.Tensor) => ({ name, shape: t.shape, data: () => t.dataSync() as Float32Array });
  writeSafetensors(path.join(tmp, 'params.safetensors'), [...params].map(([n, v]) => asWrite(n, v)));
  writeSafetensors(path.join(tmp, 'optimizer.safetensors'), optimizer.stateTensors().map(({ name, tensor }) => asWrite(name, tensor)));
  // state.json last: its presence marks the folder complete.
  fs.writeFileSync(path.join(tmp, 'state.json'), JSON.stringify(state));
  // Swap: live -> old, tmp -> live, drop old. A crash between renames leaves `old` complete.
  fs.rmSync(old, { recursive: true, force: true });
  if (fs.existsSync(live)) fs.renameSync(live, old);
  fs.renameSync(tmp, live);
  fs.rmSync(old, { recursive: true, force: true });
}

function readCheckpoint(folder: string, params: Map<string, tf.Variable>, optimizer: AdamW): CheckpointState {
  const state = JSON.parse(fs.readFileSync(path.join(folder, 'state.json'), 'utf8')) as CheckpointState;
  const saved = loadSafetensors(path.join(folder, 'params.safetensors'));
  for (const [name, v] of params) {
    const t = saved.get(name);
    if (!t) throw new Error(`train: checkpoint ${folder} has no parameter "${name}"`);
    if (t.shape.join(',') !== v.shape.join(',')) throw new Error(`train: checkpoint ${folder} parameter "${name}" has shape [${t.shape}], the model has [${v.shape}]`);
    tf.tidy(() => v.assign(tf.tensor(t.data, t.shape, 'float32')));
  }
  optimizer.loadState(state.optimizerStep, loadSafetensors(path.join(folder, 'optimizer.safetensors')));
  return state;
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  const { model, params, objective, sampler, schedule } = options;
  validateSchedule(schedule, 'train');
  const clipNorm = options.clipNorm === undefined ? 1.0 : options.clipNorm;
  if (options.checkpoint && (!Number.isInteger(options.checkpoint.every) || options.checkpoint.every < 1)) {
    throw new Error(`train: \`checkpoint.every\` must be a positive integer, but is ${options.checkpoint.every}`);
  }
  const optimizer = new AdamW(params, options.optimizer);
  const varList = [...params.values()];
  const names = [...params.keys()];
  let step = 0;
  let resumedFrom: number | null = null;
  let log: StepLog[] = [];
  let evals: EvalLog[] = [];
  const found = options.checkpoint ? findCheckpoint(options.checkpoint.dir) : null;
  // JSON round trip: undefined fields vanish exactly as they do in the saved state.json
  const identity = JSON.parse(JSON.stringify({
    objective: objective.name, schedule, optimizer: options.optimizer ?? {}, clipNorm, parameters: names, run: options.checkpoint?.run ?? null,
  })) as RunIdentity;
  if (found) {
    const saved = JSON.parse(fs.readFileSync(path.join(found, 'state.json'), 'utf8')) as CheckpointState;
    const differs = firstDifference(saved.identity ?? null, identity);
    if (differs) {
      const show = (x: unknown) => JSON.stringify(differs.split('.').reduce((o: any, k) => (o == null ? o : o[k]), x)) ?? 'undefined';
      throw new Error(`train: checkpoint ${found} belongs to another run: \`${differs}\` was ${show(saved.identity)}, this run has ${show(identity)}; `
        + 'delete the folder to start over, or restore the settings to resume');
    }
    const state = readCheckpoint(found, params, optimizer);
    sampler.setState(state.sampler);
    step = state.step;
    resumedFrom = step;
    log = state.log;
    evals = state.evals;
  }
  const stopAt = Math.min(schedule.totalSteps, options.stopAfter ?? Infinity);
  const started = performance.now();
  let runTokens = 0;
  try {
    while (step < stopAt) {
      const lr = learningRateAt(step, schedule);
      const { examples, sources } = sampler.next();
      const batch: Batch = collate(examples, sources, options.padId, options.batchExtras ? options.batchExtras(examples) : {});
      const t0 = performance.now();
      let metricTensors: Record<string, tf.Scalar> = {};
      const { value, grads } = tf.variableGrads(() => {
        const out = objective.compute(model, batch);
        metricTensors = {};
        for (const [k, v] of Object.entries(out.metrics ?? {})) metricTensors[k] = tf.keep(v);
        return out.loss;
      }, varList);
      for (let i = 0; i < names.length; i++) {
        if (!grads[varList[i].name]) throw new Error(`train: parameter "${names[i]}" received no gradient from objective "${objective.name}"`);
      }
      const byName: Record<string, tf.Tensor> = {};
      names.forEach((n, i) => (byName[n] = grads[varList[i].name]));
      const clipped = clipByGlobalNorm(byName, clipNorm ?? Infinity);
      optimizer.applyGradients(clipNorm === null ? byName : clipped.grads, lr);
      const loss = (await value.data())[0];
      const gradNorm = (await clipped.norm.data())[0];
      const metrics: Record<string, number> = {};
      for (const [k, v] of Object.entries(metricTensors)) metrics[k] = (await v.data())[0];
      tf.dispose([value, clipped.norm, ...Object.values(clipped.grads), ...Object.values(grads), ...Object.values(metricTensors)]);
      const tokens = examples.reduce((a, e) => a + e.ids.length, 0);
      disposeBatch(batch);
      if (!Number.isFinite(loss)) throw new Error(`train: loss is ${loss} at step ${step + 1} (lr ${lr}); lower the learning rate or check the data`);
      step++;
      runTokens += tokens;
      const entry: StepLog = { step, lr, loss, gradNorm, tokens, tokensPerSecond: tokens / ((performance.now() - t0) / 1000), metrics };
      log.push(entry);
      options.onStep?.(entry, schedule.totalSteps);
      if (options.onEval && options.evalEvery && (step % options.evalEvery === 0 || step === schedule.totalSteps)) {
        evals.push({ step, metrics: await options.onEval(step) });
      }
      if (options.checkpoint && (step % options.checkpoint.every === 0 || step === stopAt)) {
        writeCheckpoint(options.checkpoint.dir, params, optimizer, {
          version: 1, objective: objective.name, step, optimizerStep: optimizer.stepCount, sampler: sampler.getState(), schedule, log, evals, identity,
        });
      }
    }
  } finally {
    optimizer.dispose();
  }
  const wallSeconds = (performance.now() - started) / 1000;
  return {
    steps: step, completed: step >= schedule.totalSteps, resumedFrom, log, evals, wallSeconds,
    tokensPerSecond: wallSeconds > 0 ? runTokens / wallSeconds : 0, tokens: runTokens,
  };
}
