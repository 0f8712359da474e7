// initEngine: pick, configure and report the tfjs backend. Order, unless the caller forces one
// (option `backend`, else env DEEPALIGN_BACKEND): webgpu (hardware adapter through the `webgpu`
// package) > tensorflow (real tfjs-node, if installed) > native (the wasm backend with the native
// addon's SIMD GEMM, when the addon is built) > wasm (with kernel fixes) > cpu (with the
// UnsortedSegmentSum fix). Idempotent: later calls return the first report unless they force a
// different backend.
import * as os from 'node:os';
import { inspect } from 'node:util';
import { tf } from './tf.js';
import { overrideKernel } from './kernels/stock.js';
import { unsortedSegmentSumCpuConfig, unsortedSegmentSumWasmConfig } from './kernels/unsortedSegmentSum.js';
import { batchMatMulWasmConfig } from './kernels/wasmBatchMatMul.js';
import { compareWasmConfigs, gatherWasmConfig, identityWasmConfig } from './kernels/wasmElementwise.js';
import { nativeMatMulCpuConfig, nativeMatMulWasmConfig } from './kernels/nativeMatMul.js';
import { registerBatchMatMulGradFix } from './kernels/batchMatMulGrad.js';
import { loadNative } from './native.js';
import { adamwWasmConfig, adamwWasmNativeConfig, crossEntropyConfigs, crossEntropyWasmNativeConfigs, registerFusedKernels } from './fused.js';
import { probeTfjsNode, probeWebGpu } from './probe.js';

/**
 * Backends in preference order. `native` is not a separate tfjs backend: it is tfjs's wasm backend
 * (tf.getBackend() === 'wasm') with the hot kernels replaced by the native addon's.
 */
