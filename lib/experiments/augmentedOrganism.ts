// The organism's Qi-augmented models as notebook 05 trains and caches them, for every notebook that
// needs them (05 writes the cache; 07 and later read it, and train exactly the same models when a
// folder is missing).
//
// A model is the aligned organism (`<organismDir>/aligned`) after `steps` steps of augmentModel with
// `recipe` and a training seed, on
//   safety: the harmful TRAIN behaviours organismBehaviours(world, { split: 'train', ...safety }),
//   anchor: the benign TRAIN requests organismBehaviours(world, { split: 'train', ...anchor }),
//           answered greedily by the aligned model (distilledAnchor; only computed when a model has
//           to be trained: the key names the requests, not the answers).
// It is cached in `<cacheDir>/lr<peakLr>_steps<steps>_seed<seed>` under the key notebook 05 builds:
//   { defence, settings: { ...recipe, steps, seed }, safety: { split, ...safety, triplets },
//     anchor: { split, ...anchor, requests, answers }, dataSha256, aligned: { weightsSha256, world, training } }
// where dataSha256 hashes the (request, harmful answer, refusal) triplets and the anchor requests,
// and `aligned` is the checkpoint's identity (sha256 of its weights and its world.json record), so
// retraining the organism invalidates the cache. `limitTasks` is kept as given (null = every task):
// the key compares as JSON, where null and a missing field differ.
//
// Training, as notebook 05's section 2: per training seed, one run up to the largest missing budget
// saves a snapshot at every missing budget on the way (with a constant lr after warmup and a seeded
// sampler the snapshot after s steps is the model of an s-step run); then every model is loaded
// through cachedModel, which trains a still-missing one as its own s-step run.
//
// Defences on top of augmentation (notebook 08): with `defence: { presto }` and/or
// `defence: { pushForward }` the same recipe, data, seeds and budgets train augmentModel with that
// term (Vega & Singh's PRESTO, our push-forward alignment). Such a model's key is the plain key with
// `defence` naming the defence and one more field, `defenceSettings` (the resolved PRESTO /
// push-forward options, defaults filled in), and its folder is
// `<cacheDir>/<tag>_lr<peakLr>_steps<steps>_seed<seed>` with tag e.g. `presto-w1` or `push-kl-w1`
// (defenceTag). Without `defence` (or with an empty one) keys and folders are notebook 05's, unchanged.
//
// Defences instead of augmentation (notebooks 09-10): `defence: { worstInsertion }` trains
// worstInsertionModel (random worst-insertion training) and `defence: { derta }` dertaModel (DeRTa),
// each with the same recipe (AugmentationSettings: steps, lr, safety/anchor rows per step, pool),
// data, seeds and budgets. Their keys are built the same way: `defence` names the defence and
// `defenceSettings` is { presto: null, pushForward: null, worstInsertion | derta: the resolved
// options }; their folders are tagged `worst-insertion-c<M>-n<nMax>-m<m>-p<plainProbability>` and
// `derta-r<rtoShare>-k<keepFraction>[-t<refusalToken>]`. Either one stands alone: it cannot be
// combined with the other or with PRESTO / push-forward. The keys of plain augmentation, PRESTO and
// push-forward are unchanged (their defenceSettings gain no field). Their records' step logs also
// hold `rto` (DeRTa's RTO mean) or `insertionScore` (the mean score of the step's chosen insertions).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { readJsonFile } from '../io/index.js';
import type { BenignBehaviour, HarmfulBehaviour, Target } from '../metrics/index.js';
import { progress } from '../report/index.js';
import {
  augmentModel, cachedModel, dertaModel, distilledAnchor, hasCachedModel, worstInsertionModel, type AugmentationSettings, type FineTuneOptions, type TrainExample,
  type TrainResult, type WorstInsertionStep,
} from '../train/index.js';
import type { Decoder } from '../model/index.js';
import {
  resolveDertaOptions, resolvePrestoOptions, resolvePushForwardOptions, resolveWorstInsertionOptions, type DertaOptions, type PrestoOptions, type PushForwardOptions,
  type ResolvedDertaOptions, type ResolvedPrestoOptions, type ResolvedPushForwardOptions, type ResolvedWorstInsertionOptions, type WorstInsertionOptions,
} from '../objectives/index.js';
import type { World } from '../organism/index.js';
import { organismBehaviours, organismTarget } from './organism.js';

