// `deepalign derta`: DeRTa (Yuan et al. 2024, notebook 10) on any checkpoint: augmentation's data,
// utility anchor, recipe and evaluation, with each step's safety rows split between MLE with a
// harmful prefix (x + h[:k] + r) and Reinforced Transition Optimisation (x + h, the refusal token
// trained at every position of the harmful answer), one token-level mean over both and the anchor.

import { DERTA_DEFAULTS, resolveDertaOptions } from '../../lib/objectives/index.js';
import { dertaModel } from '../../lib/train/index.js';
import { UsageError, type Experiment } from '../experiment.js';
import { defenceExperiment, hookOptions } from './augment.js';

/** The DeRTa options of the flags (lib's errors name camelCase options; the user typed flags). */
function dertaOptions(flags: Record<string, any>) {
  try {
    return resolveDertaOptions({ rtoShare: flags['rto-share'], keepFraction: flags['keep-fraction'], refusalToken: flags['refusal-token'] ?? null });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/`(\w+)`/g, (_, o: string) => `--${o.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`));
  }
}

export const derta: Experiment = defenceExperiment({
  name: 'derta',
  summary: 'Yuan et al. DeRTa: MLE with harmful prefixes + reinforced transition optimisation, with the utility anchor; prefilling ASR and utility before and after',
  flags: [
    { name: 'rto-share', type: 'number', default: DERTA_DEFAULTS.rtoShare, help: 'share of each step\'s safety rows that are RTO rows, in (0, 1) (the authors: 3000 RTO + 3000 MLE rows, 0.5)' },
    { name: 'keep-fraction', type: 'number', default: DERTA_DEFAULTS.keepFraction, help: 'share of each RTO row\'s positions trained, in (0, 1] (their LoRA script: 1; their full-parameter script: 0.05)' },
    { name: 'refusal-token', type: 'int', help: 'one refusal token id for every RTO row (the authors\' "Sorry") (default: each triplet\'s first refusal token)' },
  ],
  options: (flags) => dertaOptions(flags),
  train: ({ target, safety, anchor, settings, options, hooks }) => dertaModel(target, safety, anchor, settings, { ...hookOptions(hooks), ...(options as ReturnType<typeof dertaOptions>) }),
});
