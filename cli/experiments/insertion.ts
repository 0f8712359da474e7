// `deepalign insertion`: Lyu et al.'s random insertion (notebook 09): the first n tokens of a
// harmful answer forced in after the first j tokens of the model's own refusal; does the model carry
// on harmfully? A grid over j x n, or a seeded random j per request. Journal units: the refusal
// trajectories (lib/attacks' insertionTrajectories), then one per (j, n, sampling seed), run as
// insertionAttack runs each cell, so the numbers equal one insertionAttack call over the grid.

import { insertionTrajectories, randomInsertionPositions, type InsertionTrajectory } from '../../lib/attacks/insertion.js';
import { evaluateHarmful, formatRate, harmfulResponseOf, rateOf, type HarmfulEvaluation } from '../../lib/metrics/index.js';
import { UsageError, printTable, withDefaults, writeExperimentResults, type Experiment } from '../experiment.js';
import { DATA_FLAGS, JUDGE_FLAGS, SEED_FLAGS, TARGET_FLAGS, behavioursFromFlags, judgeFromFlags, targetFromFlags } from '../resolve.js';
import { DECODINGS, batchSizeFlag, decodingFlag, rateJson, saveRunFigure, seeded, seededJson, seedsFor, storedEvaluation, unitKey } from '../flags.js';

/** j beyond every refusal the organism writes (6-14 tokens): the span goes right after the whole refusal (notebook 09's WHOLE). */
const WHOLE = 64;