export const BACKENDS = ['webgpu', 'tensorflow', 'native', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface EngineOptions {
  /** Use exactly this backend (fails loudly if it cannot start). Wins over DEEPALIGN_BACKEND. */
  backend?: BackendName;
  /**
   * Threads for the native kernels (GEMM). Default: the machine's cores, at most 4 (the benchmark's
   * GEMMs are small). Env DEEPALIGN_THREADS also sets it; the option wins. wasm and cpu run on one
   * thread whatever this says; tensorflow manages its own.
   */
  threads?: number;
  /** Print the report once the backend is ready. */
  verbose?: boolean;
  /** How long the WebGPU adapter probe may take before webgpu counts as unavailable. Default 10 s. */
  webgpuProbeTimeoutMs?: number;
}

export interface BackendAttempt {
  backend: BackendName;
  ok: boolean;
  why: string;
  ms: number;
}

export interface EngineReport {
  /** The chosen backend (see BACKENDS). */
  backend: BackendName;
  /** tf.getBackend() after initialisation ('wasm' for native). */
  tfBackend: string;
  /** Why this backend: forced by option/env, or the first available in the preference order. */
  reason: string;
  /** Every backend considered, in order, with why it was taken or skipped. */
  tried: BackendAttempt[];
  /** Runtime kernel replacements registered by lib/engine, one line each. */
  fixes: string[];
  /** Threads the hot kernels compute with (native GEMM: `threads` option; 1 for wasm and cpu). */
  threads: number;
  /** wasm only: whether the SIMD binary runs. null for other backends. */
  simd: boolean | null;
  tfjsVersion: string;
  /** Where a forced choice came from. */
  forcedBy: 'option' | 'env' | null;
  /** webgpu only: the adapter's vendor/architecture/description. */
  adapter?: string;
  nodeVersion: string;
  platform: string;
}

let active: { forced: BackendName | undefined; report: Promise<EngineReport> } | null = null;

function parseForced(options: EngineOptions): { backend: BackendName | undefined; forcedBy: EngineReport['forcedBy'] } {
  if (options.backend !== undefined) {
    if (!(BACKENDS as readonly string[]).includes(options.backend)) {
      throw new Error(`initEngine: \`backend\` must be one of ${BACKENDS.join(', ')}, but is "${options.backend}"`);
    }
    return { backend: options.backend, forcedBy: 'option' };
  }
  const env = process.env.DEEPALIGN_BACKEND?.trim();
  if (env) {
    if (!(BACKENDS as readonly string[]).includes(env)) {
      throw new Error(`initEngine: env DEEPALIGN_BACKEND must be one of ${BACKENDS.join(', ')}, but is "${env}"`);
    }
    return { backend: env as BackendName, forcedBy: 'env' };
  }
  return { backend: undefined, forcedBy: null };
}

/** Picks, configures and reports the tfjs backend. Call (and await) once before any tensor work. */
export function initEngine(options: EngineOptions = {}): Promise<EngineReport> {
  const { backend: forced, forcedBy } = parseForced(options);
  nativeThreads(options); // validates `threads` before anything starts
  installUncaughtErrorHandler();
  if (active !== null && (forced === undefined || forced === active.forced)) return active.report;
  const report = selectBackend(options, forced, forcedBy);
  active = { forced, report };
  // A failed initialisation must not be cached: the next call retries.
  report.catch(() => {
    if (active?.report === report) active = null;
  });
  return report;
}

/** The report of the last successful initEngine call, or null before one finished. */
export async function engineReport(): Promise<EngineReport | null> {
  if (active === null) return null;
  try {
    return await active.report;
  } catch {
    return null;
  }
}

interface Started {
  threads: number;
  simd: boolean | null;
  fixes: string[];
  why: string;
  adapter?: string;
}

const starters: Record<BackendName, (options: EngineOptions) => Promise<Started>> = {
  async webgpu(options) {
    const probe = probeWebGpu(options.webgpuProbeTimeoutMs ?? 10_000);
    if (!probe.ok) throw new Error(probe.why);
    // The package name is held in a variable so type-checking does not require the optional package.
    const webgpuName = 'webgpu';
    const webgpu = (await import(webgpuName)) as { create(flags: string[]): unknown; globals: object };
    const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
    Object.assign(globalThis, webgpu.globals);
    if (g.navigator === undefined) g.navigator = {};
    if (g.navigator.gpu === undefined) g.navigator.gpu = webgpu.create([]);
    await import('@tensorflow/tfjs-backend-webgpu');
    await setBackendWithin('webgpu', 30_000);
    const adapter = [probe.adapter?.vendor, probe.adapter?.architecture, probe.adapter?.description].filter(Boolean).join(' ');
    return { threads: 1, simd: null, fixes: [], why: probe.why, adapter };
  },

  async tensorflow() {
    const probe = probeTfjsNode();
    if (!probe.ok || probe.packageName === undefined) throw new Error(probe.why);
    const name = probe.packageName;
    await import(name);
    if (tf.findBackend('tensorflow') === undefined && !tf.engine().registryFactory['tensorflow']) {
      throw new Error(`${name} loaded but registered no 'tensorflow' backend with this tfjs-core (version mismatch?)`);
    }
    await setBackendWithin('tensorflow', 30_000);
    return { threads: 0, simd: null, fixes: [], why: probe.why };
  },

  async native(options) {
    const native = loadNative();
    if (native.addon === null) throw new Error(native.why);
    const started = await starters.wasm({ ...options, threads: 1 });
    const threads = nativeThreads(options);
    native.addon.setThreads(threads);
    overrideKernel(nativeMatMulWasmConfig(native.addon));
    overrideKernel(adamwWasmNativeConfig(native.addon));
    for (const config of crossEntropyWasmNativeConfigs(native.addon)) overrideKernel(config);
    const info = native.addon.info();
    return {
      ...started,
      threads,
      fixes: [
        `BatchMatMul (wasm): native ${info.simd} GEMM on the wasm heap in place, ${threads} thread(s) of ${info.cores} cores`,
        'DeepalignAdamW (wasm, used by adamwUpdate): native loop on the wasm heap',
        'DeepalignCrossEntropy + Grad (wasm, used by crossEntropy): native one-pass rows on the wasm heap',
        ...started.fixes.filter((f) => !f.startsWith('BatchMatMul')),
      ],
      why: `wasm backend + native addon (${info.simd}, ${threads} thread(s))`,
    };
  },

  async wasm(options) {
    const threads = Math.max(1, Math.floor(options.threads ?? 1));
    await withoutEmscriptenProcessHandlers(async () => {
      await import('@tensorflow/tfjs-backend-wasm');
      await setBackendWithin('wasm', 30_000);
    });
    overrideKernel(unsortedSegmentSumWasmConfig);
    overrideKernel(batchMatMulWasmConfig);
    overrideKernel(adamwWasmConfig); // (the native starter then swaps in the addon's)
    for (const config of crossEntropyConfigs.filter((c) => c.backendName === 'wasm')) overrideKernel(config);
    overrideKernel(identityWasmConfig);
    for (const config of compareWasmConfigs) overrideKernel(config);
    overrideKernel(gatherWasmConfig);
    guardWasmHeap(tf.backend());
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const fixes = [
      'UnsortedSegmentSum (wasm): one-pass scatter-add kernel (stock: not registered)',
      'BatchMatMul (wasm): every product on the XNNPACK fast path — transposes materialised, batches folded or split into zero-copy views (stock: scalar loop unless batch 1 without transposes)',
      'Identity (wasm): shares the data with a reference count (stock: copies)',
      'Equal/NotEqual/Less/LessEqual/Greater/GreaterEqual (wasm): strided broadcast loop (stock: per-element index math when broadcasting)',
      'GatherV2 (wasm): one memmove per gathered slice (stock: per-element copy, wrong rows when batchDims > 0)',
      'tensor allocation (wasm): a clear error when the 4 GiB heap is full (stock: the tensor silently aliases address 0)',
    ];
    const why = `tfjs-backend-wasm ${simd ? 'with SIMD' : 'without SIMD'}, single-threaded` +
      (threads > 1 ? ' (threads > 1 requested, but tfjs-backend-wasm disables threads under Node)' : '');
    return { threads: 1, simd, fixes, why };
  },

  async cpu() {
    await setBackendWithin('cpu', 30_000);
    // Our report replaces tfjs's "install tfjs-node" banner, printed on the backend's first write.
    (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
    const native = loadNative();
    if (native.addon === null) {
      return { threads: 1, simd: null, fixes: [], why: `plain JavaScript kernels (slowest; ${native.why})` };
    }
    native.addon.setThreads(1);
    overrideKernel(nativeMatMulCpuConfig(native.addon));
    return {
      threads: 1,
      simd: null,
      fixes: [`BatchMatMul (cpu): native ${native.addon.info().simd} GEMM`],
      why: 'JavaScript kernels with the native GEMM',
    };
  },
};

/** tfjs-backend-wasm is a wasm32 build: every tensor lives in one heap of at most 4 GiB. */
const WASM_HEAP_LIMIT = 2 ** 32;
const HEAP_GUARDED = Symbol.for('deepalign.engine.wasmHeapGuard');

/**
 * Makes a full wasm heap an error that says so. tfjs-backend-wasm's `move` stores whatever
 * `_malloc` returns as the tensor's offset; when the heap cannot grow (the 4 GiB wasm32 limit)
 * that is 0, or (seen at 4 GiB) a block that ends past the heap, and the tensor then aliases other
 * memory: later writes corrupt other data, and the failure surfaces, if at all, as an unrelated
 * error in some kernel ("memory access out of bounds", "Aborted()", an operand past its buffer). A request of 4 GiB or more is refused before
 * `_malloc` sees it, since its size argument is a 32-bit integer and would wrap around.
 */
function guardWasmHeap(backend: unknown): void {
  const wasm = (backend as { wasm?: { _malloc(bytes: number): number; _free(offset: number): void; HEAPU8: Uint8Array; [HEAP_GUARDED]?: true } }).wasm;
  if (!wasm || typeof wasm._malloc !== 'function' || wasm[HEAP_GUARDED]) return;
  // Emscripten's Module._malloc starts as a stub that replaces itself with the raw export on its
  // first call (which would also replace a wrapper around the stub): resolve it first.
  wasm._free(wasm._malloc(16));
  const malloc = wasm._malloc;
  const fail = (bytes: number) => {
    const mb = (n: number) => `${Math.round(n / 2 ** 20)} MB`;
    return new RangeError(
      `wasm backend: out of memory allocating a tensor of ${mb(bytes)}: the heap holds ${mb(wasm.HEAPU8.length)} of tfjs-backend-wasm's ` +
        `${mb(WASM_HEAP_LIMIT)} maximum (a wasm32 build keeps every tensor in one heap). Dispose tensors you no longer need, use smaller ` +
        "batches or sequences, or run on the cpu backend (initEngine({ backend: 'cpu' })), whose tensors live outside the heap",
    );
  };
  wasm._malloc = (bytes: number) => {
    if (bytes >= WASM_HEAP_LIMIT) throw fail(bytes);
    const offset = malloc(bytes);
    // Near the limit emscripten's malloc has also been seen to return a block that ends past the
    // heap (offset + bytes > heap size): refuse that too rather than hand out memory that is not there.
    const start = offset >>> 0;
    if ((start === 0 && bytes > 0) || start + bytes > wasm.HEAPU8.length) throw fail(bytes);
    return offset;
  };
  wasm[HEAP_GUARDED] = true;
}

const PROCESS_ERROR_EVENTS = ['uncaughtException', 'unhandledRejection'];

/**
 * Runs `start` (the wasm backend's initialisation) and removes the process listeners it added.
 * tfjs-backend-wasm's emscripten module registers `uncaughtException` and `unhandledRejection`
 * listeners that rethrow: any later uncaught error of the script then dies inside the listener,
 * so Node prints that listener's source line (~38 KB of minified emscripten code, through the
 * source map) before the error and exits with 7 instead of 1. They guard nothing tfjs relies on
 * (they exist for emscripten's exit(), which tfjs never calls); without them Node's own handling,
 * or the handler below, applies. Only listeners added while `start` ran are removed, by identity.
 */
async function withoutEmscriptenProcessHandlers(start: () => Promise<void>): Promise<void> {
  // As a plain EventEmitter: process's typed overloads do not take a union of event names.
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(PROCESS_ERROR_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]));
  try {
    await start();
  } finally {
    for (const event of PROCESS_ERROR_EVENTS) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)!.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  }
}