/** Which train-split behaviours (notebook 05's CONFIG.safety / CONFIG.anchor). */
export interface AugmentedOrganismData {
  perTask: number;
  seed: number;
  /** Only the first n tasks of each kind; null = every task of the split. */
  limitTasks: number | null;
}

export interface AugmentedOrganismOptions {
  /** The organism folder whose `aligned/` checkpoint is augmented (its weights and world.json enter the key). */
  organismDir: string;
  /** Where the models are cached (notebook 05: data/augmentation). */
  cacheDir: string;
  /** Everything of the augmentation settings but steps and seed (notebook 05: { ...AUGMENTATION_DEFAULTS, peakLr: 1e-4 }). */
  recipe: Omit<AugmentationSettings, 'steps' | 'seed'>;
  safety: AugmentedOrganismData;
  anchor: AugmentedOrganismData;
  /** Rows per generate call for the distilled anchor (notebook 05: 64). */
  batchSize?: number;
  /** A defence trained with the augmentation (notebook 08); absent or empty: plain augmentation, notebook 05's models. */
  defence?: OrganismDefence;
}

/**
 * PRESTO and/or push-forward alignment added to the augmentation objective (augmentModel's options
 * of the same names); or, alone, random worst-insertion training (worstInsertionModel's options) or
 * DeRTa (dertaModel's options).
 */
export interface OrganismDefence {
  presto?: PrestoOptions;
  pushForward?: PushForwardOptions;
  worstInsertion?: WorstInsertionOptions;
  derta?: DertaOptions;
}

/**
 * The defence as it enters the key: options resolved (defaults filled in); a PRESTO / push-forward
 * term not used is null; `worstInsertion` / `derta` are present only when used (so the keys of the
 * other defences are as before they existed).
 */
export interface ResolvedOrganismDefence {
  presto: ResolvedPrestoOptions | null;
  pushForward: ResolvedPushForwardOptions | null;
  worstInsertion?: ResolvedWorstInsertionOptions;
  derta?: ResolvedDertaOptions;
}

/** The aligned checkpoint's identity in the key. */
export interface AlignedCheckpointId {
  weightsSha256: string;
  world: unknown;
  training: unknown;
}

/** The cache key of one augmented model (notebook 05's keyFor). */
export interface AugmentedOrganismKey {
  defence: string;
  /** Only with a defence (absent from notebook 05's plain keys). */
  defenceSettings?: ResolvedOrganismDefence;
  settings: AugmentationSettings;
  safety: { split: 'train'; perTask: number; seed: number; limitTasks: number | null; triplets: number };
  anchor: { split: 'train'; perTask: number; seed: number; limitTasks: number | null; requests: number; answers: string };
  dataSha256: string;
  aligned: AlignedCheckpointId;
}

export interface AugmentedOrganismCache {
  /** The safety behaviours (harmful train tasks) and the anchor requests (benign train tasks). */
  safety: HarmfulBehaviour[];
  anchorRequests: BenignBehaviour[];
  aligned: AlignedCheckpointId;
  dataSha256: string;
  alignedDir: string;
  settingsFor(seed: number, steps: number): AugmentationSettings;
  keyFor(seed: number, steps: number): AugmentedOrganismKey;
  dirFor(seed: number, steps: number): string;
  /** The resolved defence (null: plain augmentation), its name in the key and its folder tag ('' for plain augmentation). */
  defence: ResolvedOrganismDefence | null;
  defenceName: string;
  tag: string;
}

