// `deepalign worst-insertion`: random worst-insertion training (our formulation of Lyu et al.'s
// adversarial safety alignment; notebook 09) on any checkpoint: augmentation's data, recipe and
// evaluation, with the safety rows rebuilt at every step from the model being trained: for each
// insertion slot, M seeded candidate insertions (j refusal tokens, then n harmful tokens) are scored
// by how likely the model continues the harmful answer after them, and the refusal is trained after
// the worst one. Half the slots stay plain refusals. Exact resume holds: the candidates are a
// function of the seed, the step and the model, all of which a checkpoint restores.

import { WORST_INSERTION_DEFAULTS, resolveWorstInsertionOptions } from '../../lib/objectives/index.js';
import { worstInsertionModel } from '../../lib/train/index.js';
import { UsageError, type Experiment } from '../experiment.js';
import { defenceExperiment } from './augment.js';

const d = WORST_INSERTION_DEFAULTS;

/** The worst-insertion options of the flags (lib's errors name camelCase options; the user typed flags). */
function worstInsertionOptions(flags: Record<string, any>) {
  try {
    return resolveWorstInsertionOptions({ candidates: flags.candidates, maxSpan: flags['max-span'], continuation: flags.continuation, plainProbability: flags['plain-probability'] });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/`(\w+)`/g, (_, o: string) => `--${o.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`));
  }
}

export const worstInsertion: Experiment = defenceExperiment({
  name: 'worst-insertion',
  summary: 'Lyu et al.: random worst-insertion training (refusals trained after the model\'s worst harmful insertion); prefilling ASR and utility before and after',
  flags: [
    { name: 'candidates', type: 'int', default: d.candidates, help: 'M: candidate insertions sampled and scored per insertion slot' },
    { name: 'max-span', type: 'int', default: d.maxSpan, help: 'nMax: the most harmful tokens one insertion holds' },
    { name: 'continuation', type: 'int', default: d.continuation, help: 'm: harmful-continuation tokens each candidate is scored on' },
    { name: 'plain-probability', type: 'number', default: d.plainProbability, help: 'share of safety slots that are plain refusals instead of insertions, in [0, 1)' },
  ],
  options: (flags) => worstInsertionOptions(flags),
  train: ({ target, safety, anchor, settings, options, hooks }) =>
    // worst insertion builds its own examples (no prepareExamples to pass): the held stop is thrown once a step's insertions are chosen
    worstInsertionModel(target, safety, anchor, settings, { ...hooks.options, ...(options as ReturnType<typeof worstInsertionOptions>), onInsertions: () => hooks.check() }),
});
