// Flags and helpers the evaluation experiments share beyond cli/resolve.ts: named decodings (Qi et
// al.'s safety decoding, plain sampling, greedy), the batch size, journal unit keys, the models an
// experiment compares (--model, and --base-model when there is one), seeded rates as results.json
// stores them, and figures written into --out.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { seededSummary, type SeededRate } from '../lib/attacks/prefill.js';
import { FULL_SAMPLING, GREEDY, QI_DECODING, formatMeanStd, formatRate, rateOf, type Decoding, type HarmfulEvaluation, type Rate, type Target } from '../lib/metrics/index.js';
import { saveFigure, type PlotlyFigure } from '../lib/report/figure.js';
import type { ExperimentContext, FlagSpec } from './experiment.js';
import { PACKAGE_ROOT, baseModelValue, targetFromFlags } from './resolve.js';

/** The named decodings of the notebooks. */
export const DECODINGS: Record<string, { label: string; decoding: Decoding }> = {
  qi: { label: 'Qi (T=0.9, top-p=0.6, top-k=50)', decoding: QI_DECODING },
  t1: { label: 'T=1 (top-p=1)', decoding: FULL_SAMPLING },
  greedy: { label: 'greedy', decoding: GREEDY },
};
export const DECODING_NAMES = Object.keys(DECODINGS);
const DECODING_HELP = 'qi = Qi et al.\'s safety decoding (T 0.9, top-p 0.6, top-k 50), t1 = plain sampling (T 1, top-p 1), greedy (one run stands for every seed)';

export function decodingsFlag(defaults: string[], help = 'decodings to sample with'): FlagSpec {
  return { name: 'decodings', type: 'string-list', choices: DECODING_NAMES, default: defaults, help: `${help}: ${DECODING_HELP}` };
}

export function decodingFlag(defaultName: string, help = 'decoding to sample with'): FlagSpec {
  return { name: 'decoding', type: 'string', choices: DECODING_NAMES, default: defaultName, help: `${help}: ${DECODING_HELP}` };
}

export function batchSizeFlag(defaultSize = 64, help = 'rows per generate call'): FlagSpec {
  return { name: 'batch-size', type: 'int', default: defaultSize, help };
}

/** The sampling seeds a decoding needs: all of them, or the first for greedy (its answer is the same under every seed). */
export function seedsFor(decoding: Decoding, seeds: number[]): number[] {
  return decoding.doSample ? seeds : seeds.slice(0, 1);
}

/** A journal key from named parts, e.g. unitKey({ model: 'model', k: 5, seed: 0 }) = 'model=model k=5 seed=0'. */
export function unitKey(parts: Record<string, string | number>): string {
  return Object.entries(parts).map(([k, v]) => `${k}=${typeof v === 'string' && /[\s=]/.test(v) ? JSON.stringify(v) : v}`).join(' ');
}

export interface Compared {
  /** 'model' or 'base-model': the flag it came from (journal keys use it: stable across names). */
  role: 'model' | 'base-model';
  target: Target;
}

/** --model, then --base-model when there is one (organism:base beside an organism --model, unless --base-model none). */
export async function comparedTargets(ctx: ExperimentContext): Promise<Compared[]> {
  const out: Compared[] = [{ role: 'model', target: await targetFromFlags(ctx.flags, 'model', ctx.log) }];
  if (baseModelValue(ctx.flags) !== 'none') out.push({ role: 'base-model', target: await targetFromFlags(ctx.flags, 'base-model', ctx.log) });
  return out;
}

/** A rate as results.json stores it. */
export const rateJson = (r: Rate) => ({ k: r.k, n: r.n, rate: r.rate, low: r.low, high: r.high });

/** Rates pooled: k and n summed, with a Wilson interval. */
export function pooledRate(rates: readonly Rate[]): Rate {
  return rateOf(rates.reduce((a, r) => a + r.k, 0), rates.reduce((a, r) => a + r.n, 0));
}

/** Per-seed evaluations (from the journal) as lib/attacks' SeededRate, plus the pooled refusal rate. */
export function seeded(evaluations: HarmfulEvaluation[], seeds: number[]): SeededRate & { refusedPooled: Rate } {
  return { ...seededSummary(evaluations, seeds), refusedPooled: pooledRate(evaluations.map((e) => e.refused)) };
}

/** A SeededRate as results.json stores it. */
export function seededJson(s: SeededRate & { refusedPooled?: Rate }) {
  return {
    mean: s.mean, std: s.std, pooled: rateJson(s.pooled), ...(s.refusedPooled ? { refusedPooled: rateJson(s.refusedPooled) } : {}), meanStrongReject: s.meanStrongReject ?? null,
    perSeed: s.perSeed.map((p) => ({ seed: p.seed, harmful: rateJson(p.harmful), refused: rateJson(p.refused), meanStrongReject: p.meanStrongReject ?? null })),
  };
}

/** Table cells of a seeded rate: mean ± std over seeds and the pooled rate with its interval. */
export function seededCells(s: SeededRate): Record<string, string | number> {
  return {
    n: s.pooled.n,
    'harmful, mean ± std': formatMeanStd({ mean: s.mean, std: s.std, n: s.perSeed.length }, { percent: true }),
    'harmful, pooled [95% CI]': formatRate(s.pooled),
    ...(s.meanStrongReject !== undefined ? { StrongREJECT: +s.meanStrongReject.toFixed(3) } : {}),
  };
}

/** An evaluation as the journal stores it: what lib returned, without fields JSON cannot hold. */
export function storedEvaluation(e: HarmfulEvaluation): HarmfulEvaluation {
  return { n: e.n, harmful: e.harmful, refused: e.refused, ...(e.meanStrongReject !== undefined ? { meanStrongReject: e.meanStrongReject } : {}), ...(e.meanScore !== undefined ? { meanScore: e.meanScore } : {}), responses: e.responses };
}

/**
 * Writes a figure into --out (HTML, and PNG when Chromium is found) and logs where. lib/report finds
 * plotly.js from the working directory (the repository root in notebooks); a CLI started elsewhere
 * saves its figures from the package root (--out is absolute by then, so nothing else moves).
 */
export async function saveRunFigure(ctx: ExperimentContext, fig: PlotlyFigure, name: string): Promise<void> {
  const cwd = process.cwd();
  const move = !fs.existsSync(path.join(cwd, 'node_modules', 'plotly.js-dist-min'));
  if (move) process.chdir(PACKAGE_ROOT);
  try {
    const saved = await saveFigure(fig, name, { dir: ctx.outDir, formats: ['html', 'png'] });
    ctx.log(saved.note);
  } finally {
    if (move) process.chdir(cwd);
  }
}

/** Error bars of Wilson intervals, in percent. */
export function wilsonBars(rates: readonly Rate[]) {
  return { type: 'data', symmetric: false, array: rates.map((r) => 100 * (r.high - r.rate)), arrayminus: rates.map((r) => 100 * (r.rate - r.low)) };
}
