// npm run bench -- --real-scale (or npx tsx bench/realScale.ts): the kit against the PyTorch CPU
// peer (bench/torch_real_scale.py) on random-init models of real checkpoints' shapes, SmolLM2-135M
// and Qwen2.5-0.5B, float32: prefill forward (batch 1 x 512), greedy KV-cache generation (batch 1
// and 8), a training step (full fine-tuning and LoRA r=16, batch 4 x 256) and each row's peak RSS.
// Writes bench/results-real-scale.json.
//
//   npx tsx bench/realScale.ts [--models smollm2-135m,qwen2.5-0.5b] [--rows prefill,generate-b1,generate-b8,train-full,train-lora]
//        [--rounds 2] [--threads 2] [--peer-threads 2,1] [--backend native] [--peer PATH | --no-peer]
//        [--quiet-load 0] [--quiet-wait 300] [--out bench/results-real-scale.json]
//        [--prefill-seq 512] [--prompt 32] [--new-tokens 32] [--train-batch 4] [--train-seq 256] [--train-warmup 1] [--train-steps 2]
//
// Every row of every side runs in a process of its own, so its peak RSS (getrusage maxrss) is that
// row's alone and no two processes ever hold a model at once (the machine is small and shared).
// Sides alternate within each round, the one that starts alternating too; each side keeps its best
// round (interference only ever slows a run down) and, within a process, its fastest timed step.
// The load average and the memory available are recorded beside every figure; --quiet-load L
// waits (up to --quiet-wait seconds) before each process until the 1-minute load is below L.
// The peer runs at each of --peer-threads (default: ours' thread count, then 1) and keeps its
// better figure, as bench.ts does: 2 OpenMP threads collapse when another process holds a core,
// and the comparison should not profit from that.
//
// The peer is refused when it runs on netlib's reference BLAS (Debian's default libblas3, ~10x
// slower than PyTorch with a real BLAS): a ratio against it would say nothing. The bench prints
// why and how to fix it (`apt-get install -y libopenblas0-pthread`) and reports ours alone.
//
// Ours runs the kit's own stack: lib/model's createModel/forward/generate, lib/objectives'
// targetLogProbs, lib/train's AdamW, lib/model/lora.ts's adapters. The training step feeds
// 4 x 257 ids to score 4 x 256 targets (the peer forwards 4 x 256): conservative for ours.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatEngineReport, initEngine, tf, type BackendName } from '../lib/engine/index.js';
import { createModel, generate, type Decoder } from '../lib/model/index.js';
import { targetLogProbs } from '../lib/objectives/index.js';
import { AdamW } from '../lib/train/index.js';

/** The two real shapes (config.json fields of the HF checkpoints; the weights are random). */
const REAL_SCALE_MODELS: Record<string, Record<string, unknown>> = {
  'smollm2-135m': {
    model_type: 'llama', vocab_size: 49152, hidden_size: 576, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3,
    intermediate_size: 1536, rope_theta: 100000, rms_norm_eps: 1e-5, tie_word_embeddings: true, hidden_act: 'silu',
    max_position_embeddings: 8192, initializer_range: 0.02,
  },
  'qwen2.5-0.5b': {
    model_type: 'qwen2', vocab_size: 151936, hidden_size: 896, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2,
    intermediate_size: 4864, rope_theta: 1000000, rms_norm_eps: 1e-6, tie_word_embeddings: true, hidden_act: 'silu',
    max_position_embeddings: 32768, initializer_range: 0.02, use_sliding_window: false,
  },
};
const ROWS = ['prefill', 'generate-b1', 'generate-b8', 'train-full', 'train-lora'] as const;
type Row = (typeof ROWS)[number];
const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const option = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const int = (name: string, fallback: number) => {
  const v = Number(option(name, String(fallback)));
  if (!Number.isInteger(v) || v < 0) throw new Error(`realScale: --${name} must be a non-negative integer, got "${option(name, '')}"`);
  return v;
};
const SETTINGS = {
  prefillSeq: int('prefill-seq', 512),
  prompt: int('prompt', 32),
  newTokens: int('new-tokens', 32),
  trainBatch: int('train-batch', 4),
  trainSeq: int('train-seq', 256),
  trainWarmup: int('train-warmup', 1),
  trainSteps: Math.max(1, int('train-steps', 2)),
  prefillWarmup: 1,
  prefillSteps: 2,
  loraR: 16,
  loraAlpha: 32,
};
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const thisFile = fileURLToPath(import.meta.url);

