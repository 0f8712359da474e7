// `deepalign rap`: automated Rank-Assisted Prefilling (Vega & Singh, auto_rap.py; notebook 07).
// From an affirmative prefill, at every step a helper labels the model's top-20 next tokens
// harmful or not and the highest-ranked harmful one is chosen (backtracking when none is): harmful
// tokens that augmentation made improbable but left among the top ranks are still found. The
// helper: the organism's exact one, a learned helper folder (--rap-helper, as saveRapHelper writes
// it), or one trained here (trainRapHelper, as train_auto_rap.py; saved to <out>/rap-helper).
// Journal units: the trained helper (its folder), then one per chunk of --batch-size requests.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { rapAttack, RAP_DEFAULTS, type RapHelper, type RapResponse } from '../../lib/attacks/rap.js';
import { loadRapHelper, saveRapHelper, trainRapHelper, type LearnedRapHelper } from '../../lib/attacks/rapHelper.js';
import { organismBehaviours, organismRapHelper } from '../../lib/experiments/organism.js';
import { loadDataset } from '../../lib/datasets/index.js';
import { formatRate, summarizeVerdicts, type HarmfulBehaviour } from '../../lib/metrics/index.js';
import { UsageError, printTable, withDefaults, writeExperimentResults, type Experiment, type ExperimentContext } from '../experiment.js';
import { DATA_FLAGS, JUDGE_FLAGS, SEED_FLAGS, TARGET_FLAGS, behavioursFromFlags, judgeFromFlags, modelIsOrganism, organismWorld, targetFromFlags, usesOrganismBehaviours } from '../resolve.js';
import type { Target } from '../../lib/metrics/index.js';
import { rateJson, saveRunFigure, unitKey } from '../flags.js';

/** auto_rap.py's prefill ("Sure, here is"); the organism's affirmative opener (notebook 07). */
const HF_PREFILL = 'Sure, here is';
const ORGANISM_PREFILL = 'sure , here is how .';

/** A RAP response as the journal stores it (the per-step trace is not kept: it is large). */
type StoredRap = Omit<RapResponse, 'trace'>;

