// npm run bench: training and greedy-generation throughput of the kit against the PyTorch CPU peer
// (torch_reference.py), measured in one run on the same machine; writes bench/results.json.
//
//   npx tsx bench/bench.ts [--steps 20] [--warmup 5] [--rounds 2] [--peer PATH | --no-peer] [--backend wasm] [--threads N]
//                          [--gen-warmup 0] [--no-organism] [--reproduce] [--out bench/results.json]
//   npx tsx bench/bench.ts --real-scale [flags of bench/realScale.ts]   (npm run bench -- --real-scale)
// --reproduce also times `npm run reproduce` (every notebook, full size) and records its wall time.
// --gen-warmup N: tokens ours generates, untimed, before each timed generation (default 0). The
// peer script (not ours to change) times its first generation cold, so only 0 is a like-for-like
// comparison; a warm-up favours ours (1.2-1.9x on the first generation, bench/NOTES.md), and the
// output and results.json then say so.
// The machine is shared, so the peer and ours run alternately for --rounds rounds and each side's
// best round is reported (interference only ever slows a run down); the peer runs at 2 and at 1
// thread each round and keeps its better figure.
// The peer is looked up at ../shared/bench/torch_reference.py (or --peer / env TORCH_REFERENCE);
// without it, or without python3-torch, the peer's figures are null.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatEngineReport, initEngine, tf, type BackendName } from '../lib/engine/index.js';
import { STANDARD_HF_CONFIG, createBenchModel, libGenerate, libTrainStep } from './libModel.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const option = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const STEPS = Number(option('steps', '20'));
const ROUNDS = Math.max(1, Number(option('rounds', '2')));
const WARMUP = Number(option('warmup', '5'));
const BATCH = 16, SEQ = 64, PROMPT = 16, NEW_TOKENS = 48;
const GEN_WARMUP = Number(option('gen-warmup', '0'));
// The repository root from this file's location, so the bench runs from any directory.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// --real-scale: the SmolLM2-135M / Qwen2.5-0.5B-shaped rows instead (bench/realScale.ts, which
// takes the remaining flags and writes bench/results-real-scale.json).
if (flag('real-scale')) {
  const realScale = path.join(repoRoot, 'bench', 'realScale.ts');
  const child = spawnSync(process.execPath, [...process.execArgv, realScale, ...args.filter((a) => a !== '--real-scale')], { stdio: 'inherit' });
  process.exit(child.status ?? 1);
}

interface PeerResult {
  train: number | null;
  generate_b1: number | null;
  generate_b16: number | null;
  peak_rss_mb: number | null;
  version: string | null;
  why?: string;
}

/** The peer at 2 threads and at 1 thread, best of each figure: 2 OpenMP threads collapse when
 * another process holds a core, and the comparison should not profit from that. */
function runPeer(configPath?: string): PeerResult {
  const runs = [runPeerOnce(configPath, 2), runPeerOnce(configPath, 1)];
  const pick = (key: 'train' | 'generate_b1' | 'generate_b16' | 'peak_rss_mb') => {
    const xs = runs.map((r) => r[key]).filter((v): v is number => v !== null);
    return xs.length ? Math.max(...xs) : null;
  };
  return { train: pick('train'), generate_b1: pick('generate_b1'), generate_b16: pick('generate_b16'), peak_rss_mb: pick('peak_rss_mb'), version: runs[0].version, why: runs[0].why };
}

