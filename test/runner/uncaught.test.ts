// Uncaught errors in scripts after initEngine: tfjs-backend-wasm's emscripten module installs
// process listeners that rethrow, which made Node print ~38 KB of minified emscripten source
// before the error and exit with 7. The scripts in test/fixtures/runner/uncaught run under tsx,
// as `npm run ...` scripts do, with the wasm backend forced (the one that loads emscripten).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = resolve(__dirname, '..', '..');
const fixtures = join(repoRoot, 'test', 'fixtures', 'runner', 'uncaught');
const tsx = join(repoRoot, 'node_modules', '.bin', 'tsx');

function runScript(name: string, backend = 'wasm') {
  return spawnSync(tsx, [join(fixtures, name)], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: { ...process.env, DEEPALIGN_BACKEND: backend },
    timeout: 60_000,
  });
}

describe('uncaught errors after initEngine', () => {
  it.each([
    ['throw-after-init.ts', 'a top-level throw', 'throw-after-init.ts:5:'],
    ['timer-after-init.ts', 'a throw in a timer', 'timer-after-init.ts:6:'],
    ['rejection-after-init.ts', 'an unhandled rejection', 'rejection-after-init.ts:5:'],
  ])('%s: %s prints the error and its stack first and exits 1', (script, _what, where) => {
    const run = runScript(script);
    expect(run.stderr.slice(0, 500)).toMatch(/^Error: x\n {4}at /);
    expect(run.stderr.slice(0, 500)).toContain(where);
    expect(run.stderr).not.toContain('WasmBackendModule');
    expect(run.stderr.length).toBeLessThan(2000);
    expect(run.status).toBe(1);
  });

  it('the same with the cpu backend (no emscripten), so every backend behaves alike', () => {
    const run = runScript('throw-after-init.ts', 'cpu');
    expect(run.stderr).toMatch(/^Error: x\n {4}at /);
    expect(run.status).toBe(1);
  });

  it("leaves a script's own uncaughtException handler in charge", () => {
    const run = runScript('own-handler-after-init.ts');
    expect(run.stdout).toBe('own handler: x\nstill running\n');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(3);
  });

  it('the notebook runner still blames a late error after initEngine on the cell that left it, exit 1', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-uncaught-'));
    const path = join(dir, 'late.ipynb');
    const code = (source: string) => ({ cell_type: 'code', metadata: {}, source, outputs: [], execution_count: null });
    const cells = [
      code("import { initEngine } from './lib/engine/index.js';\nawait initEngine({ backend: 'wasm' });"),
      code("setTimeout(() => { throw new Error('late after init'); }, 100);"),
    ];
    writeFileSync(path, JSON.stringify({ cells, metadata: {}, nbformat: 4, nbformat_minor: 4 }));
    const tsxLoader = pathToFileURL(join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
    const run = spawnSync(process.execPath, ['--import', tsxLoader, join(repoRoot, 'scripts', 'nb.ts'), path, '--no-write'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, DEEPALIGN_FIGURES_DIR: join(dir, 'figures'), DEEPALIGN_CHROMIUM: 'none' },
      timeout: 120_000,
    });
    expect(run.stderr).toContain('failed at cell 2 (execution 2');
    expect(run.stderr).toContain('error from a callback left running by cell 2, surfaced after the last cell (2) finished');
    expect(run.stderr).toContain('Error: late after init');
    expect(run.stderr).not.toContain('WasmBackendModule');
    expect(run.status).toBe(1);
  });
});