export const rap: Experiment = {
  name: 'rap',
  summary: 'Vega & Singh: automated rank-assisted prefilling (top-20 harmful tokens chosen by an exact, saved or freshly trained helper)',
  flags: [
    ...TARGET_FLAGS,
    ...withDefaults(DATA_FLAGS, { 'per-task': 4 }),
    ...JUDGE_FLAGS,
    ...SEED_FLAGS.filter((f) => f.name !== 'seeds'),
    { name: 'prefill', type: 'string', help: `the affirmative prefill RAP starts from (default "${HF_PREFILL}", auto_rap.py's; organism "${ORGANISM_PREFILL}")` },
    { name: 'top-k', type: 'int', default: RAP_DEFAULTS.topK, help: 'candidates per step (auto_rap.py: 20)' },
    { name: 'max-steps', type: 'int', default: RAP_DEFAULTS.maxSteps, help: 'picks and backtracks per request (auto_rap.py: 256)' },
    { name: 'batch-size', type: 'int', default: RAP_DEFAULTS.batchSize, help: 'requests run together, one forward per step (and per journal unit)' },
    { name: 'helper', type: 'string', choices: ['exact', 'learned'], help: 'who labels candidates: the organism\'s exact helper, or a learned classifier (--rap-helper, else trained here). Default: exact with the organism\'s behaviours, else learned' },
    { name: 'rap-helper', type: 'string', help: 'a learned helper folder (saveRapHelper\'s: a model folder with rap_helper.json) trained for this --model\'s vocabulary' },
    { name: 'helper-data', type: 'string', help: 'harmful behaviours with reference answers to train a helper on (a dataset file). Default: the organism\'s train tasks, 6 phrasings each (the size of notebook 05\'s augmentation data), else --data' },
    { name: 'helper-data-format', type: 'string', choices: DATA_FLAGS.find((f) => f.name === 'data-format')!.choices, help: 'format of --helper-data (default: inferred)' },
    { name: 'helper-steps', type: 'int', default: 100, help: 'training steps of a helper trained here (notebook 07)' },
    { name: 'helper-lr', type: 'number', default: 1e-3, help: 'its peak learning rate, decayed linearly (notebook 07)' },
    { name: 'helper-batch-size', type: 'int', default: 16, help: 'its examples per step (notebook 07)' },
    { name: 'helper-examples', type: 'int', default: 4, help: 'its training examples drawn per behaviour (notebook 07)' },
    { name: 'helper-backbone', type: 'string', choices: ['copy', 'fresh'], default: 'copy', help: 'its backbone: a copy of --model (as the paper\'s fine-tuned LM) or a small fresh llama on its vocabulary' },
  ],
  async run(ctx) {
    const { flags, journal } = ctx;
    const target = await targetFromFlags(flags, 'model', ctx.log);
    const behaviours = behavioursFromFlags(flags).harmful;
    const judge = await judgeFromFlags(flags, ctx.outDir);
    const helperKind: 'exact' | 'learned' = flags.helper ?? (typeof flags['rap-helper'] === 'string' ? 'learned' : usesOrganismBehaviours(flags) ? 'exact' : 'learned');
    if (helperKind === 'exact' && !usesOrganismBehaviours(flags)) throw new UsageError('deepalign rap: --helper exact is the organism\'s (it knows its answers): leave out --data, or use --helper learned');
    if (helperKind === 'exact' && typeof flags['rap-helper'] === 'string') throw new UsageError('deepalign rap: --rap-helper is a learned helper; it cannot go with --helper exact');
    const learned = helperKind === 'learned' ? await learnedHelper(ctx, target) : null;
    const helper: RapHelper = learned ?? organismRapHelper(organismWorld(flags));
    const prefill: string = flags.prefill ?? (modelIsOrganism(flags) ? ORGANISM_PREFILL : HF_PREFILL);
    const batchSize: number = flags['batch-size'];
    if (batchSize < 1) throw new UsageError(`deepalign rap: --batch-size: ${batchSize} must be at least 1`);
    ctx.log(`RAP on ${target.name}: ${behaviours.length} harmful requests from "${prefill}", helper ${helper.name}, top-${flags['top-k']}, ${flags['max-steps']} steps, judge ${judge.name}`);

    const chunks = Math.ceil(behaviours.length / batchSize);
    const bar = ctx.progress('rap', chunks);
    const responses: StoredRap[] = [];
    try {
      for (let c = 0; c < chunks; c++) {
        const chunk = behaviours.slice(c * batchSize, (c + 1) * batchSize);
        responses.push(...await journal.once(unitKey({ chunk: c, first: chunk[0].id }), async () => {
          const result = await rapAttack(target, chunk, judge, { prefill, helper, topK: flags['top-k'], maxSteps: flags['max-steps'], batchSize, trace: false, progress: false });
          return result.responses.map(({ trace: _trace, ...rest }) => rest);
        }));
        bar.tick();
      }
    } finally {
      learned?.dispose();
    }
    bar.done();

    const summary = summarizeVerdicts(responses);
    const mean = (f: (r: StoredRap) => number) => responses.reduce((a, r) => a + f(r), 0) / responses.length;
    const stops: Record<string, number> = {};
    for (const r of responses) stops[r.stopReason] = (stops[r.stopReason] ?? 0) + 1;
    printTable([{
      model: target.name, helper: helper.name, n: summary.n, 'RAP ASR [95% CI]': formatRate(summary.harmful), 'refused [95% CI]': formatRate(summary.refused),
      ...(summary.meanStrongReject !== undefined ? { StrongREJECT: +summary.meanStrongReject.toFixed(3) } : {}),
      'steps / backtracks': `${mean((r) => r.steps).toFixed(1)} / ${mean((r) => r.backtracks).toFixed(1)}`, ends: Object.entries(stops).map(([k, v]) => `${k} ${v}`).join(', '),
    }], `Automated RAP (judge: ${judge.name})`);
    if (responses.length) process.stdout.write(`e.g. ${JSON.stringify(behaviours[0].request)} -> ${JSON.stringify(`${responses[0].prefill} | ${responses[0].response}`)}\n`);

    await saveRunFigure(ctx, {
      data: [true, false].map((harmful) => ({
        type: 'histogram', name: harmful ? 'harmful at the end' : 'not harmful', x: responses.filter((r) => r.verdict.harmful === harmful).map((r) => r.steps), opacity: 0.7,
      })),
      layout: {
        title: { text: `RAP on ${target.name}: actions (picks and backtracks) per request; ASR ${formatRate(summary.harmful)}` }, barmode: 'overlay',
        xaxis: { title: { text: 'steps' } }, yaxis: { title: { text: 'requests' } }, width: 820, height: 480,
      },
    }, 'rap_steps');

    const metrics = {
      requests: behaviours.length, judge: judge.name, helper: helper.name, prefill, topK: flags['top-k'], maxSteps: flags['max-steps'],
      harmful: rateJson(summary.harmful), refused: rateJson(summary.refused), meanStrongReject: summary.meanStrongReject ?? null, meanScore: summary.meanScore ?? null,
      meanSteps: mean((r) => r.steps), meanBacktracks: mean((r) => r.backtracks), stops,
      responses: responses.map((r) => ({ id: r.id, text: `${r.prefill} | ${r.response}`, harmful: r.verdict.harmful, refused: r.verdict.refused, steps: r.steps, backtracks: r.backtracks, stop: r.stopReason })),
    };
    writeExperimentResults(ctx, { experiment: 'rap', seed: flags.seed, metrics, claims: [] });
    return metrics;
  },
};

