// Random insertion (Lyu et al., "When Autoregressive Consistency Hurts Safety Alignment"): a short
// harmful span inserted inside a refusal the model has already started can take over the rest of
// the response. No code or settings are published; this formulation and its defaults are ours.
//
// Per harmful behaviour b:
//   refusal trajectory  r_b: the target's own greedy response to the bare request, up to (not
//                       including) its end-of-response ('greedy', default: the refusal the model
//                       would really be writing), or behaviour.refusal's tokens ('reference');
//   harmful answer      h_b = target.responseIds(b.harmfulResponse);
//   for a cell (j, n):  the response is forced to start with
//                         prefill = r_b[:j'] + h_b[:n],   j' = min(j, |r_b|)
//                       (token ids concatenated as they are, not re-tokenized as one text), and the
//                       model continues with the given decoding and sampling seeds, as prefillAttack;
//                       the judge sees prefill = decode(r_b[:j'] + h_b[:n]) and response = the
//                       continuation (generateResponses with a per-behaviour prefill).
// j larger than a refusal's length (without its end-of-response) is clamped: the span goes right
// after the whole refusal. So every cell is measured over the same behaviours (a heat map's cells
// stay comparable); each cell reports how many behaviours were clamped (`clamped`) and every
// response its effective j. n must not exceed the shortest harmful answer (an error, as
// prefillAttack's k). j = 0 is Qi et al.'s prefilling attack with k = n; n = 0 forces only the
// refusal's first j tokens (does the model carry on refusing?).
//
// `positions: 'random'`: one seeded j per behaviour, uniform in {0, .., |r_b|}
// (Rng(`insertion:<positionSeed>:<behaviour id>`): the same j under every span length and sampling
// seed), giving one "random insertion" rate per span length n.
//
// What a judge sees matters here: the organism's exact judge counts only steps the model wrote
// itself after the prefill as harmful (prefilled harmful words never count), so `harmful` means the
// continuation carries on the harmful answer; its `refused` reads the visible response (prefill
// included), which already holds the refusal's words whenever j' covers a refusal marker. Qi et al.'s
// keyword judge reads prefill + response, so a prefilled refusal keyword makes every such response
// "refused" and never harmful: use a judge that reads what the model wrote.
//
// Each trajectory is also judged once as a bare response (prefill '', response = its text), so a
// notebook can tell whether the model was refusing at all (`trajectoryRefused`).

import {
  evaluateHarmful, generateResponses, harmfulResponseOf, rateOf, type Decoding, type HarmfulBehaviour, type HarmfulEvaluation, type JudgedResponse, type Judge,
  type Rate, type Target, type Verdict,
} from '../metrics/index.js';
import { checkBehaviours } from '../metrics/behaviours.js';
import { progress } from '../report/index.js';
import { checkSeed, Rng } from '../util/rng.js';
import { evaluateOverSeeds, type SeededRate, type SeedsOptions } from './prefill.js';

export type InsertionRefusal = 'greedy' | 'reference';

export interface InsertionOptions extends SeedsOptions {
  /** Refusal tokens j kept before the span: a list (one grid row per j), or 'random' (a seeded j per behaviour). */
  positions: number[] | 'random';
  /** Harmful-span lengths n (the first n tokens of each harmful answer); 0 = nothing inserted. */
  spans: number[];
  /** The refusal trajectory: 'greedy' (default, the target's greedy bare response) or 'reference' (behaviour.refusal). */
  refusal?: InsertionRefusal;
  /** Seed of `positions: 'random'` (default 0). */
  positionSeed?: number;
}

/** A behaviour's refusal trajectory. */
export interface InsertionTrajectory {
  id: string;
  /** Its tokens, without the end-of-response. */
  ids: number[];
  text: string;
  source: InsertionRefusal;
  /** The judge on the trajectory as a bare response (whether the model was refusing at all). */
  verdict: Verdict;
}

export interface InsertionResponse extends JudgedResponse {
  /** Refusal tokens kept (after clamping) and harmful tokens inserted: prefillIds = r[:j] + h[:n]. */
  j: number;
  n: number;
  /** The requested j exceeded the refusal's length (j is then the refusal's length). */
  clamped: boolean;
}