/** One side's figure for one row, as its process printed it. */
interface RowResult {
  tokens_per_s: number | null;
  ms?: number;
  ms_all?: number[];
  max_rss_mb: number | null;
  error?: string;
  load_before: number[];
  mem_available_gb_before: number | null;
  [key: string]: unknown;
}

/** Waits (sleeping) until the 1-minute load average is below --quiet-load, at most --quiet-wait s. */
function waitForQuiet(): void {
  const limit = Number(option('quiet-load', '0'));
  if (!(limit > 0)) return;
  const deadline = performance.now() + Number(option('quiet-wait', '300')) * 1000;
  while (os.loadavg()[0] >= limit && performance.now() < deadline) spawnSync('sleep', ['5']);
}

const loadAverage = () => os.loadavg().map((x) => Math.round(x * 100) / 100);
function memAvailableGb(): number | null {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m ? Math.round((Number(m[1]) / 2 ** 20) * 10) / 10 : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// ours, one row per process

/** One training step over `trained` only: next-token cross-entropy on ids [B, T+1], AdamW. */
async function trainStep(model: Decoder, trained: Map<string, tf.Variable>, opt: AdamW, ids: tf.Tensor2D): Promise<number> {
  const names = [...trained.keys()];
  const params = [...trained.values()];
  const { value, grads } = tf.variableGrads(() => tf.neg(tf.mean(targetLogProbs(model.forward(ids).logits, ids))) as tf.Scalar, params);
  const byName: Record<string, tf.Tensor> = {};
  params.forEach((p, i) => (byName[names[i]] = grads[p.name]));
  opt.applyGradients(byName, 1e-3);
  const loss = (await value.data())[0];
  tf.dispose([value, ...Object.values(grads)]);
  return loss;
}

async function runOursRow(modelName: string, row: Row): Promise<Record<string, unknown>> {
  const config = REAL_SCALE_MODELS[modelName];
  const t0 = performance.now();
  const model = createModel(config, { seed: 0 });
  const built = { params: model.numParameters, build_s: Math.round((performance.now() - t0) / 10) / 100 };
  const vocab = model.config.vocabSize;
  if (row === 'prefill') {
    const ids = tf.randomUniform([1, SETTINGS.prefillSeq], 0, vocab, 'int32', 1) as tf.Tensor2D;
    const times: number[] = [];
    for (let s = 0; s < SETTINGS.prefillWarmup + SETTINGS.prefillSteps; s++) {
      const t = performance.now();
      const logits = model.forward(ids).logits;
      await logits.data();
      logits.dispose();
      if (s >= SETTINGS.prefillWarmup) times.push(performance.now() - t);
    }
    const best = Math.min(...times);
    return { what: row, batch: 1, seq: SETTINGS.prefillSeq, ms: round1(best), ms_all: times.map(round1), tokens_per_s: round2((SETTINGS.prefillSeq / best) * 1000), ...built };
  }
  if (row === 'generate-b1' || row === 'generate-b8') {
    const batch = row === 'generate-b1' ? 1 : 8;
    const prompt = Array.from({ length: batch }, (_, i) => Array.from({ length: SETTINGS.prompt }, (_, j) => (i * 7919 + j * 104729 + 3) % vocab));
    const t = performance.now();
    const out = await generate(model, prompt, { maxNewTokens: SETTINGS.newTokens, eosTokenId: null });
    const ms = performance.now() - t;
    if (out.newTokens[0].length !== SETTINGS.newTokens) throw new Error(`generate returned ${out.newTokens[0].length} tokens, expected ${SETTINGS.newTokens}`);
    return { what: row, batch, prompt: SETTINGS.prompt, new_tokens: SETTINGS.newTokens, ms: round1(ms), tokens_per_s: round2(((batch * SETTINGS.newTokens) / ms) * 1000), ...built };
  }
  // training rows
  let trained: Map<string, tf.Variable>;
  if (row === 'train-lora') {
    // loaded here, so that the other rows run whatever state lib/model/lora.ts is in
    const { addLora, loraParameters } = await import('../lib/model/lora.js');
    addLora(model, { r: SETTINGS.loraR, alpha: SETTINGS.loraAlpha, targetModules: LORA_TARGETS, seed: 0 });
    trained = loraParameters(model);
  } else {
    trained = model.variables();
  }
  // torch.optim.AdamW decays every trained tensor (weight decay 0.01): match it.
  const opt = new AdamW(trained, { weightDecay: 0.01, decay: () => true });
  const ids = tf.randomUniform([SETTINGS.trainBatch, SETTINGS.trainSeq + 1], 0, vocab, 'int32', 1) as tf.Tensor2D;
  const times: number[] = [];
  let loss = NaN;
  for (let s = 0; s < SETTINGS.trainWarmup + SETTINGS.trainSteps; s++) {
    const t = performance.now();
    loss = await trainStep(model, trained, opt, ids);
    if (s >= SETTINGS.trainWarmup) times.push(performance.now() - t);
  }
  const best = Math.min(...times);
  const tokens = SETTINGS.trainBatch * SETTINGS.trainSeq;
  return {
    what: row, batch: SETTINGS.trainBatch, seq: SETTINGS.trainSeq, ms: round1(best), ms_all: times.map(round1), tokens_per_s: round2((tokens / best) * 1000),
    trained_params: [...trained.values()].reduce((n, v) => n + v.size, 0), loss: Math.round(loss * 1e4) / 1e4,
    ...(row === 'train-lora' ? { lora_r: SETTINGS.loraR, lora_alpha: SETTINGS.loraAlpha } : {}), ...built,
  };
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const round2 = (x: number) => Math.round(x * 100) / 100;

// ---------------------------------------------------------------------------------------------
// the peer

interface BlasInfo {
  kind: string;
  libraries: string[];
  torch_blas_info: string | null;
  torch: string;
}

const peerScript = () => option('peer', process.env.TORCH_REAL_SCALE ?? path.join(repoRoot, 'bench', 'torch_real_scale.py'));
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** The BLAS the peer's torch loads, or why there is no usable peer. */
function peerBlas(): { blas: BlasInfo | null; refused: string | null } {
  if (flag('no-peer')) return { blas: null, refused: '--no-peer' };
  if (!existsSync(peerScript())) return { blas: null, refused: `peer script not found at ${peerScript()}` };
  const configPath = writeConfig('smollm2-135m');
  const child = spawnSync(python, [peerScript(), '--config', configPath, '--row', 'blas'], { encoding: 'utf8', timeout: 120_000 });
  if (child.status !== 0) {
    const why = (child.stderr || String(child.error)).trim().split('\n').pop();
    return { blas: null, refused: `the peer could not start (${python} ${peerScript()}): ${why}. PyTorch: apt-get install -y python3-torch libopenblas0-pthread` };
  }
  const blas = (JSON.parse(child.stdout.trim().split('\n').pop()!) as { blas: BlasInfo }).blas;
  if (blas.kind === 'reference' || blas.kind === 'none-found' || blas.kind === 'unknown-libblas') {
    return {
      blas,
      refused:
        `the peer's PyTorch (${blas.torch}) runs on ${blas.kind === 'reference' ? "netlib's reference BLAS" : `no recognised optimised BLAS (${blas.kind})`} ` +
        `[${blas.libraries.join(', ')}]: Debian's python3-torch links libblas.so.3, which is the slow reference implementation ` +
        '(~10x slower than PyTorch with a real BLAS) unless an optimised one provides it. A ratio against it would flatter the kit, so none is reported. ' +
        'Fix: apt-get install -y libopenblas0-pthread (it takes over the libblas.so.3 alternative), then rerun.',
    };
  }
  return { blas, refused: null };
}

const configPaths = new Map<string, string>();
function writeConfig(modelName: string): string {
  let p = configPaths.get(modelName);
  if (!p) {
    p = path.join(os.tmpdir(), `deepalign-real-scale-${modelName}-${process.pid}.json`);
    writeFileSync(p, JSON.stringify(REAL_SCALE_MODELS[modelName]));
    configPaths.set(modelName, p);
  }
  return p;
}

function peerArgs(modelName: string, row: Row, threads: number): string[] {
  const common = ['--config', writeConfig(modelName), '--threads', String(threads)];
  switch (row) {
    case 'prefill':
      return [...common, '--row', 'prefill', '--batch', '1', '--seq', String(SETTINGS.prefillSeq), '--warmup', String(SETTINGS.prefillWarmup), '--steps', String(SETTINGS.prefillSteps)];
    case 'generate-b1':
    case 'generate-b8':
      return [...common, '--row', 'generate', '--batch', row === 'generate-b1' ? '1' : '8', '--prompt', String(SETTINGS.prompt), '--new-tokens', String(SETTINGS.newTokens)];
    case 'train-full':
    case 'train-lora':
      return [...common, '--row', row, '--batch', String(SETTINGS.trainBatch), '--seq', String(SETTINGS.trainSeq), '--warmup', String(SETTINGS.trainWarmup),
        '--steps', String(SETTINGS.trainSteps), '--lora-r', String(SETTINGS.loraR), '--lora-alpha', String(SETTINGS.loraAlpha)];
  }
}

/** The message lines of a failed process's output (stack frames and blank lines dropped). */
function errorLines(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('at ') && !/^\^+$/.test(l) && !l.startsWith('Node.js v'));
  return lines.slice(-2).join(' | ').slice(0, 600);
}

/** Runs one side's row in a process of its own and parses its last stdout line. */
function runChild(command: string, argv: string[], env: NodeJS.ProcessEnv): RowResult {
  waitForQuiet();
  const before = { load_before: loadAverage(), mem_available_gb_before: memAvailableGb() };
  const child = spawnSync(command, argv, { encoding: 'utf8', timeout: 1_800_000, env, maxBuffer: 64 * 2 ** 20 });
  const last = child.stdout?.trim().split('\n').pop() ?? '';
  if (child.status === 0 && last.startsWith('{')) return { ...(JSON.parse(last) as RowResult), ...before, load_after: loadAverage() };
  const why = child.error
    ? String(child.error)
    : child.signal
      ? `killed by ${child.signal}${child.signal === 'SIGKILL' ? ' (out of memory?)' : ''}`
      : `exit ${child.status}: ${errorLines(child.stderr || child.stdout || '')}`;
  return { tokens_per_s: null, max_rss_mb: null, error: why, ...before, load_after: loadAverage() };
}

// ---------------------------------------------------------------------------------------------
// main

async function childMain(): Promise<void> {
  const [modelName, row] = [option('child-model', ''), option('child-row', '') as Row];
  const report = await initEngine({ backend: (option('backend', '') || undefined) as BackendName | undefined, threads: Number(option('threads', '2')) });
  const out = await runOursRow(modelName, row);
  console.log(JSON.stringify({ ...out, backend: report.backend, threads: report.threads, max_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) }));
}