export const AUGMENTATION_DEFENCE_NAME = 'Qi et al. data augmentation (augmentModel)';

export const PRESTO_DEFENCE_NAME = 'Vega & Singh PRESTO (augmentModel presto)';
export const PUSH_FORWARD_DEFENCE_NAME = 'push-forward alignment (augmentModel pushForward)';
export const WORST_INSERTION_DEFENCE_NAME = 'random worst-insertion training (worstInsertionModel)';
export const DERTA_DEFENCE_NAME = 'Yuan et al. DeRTa (dertaModel)';

const DEFENCE_KEYS = ['presto', 'pushForward', 'worstInsertion', 'derta'];

/** The defence resolved, or null when none is set (plain augmentation). */
export function resolveOrganismDefence(defence: OrganismDefence | undefined): ResolvedOrganismDefence | null {
  if (defence === undefined) return null;
  if (typeof defence !== 'object' || defence === null) throw new Error(`augmentedOrganismCache: \`defence\` must be { presto?, pushForward?, worstInsertion?, derta? }, but is ${String(defence)}`);
  for (const key of Object.keys(defence)) if (!DEFENCE_KEYS.includes(key)) throw new Error(`augmentedOrganismCache: unknown defence \`${key}\` (known: ${DEFENCE_KEYS.join(', ')})`);
  const used = DEFENCE_KEYS.filter((k) => (defence as Record<string, unknown>)[k] !== undefined);
  if (used.length === 0) return null;
  for (const alone of ['worstInsertion', 'derta']) {
    if (used.includes(alone) && used.length > 1) throw new Error(`augmentedOrganismCache: the \`${alone}\` defence stands alone; it cannot be combined with ${used.filter((k) => k !== alone).map((k) => `\`${k}\``).join(', ')}`);
  }
  return {
    presto: defence.presto === undefined ? null : resolvePrestoOptions(defence.presto),
    pushForward: defence.pushForward === undefined ? null : resolvePushForwardOptions(defence.pushForward),
    ...(defence.worstInsertion !== undefined ? { worstInsertion: resolveWorstInsertionOptions(defence.worstInsertion) } : {}),
    ...(defence.derta !== undefined ? { derta: resolveDertaOptions(defence.derta) } : {}),
  };
}

/**
 * The folder tag of a defence: `presto-w<weight>[-s<scale>]`, `push-<form>-w<weight>[-k<topK>][-tok]`, joined by `+`;
 * `worst-insertion-c<M>-n<nMax>-m<m>-p<plainProbability>`; `derta-r<rtoShare>-k<keepFraction>[-t<refusalToken>]`; '' for none.
 */
export function defenceTag(defence: ResolvedOrganismDefence | null): string {
  if (!defence) return '';
  const parts: string[] = [];
  if (defence.presto) parts.push(`presto-w${defence.presto.weight}${defence.presto.scale === 'tokens' ? '' : `-s${defence.presto.scale}`}`);
  if (defence.pushForward) parts.push(`push-${defence.pushForward.form}-w${defence.pushForward.weight}${defence.pushForward.form === 'listmle' ? `-k${defence.pushForward.topK}` : ''}${defence.pushForward.normalise === 'tokens' ? '-tok' : ''}`);
  const wi = defence.worstInsertion;
  if (wi) parts.push(`worst-insertion-c${wi.candidates}-n${wi.maxSpan}-m${wi.continuation}-p${wi.plainProbability}`);
  const d = defence.derta;
  if (d) parts.push(`derta-r${d.rtoShare}-k${d.keepFraction}${d.refusalToken === null ? '' : `-t${d.refusalToken}`}`);
  return parts.join('+');
}

/** The defence's name in the key (and in model names): plain augmentation keeps notebook 05's. */
function defenceNameOf(defence: ResolvedOrganismDefence | null): string {
  if (!defence) return AUGMENTATION_DEFENCE_NAME;
  if (defence.worstInsertion) return WORST_INSERTION_DEFENCE_NAME;
  if (defence.derta) return DERTA_DEFENCE_NAME;
  return [defence.presto ? PRESTO_DEFENCE_NAME : '', defence.pushForward ? PUSH_FORWARD_DEFENCE_NAME : ''].filter((x) => x).join(' + ');
}

/** The short label of a defence in model names: 'augmented', 'augmented + PRESTO', 'augmented + push-forward', 'worst-insertion', 'DeRTa'. */
export function defenceModelLabel(defence: ResolvedOrganismDefence | null): string {
  if (!defence) return 'augmented';
  if (defence.worstInsertion) return 'worst-insertion';
  if (defence.derta) return 'DeRTa';
  const push = defence.pushForward;
  // the default push-forward (KL, per example) keeps its plain name; other forms say which, so two push-forward arms never share a name
  const pushName = push ? `push-forward${push.form === 'kl' && push.normalise === 'examples' ? '' : ` (${push.form}${push.form === 'listmle' ? ` top-${push.topK}` : ''}${push.normalise === 'tokens' ? ', per token' : ''})`}` : '';
  return ['augmented', defence.presto ? 'PRESTO' : '', pushName].filter((x) => x).join(' + ');
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

function checkData(d: AugmentedOrganismData, what: string): void {
  if (typeof d !== 'object' || d === null) throw new Error(`augmentedOrganismCache: \`${what}\` must be { perTask, seed, limitTasks }`);
  if (!Number.isInteger(d.perTask) || d.perTask < 1) throw new Error(`augmentedOrganismCache: \`${what}.perTask\` must be a positive integer, but is ${d.perTask}`);
  if (!Number.isInteger(d.seed)) throw new Error(`augmentedOrganismCache: \`${what}.seed\` must be an integer, but is ${d.seed}`);
  if (d.limitTasks !== null && (!Number.isInteger(d.limitTasks) || d.limitTasks < 1)) {
    throw new Error(`augmentedOrganismCache: \`${what}.limitTasks\` must be a positive integer or null (every task), but is ${String(d.limitTasks)}`);
  }
}

