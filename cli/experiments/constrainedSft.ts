// `deepalign constrained-sft`: Qi et al.'s token-wise constrained fine-tuning (Section 4, Eq. 3;
// notebook 06) as the defence against fine-tuning attacks: the same data, steps and evaluation as
// `deepalign finetune`, with the loss
//   loss_t = (2 / beta_t) * -log sigmoid(beta_t * (log p(y_t) - log p_ref(y_t)))
// whose large early betas keep the first response tokens near the initial model's. The reference
// log-probs come from --model before any training (computed once, as the authors' code does).

import {
  CONSTRAINED_SFT_DEFAULTS, collateRefLogProbs, constrainedSFTObjective, resolveConstrainedSFTOptions, withRefLogProbs, type ConstrainedSFTOptions, type ResolvedConstrainedSFTOptions,
} from '../../lib/objectives/index.js';
import { UsageError, type Experiment } from '../experiment.js';
import { fineTuneExperiment } from './finetune.js';

const d = CONSTRAINED_SFT_DEFAULTS;

export const constrainedSft: Experiment = fineTuneExperiment({
  name: 'constrained-sft',
  summary: 'Qi et al. Eq. 3: fine-tuning with token-wise constrained SFT (biased betas keep the first tokens aligned), harmful rate before and after',
  flags: [
    { name: 'beta-first', type: 'number', help: `beta of each response's first token (default: ${d.betaFirst}, Qi et al.)` },
    { name: 'beta-early', type: 'number', help: `beta of response tokens 2..--early-until (default: ${d.betaEarly})` },
    { name: 'early-until', type: 'int', help: `last response token (1-based) that gets --beta-early (default: ${d.earlyUntil})` },
    { name: 'beta-late', type: 'number', help: `beta of the later response tokens (default: ${d.betaLate})` },
    { name: 'beta', type: 'number', help: 'one beta at every position (Qi et al. Table 4\'s uniform betas 0.1, 0.5, 2); not with --beta-first/--beta-early/--beta-late' },
    { name: 'form', type: 'string', choices: ['eq3', 'reference'], default: d.form, help: 'eq3: the paper\'s loss; reference: the authors\' code, a cross-entropy weighted by the detached 2 sigmoid(beta (log p_ref - log p)), clamped at 1e-3 (same gradient except where the clamp acts)' },
    { name: 'ref-batch-size', type: 'int', default: 16, help: 'rows per forward pass when computing the reference log-probs' },
  ],
  objective: {
    resolve(flags) {
      // Only the betas given: lib refuses --beta together with the per-position ones.
      const options: ConstrainedSFTOptions = Object.fromEntries(Object.entries({
        betaFirst: flags['beta-first'], betaEarly: flags['beta-early'], earlyUntil: flags['early-until'], betaLate: flags['beta-late'], beta: flags.beta, form: flags.form,
      }).filter(([, v]) => v !== undefined));
      if (!(flags['ref-batch-size'] >= 1)) throw new UsageError(`--ref-batch-size: ${flags['ref-batch-size']} must be at least 1`);
      try {
        return { objective: 'constrained SFT', ...resolveConstrainedSFTOptions(options) };
      } catch (e) {
        // lib names the option in camelCase; the user typed flags
        throw new UsageError((e as Error).message.replace(/`(betaFirst|betaEarly|earlyUntil|betaLate|beta|form)`/g, (_, k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`));
      }
    },
    prepare(ctx, target, examples, resolved) {
      ctx.log(`constrained-sft: reference log-probs of ${examples.length} examples under ${target.name} (before training)`);
      const { betaFirst, betaEarly, earlyUntil, betaLate, form } = resolved as unknown as ResolvedConstrainedSFTOptions;
      return {
        options: { objective: constrainedSFTObjective({ betaFirst, betaEarly, earlyUntil, betaLate, form }), batchExtras: collateRefLogProbs },
        examples: withRefLogProbs(target.model, examples, { batchSize: ctx.flags['ref-batch-size'], padId: target.padTokenId }),
      };
    },
  },
});
