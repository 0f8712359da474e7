// `deepalign` as a user first meets it, run as a child process: the experiment list, each
// experiment's flags, and the errors of a bad command line (exit code 2, naming the flag, the value
// and what was expected) or of a failed run (exit code 1, one line; the stack with DEEPALIGN_DEBUG=1).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXPERIMENTS } from '../../cli/main.js';
import { RUN_FLAGS } from '../../cli/experiment.js';
import { ROOT, runCli, writeHarmfulHexPhi, type CliRun } from './harness.js';

const FIXTURE = path.join(ROOT, 'test/fixtures/hf/models/llama-A'); // an HF model folder without a tokenizer

/** Runs the command lines a few at a time (each child loads the kit), in order of the inputs. */
async function runAll(commands: string[][], width = 4): Promise<CliRun[]> {
  const results: CliRun[] = new Array(commands.length);
  let next = 0;
  const worker = async () => {
    while (next < commands.length) {
      const i = next++;
      results[i] = await runCli(commands[i]);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return results;
}

describe('deepalign --help', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-cli-help-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('lists every experiment with its summary; no arguments is a usage error', async () => {
    const [help, bare] = await Promise.all([runCli(['--help']), runCli([])]);
    expect(help.code).toBe(0);
    const lines = help.stdout.split('\n');
    for (const e of EXPERIMENTS) expect(lines.some((l) => l.startsWith(`  ${e.name} `) && l.trimEnd().endsWith(e.summary)), e.name).toBe(true);
    expect(EXPERIMENTS.map((e) => e.name)).toEqual(expect.arrayContaining(['refusal-prefixes', 'kl', 'prefill', 'decoding', 'gcg', 'rap', 'insertion']));
    expect(bare.code).toBe(2);
    expect(bare.stdout).toContain('Usage: deepalign <experiment> [flags]');
  }, 120_000);

  it('`npx deepalign --help` works from the repository root (package.json "bin")', async () => {
    const run = await runCli(['--help'], { command: ['npx', '--no-install', 'deepalign'] });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: deepalign <experiment> [flags]');
  }, 120_000);

  it('each experiment lists its flags with type, choices and default', async () => {
    const runs = await runAll(EXPERIMENTS.map((e) => [e.name, '--help']));
    runs.forEach((run, i) => {
      const e = EXPERIMENTS[i];
      expect(run.code, `${e.name} --help: ${run.stderr}`).toBe(0);
      expect(run.stdout).toContain(`deepalign ${e.name}: ${e.summary}`);
      for (const f of [...e.flags, ...RUN_FLAGS]) expect(run.stdout).toContain(`--${f.name} <${f.type}>`);
    });
    const prefill = runs[EXPERIMENTS.findIndex((e) => e.name === 'prefill')].stdout.replace(/\s+/g, ' ');
    expect(prefill).toContain('--ks <int-list> prefilled harmful tokens k');
    expect(prefill).toContain('[default: 0,1,2,3,5,10,20]');
    expect(prefill).toContain('[one of: qi, t1, greedy; default: qi,t1]');
    expect(prefill).toContain('[one of: keyword, qi-harmfulness, strongreject, llama-guard, organism]');
  }, 150_000);

  it('bad command lines exit 2 naming the flag, the value and what was expected', async () => {
    const data = path.join(tmp, 'harmful.jsonl');
    writeHarmfulHexPhi(data);
    const cases: [string[], RegExp][] = [
      [['prefil'], /unknown experiment "prefil"; did you mean prefill\?/],
      [['prefill', '--kss', '1'], /deepalign prefill: unknown flag --kss; did you mean --ks\?/],
      [['prefill', '--ks', '0,five'], /deepalign prefill: --ks: "five" is not an integer \(expected int-list/],
      [['prefill', '--per-task', '2.5'], /--per-task: "2\.5" is not an integer \(expected int/],
      [['prefill', '--decodings', 'qi,hot'], /--decodings: "hot" is not one of qi, t1, greedy/],
      [['gcg', '--steps'], /--steps needs a value \(expected int/],
      [['prefill', '--model', path.join(tmp, 'missing')], /--model: ".*missing" is not a folder \(expected a Hugging Face model folder/],
      [['prefill', '--model', FIXTURE], /--data is required with a Hugging Face --model/],
      [['prefill', '--data', data, '--judge', 'organism'], /--judge organism needs the organism's behaviours/],
      [['kl', '--model', FIXTURE, '--data', data, '--out', path.join(tmp, 'kl')], /deepalign kl: --base-model is required with a Hugging Face --model/],
    ];
    const runs = await runAll(cases.map(([args]) => args));
    runs.forEach((run, i) => {
      expect(run.code, `${cases[i][0].join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(cases[i][1]);
      expect(run.stderr.trim().split('\n').filter((l) => !l.startsWith('engine:'))).toHaveLength(1);
    });
    // A command line that fails leaves no journal behind to block the corrected one.
    expect(fs.existsSync(path.join(tmp, 'kl', 'journal.jsonl'))).toBe(false);
  }, 150_000);

  it('a failed run exits 1 with one line, and the stack with DEEPALIGN_DEBUG=1', async () => {
    const data = path.join(tmp, 'harmful.jsonl');
    writeHarmfulHexPhi(data);
    const args = ['prefill', '--model', FIXTURE, '--data', data, '--out', path.join(tmp, 'failed')];
    const [plain, debug] = await Promise.all([runCli(args), runCli(args, { env: { DEEPALIGN_DEBUG: '1' } })]);
    expect(plain.code).toBe(1);
    const lines = plain.stderr.trim().split('\n');
    expect(lines[lines.length - 1]).toMatch(/^deepalign prefill: error: loadTarget: .*tokenizer\.json not found/);
    expect(plain.stderr).not.toMatch(/\n\s+at /);
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/\n\s+at .*loadTarget/);
  }, 150_000);
});