// One handler per process, even when tslab recompiles this file during a notebook session.
const UNCAUGHT_HANDLER = Symbol.for('deepalign.engine.uncaughtErrorHandler');

/** How the kit prints an error nobody handled: the stack first (util.inspect adds `cause` and
 * extra properties such as `code`), as Node's own handler would after its source excerpt. */
function formatUncaughtError(error: unknown): string {
  if (error instanceof Error) return inspect(error);
  return `Uncaught ${inspect(error)} (thrown value is not an Error, so there is no stack)`;
}

/**
 * An uncaught error (or an unhandled rejection, which Node raises as one) that no other listener
 * takes prints its stack first and exits with code 1. When any other `uncaughtException`
 * listener is present (the notebook runner's, the tslab Jupyter kernel's, the user's own), it
 * does nothing, so their handling is unchanged.
 */
function installUncaughtErrorHandler(): void {
  const g = globalThis as Record<symbol, unknown>;
  if (g[UNCAUGHT_HANDLER]) return;
  const handler = (error: unknown) => {
    if (process.listeners('uncaughtException').some((l) => l !== handler)) return;
    process.stderr.write(`${formatUncaughtError(error)}\n`);
    process.exit(1);
  };
  g[UNCAUGHT_HANDLER] = handler;
  process.on('uncaughtException', handler);
}