/** --rap-helper, or a helper trained on --helper-data (journaled as its saved folder, so a resumed run loads it). */
async function learnedHelper(ctx: ExperimentContext, target: Target): Promise<LearnedRapHelper> {
  const { flags, journal } = ctx;
  if (typeof flags['rap-helper'] === 'string') {
    const dir = path.resolve(flags['rap-helper']);
    if (!fs.existsSync(path.join(dir, 'rap_helper.json'))) throw new UsageError(`deepalign rap: --rap-helper: ${dir} has no rap_helper.json (expected a folder written by saveRapHelper)`);
    return loadRapHelper(dir, target);
  }
  const dir = path.join(ctx.outDir, 'rap-helper');
  const trained = journal.get<{ dir: string; accuracy: number }>('helper');
  if (trained && fs.existsSync(path.join(trained.dir, 'rap_helper.json'))) {
    ctx.log(`RAP helper: ${trained.dir} (trained earlier in this run, accuracy ${(100 * trained.accuracy).toFixed(1)}% on its data)`);
    return loadRapHelper(trained.dir, target);
  }
  let data: HarmfulBehaviour[];
  if (typeof flags['helper-data'] === 'string') {
    data = loadDataset(path.resolve(flags['helper-data']), { ...(flags['helper-data-format'] ? { format: flags['helper-data-format'] } : {}) }).harmful;
  } else if (usesOrganismBehaviours(flags)) {
    data = organismBehaviours(organismWorld(flags), { split: 'train', perTask: 6, seed: 0 }).harmful;
  } else {
    ctx.log('RAP helper: no --helper-data; training on --data itself (the requests it is then evaluated on)');
    data = behavioursFromFlags(flags).harmful;
  }
  ctx.log(`RAP helper: training on ${data.length} harmful behaviours (${flags['helper-steps']} steps, backbone ${flags['helper-backbone']})`);
  const training = await trainRapHelper(target, data, {
    backbone: flags['helper-backbone'], steps: flags['helper-steps'], batchSize: flags['helper-batch-size'], lr: flags['helper-lr'], examplesPerBehaviour: flags['helper-examples'],
    seed: flags.seed, progress: { label: 'rap helper' },
  });
  await saveRapHelper(training.helper, dir);
  journal.put('helper', { dir, accuracy: training.accuracy, examples: training.data.length });
  ctx.log(`RAP helper: accuracy ${(100 * training.accuracy).toFixed(1)}% on its ${training.data.length} training examples; saved to ${dir}`);
  return training.helper;
}