/** The data, keys and folders of notebook 05's augmented models (nothing is trained or loaded). */
export function augmentedOrganismCache(world: World, options: AugmentedOrganismOptions): AugmentedOrganismCache {
  checkData(options.safety, 'safety');
  checkData(options.anchor, 'anchor');
  const defence = resolveOrganismDefence(options.defence);
  const tag = defenceTag(defence);
  const defenceName = defenceNameOf(defence);
  const behaviours = (o: AugmentedOrganismData) => organismBehaviours(world, { split: 'train', perTask: o.perTask, seed: o.seed, limitTasks: o.limitTasks ?? undefined });
  const safety = behaviours(options.safety).harmful;
  const anchorRequests = behaviours(options.anchor).benign;
  const alignedDir = path.join(options.organismDir, 'aligned');
  const weights = path.join(alignedDir, 'model.safetensors');
  if (!fs.existsSync(weights)) throw new Error(`augmentedOrganismCache: ${weights} is missing (the aligned organism; notebook 01 trains it)`);
  const record = readJsonFile(path.join(alignedDir, 'world.json'), 'the aligned checkpoint\'s world.json') as { world: unknown; training: unknown };
  const aligned: AlignedCheckpointId = { weightsSha256: sha256(fs.readFileSync(weights)), world: record.world, training: record.training };
  const dataSha256 = sha256(JSON.stringify({ safety: safety.map((b) => [b.request, b.harmfulResponse, b.refusal]), anchor: anchorRequests.map((b) => b.request) }));
  const settingsFor = (seed: number, steps: number): AugmentationSettings => ({ ...options.recipe, steps, seed });
  return {
    safety, anchorRequests, aligned, dataSha256, alignedDir, settingsFor, defence, defenceName, tag,
    keyFor: (seed, steps) => ({
      defence: defenceName, ...(defence ? { defenceSettings: defence } : {}), settings: settingsFor(seed, steps),
      safety: { split: 'train', ...options.safety, triplets: safety.length },
      anchor: { split: 'train', ...options.anchor, requests: anchorRequests.length, answers: 'aligned model, greedy' },
      dataSha256, aligned,
    }),
    dirFor: (seed, steps) => path.join(options.cacheDir, `${tag ? `${tag}_` : ''}lr${options.recipe.peakLr}_steps${steps}_seed${seed}`),
  };
}