function nativeThreads(options: EngineOptions): number {
  const fromEnv = process.env.DEEPALIGN_THREADS ? Number(process.env.DEEPALIGN_THREADS) : undefined;
  const requested = options.threads ?? fromEnv;
  if (requested !== undefined && !(Number.isInteger(requested) && requested >= 1)) {
    throw new Error(`initEngine: \`threads\` (or env DEEPALIGN_THREADS) must be a positive integer, but is ${requested}`);
  }
  return requested ?? Math.min(4, Math.max(1, os.availableParallelism()));
}

async function setBackendWithin(name: string, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`tf.setBackend('${name}') did not finish within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const ok = await Promise.race([tf.setBackend(name), timeout]);
    if (!ok) throw new Error(`tf.setBackend('${name}') returned false (backend failed to initialise)`);
  } finally {
    clearTimeout(timer);
  }
}

async function selectBackend(
  options: EngineOptions,
  forced: BackendName | undefined,
  forcedBy: EngineReport['forcedBy'],
): Promise<EngineReport> {
  // The cpu fix applies whatever runs: cpu stays registered and tfjs falls back to it per kernel.
  overrideKernel(unsortedSegmentSumCpuConfig);
  registerBatchMatMulGradFix();
  const gradFix = 'BatchMatMul gradient (every backend): sums over broadcast batch axes (stock: a gradient of the broadcast shape, which tf.grad rejects)';
  const fusedKernels = [...new Set(registerFusedKernels().map((k) => k.replace(/ \(.*\)$/, '')))];
  const fusedFix = `Fused-op kernels for lib/engine's rope, adamwUpdate, crossEntropy (cpu, wasm): ${fusedKernels.join(', ')}`;
  const cpuFix = 'UnsortedSegmentSum (cpu): one-pass scatter-add kernel (stock: O(numSegments x N x D) one-hot compare)';
  const order: BackendName[] = forced !== undefined ? [forced] : [...BACKENDS];
  const tried: BackendAttempt[] = [];
  for (const backend of order) {
    const t0 = performance.now();
    try {
      const started = await starters[backend](options);
      const ms = Math.round(performance.now() - t0);
      tried.push({ backend, ok: true, why: started.why, ms });
      const skipped = tried.filter((t) => !t.ok).map((t) => t.backend);
      const reason = forced !== undefined
        ? `forced by ${forcedBy === 'env' ? 'env DEEPALIGN_BACKEND' : 'option `backend`'}: ${started.why}`
        : `${skipped.length ? `first available after ${skipped.join(', ')}` : 'first choice'}: ${started.why}`;
      const report: EngineReport = {
        backend,
        tfBackend: tf.getBackend(),
        reason,
        tried,
        fixes: [...started.fixes, cpuFix, gradFix, ...(backend === 'webgpu' || backend === 'tensorflow' ? [] : [fusedFix])],
        threads: started.threads,
        simd: started.simd,
        tfjsVersion: tf.version_core,
        forcedBy,
        adapter: started.adapter,
        nodeVersion: process.versions.node,
        platform: `${process.platform}-${process.arch}`,
      };
      if (options.verbose) console.log(formatEngineReport(report));
      return report;
    } catch (err) {
      tried.push({ backend, ok: false, why: (err as Error).message ?? String(err), ms: Math.round(performance.now() - t0) });
      if (forced !== undefined) {
        throw new Error(
          `initEngine: backend "${backend}" was forced by ${forcedBy === 'env' ? 'env DEEPALIGN_BACKEND' : 'option `backend`'} ` +
          `but could not start: ${tried[tried.length - 1].why}`,
        );
      }
    }
  }
  throw new Error(`initEngine: no backend could start: ${tried.map((t) => `${t.backend}: ${t.why}`).join('; ')}`);
}

/** A few human-readable lines: the backend and why, what else was tried, and the kernel fixes. */
export function formatEngineReport(report: EngineReport): string {
  const lines = [
    `engine: ${report.backend} (tfjs ${report.tfjsVersion}, node ${report.nodeVersion}, ${report.platform})`,
    `  why: ${report.reason}`,
    `  threads: ${report.threads === 0 ? 'managed by backend' : report.threads}` +
      (report.simd === null ? '' : `, simd: ${report.simd ? 'yes' : 'no'}`) +
      (report.adapter ? `, adapter: ${report.adapter}` : ''),
    '  tried:',
    ...report.tried.map((t) => `    ${t.ok ? '+' : '-'} ${t.backend.padEnd(10)} ${String(t.ms).padStart(5)} ms  ${t.why}`),
  ];
  if (report.fixes.length) lines.push('  kernel fixes:', ...report.fixes.map((f) => `    * ${f}`));
  return lines.join('\n');
}