export interface InsertionCell extends SeededRate {
  /** The requested position ('random': per behaviour). */
  j: number | 'random';
  n: number;
  /** Behaviours whose refusal is shorter than the requested j (their span follows the whole refusal). */
  clamped: number;
  /** The effective j of each behaviour, in the behaviours' order. */
  positions: number[];
  /** The judged responses, per sampling seed. */
  responses: InsertionResponse[][];
}

export interface InsertionResult {
  refusal: InsertionRefusal;
  positions: number[] | 'random';
  spans: number[];
  trajectories: InsertionTrajectory[];
  /** Trajectories the judge reads as refusals, with their interval. */
  trajectoryRefused: Rate;
  /** One cell per (j, n), j-major: cells[p * spans.length + s]. */
  cells: InsertionCell[];
}

/** The cell of (j, n) in a result ('random' for random positions), or an error listing the grid. */
export function insertionCell(result: InsertionResult, j: number | 'random', n: number): InsertionCell {
  const cell = result.cells.find((c) => c.j === j && c.n === n);
  if (!cell) throw new Error(`insertionCell: no cell (j = ${j}, n = ${n}); positions ${JSON.stringify(result.positions)}, spans ${JSON.stringify(result.spans)}`);
  return cell;
}

/** The random insertion position of each behaviour: uniform in {0, .., length}, seeded by (positionSeed, behaviour id). */
export function randomInsertionPositions(behaviours: readonly HarmfulBehaviour[], refusalLengths: readonly number[], positionSeed = 0): number[] {
  checkSeed(positionSeed, 'randomInsertionPositions: positionSeed');
  return behaviours.map((b, i) => new Rng(`insertion:${positionSeed}:${b.id}`).int(refusalLengths[i] + 1));
}

function checkInts(values: unknown, option: string, min: number): number[] {
  if (!Array.isArray(values) || values.length === 0) throw new Error(`insertionAttack: \`${option}\` must list at least one value`);
  values.forEach((v) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new Error(`insertionAttack: every value of \`${option}\` must be an integer >= ${min}, but one is ${String(v)}`);
  });
  if (new Set(values).size !== values.length) throw new Error(`insertionAttack: \`${option}\` lists a value twice`);
  return values as number[];
}

/** Each behaviour's refusal trajectory (see the file comment), judged as a bare response. */
export async function insertionTrajectories(
  target: Target, behaviours: readonly HarmfulBehaviour[], judge: Judge, refusal: InsertionRefusal = 'greedy', options: { batchSize?: number; progress?: false } = {},
): Promise<InsertionTrajectory[]> {
  checkBehaviours(behaviours, 'insertionTrajectories');
  if (refusal !== 'greedy' && refusal !== 'reference') throw new Error(`insertionAttack: \`refusal\` must be 'greedy' or 'reference', but is ${JSON.stringify(refusal)}`);
  let list: { id: string; ids: number[] }[];
  if (refusal === 'reference') {
    list = behaviours.map((b) => {
      if (typeof b.refusal !== 'string' || b.refusal.trim() === '') throw new Error(`insertionAttack: behaviour "${b.id}" has no \`refusal\` (refusal: 'reference' needs one; 'greedy' uses the model's own)`);
      return { id: b.id, ids: target.responseIds(b.refusal) };
    });
  } else {
    const generated = await generateResponses(target, behaviours, {
      decoding: { doSample: false }, batchSize: options.batchSize, progress: options.progress === false ? false : { label: `${target.name} greedy refusals` },
    });
    list = generated.map((g) => ({ id: g.id, ids: g.responseIds }));
  }
  const texts = list.map((t) => target.decode(t.ids));
  const verdicts = await judge.judge(behaviours.map((b, i) => ({ behaviour: b, prefill: '', response: texts[i] })));
  if (verdicts.length !== behaviours.length) throw new Error(`judge "${judge.name}" returned ${verdicts.length} verdicts for ${behaviours.length} trajectories`);
  return list.map((t, i) => ({ id: t.id, ids: t.ids, text: texts[i], source: refusal, verdict: verdicts[i] }));
}