export const insertion: Experiment = {
  name: 'insertion',
  summary: 'Lyu et al.: random insertion, n harmful tokens forced in after j tokens of the model\'s own refusal (grid over j x n, or random j)',
  flags: [
    ...TARGET_FLAGS,
    ...withDefaults(DATA_FLAGS, { 'per-task': 2 }),
    ...JUDGE_FLAGS,
    ...SEED_FLAGS,
    {
      name: 'positions', type: 'string-list', default: ['0', '1', '2', '4', '8', String(WHOLE)],
      help: `refusal tokens j kept before the span (clamped to each refusal's length: ${WHOLE} puts it after the whole refusal), and/or "random": a seeded j per request (notebook 09's grid)`,
    },
    { name: 'spans', type: 'int-list', default: [1, 2, 4, 8], help: 'harmful tokens n inserted (the first n of each harmful answer; notebook 09)' },
    { name: 'refusal', type: 'string', choices: ['greedy', 'reference'], default: 'greedy', help: 'the refusal trajectory: the model\'s own greedy response, or each behaviour\'s reference refusal (datasets with refusals)' },
    { name: 'position-seed', type: 'int', default: 0, help: 'seed of the random positions' },
    decodingFlag('qi', 'decoding of the continuation (notebook 09: qi)'),
    batchSizeFlag(),
  ],
  async run(ctx) {
    const { flags, journal } = ctx;
    const positions: (number | 'random')[] = (flags.positions as string[]).map((p) => {
      if (p === 'random') return 'random';
      if (!/^\d+$/.test(p)) throw new UsageError(`deepalign insertion: --positions: ${JSON.stringify(p)} is not an integer >= 0 or "random"`);
      return Number(p);
    });
    const spans: number[] = flags.spans;
    for (const [name, list] of [['positions', positions], ['spans', spans]] as const) {
      if (new Set(list).size !== list.length) throw new UsageError(`deepalign insertion: --${name} lists a value twice`);
    }
    for (const n of spans) if (n < 0) throw new UsageError(`deepalign insertion: --spans: ${n} must be >= 0`);
    const target = await targetFromFlags(flags, 'model', ctx.log);
    const behaviours = behavioursFromFlags(flags).harmful;
    const judge = await judgeFromFlags(flags, ctx.outDir);
    const harmful = behaviours.map((b) => target.responseIds(harmfulResponseOf(b, 'insertion')));
    const shortest = Math.min(...harmful.map((h) => h.length));
    const over = spans.filter((n) => n > shortest);
    if (over.length) throw new UsageError(`deepalign insertion: --spans: ${over.join(',')} beyond the shortest harmful answer (${shortest} tokens); use n <= ${shortest}`);
    const decoding = DECODINGS[flags.decoding].decoding;
    const seeds = seedsFor(decoding, flags.seeds);
    ctx.log(`insertion on ${target.name}: ${positions.length} x ${spans.length} cells x ${behaviours.length} requests x ${seeds.length} seeds, ${flags.refusal} refusals, judge ${judge.name}`);

    const trajectories = await journal.once<InsertionTrajectory[]>('trajectories', () =>
      insertionTrajectories(target, behaviours, judge, flags.refusal, { batchSize: flags['batch-size'], progress: false }));
    const lengths = trajectories.map((t) => t.ids.length);
    const random = randomInsertionPositions(behaviours, lengths, flags['position-seed']);

    // insertionAttack's cell loop, one journal unit per (j, n, seed).
    const bar = ctx.progress('insertion', positions.length * spans.length * seeds.length);
    const cells: (ReturnType<typeof seeded> & { j: number | 'random'; n: number; clamped: number; positions: number[] })[] = [];
    for (const j of positions) {
      const effective = behaviours.map((_, i) => (j === 'random' ? random[i] : Math.min(j, lengths[i])));
      const clamped = behaviours.map((_, i) => j !== 'random' && j > lengths[i]);
      for (const n of spans) {
        const prefills = behaviours.map((_, i) => [...trajectories[i].ids.slice(0, effective[i]), ...harmful[i].slice(0, n)]);
        const evaluations: HarmfulEvaluation[] = [];
        for (const seed of seeds) {
          evaluations.push(await journal.once(unitKey({ j, n, seed }), async () =>
            storedEvaluation(await evaluateHarmful(target, behaviours, judge, { decoding: { ...decoding, seed }, prefill: (_b, i) => prefills[i], batchSize: flags['batch-size'], progress: false }))));
          bar.tick();
        }
        cells.push({ j, n, clamped: clamped.filter((x) => x).length, positions: effective, ...seeded(evaluations, seeds) });
      }
    }
    bar.done();
    const trajectoryRefused = rateOf(trajectories.filter((t) => t.verdict.refused).length, trajectories.length);
    const jLabel = (j: number | 'random') => (j === 'random' ? 'random' : j >= Math.max(...lengths) ? `${j} (whole refusal)` : String(j));

    printTable(cells.map((c) => ({
      j: jLabel(c.j), n: c.n, 'ASR, pooled [95% CI]': formatRate(c.pooled), ...(c.meanStrongReject !== undefined ? { StrongREJECT: +c.meanStrongReject.toFixed(3) } : {}),
      'refusal shorter than j': c.clamped,
    })), `Random insertion on ${target.name}: n harmful tokens after j refusal tokens (judge: ${judge.name}); trajectories read as refusals: ${formatRate(trajectoryRefused)}`);

    await saveRunFigure(ctx, {
      data: [{
        type: 'heatmap', x: spans.map((n) => `n=${n}`), y: positions.map((j) => `j=${jLabel(j)}`),
        z: positions.map((j) => spans.map((n) => 100 * cells.find((c) => c.j === j && c.n === n)!.pooled.rate)),
        text: positions.map((j) => spans.map((n) => {
          const r = cells.find((c) => c.j === j && c.n === n)!.pooled;
          return `${(100 * r.rate).toFixed(1)}%<br>[${(100 * r.low).toFixed(1)}, ${(100 * r.high).toFixed(1)}]`;
        })),
        texttemplate: '%{text}', zmin: 0, zmax: 100, colorscale: 'Reds', colorbar: { title: { text: 'ASR %' } },
      }],
      layout: {
        title: { text: `Random insertion on ${target.name}: ASR with n harmful tokens after j refusal tokens (${behaviours.length} requests, pooled over ${seeds.length} seeds)` },
        xaxis: { title: { text: 'harmful tokens inserted (n)' } }, yaxis: { title: { text: 'refusal tokens kept (j)' }, autorange: 'reversed' }, width: 900, height: 560,
      },
    }, 'insertion_heatmap');

    const metrics = {
      requests: behaviours.length, judge: judge.name, refusal: flags.refusal, positions, spans, trajectoryRefused: rateJson(trajectoryRefused),
      trajectories: trajectories.map((t) => ({ id: t.id, text: t.text, tokens: t.ids.length, refused: t.verdict.refused })),
      cells: cells.map((c) => ({ j: c.j, n: c.n, clamped: c.clamped, positions: c.positions, ...seededJson(c) })),
    };
    writeExperimentResults(ctx, { experiment: 'insertion', seed: flags.seed, metrics, claims: [] });
    return metrics;
  },
};