function runPeerOnce(configPath: string | undefined, threads: number): PeerResult {
  const none = (why: string): PeerResult => ({ train: null, generate_b1: null, generate_b16: null, peak_rss_mb: null, version: null, why });
  if (flag('no-peer')) return none('--no-peer');
  const script = option('peer', process.env.TORCH_REFERENCE ?? path.resolve(repoRoot, '../shared/bench/torch_reference.py'));
  if (!existsSync(script)) return none(`peer script not found at ${script}`);
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const configArgs = configPath ? ['--config', configPath] : [];
  const child = spawnSync(python, [script, ...configArgs, '--batch', String(BATCH), '--seq', String(SEQ), '--steps', String(STEPS), '--threads', String(threads), '--new-tokens', String(NEW_TOKENS)], {
    encoding: 'utf8', timeout: 600_000,
  });
  if (child.status !== 0) return none(`peer failed (${python}): ${(child.stderr || String(child.error)).trim().split('\n').pop()}`);
  const lines = child.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | string>);
  const train = lines.find((l) => l.what === 'train_step');
  const gen = (b: number) => lines.find((l) => l.what === 'generate_kv' && l.batch === b);
  return {
    train: (train?.tokens_per_s as number) ?? null,
    generate_b1: (gen(1)?.tokens_per_s as number) ?? null,
    generate_b16: (gen(BATCH)?.tokens_per_s as number) ?? null,
    peak_rss_mb: (train?.max_rss_mb as number) ?? null,
    version: (train?.peer as string) ?? null,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Training and generation throughput of lib/model + lib/train's AdamW on the standard model. */
async function runOurs(config: Record<string, unknown> = STANDARD_HF_CONFIG, withGeneration = true) {
  const { model, opt } = createBenchModel(config);
  const vocab = model.config.vocabSize;
  const data = tf.randomUniform([BATCH, SEQ + 1], 0, vocab, 'int32', 1) as tf.Tensor2D;
  const times: number[] = [];
  let loss = NaN;
  for (let s = 0; s < WARMUP + STEPS; s++) {
    const t0 = performance.now();
    loss = await libTrainStep(model, opt, data);
    if (s >= WARMUP) times.push(performance.now() - t0);
  }
  const stepMs = median(times);
  const generate: Record<number, number> = {};
  for (const b of withGeneration ? [1, BATCH] : []) {
    const prompt = Array.from({ length: b }, (_, i) => Array.from({ length: PROMPT }, (_, j) => (i * 131 + j * 17 + 3) % vocab));
    if (GEN_WARMUP > 0) await libGenerate(model, prompt, GEN_WARMUP); // untimed: first-call kernel setup (the peer gets none)
    const t0 = performance.now();
    await libGenerate(model, prompt, NEW_TOKENS);
    generate[b] = (b * NEW_TOKENS) / ((performance.now() - t0) / 1000);
  }
  data.dispose();
  const params = [...model.variables().values()].reduce((n, p) => n + p.size, 0);
  model.dispose();
  return {
    train: (BATCH * SEQ) / (stepMs / 1000),
    stepMs,
    loss,
    generate_b1: generate[1],
    generate_b16: generate[BATCH],
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    params,
  };
}

const ratio = (ours: number, peer: number | null) => (peer === null ? null : Math.round((ours / peer) * 1000) / 1000);

// Under ESM lib/engine looks for the native addon from the working directory upwards only, so a
// bench started elsewhere would silently run on plain wasm (3x slower): point it at this repo's build.
const addonPath = path.join(repoRoot, 'build', 'Release', 'deepalign_native.node');
if (!process.env.DEEPALIGN_NATIVE && existsSync(addonPath)) process.env.DEEPALIGN_NATIVE = addonPath;

const t0 = performance.now();
const report = await initEngine({
  backend: (option('backend', '') || undefined) as BackendName | undefined,
  threads: option('threads', '') ? Number(option('threads', '')) : undefined,
});
console.log(formatEngineReport(report));
const best = <T,>(runs: T[], key: keyof T): number | null => {
  const xs = runs.map((r) => r[key] as unknown).filter((v): v is number => typeof v === 'number');
  return xs.length ? Math.max(...xs) : null;
};
const peerRuns: PeerResult[] = [];
const ourRuns: Awaited<ReturnType<typeof runOurs>>[] = [];
for (let r = 0; r < ROUNDS; r++) {
  peerRuns.push(runPeer());
  ourRuns.push(await runOurs());
  const [p, o] = [peerRuns[r], ourRuns[r]];
  console.log(`round ${r + 1}/${ROUNDS}: train ours ${Math.round(o.train)} peer ${p.train ?? '-'}; gen b1 ours ${Math.round(o.generate_b1)} peer ${p.generate_b1 ?? '-'}; gen b${BATCH} ours ${Math.round(o.generate_b16)} peer ${p.generate_b16 ?? '-'} tok/s`);
}
const peer: PeerResult = {
  train: best(peerRuns, 'train'),
  generate_b1: best(peerRuns, 'generate_b1'),
  generate_b16: best(peerRuns, 'generate_b16'),
  peak_rss_mb: best(peerRuns, 'peak_rss_mb'),
  version: peerRuns[0].version,
  why: peerRuns[0].why,
};
const ours = {
  ...ourRuns[0],
  train: best(ourRuns, 'train')!,
  stepMs: Math.min(...ourRuns.map((o) => o.stepMs)),
  generate_b1: best(ourRuns, 'generate_b1')!,
  generate_b16: best(ourRuns, 'generate_b16')!,
  peak_rss_mb: best(ourRuns, 'peak_rss_mb')!,
};

// The organism's own model: the benchmark architecture with the synthetic world's vocabulary.
let organism: { vocab: number; train: { ours: number; peer: number | null; ratio: number | null } } | null = null;
if (!flag('no-organism')) {
  try {
    const { buildWorld } = await import('../lib/organism/index.js');
    const { organismConfig } = await import('../lib/train/index.js');
    const config = organismConfig(buildWorld()) as Record<string, unknown>;
    const configPath = path.join(os.tmpdir(), `deepalign-organism-config-${process.pid}.json`);
    writeFileSync(configPath, JSON.stringify(config));
    const p = runPeer(configPath);
    const o = await runOurs(config, false);
    organism = { vocab: config.vocab_size as number, train: { ours: Math.round(o.train), peer: p.train, ratio: ratio(o.train, p.train) } };
  } catch (err) {
    console.log(`organism model skipped: ${(err as Error).message}`);
  }
}

// Wall time of the full reproduction (opt-in: it runs every notebook at full size).
let reproduce: { wall_s: number; ok: boolean } | null = null;
if (flag('reproduce')) {
  const t = performance.now();
  const child = spawnSync('npm', ['run', '-s', 'reproduce'], { cwd: repoRoot, stdio: 'inherit', timeout: 3_600_000 });
  reproduce = { wall_s: Math.round((performance.now() - t) / 100) / 10, ok: child.status === 0 };
}

const results = {
  machine: `${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()}-${os.arch()}, node ${process.versions.node}`,
  date: new Date().toISOString(),
  backend: report.backend,
  model: { ...STANDARD_HF_CONFIG, params: ours.params, batch: BATCH, seq: SEQ, prompt: PROMPT, new_tokens: NEW_TOKENS },
  engine: { reason: report.reason, threads: report.threads, fixes: report.fixes },
  peer: peer.version,
  train: { ours: Math.round(ours.train), peer: peer.train, ratio: ratio(ours.train, peer.train), step_ms: Math.round(ours.stepMs * 10) / 10 },
  generate_b1: { ours: Math.round(ours.generate_b1), peer: peer.generate_b1, ratio: ratio(ours.generate_b1, peer.generate_b1) },
  generate_b16: { ours: Math.round(ours.generate_b16), peer: peer.generate_b16, ratio: ratio(ours.generate_b16, peer.generate_b16) },
  // untimed tokens generated before each timed generation; the peer script generates none
  generation_warmup_tokens: { ours: GEN_WARMUP, peer: 0 },
  peak_rss_mb: { ours: ours.peak_rss_mb, peer: peer.peak_rss_mb },
  organism_train: organism,
  reproduce,
  rounds: ROUNDS,
  load_average: os.loadavg().map((x) => Math.round(x * 100) / 100),
  wall_s: Math.round((performance.now() - t0) / 100) / 10,
};

const row = (name: string, o: number | null, p: number | null, unit = 'tok/s') =>
  `${name.padEnd(22)} ${String(o ?? '-').padStart(9)} ${String(p ?? '-').padStart(9)} ${p && o ? (o / p).toFixed(3).padStart(7) : '      -'}  ${unit}`;
console.log(`\n${'measure'.padEnd(22)} ${'ours'.padStart(9)} ${'peer'.padStart(9)} ${'ratio'.padStart(7)}`);
console.log(row('train (median step)', results.train.ours, results.train.peer));
console.log(row('generate batch 1', results.generate_b1.ours, results.generate_b1.peer));
console.log(row(`generate batch ${BATCH}`, results.generate_b16.ours, results.generate_b16.peer));
console.log(row('peak RSS', results.peak_rss_mb.ours, results.peak_rss_mb.peer, 'MB'));
if (organism) console.log(row(`organism train (V=${organism.vocab})`, organism.train.ours, organism.train.peer));
console.log(GEN_WARMUP > 0
  ? `generation: ours warmed up with ${GEN_WARMUP} untimed tokens per batch size, the peer cold (its script has no warm-up): not like for like, see bench/NOTES.md`
  : 'generation: both sides cold (no untimed warm-up), each after its training steps');
if (reproduce) console.log(`npm run reproduce: ${reproduce.wall_s} s${reproduce.ok ? '' : ' (FAILED)'}`);
console.log(`peer: ${peer.version ?? `none (${peer.why})`}; ours: step ${results.train.step_ms} ms, loss ${ours.loss.toFixed(3)}; wall ${results.wall_s} s`);
const out = path.resolve(option('out', path.join(repoRoot, 'bench', 'results.json')));
writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
console.log(`wrote ${out}`);
