// Finding optional accelerators without risking the process: the WebGPU adapter is probed in a
// child process (a native crash or a hung driver there costs a timeout, not the notebook), and
// tfjs-node is accepted only when the installed package really is tfjs-node with a built binding.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

/** A require() that resolves packages from lib/ when compiled to CommonJS, else from the cwd. */
export function packageRequire(): NodeRequire {
  const base = typeof __filename === 'string' ? __filename : path.join(process.cwd(), 'index.js');
  return createRequire(base);
}

export interface WebGpuProbe {
  ok: boolean;
  why: string;
  adapter?: { vendor?: string; architecture?: string; device?: string; description?: string };
}

// Software rasterisers that Dawn may offer when no GPU exists; they are far slower than wasm.
const SOFTWARE_ADAPTERS = /swiftshader|llvmpipe|lavapipe|softpipe|warp|basic render/i;

const PROBE_SCRIPT = `
const { create } = await import(process.argv[1]);
const gpu = create([]);
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
if (!adapter) { console.log(JSON.stringify({ found: false })); process.exit(0); }
const info = adapter.info ?? {};
console.log(JSON.stringify({ found: true, isFallback: Boolean(adapter.isFallbackAdapter ?? info.isFallbackAdapter),
  vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description }));
process.exit(0);
`;

/** Looks for a hardware WebGPU adapter through the `webgpu` package (Dawn), in a child process. */
export function probeWebGpu(timeoutMs = 10_000): WebGpuProbe {
  let entry: string;
  try {
    entry = packageRequire().resolve('webgpu');
  } catch {
    return { ok: false, why: 'the optional `webgpu` package is not installed' };
  }
  const child = spawnSync(
    process.execPath,
    ['--input-type=module', '-e', PROBE_SCRIPT, pathToFileURL(entry).href],
    { timeout: timeoutMs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  if (child.error !== undefined) {
    const timedOut = (child.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    return { ok: false, why: timedOut ? `adapter probe timed out after ${timeoutMs} ms` : `probe failed: ${child.error.message}` };
  }
  const line = child.stdout.trim().split('\n').pop() ?? '';
  let result: { found: boolean; isFallback?: boolean; vendor?: string; architecture?: string; device?: string; description?: string };
  try {
    result = JSON.parse(line);
  } catch {
    const detail = (child.stderr || child.stdout).trim().split('\n').slice(-1)[0] ?? '';
    return { ok: false, why: `adapter probe exited with code ${child.status}${child.signal ? ` (${child.signal})` : ''}: ${detail.slice(0, 200)}` };
  }
  if (!result.found) return { ok: false, why: 'no WebGPU adapter found (no GPU or no Vulkan/Metal/D3D driver)' };
  const adapter = { vendor: result.vendor, architecture: result.architecture, device: result.device, description: result.description };
  const name = [result.vendor, result.architecture, result.device, result.description].filter(Boolean).join(' ');
  if (result.isFallback || SOFTWARE_ADAPTERS.test(name)) {
    return { ok: false, why: `only a software adapter was found (${name || 'fallback adapter'}), slower than wasm`, adapter };
  }
  return { ok: true, why: `hardware adapter: ${name || 'unnamed'}`, adapter };
}

export interface TfjsNodeProbe {
  ok: boolean;
  why: string;
  packageName?: string;
}

function findBinding(dir: string, depth = 0): string | null {
  if (depth > 4 || !existsSync(dir)) return null;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isFile() && entry.name === 'tfjs_binding.node') return full;
    if (entry.isDirectory()) {
      const found = findBinding(full, depth + 1);
      if (found !== null) return found;
    }
  }
  return null;
}

/**
 * Is the real tfjs-node (or tfjs-node-gpu) installed with its native binding? package.json's
 * overrides map `@tensorflow/tfjs-node` to plain `@tensorflow/tfjs` for danfojs, so a resolvable
 * name proves nothing: the package must call itself tfjs-node and ship tfjs_binding.node.
 */
export function probeTfjsNode(): TfjsNodeProbe {
  const req = packageRequire();
  const reasons: string[] = [];
  for (const name of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    let manifestPath: string;
    try {
      manifestPath = req.resolve(`${name}/package.json`);
    } catch {
      reasons.push(`${name} not installed`);
      continue;
    }
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { name?: string; version?: string };
    if (manifest.name !== name) {
      reasons.push(`${name} resolves to ${manifest.name}@${manifest.version} (an npm override), not the native package`);
      continue;
    }
    const binding = findBinding(path.join(path.dirname(manifestPath), 'lib'));
    if (binding === null) {
      reasons.push(`${name}@${manifest.version} has no built tfjs_binding.node`);
      continue;
    }
    return { ok: true, why: `${name}@${manifest.version} with native binding ${path.basename(path.dirname(binding))}`, packageName: name };
  }
  return { ok: false, why: reasons.join('; ') };
}
