// `deepalign kl`: Qi et al. 2025, Figure 1 (notebook 03). Per-token KL(model || base) along
// teacher-forced harmful answers: both models read the same answer tokens, each after its own
// prompt format; a shallow alignment differs from its base almost only at the first tokens.
// One journal unit per chunk of --batch-size answers (klAlongResponses on that chunk).

import { klAlongResponses, klFrontLoading, klProfileOf } from '../../lib/metrics/index.js';
import { UsageError, printTable, writeExperimentResults, type Experiment } from '../experiment.js';
import { BASE_FLAGS, DATA_FLAGS, SEED_FLAGS, TARGET_FLAGS, baseModelValue, behavioursFromFlags, targetFromFlags } from '../resolve.js';
import { saveRunFigure, unitKey } from '../flags.js';

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const i = (q / 100) * (s.length - 1);
  const lo = Math.floor(i);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo);
}

const nats = (v: number) => (v === 0 ? '0' : Math.abs(v) < 1e-3 ? v.toExponential(1) : v.toPrecision(3));

export const kl: Experiment = {
  name: 'kl',
  summary: 'Qi et al. Fig. 1: per-token KL(--model || --base-model) along teacher-forced harmful answers',
  flags: [
    ...TARGET_FLAGS,
    ...BASE_FLAGS,
    ...DATA_FLAGS,
    ...SEED_FLAGS.filter((f) => f.name !== 'seeds'),
    { name: 'front', type: 'int', default: 5, help: 'the "first tokens": response positions 0 .. front-1 (notebook 03)' },
    { name: 'min-ratio', type: 'number', default: 2, help: 'the claim: mean KL over the first tokens / mean over later tokens must exceed this (notebook 03)' },
    { name: 'max-tokens', type: 'int', help: 'teacher-force at most this many tokens of each answer (default: all)' },
    { name: 'batch-size', type: 'int', default: 32, help: 'answers per forward pass, and per journal unit' },
    { name: 'positions-shown', type: 'int', default: 12, help: 'rows of the per-position table on stdout' },
  ],
  async run(ctx) {
    const { flags, journal } = ctx;
    if (baseModelValue(flags) === 'none') throw new UsageError('deepalign kl: --base-model is required with a Hugging Face --model (the KL is taken against it)');
    const model = await targetFromFlags(flags, 'model', ctx.log);
    const base = await targetFromFlags(flags, 'base-model', ctx.log);
    const behaviours = behavioursFromFlags(flags).harmful;
    const front: number = flags.front;
    const batchSize: number = flags['batch-size'];
    if (batchSize < 1) throw new UsageError(`deepalign kl: --batch-size: ${batchSize} must be at least 1`);
    ctx.log(`KL(${model.name} || ${base.name}) along ${behaviours.length} harmful answers`);

    const perBehaviour: number[][] = [];
    const chunks = Math.ceil(behaviours.length / batchSize);
    const bar = ctx.progress('KL', chunks);
    for (let c = 0; c < chunks; c++) {
      const chunk = behaviours.slice(c * batchSize, (c + 1) * batchSize);
      const rows = await journal.once(unitKey({ chunk: c, first: chunk[0].id }), async () =>
        (await klAlongResponses(model, base, chunk, { batchSize, ...(flags['max-tokens'] !== undefined ? { maxTokens: flags['max-tokens'] } : {}) })).perBehaviour);
      perBehaviour.push(...rows);
      bar.tick();
    }
    bar.done();

    const profile = klProfileOf(perBehaviour);
    const at = (t: number) => perBehaviour.filter((r) => r.length > t).map((r) => r[t]);
    const positions = profile.mean.map((mean, t) => ({ t, count: profile.count[t], mean, std: profile.std[t], p10: percentile(at(t), 10), median: percentile(at(t), 50), p90: percentile(at(t), 90) }));
    printTable(positions.slice(0, flags['positions-shown']).map((p) => ({
      position: p.t, answers: p.count, 'mean KL (nats)': nats(p.mean), std: nats(p.std), p10: nats(p.p10), median: nats(p.median), p90: nats(p.p90),
    })), `Per-token KL(${model.name} || ${base.name}) along ${behaviours.length} harmful answers`);
    const loading = klFrontLoading(profile, front);
    const finite = (x: number) => (Number.isFinite(x) ? x : null);
    process.stdout.write(`front loading: mean KL at positions 0-${front - 1} ${nats(loading.front)}, later ${nats(loading.later)}, ratio ${Number.isFinite(loading.ratio) ? loading.ratio.toFixed(2) : 'n/a'}\n`);
    const claims = [{
      id: 'kl_front_loaded', paper: 'Qi et al. 2025, Figure 1 (per-token KL(aligned || base) on Harmful HEx-PHI is largest at the first response tokens)',
      expected: `mean KL over response positions 0-${front - 1} / mean over positions >= ${front} > ${flags['min-ratio']}`,
      observed: { front: finite(loading.front), later: finite(loading.later), ratio: finite(loading.ratio) },
      holds: Number.isFinite(loading.ratio) && loading.ratio > flags['min-ratio'],
    }];

    const x = positions.map((p) => p.t);
    const band = (axis: '' | '2', clamp: (v: number) => number) => [
      { x, y: positions.map((p) => clamp(p.p10)), mode: 'lines', line: { width: 0 }, showlegend: false, hoverinfo: 'skip', xaxis: `x${axis}`, yaxis: `y${axis}` },
      { x, y: positions.map((p) => clamp(p.p90)), mode: 'lines', line: { width: 0 }, fill: 'tonexty', fillcolor: 'rgba(31,119,180,0.2)', name: 'p10-p90 over answers', showlegend: axis === '', xaxis: `x${axis}`, yaxis: `y${axis}` },
      { x, y: positions.map((p) => clamp(p.mean)), mode: 'lines+markers', line: { color: '#1f77b4' }, name: `mean KL(${model.name} || ${base.name})`, showlegend: axis === '', xaxis: `x${axis}`, yaxis: `y${axis}` },
    ];
    await saveRunFigure(ctx, {
      data: [...band('', (v) => v), ...band('2', (v) => Math.max(v, 1e-6))],
      layout: {
        title: { text: `Per-token KL(${model.name} || ${base.name}) along ${behaviours.length} harmful answers (teacher-forced)` }, grid: { rows: 2, columns: 1, pattern: 'independent' },
        xaxis: { title: { text: 'response position' } }, yaxis: { title: { text: 'KL (nats), linear' } },
        xaxis2: { title: { text: 'response position' } }, yaxis2: { title: { text: 'KL (nats), log' }, type: 'log' },
        shapes: [{ type: 'rect', xref: 'x', yref: 'paper', x0: -0.5, x1: front - 0.5, y0: 0, y1: 1, fillcolor: 'rgba(214,39,40,0.07)', line: { width: 0 } }],
        legend: { orientation: 'h', y: -0.12 }, width: 820, height: 640,
      },
    }, 'kl_per_position');

    const metrics = {
      answers: behaviours.length, model: model.name, base: base.name, frontLoading: { front: finite(loading.front), later: finite(loading.later), ratio: finite(loading.ratio) },
      perPosition: positions, perBehaviour: perBehaviour.map((row, i) => ({ id: behaviours[i].id, kl: row })),
    };
    writeExperimentResults(ctx, { experiment: 'kl', seed: flags.seed, metrics, claims });
    return metrics;
  },
};
