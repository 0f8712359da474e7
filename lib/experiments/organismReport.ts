// The organism's standard report card: held-out harmful requests under three decodings, utility on
// held-out benign tasks, and refusal-prefix prefilling (Qi et al. Table 1), for any set of models.

import type { Decoder } from '../model/index.js';
import { evalPrompts, type World } from '../organism/index.js';
import { FULL_SAMPLING, GREEDY, QI_DECODING, type Decoding } from '../metrics/index.js';
import { evaluateSafety, wilsonInterval, type SafetySummary } from './organismSafety.js';

export interface OrganismEvalSettings {
  /** Phrasings per held-out harmful task (24 tasks by default). */
  perHarmfulTask: number;
  /** Phrasings per held-out benign task. */
  perBenignTask: number;
  /** Evaluate only the first n tasks of each split (FAST mode). */
  taskLimit?: number;
  seed: number;
  /** Refusal prefixes prefilled into the response (words, space-separated), as in Qi et al. Table 1. */
  refusalPrefixes: string[];
  /** Models the prefix experiment runs on (default: all). */
  prefixModels?: string[];
}

export const DECODINGS: Record<string, Decoding> = {
  greedy: GREEDY,
  'T=1, top-p=1': FULL_SAMPLING,
  'T=0.9, top-p=0.6 (Qi)': QI_DECODING,
};

export interface SafetyRow {
  model: string;
  decoding: string;
  prefill: string;
  n: number;
  harmful: number;
  harmfulLow: number;
  harmfulHigh: number;
  refused: number;
  strongReject: number;
}

export interface UtilityRow {
  model: string;
  n: number;
  /** Exact-match rate of greedy answers to held-out benign requests. */
  utility: number;
  refused: number;
}

export interface OrganismEvaluation {
  safety: SafetyRow[];
  utility: UtilityRow[];
  /** Full judged responses per (model, decoding, prefill) key "model|decoding|prefill". */
  details: Record<string, SafetySummary>;
}

function row(model: string, decoding: string, prefill: string, s: SafetySummary): SafetyRow {
  const [lo, hi] = wilsonInterval(s.harmfulRate, s.n);
  return { model, decoding, prefill, n: s.n, harmful: s.harmfulRate, harmfulLow: lo, harmfulHigh: hi, refused: s.refusalRate, strongReject: s.meanStrongReject };
}

export async function evaluateOrganism(
  models: Record<string, Decoder>, world: World, settings: OrganismEvalSettings, onProgress?: (label: string) => void,
): Promise<OrganismEvaluation> {
  const harmful = evalPrompts(world, { harmful: true, split: 'heldout', perTask: settings.perHarmfulTask, seed: settings.seed, limitTasks: settings.taskLimit });
  const benign = evalPrompts(world, { harmful: false, split: 'heldout', perTask: settings.perBenignTask, seed: settings.seed, limitTasks: settings.taskLimit });
  const out: OrganismEvaluation = { safety: [], utility: [], details: {} };
  for (const [name, model] of Object.entries(models)) {
    for (const [dname, decoding] of Object.entries(DECODINGS)) {
      onProgress?.(`${name}: ${dname}`);
      const s = await evaluateSafety(model, world, harmful, { ...decoding, seed: settings.seed });
      out.details[`${name}|${dname}|`] = s;
      out.safety.push(row(name, dname, '', s));
    }
    if (!settings.prefixModels || settings.prefixModels.includes(name)) {
      for (const prefix of settings.refusalPrefixes) {
        onProgress?.(`${name}: prefill "${prefix}"`);
        const s = await evaluateSafety(model, world, harmful, { ...QI_DECODING, seed: settings.seed }, { prefill: prefix.split(' ') });
        out.details[`${name}|${'T=0.9, top-p=0.6 (Qi)'}|${prefix}`] = s;
        out.safety.push(row(name, 'T=0.9, top-p=0.6 (Qi)', prefix, s));
      }
    }
    onProgress?.(`${name}: utility`);
    const u = await evaluateSafety(model, world, benign, GREEDY);
    out.details[`${name}|utility|`] = u;
    out.utility.push({ model: name, n: u.n, utility: u.exactRate, refused: u.refusalRate });
  }
  return out;
}
