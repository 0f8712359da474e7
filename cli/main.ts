// `deepalign <experiment> [flags]`: the command line of the kit. Each experiment (cli/experiments/)
// runs the same lib functions as the notebooks on any Hugging Face checkpoint, dataset and judge
// (or, by default, on the model organism), resumably: finished units are journaled in --out and a
// re-run continues where an interrupted one stopped. Exit codes: 0 done (or stopped by
// --stop-after), 1 the run failed (one line; DEEPALIGN_DEBUG=1 adds the stack), 2 bad usage.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatEngineReport, initEngine } from '../lib/engine/index.js';
import { closeBrowser } from '../lib/report/figure.js';
import {
  CLI_STARTED_ENV, RUN_FLAGS, StopRequested, UsageError, checkFlagSpecs, formatFlagHelp, nearestName, openJournal, parseFlags, stderrProgress,
  type Experiment, type ExperimentContext,
} from './experiment.js';
import { checkCommonFlags, judgeStats, PACKAGE_ROOT } from './resolve.js';
import { refusalPrefixes } from './experiments/refusalPrefixes.js';
import { kl } from './experiments/kl.js';
import { prefill } from './experiments/prefill.js';
import { decoding } from './experiments/decoding.js';
import { gcgExperiment } from './experiments/gcg.js';
import { rap } from './experiments/rap.js';
import { insertion } from './experiments/insertion.js';
import { finetune } from './experiments/finetune.js';
import { constrainedSft } from './experiments/constrainedSft.js';
import { augment } from './experiments/augment.js';
import { presto } from './experiments/presto.js';
import { worstInsertion } from './experiments/worstInsertion.js';
import { derta } from './experiments/derta.js';
import { exportExperiment } from './experiments/export.js';

/** Every experiment, in the order `deepalign --help` lists them: attacks and measurements, then training (fine-tuning attacks, defences), then data export. */
export const EXPERIMENTS: Experiment[] = [
  refusalPrefixes, kl, prefill, decoding, gcgExperiment, rap, insertion,
  finetune, constrainedSft, augment, presto, worstInsertion, derta, exportExperiment,
];

function packageVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version ?? '?';
  } catch {
    return '?';
  }
}

/** `deepalign --help`: usage and one line per experiment. */
export function mainHelp(experiments: readonly Experiment[] = EXPERIMENTS): string {
  const width = Math.max(...experiments.map((e) => e.name.length)) + 4;
  return [
    `deepalign ${packageVersion()}: experiments on the depth of LLM safety alignment (Qi et al. 2025; Vega & Singh; Lyu et al.)`,
    '',
    'Usage: deepalign <experiment> [flags]      (deepalign <experiment> --help lists its flags)',
    '',
    'Experiments:',
    ...experiments.map((e) => `  ${e.name.padEnd(width)}${e.summary}`),
    '',
    'Every experiment runs on the model organism by default (data/organism: no download needed); --model, --data and --judge',
    'point it at a Hugging Face folder, a dataset file and another judge. Results go to --out (default runs/<experiment>):',
    'results.json, figures (HTML, and PNG when Chromium is found) and journal.jsonl, from which an interrupted run resumes.',
    'Exit codes: 0 done, 1 the run failed (DEEPALIGN_DEBUG=1 prints the stack), 2 bad usage.',
  ].join('\n');
}

/** `deepalign <experiment> --help`. */
export function experimentHelp(experiment: Experiment): string {
  return [
    `deepalign ${experiment.name}: ${experiment.summary}`,
    '',
    `Usage: deepalign ${experiment.name} [flags]`,
    '',
    'Flags:',
    formatFlagHelp([...experiment.flags, ...RUN_FLAGS, { name: 'help', type: 'boolean', help: 'this help' }]),
  ].join('\n');
}

const errorLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');

/** Runs one command line; returns the exit code (never throws). */
export async function main(argv: readonly string[], experiments: readonly Experiment[] = EXPERIMENTS): Promise<number> {
  const started = Date.now();
  const name = argv[0];
  let where = 'deepalign';
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      process.stdout.write(mainHelp(experiments) + '\n');
      return name === undefined ? 2 : 0;
    }
    if (name === '--version') {
      process.stdout.write(packageVersion() + '\n');
      return 0;
    }
    const experiment = experiments.find((e) => e.name === name);
    if (!experiment) {
      const near = nearestName(name, experiments.map((e) => e.name));
      throw new UsageError(`unknown experiment ${JSON.stringify(name)}${near ? `; did you mean ${near}?` : ''} (expected one of: ${experiments.map((e) => e.name).join(', ')})`);
    }
    where = `deepalign ${name}`;
    const specs = [...experiment.flags, ...RUN_FLAGS];
    checkFlagSpecs(specs, where);
    const { flags, help } = parseFlags(specs, argv.slice(1), where);
    if (help) {
      process.stdout.write(experimentHelp(experiment) + '\n');
      return 0;
    }
    if (flags['stop-after'] !== undefined && flags['stop-after'] < 1) throw new UsageError(`${where}: --stop-after: ${flags['stop-after']} must be at least 1`);
    checkCommonFlags(flags, new Set(specs.map((s) => s.name)));
    const quiet = flags.quiet === true;
    // Silences the progress bars inside lib too (they read this variable).
    if (quiet) process.env.DEEPALIGN_PROGRESS = '0';
    flags.out = flags.out ?? path.join('runs', name);
    const outDir = path.resolve(flags.out);
    const journal = openJournal(outDir, { experiment: name, flags, fresh: flags.fresh === true, stopAfter: flags['stop-after'] });
    const log = (message: string) => {
      if (!quiet) process.stderr.write(`${message}\n`);
    };
    process.env[CLI_STARTED_ENV] = String(started);
    const engine = await initEngine();
    log(formatEngineReport(engine).split('\n')[0]);
    if (journal.size > 0) log(`journal: resuming from ${journal.file} (${journal.size} finished unit${journal.size === 1 ? '' : 's'})`);
    const ctx: ExperimentContext = { flags, outDir, journal, progress: (label, total) => stderrProgress(label, total, quiet), log };
    const summary = () =>
      `journal: ${journal.stats.reused} unit${journal.stats.reused === 1 ? '' : 's'} reused, ${journal.stats.computed} computed; ` +
      `judge: ${judgeStats.judged} responses judged in ${judgeStats.calls} calls${judgeStats.utility ? `, ${judgeStats.utility} utility scores` : ''}; ` +
      `${((Date.now() - started) / 1000).toFixed(1)} s`;
    try {
      await experiment.run(ctx);
    } catch (e) {
      if (e instanceof StopRequested) {
        process.stderr.write(`${where}: ${e.message}\n${summary()}\n`);
        return 0;
      }
      throw e;
    }
    log(summary());
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message.startsWith('deepalign') ? '' : `${where}: `}${errorLine(e)}\n`);
      return 2;
    }
    process.stderr.write(`${where}: error: ${errorLine(e)}\n`);
    if (process.env.DEEPALIGN_DEBUG === '1' && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return 1;
  } finally {
    await closeBrowser().catch(() => undefined);
  }
}

// Run directly (`npx tsx cli/main.ts ...`) as well as through bin/deepalign.mjs.
if (process.argv[1] && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url) {
  process.exit(await main(process.argv.slice(2)));
}
