// `deepalign export`: the kit's training sets as JSONL for the papers' PyTorch trainers (lib/datasets
// export.ts has the fields): training a 7B model belongs on the PyTorch stack, and the kit builds the
// same data its own trainers use, tokenised by --model's target:
//   augmentation     Qi et al.'s safety triplets {instruction, harmful, refusal} (+ the target's ids)
//   constrained-sft  fine-tuning examples with their loss masks and the model's reference log-probs
//   presto           the sampled safety-recovery pool x + h[:k] + r with each prefill span
//   finetune         chat fine-tuning JSONL {messages}
// The file goes to --file (default <out>/<kind>.jsonl); <out>/results.json records what was written.

import * as path from 'node:path';
import { AUGMENTATION_DEFAULTS } from '../../lib/train/index.js';
import { writeAugmentationTriplets, writeChatJsonl, writeConstrainedSFTExamples, writePrestoExamples } from '../../lib/datasets/index.js';
import { UsageError, writeExperimentResults, type Experiment } from '../experiment.js';
import { SEED_FLAGS, TARGET_FLAGS, targetFromFlags } from '../resolve.js';
import { trainingSet } from './augment.js';
import { atLeast, attackData, trainingDataFlags } from './finetune.js';

const KINDS = ['augmentation', 'constrained-sft', 'presto', 'finetune'] as const;
type Kind = (typeof KINDS)[number];

/** A --system-prompt given as text is recorded as the first message (the ids use the target's own formatting). */
function messagesSystemPrompt(flags: Record<string, any>): string | undefined {
  const s: string | undefined = flags['system-prompt'];
  return s === undefined || s === 'none' || s === 'default' ? undefined : s;
}

export const exportExperiment: Experiment = {
  name: 'export',
  summary: 'write the kit\'s training sets (augmentation triplets, constrained SFT with reference log-probs, PRESTO prefill spans, chat fine-tuning) as JSONL for PyTorch trainers',
  flags: [
    { name: 'kind', type: 'string', choices: KINDS, required: true, help: 'augmentation: safety triplets (x, h, r); constrained-sft: examples with reference log-probs of --model; presto: the sampled safety-recovery pool with prefill spans; finetune: chat JSONL' },
    { name: 'file', type: 'string', help: 'the JSONL file to write (default: <out>/<kind>.jsonl)' },
    ...TARGET_FLAGS,
    ...trainingDataFlags(
      'the source data: safety triplets (qi-augmentation, or harmful answers with --refusal) for augmentation and presto; (request, response) data (chat JSONL, Harmful HEx-PHI, Alpaca) for constrained-sft and finetune. Default with the organism: its train tasks / --attack set',
      'unused by export',
      'export the first N rows of --data only',
    ).filter((f) => f.name !== 'benign' && f.name !== 'benign-format' && f.name !== 'split'),
    ...SEED_FLAGS.filter((f) => f.name !== 'seeds'),
    { name: 'refusal', type: 'string', help: 'augmentation / presto: a refusal for the triplets that have none (e.g. Harmful HEx-PHI rows)' },
    { name: 'attack', type: 'string', choices: ['harmful', 'identity', 'backdoor', 'benign'], help: 'organism only (no --data), constrained-sft / finetune: notebook 06\'s attack data (default: harmful)' },
    { name: 'examples', type: 'int', default: 100, help: 'organism only: attack examples (Qi et al.: 100)' },
    { name: 'pool-per-triplet', type: 'int', default: AUGMENTATION_DEFAULTS.poolPerTriplet, help: 'presto: seeded (coin, k) draws per triplet, as `deepalign presto` samples its pool (with --seed)' },
    { name: 'max-k', type: 'int', default: AUGMENTATION_DEFAULTS.maxK, help: 'presto: largest harmful prefix k (Qi et al.\'s code: 100)' },
    { name: 'ref-batch-size', type: 'int', default: 16, help: 'constrained-sft: rows per forward pass of the reference model' },
  ],
  async run(ctx) {
    const { flags } = ctx;
    for (const name of ['examples', 'pool-per-triplet', 'max-k', 'ref-batch-size']) atLeast(flags, name, 1);
    const kind = flags.kind as Kind;
    const file = path.resolve(flags.file ?? path.join(ctx.outDir, `${kind}.jsonl`));
    if (flags.attack !== undefined && (kind === 'augmentation' || kind === 'presto')) throw new UsageError(`--attack picks fine-tuning data; --kind ${kind} exports safety triplets`);
    if (flags.refusal !== undefined && (kind === 'constrained-sft' || kind === 'finetune')) throw new UsageError(`--refusal fills in safety triplets; --kind ${kind} exports (request, response) pairs`);
    const systemPrompt = messagesSystemPrompt(flags);
    let records: number;
    let source: string;
    if (kind === 'augmentation' || kind === 'presto') {
      const set = trainingSet(flags);
      source = set.source;
      const target = await targetFromFlags(flags, 'model', ctx.log);
      records = kind === 'augmentation'
        ? writeAugmentationTriplets(file, set.safety, { target }).length
        : writePrestoExamples(file, target, set.safety, { perTriplet: flags['pool-per-triplet'], seed: flags.seed, maxK: flags['max-k'], ...(systemPrompt !== undefined ? { systemPrompt } : {}) }).length;
    } else {
      const data = attackData(ctx);
      source = data.source;
      if (kind === 'finetune') records = writeChatJsonl(file, data.pairs, systemPrompt !== undefined ? { systemPrompt } : {}).length;
      else {
        const target = await targetFromFlags(flags, 'model', ctx.log);
        records = writeConstrainedSFTExamples(file, target, data.pairs, { batchSize: flags['ref-batch-size'], ...(systemPrompt !== undefined ? { systemPrompt } : {}) }).length;
      }
    }
    ctx.log(`export: wrote ${records} ${kind} records from ${source} to ${file}`);
    process.stdout.write(`${file}\n`);
    const metrics = { kind, file, records, source, model: flags.model };
    writeExperimentResults(ctx, { experiment: 'export', seed: flags.seed, metrics });
    return metrics;
  },
};