async function parentMain(): Promise<void> {
  const models = option('models', Object.keys(REAL_SCALE_MODELS).join(',')).split(',');
  const rows = option('rows', ROWS.join(',')).split(',') as Row[];
  for (const m of models) if (!REAL_SCALE_MODELS[m]) throw new Error(`realScale: --models: unknown model "${m}"; known: ${Object.keys(REAL_SCALE_MODELS).join(', ')}`);
  for (const r of rows) if (!ROWS.includes(r)) throw new Error(`realScale: --rows: unknown row "${r}"; known: ${ROWS.join(', ')}`);
  const rounds = Math.max(1, int('rounds', 2));
  const threads = Math.max(1, int('threads', 2));
  const backend = option('backend', '');
  const peerThreads = option('peer-threads', threads > 1 ? `${threads},1` : '1').split(',').map(Number);
  if (peerThreads.some((n) => !(Number.isInteger(n) && n >= 1))) throw new Error(`realScale: --peer-threads must be a comma list of positive integers, got "${option('peer-threads', '')}"`);
  const t0 = performance.now();

  // Under ESM lib/engine looks for the native addon from the working directory upwards only.
  const addonPath = path.join(repoRoot, 'build', 'Release', 'deepalign_native.node');
  const env = { ...process.env, ...(process.env.DEEPALIGN_NATIVE || !existsSync(addonPath) ? {} : { DEEPALIGN_NATIVE: addonPath }) };
  process.env.DEEPALIGN_NATIVE = env.DEEPALIGN_NATIVE;
  const report = await initEngine({ backend: (backend || undefined) as BackendName | undefined, threads });
  console.log(formatEngineReport(report));

  const { blas, refused } = peerBlas();
  if (refused) console.log(`\npeer: REFUSED — ${refused}\n`);
  else console.log(`peer: PyTorch ${blas!.torch}, BLAS ${blas!.kind} [${blas!.libraries.join(', ')}], torch BLAS_INFO=${blas!.torch_blas_info}, ${peerThreads.join(' and ')} thread(s), best kept`);

  // The child reads the same shape settings from its own flags.
  const settingFlags = ['prefill-seq', 'prompt', 'new-tokens', 'train-batch', 'train-seq', 'train-warmup', 'train-steps'].flatMap((f) => (args.includes(`--${f}`) ? [`--${f}`, option(f, '')] : []));
  const oursArgv = (m: string, r: Row) => [...process.execArgv, thisFile, '--child-model', m, '--child-row', r, '--threads', String(threads), ...(backend ? ['--backend', backend] : []), ...settingFlags];
  type Side = 'ours' | 'peer';
  const results: Record<string, Record<string, { ours: RowResult[]; peer: RowResult[] }>> = {};
  for (const m of models) {
    results[m] = {};
    for (const r of rows) {
      const runs = (results[m][r] = { ours: [] as RowResult[], peer: [] as RowResult[] });
      for (let round = 0; round < rounds; round++) {
        const order: Side[] = round % 2 === 0 ? ['peer', 'ours'] : ['ours', 'peer'];
        for (const side of order) {
          if (side === 'peer' && refused) continue;
          const sideRuns = side === 'ours' ? [runChild(process.execPath, oursArgv(m, r), env)] : peerThreads.map((n) => runChild(python, [peerScript(), ...peerArgs(m, r, n)], env));
          for (const res of sideRuns) {
            runs[side].push(res);
            console.log(`${m} ${r} round ${round + 1}/${rounds} ${side}${side === 'peer' ? ` (${res.threads ?? '?'} threads)` : ''}: ${res.tokens_per_s ?? `FAILED (${res.error})`} tok/s` +
              `${res.ms !== undefined ? ` (${res.ms} ms)` : ''}, peak RSS ${res.max_rss_mb ?? '-'} MB, load ${res.load_before.join(' ')}, available ${res.mem_available_gb_before} GB`);
          }
        }
      }
    }
  }

  const best = (xs: RowResult[]) => xs.reduce<RowResult | null>((b, x) => (x.tokens_per_s !== null && (b === null || x.tokens_per_s > b.tokens_per_s!) ? x : b), null);
  const table: Record<string, Record<string, unknown>> = {};
  for (const m of models) {
    table[m] = {};
    for (const r of rows) {
      const { ours, peer } = results[m][r];
      const [o, p] = [best(ours), best(peer)];
      table[m][r] = {
        ours: o?.tokens_per_s ?? null,
        peer: refused ? null : (p?.tokens_per_s ?? null),
        ratio: o && p && !refused ? Math.round((o.tokens_per_s! / p.tokens_per_s!) * 1000) / 1000 : null,
        ours_ms: o?.ms ?? null,
        peer_ms: p?.ms ?? null,
        ours_peak_rss_mb: Math.max(0, ...ours.map((x) => x.max_rss_mb ?? 0)) || null,
        peer_peak_rss_mb: Math.max(0, ...peer.map((x) => x.max_rss_mb ?? 0)) || null,
        ours_load: o?.load_before ?? null,
        peer_load: p?.load_before ?? null,
        peer_threads: p?.threads ?? null,
        ours_error: ours.find((x) => x.error)?.error ?? null,
        peer_error: peer.find((x) => x.error)?.error ?? null,
      };
    }
  }
  const results_ = {
    machine: `${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()}-${os.arch()}, node ${process.versions.node}`,
    date: new Date().toISOString(),
    command: `npx tsx bench/realScale.ts ${process.argv.slice(2).join(' ')}`.trim(),
    backend: report.backend,
    engine: { reason: report.reason, threads: report.threads },
    peer: refused ? { refused, blas } : { torch: blas!.torch, blas: blas!.kind, libraries: blas!.libraries, torch_blas_info: blas!.torch_blas_info, threads: peerThreads },
    settings: { ...SETTINGS, rounds, dtype: 'float32', lora_targets: LORA_TARGETS },
    models: Object.fromEntries(models.map((m) => [m, REAL_SCALE_MODELS[m]])),
    table,
    runs: results,
    wall_s: Math.round((performance.now() - t0) / 100) / 10,
  };

  console.log(`\n${'model'.padEnd(14)} ${'row'.padEnd(12)} ${'ours'.padStart(9)} ${'peer'.padStart(9)} ${'ratio'.padStart(6)} ${'RSS ours'.padStart(9)} ${'RSS peer'.padStart(9)}  load (ours / peer)`);
  for (const m of models) {
    for (const r of rows) {
      const e = table[m][r] as Record<string, any>;
      console.log(`${m.padEnd(14)} ${r.padEnd(12)} ${String(e.ours ?? '-').padStart(9)} ${String(e.peer ?? '-').padStart(9)} ${String(e.ratio ?? '-').padStart(6)} ` +
        `${String(e.ours_peak_rss_mb ?? '-').padStart(9)} ${String(e.peer_peak_rss_mb ?? '-').padStart(9)}  ${e.ours_load?.[0] ?? '-'} / ${e.peer_load?.[0] ?? '-'}` +
        `${e.ours_error ? `  ours failed: ${e.ours_error.slice(0, 160)}` : ''}${e.peer_error ? `  peer failed: ${e.peer_error.slice(0, 160)}` : ''}`);
    }
  }
  if (refused) console.log(`\nno ratios: ${refused}`);
  const out = path.resolve(option('out', path.join(repoRoot, 'bench', 'results-real-scale.json')));
  writeFileSync(out, JSON.stringify(results_, null, 2) + '\n');
  console.log(`wrote ${out} (wall ${results_.wall_s} s)`);
}

if (flag('child-row')) await childMain();
else await parentMain();
