// `deepalign presto`: Vega & Singh's PRESTO (notebook 08) on any checkpoint: Qi et al.'s augmentation
// (`deepalign augment`'s data, recipe and evaluation) plus an attention term that penalises the
// attention every query from the first prefill token on puts on the harmful prefill h[:k], with the
// authors' weight (1) and normalisation (2 / target tokens of the batch). Optionally the
// push-forward term as well (our formulation of their rank matching; notebook 08's KL and ListMLE arms).

import { resolvePrestoOptions, resolvePushForwardOptions, type PushForwardOptions } from '../../lib/objectives/index.js';
import { augmentModel } from '../../lib/train/index.js';
import { UsageError, type Experiment } from '../experiment.js';
import { defenceExperiment, hookOptions } from './augment.js';

/** lib's option errors name camelCase options; the user typed flags. */
function asUsage<T>(compute: () => T, flag: (option: string) => string): T {
  try {
    return compute();
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/`(\w+)`/g, (_, option: string) => `--${flag(option)}`));
  }
}

/** The PRESTO and push-forward options of the flags. */
function prestoOptions(flags: Record<string, any>) {
  const scaleText: string = flags['presto-scale'];
  const scale = scaleText === 'tokens' ? 'tokens' : Number(scaleText);
  if (scale !== 'tokens' && (scaleText.trim() === '' || !Number.isFinite(scale))) throw new UsageError(`--presto-scale: ${JSON.stringify(scaleText)} is neither "tokens" nor a number`);
  const presto = asUsage(() => resolvePrestoOptions({ weight: flags['presto-weight'], scale }), (o) => `presto-${o}`);
  let pushForward = null;
  if (flags['push-forward'] !== 'none') {
    const given: PushForwardOptions = { weight: flags['push-weight'], form: flags['push-forward'], topK: flags['push-top-k'], normalise: flags['push-normalise'] };
    pushForward = asUsage(() => resolvePushForwardOptions(given), (o) => (o === 'form' ? 'push-forward' : `push-${o.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`));
  }
  return { presto, pushForward };
}

export const presto: Experiment = defenceExperiment({
  name: 'presto',
  summary: 'Vega & Singh: augmentation + PRESTO (attention on the harmful prefill penalised), optionally + push-forward; prefilling ASR and utility before and after',
  flags: [
    { name: 'presto-weight', type: 'number', default: 1, help: 'weight of the PRESTO term (the authors: 1)' },
    { name: 'presto-scale', type: 'string', default: 'tokens', help: 'PRESTO normalisation: tokens = 2 / (target tokens of the batch), the authors\'; or a fixed number' },
    { name: 'push-forward', type: 'string', choices: ['none', 'kl', 'listmle'], default: 'none', help: 'also add push-forward alignment: the post-prefill next-token distribution pushed toward the bare request\'s (KL, or ListMLE rank matching of its top tokens; our formulation, notebook 08)' },
    { name: 'push-weight', type: 'number', default: 1, help: 'weight of the push-forward term' },
    { name: 'push-top-k', type: 'int', default: 20, help: 'ListMLE: the bare distribution\'s top tokens ranked (RAP\'s list: 20)' },
    { name: 'push-normalise', type: 'string', choices: ['examples', 'tokens'], default: 'examples', help: 'push-forward term: mean over prefilled examples, or their sum over the batch\'s target tokens (notebook 08\'s ListMLE arm: tokens)' },
  ],
  options: (flags) => prestoOptions(flags),
  train: ({ target, safety, anchor, settings, options, hooks }) => {
    const o = options as ReturnType<typeof prestoOptions>;
    return augmentModel(target, safety, anchor, settings, { ...hookOptions(hooks), presto: o.presto, ...(o.pushForward ? { pushForward: o.pushForward } : {}) });
  },
});