/** One augmented model (steps > 0), or the aligned model itself (steps 0). */
export interface AugmentedOrganismModel {
  seed: number;
  steps: number;
  /** Named `augmented (<steps> steps, seed <seed>)` as in notebook 05 (with a defence `augmented + PRESTO (...)` / `augmented + push-forward (...)` / `worst-insertion (...)` / `DeRTa (...)`); steps 0: the aligned target. */
  target: Target;
  /** What its training recorded (the last step's losses; a snapshot also its log). */
  record: Record<string, unknown>;
  /** Loaded from the cache (false: trained in this call; steps 0: true). */
  cached: boolean;
  dir: string | null;
}

export interface AugmentedOrganismModels {
  models: AugmentedOrganismModel[];
  /** "seed s: steps" for each model trained in this call. */
  trainedNow: string[];
  cache: AugmentedOrganismCache;
  /** The model at (steps, seed); steps 0 is the aligned target. */
  at(steps: number, seed: number): Target;
}

interface StepRecord {
  step: number; loss: number; safety: number; anchor: number; presto?: number; pushForward?: number; rto?: number;
  /** Worst insertion: the mean score (harmful-continuation log-likelihood per token) of the step's chosen insertions. */
  insertionScore?: number;
}

/** Trains one model of the defence: augmentModel (with PRESTO / push-forward), worstInsertionModel or dertaModel. */
function defenceTrainer(defence: ResolvedOrganismDefence | null) {
  return (
    target: Target, safety: readonly HarmfulBehaviour[], anchor: TrainExample[], settings: AugmentationSettings,
    options: FineTuneOptions & { onInsertions?: (s: WorstInsertionStep) => void } = {},
  ): Promise<{ model: Decoder; result: TrainResult }> => {
    const { onInsertions, ...rest } = options;
    if (defence?.worstInsertion) return worstInsertionModel(target, safety, anchor, settings, { ...rest, ...defence.worstInsertion, onInsertions });
    if (defence?.derta) return dertaModel(target, safety, anchor, settings, { ...rest, ...defence.derta });
    return augmentModel(target, safety, anchor, settings, { ...rest, ...(defence?.presto ? { presto: defence.presto } : {}), ...(defence?.pushForward ? { pushForward: defence.pushForward } : {}) });
  };
}

/**
 * Notebook 05's augmented models for every training seed × budget: loaded from the cache, or trained
 * (and cached) exactly as notebook 05 trains them (see the file comment). `aligned` is the aligned
 * organism's target (organismSuite(...).aligned). Budget 0 stands for the aligned model itself.
 * The caller disposes the returned models (not the aligned one).
 */