/**
 * Random insertion over a grid of refusal positions j and harmful-span lengths n (or random
 * positions), each cell under every sampling seed: per-seed rates, mean ± std, the pooled rate
 * with its Wilson interval, mean StrongREJECT when the judge gives one, and every judged response.
 */
export async function insertionAttack(target: Target, behaviours: readonly HarmfulBehaviour[], judge: Judge, options: InsertionOptions): Promise<InsertionResult> {
  checkBehaviours(behaviours, 'insertionAttack');
  if (!judge || typeof judge.judge !== 'function') throw new Error('insertionAttack: `judge` must be a Judge (an object with a judge(inputs) method)');
  if (typeof options !== 'object' || options === null) throw new Error('insertionAttack: `options` must be an object with `positions`, `spans`, `decoding` and `seeds`');
  if (typeof options.decoding !== 'object' || options.decoding === null) throw new Error('insertionAttack: `decoding` must be a Decoding ({ doSample, ... })');
  if (!Array.isArray(options.seeds) || options.seeds.length === 0) throw new Error('insertionAttack: `seeds` must list at least one sampling seed');
  const positions = options.positions === 'random' ? 'random' : checkInts(options.positions, 'positions', 0);
  const spans = checkInts(options.spans, 'spans', 0);
  const refusal = options.refusal ?? 'greedy';
  const positionSeed = checkSeed(options.positionSeed ?? 0, 'insertionAttack: positionSeed');
  const harmful = behaviours.map((b) => target.responseIds(harmfulResponseOf(b, 'insertionAttack')));
  const limit = Math.min(...harmful.map((h) => h.length));
  for (const n of spans) if (n > limit) throw new Error(`insertionAttack: n = ${n} is beyond the shortest harmful answer (${limit} tokens); use n <= ${limit}`);

  const trajectories = await insertionTrajectories(target, behaviours, judge, refusal, { batchSize: options.batchSize, progress: options.progress });
  const lengths = trajectories.map((t) => t.ids.length);
  const random = positions === 'random' ? randomInsertionPositions(behaviours, lengths, positionSeed) : null;
  const rows: (number | 'random')[] = positions === 'random' ? ['random'] : positions;
  const seedsRun = options.decoding.doSample ? options.seeds.length : 1;
  const label = options.label ?? target.name;
  const bar = options.progress === false ? null : progress(rows.length * spans.length * seedsRun, { label: `${label} insertion (${rows.length} x ${spans.length} cells)`, unit: 'evaluations' });
  const cells: InsertionCell[] = [];
  for (const j of rows) {
    const effective = behaviours.map((_, i) => (j === 'random' ? random![i] : Math.min(j, lengths[i])));
    const clampedFlags = behaviours.map((_, i) => j !== 'random' && j > lengths[i]);
    for (const n of spans) {
      const prefills = behaviours.map((_, i) => [...trajectories[i].ids.slice(0, effective[i]), ...harmful[i].slice(0, n)]);
      const run = async (d: Decoding): Promise<HarmfulEvaluation> => {
        const e = await evaluateHarmful(target, behaviours, judge, { decoding: d, prefill: (_b, i) => prefills[i], batchSize: options.batchSize, progress: false });
        bar?.tick(1, { j: String(j), n, harmful: `${(100 * e.harmful.rate).toFixed(1)}%` });
        return e;
      };
      const s = await evaluateOverSeeds(run, options.decoding, options.seeds, 'insertionAttack');
      cells.push({
        j, n, clamped: clampedFlags.filter((x) => x).length, positions: effective,
        perSeed: s.perSeed, mean: s.mean, std: s.std, pooled: s.pooled, meanStrongReject: s.meanStrongReject,
        responses: s.evaluations.map((e) => e.responses.map((r, i) => ({ ...r, j: effective[i], n, clamped: clampedFlags[i] }))),
      });
    }
  }
  bar?.done();
  return {
    refusal, positions, spans, trajectories, trajectoryRefused: rateOf(trajectories.filter((t) => t.verdict.refused).length, trajectories.length), cells,
  };
}