export async function augmentedOrganismModels(
  world: World, aligned: Target, options: AugmentedOrganismOptions & { seeds: readonly number[]; steps: readonly number[]; progress?: boolean },
): Promise<AugmentedOrganismModels> {
  const where = 'augmentedOrganismModels';
  if (!Array.isArray(options.seeds) || options.seeds.length === 0) throw new Error(`${where}: \`seeds\` must list at least one training seed`);
  if (!Array.isArray(options.steps) || options.steps.length === 0) throw new Error(`${where}: \`steps\` must list at least one budget (0 = the aligned model)`);
  options.steps.forEach((s) => {
    if (!Number.isInteger(s) || s < 0) throw new Error(`${where}: every budget must be an integer >= 0, but one is ${s}`);
  });
  const cache = augmentedOrganismCache(world, options);
  const { safety, anchorRequests, alignedDir, settingsFor, keyFor, dirFor } = cache;
  const trainDefence = defenceTrainer(cache.defence);
  const label = defenceModelLabel(cache.defence);
  let anchor: TrainExample[] | null = null;
  const anchorExamples = async () => (anchor ??= (await distilledAnchor(aligned, anchorRequests, { batchSize: options.batchSize ?? 64 })).examples);
  const budgets = [...new Set(options.steps.filter((s) => s > 0))];
  const trainedNow: string[] = [];
  for (const seed of options.seeds) {
    const missing = budgets.filter((s) => !hasCachedModel(dirFor(seed, s), keyFor(seed, s)));
    if (missing.length === 0) continue;
    const last = Math.max(...missing);
    const log: StepRecord[] = [];
    let insertionScore: number | undefined;
    const examples = await anchorExamples();
    const bar = options.progress === false ? null : progress(last, { label: `${label} (seed ${seed}, snapshots at ${missing.join(', ')} steps)`, unit: 'steps' });
    const run = await trainDefence(aligned, safety, examples, settingsFor(seed, last), {
      onStep: (l) => {
        log.push({
          step: l.step, loss: l.loss, safety: l.metrics['loss/safety'], anchor: l.metrics['loss/anchor'],
          ...(l.metrics.presto !== undefined ? { presto: l.metrics.presto } : {}), ...(l.metrics.push_forward !== undefined ? { pushForward: l.metrics.push_forward } : {}),
          ...(l.metrics.rto !== undefined ? { rto: l.metrics.rto } : {}), ...(insertionScore !== undefined ? { insertionScore } : {}),
        });
        insertionScore = undefined;
        bar?.tick(1, { loss: l.loss.toFixed(3), 'tok/s': Math.round(l.tokensPerSecond) });
      },
      onInsertions: (s) => {
        insertionScore = s.choices.reduce((a, c) => a + c.score, 0) / s.choices.length;
      },
      evalEvery: 1,
      onEval: async (model, step) => {
        if (missing.includes(step)) {
          const record = { snapshotOf: `a ${last}-step run (identical to a ${step}-step run: constant lr, seeded sampler)`, last: log[log.length - 1], log: log.slice() };
          await cachedModel(dirFor(seed, step), keyFor(seed, step), async () => ({ model, record }), { retrain: true, tokenizer: alignedDir });
          trainedNow.push(`seed ${seed}: ${step}`);
        }
        return {};
      },
    });
    bar?.done();
    run.model.dispose();
  }
  const models: AugmentedOrganismModel[] = [];
  for (const seed of options.seeds) {
    for (const steps of options.steps) {
      if (steps === 0) {
        models.push({ seed, steps, target: aligned, record: {}, cached: true, dir: null });
        continue;
      }
      const c = await cachedModel(dirFor(seed, steps), keyFor(seed, steps), async () => {
        const r = await trainDefence(aligned, safety, await anchorExamples(), settingsFor(seed, steps));
        trainedNow.push(`seed ${seed}: ${steps}`);
        return { model: r.model, record: { last: r.result.log[r.result.log.length - 1] } };
      }, { tokenizer: alignedDir });
      models.push({ seed, steps, target: organismTarget(c.model, world, `${label} (${steps} steps, seed ${seed})`), record: c.record, cached: c.cached, dir: dirFor(seed, steps) });
    }
  }
  return {
    models, trainedNow, cache,
    at(steps: number, seed: number): Target {
      const m = models.find((x) => x.steps === steps && x.seed === seed);
      if (!m) throw new Error(`${where}: no model at ${steps} steps, seed ${seed} (budgets ${options.steps.join(', ')}; seeds ${options.seeds.join(', ')})`);
      return m.target;
    },
  };
}
