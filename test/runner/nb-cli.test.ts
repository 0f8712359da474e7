// Runs throwaway notebooks through the real CLI (scripts/nb.ts in a child process, as
// `npm run nb` does) and checks exit codes, error messages and the written .ipynb.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = resolve(__dirname, '..', '..');
// tsx's loader by absolute URL: the child starts outside the repo, where `--import tsx` would not resolve.
const tsxLoader = pathToFileURL(join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;

function notebook(sources: string[]) {
  return {
    cells: [
      { cell_type: 'markdown', metadata: {}, source: '# throwaway' },
      ...sources.map((source) => ({ cell_type: 'code', metadata: {}, source, outputs: [], execution_count: null })),
    ],
    metadata: {},
    nbformat: 4,
    nbformat_minor: 4,
  };
}

function runCli(sources: string[], extraArgs: string[] = [], env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'deepalign-nb-'));
  const path = join(dir, 'throwaway.ipynb');
  const original = JSON.stringify(notebook(sources));
  writeFileSync(path, original);
  const run = spawnSync(process.execPath, ['--import', tsxLoader, join(repoRoot, 'scripts', 'nb.ts'), path, ...extraArgs], {
    cwd: dir, // the runner must move to the repo root itself
    encoding: 'utf8',
    env: { ...process.env, DEEPALIGN_FIGURES_DIR: join(dir, 'figures'), DEEPALIGN_CHROMIUM: 'none', ...env },
    // Generous: the first cell compiles the whole lib barrel with tslab's compiler (~20-35 s on a
    // quiet 2-core machine, over 110 s while other jobs load both cores).
    timeout: 200_000,
  });
  return { ...run, path, dir, original, written: () => JSON.parse(readFileSync(path, 'utf8')) };
}

describe('npm run nb', () => {
  it('executes cells at the repo root and writes outputs, counts and display data back', () => {
    const run = runCli([
      "const answer: number = 6 * 7;\nconsole.log('answer', answer);\nconsole.error('to stderr');",
      "import * as tslab from 'tslab';\ntslab.display.html('<b>bold</b>');",
      '',
      "import { progress } from './lib/report/index.js';\nconst bar = progress(3, { label: 'loop' });\nfor (let i = 0; i < 3; i++) bar.tick(1, { loss: 0.5 });\nbar.done();",
      "await new Promise((r) => setTimeout(r, 10));\nconsole.log(process.cwd() === " + JSON.stringify(repoRoot) + ', process.env.DEEPALIGN_FAST ?? "unset")',
    ]);
    expect(run.stderr).toContain('ok in');
    expect(run.status).toBe(0);
    // Progress bars are echoed to the terminal while the cell runs (in a log: the first line, one
    // per 10 s, and the final state, so a short loop does not show only 0%).
    expect(run.stderr).toMatch(/^ {4}loop {3}0%\|.*\n {4}loop 100%\|█+\| 3\/3 /m);
    const nb = run.written();
    expect(nb.nbformat_minor).toBe(5);
    expect(nb.metadata.kernelspec.name).toBe('deepalign');
    const code = nb.cells.filter((c: { cell_type: string }) => c.cell_type === 'code');
    expect(code.map((c: { execution_count: number | null }) => c.execution_count)).toEqual([1, 2, null, 3, 4]);
    expect(code[0].outputs).toEqual([
      { name: 'stdout', output_type: 'stream', text: ['answer 42\n'] },
      { name: 'stderr', output_type: 'stream', text: ['to stderr\n'] },
    ]);
    expect(code[1].outputs).toEqual([{ data: { 'text/html': ['<b>bold</b>'] }, metadata: {}, output_type: 'display_data' }]);
    // The progress bar is one display updated in place: only its final state is kept.
    expect(code[3].outputs).toHaveLength(1);
    expect(code[3].outputs[0].data['text/plain'][0]).toMatch(/^loop 100%\|█+\| 3\/3 \[.*\] loss=0\.5$/);
    expect(code[4].outputs[0].text).toEqual(['true unset\n']);
    expect(nb.cells.every((c: { id?: string }) => typeof c.id === 'string')).toBe(true);
  });

  it('fails on a type error naming the notebook, the cell and the diagnostic, leaving the file untouched', () => {
    const run = runCli(["console.log('fine')", "const n: number = 'not a number';", "console.log('never runs')"]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`${run.path} failed at cell 3 (execution 2, "const n: number = 'not a number';")`);
    expect(run.stderr).toContain("Type 'string' is not assignable to type 'number'.");
    expect(readFileSync(run.path, 'utf8')).toBe(run.original);
  });

  it('type-checks cells (and the lib files they import) with strict, like tsc', () => {
    // Without strictNullChecks tslab would accept this assignment.
    const run = runCli(['const maybe: number | undefined = undefined;\nconst sure: number = maybe;'], ['--no-write']);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("Type 'undefined' is not assignable to type 'number'.");
  });

  it('loads the whole lib barrel through tslab (TypeScript 5.0, CommonJS) as notebooks do', () => {
    // Catches lib code that passes tsc but not tslab's compiler, or a package that cannot be
    // required from CommonJS.
    const run = runCli(["import * as lib from './lib/index.js';\nif (typeof lib.showFigure !== 'function') throw new Error('lib/index.js does not export lib/report');"], ['--no-write']);
    expect(run.signal, 'the runner was killed by the 200 s timeout').toBeNull();
    expect(run.stderr).toContain('ok in');
    expect(run.status).toBe(0);
  }, 240_000);

  it('fails on a runtime error with its stack trace, and on an error a cell left unawaited', () => {
    const thrown = runCli(["function explode(): never { throw new RangeError('value 7 out of range'); }\nexplode();"], ['--no-write']);
    expect(thrown.status).toBe(1);
    expect(thrown.stderr).toContain('failed at cell 2 (execution 1');
    expect(thrown.stderr).toContain('RangeError: value 7 out of range');
    expect(thrown.stderr).toMatch(/at explode/);

    const dropped = runCli(["Promise.reject(new Error('nobody awaited me'));\nconsole.log('after');", "console.log('next')"], ['--no-write']);
    expect(dropped.status).toBe(1);
    expect(dropped.stderr).toContain('failed at cell 2 (execution 1');
    expect(dropped.stderr).toContain('Unhandled error: Error: nobody awaited me');
  });

  it('fails on an error thrown by a timer after the last cell returned, blaming the cell that set it', () => {
    const run = runCli(["setTimeout(() => { throw new Error('late boom'); }, 200);\nconsole.log('returned');"]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(
      'failed at cell 2 (execution 1, "setTimeout(() => { throw new Error(\'late boom\'); }, 200);"): error from a callback left running by cell 2, surfaced after the last cell (2) finished',
    );
    expect(run.stderr).toContain('Unhandled error (from a callback left running by cell 2): Error: late boom');
    expect(readFileSync(run.path, 'utf8')).toBe(run.original);
  });

  it('blames a late error on the cell that left the callback running, not on the cell running when it fires', () => {
    // Cell 2 schedules a rejection at 50 ms; cell 3 is still awaiting then.
    const during = runCli(
      ["setTimeout(() => { Promise.reject(new Error('from cell 2')); }, 50);", 'await new Promise((resolve) => setTimeout(resolve, 300));', "console.log('never runs')"],
      ['--no-write'],
    );
    expect(during.status).toBe(1);
    expect(during.stderr).toContain('failed at cell 2 (execution 1, "setTimeout(() => { Promise.reject(new Error(\'from cell 2\'));"): error from a callback left running by cell 2, surfaced while cell 3 ran');
    expect(during.stderr).toContain('Error: from cell 2');
    expect(during.stderr).not.toContain('never runs');

    // A middle cell's timer firing after the quick later cells have all returned (1 s: longer than
    // the quick cell takes even on a loaded machine, within the 2 s wait after the last cell).
    const after = runCli(["setTimeout(() => { throw new Error('middle'); }, 1000);", "console.log('quick')"]);
    expect(after.status).toBe(1);
    expect(after.stderr).toContain('failed at cell 2 (execution 1');
    expect(after.stderr).toContain('error from a callback left running by cell 2, surfaced after the last cell (3) finished');
    expect(readFileSync(after.path, 'utf8')).toBe(after.original);

    // A timer beyond the wait after the last cell is not waited for, but the log says so.
    const slow = runCli(['setTimeout(() => {}, 5_000);'], ['--no-write']);
    expect(slow.status).toBe(0);
    expect(slow.stderr).toContain('note: timers are still pending 2000 ms after the last cell');
  });

  it('fails a cell that calls process.exit, even with code 0 or inside try/catch, and writes nothing', () => {
    const direct = runCli(["console.log('before');\nprocess.exit(0);", "console.log('never runs')"]);
    expect(direct.status).toBe(1);
    expect(direct.stderr).toContain('failed at cell 2 (execution 1');
    expect(direct.stderr).toContain('cell 2 called process.exit(0); a notebook must not end the process');
    expect(readFileSync(direct.path, 'utf8')).toBe(direct.original);

    const caught = runCli(["try { process.exit(0); } catch { console.log('swallowed'); }", "setTimeout(() => process.exit(0), 50);"], ['--no-write']);
    expect(caught.status).toBe(1);
    expect(caught.stderr).toContain('failed at cell 2 (execution 1');
    expect(caught.stderr).toContain('cell 2 called process.exit(0)');
  });

  it('fails on process.exit from a timer after the last cell', () => {
    const run = runCli(['setTimeout(() => process.exit(0), 50);'], ['--no-write']);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('error from a callback left running by cell 2, surfaced after the last cell (2) finished');
    expect(run.stderr).toContain('a callback left running by cell 2 called process.exit(0)');
  });

  it('names the variable and its raw value for a bad cell timeout', () => {
    const env = runCli(["console.log('never runs')"], ['--no-write'], { DEEPALIGN_CELL_TIMEOUT_S: '15m' });
    expect(env.status).toBe(2);
    expect(env.stderr).toContain('nb: DEEPALIGN_CELL_TIMEOUT_S must be a positive number of seconds (e.g. 900), got "15m"');
    const flag = runCli(["console.log('never runs')"], ['--no-write', '--cell-timeout', '-3']);
    expect(flag.status).toBe(2);
    expect(flag.stderr).toContain('nb: --cell-timeout must be a positive number of seconds (e.g. 900), got "-3"');
  });

  it('--cell-timeout interrupts a cell that awaits too long', () => {
    const run = runCli(['await new Promise((resolve) => setTimeout(resolve, 60_000));'], ['--no-write', '--cell-timeout', '1']);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('failed at cell 2 (execution 1');
    expect(run.stderr).toContain('cell timeout: still running after 1s (--cell-timeout), interrupted');
  });

  it('--clean strips live-only outputs from a notebook saved by Jupyter without running it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-nb-'));
    const path = join(dir, 'saved.ipynb');
    const cell = {
      cell_type: 'code',
      metadata: {},
      source: 'throw new Error("must not run")',
      execution_count: 1,
      outputs: [
        { output_type: 'display_data', data: { 'text/html': '<script>/* 4.8 MB */</script>' }, metadata: { deepalign: { omit_on_save: true } } },
        { output_type: 'display_data', data: { 'text/html': '<div/>', 'image/png': 'AAAA' }, metadata: { deepalign: { omit_mimes_on_save: ['text/html'] } } },
      ],
    };
    writeFileSync(path, JSON.stringify({ cells: [cell], metadata: {}, nbformat: 4, nbformat_minor: 5 }));
    const run = spawnSync(process.execPath, ['--import', tsxLoader, join(repoRoot, 'scripts', 'nb.ts'), path, '--clean'], { encoding: 'utf8' });
    expect(run.status).toBe(0);
    const nb = JSON.parse(readFileSync(path, 'utf8'));
    expect(nb.cells[0].execution_count).toBe(1);
    expect(nb.cells[0].outputs).toEqual([{ output_type: 'display_data', data: { 'image/png': 'AAAA' }, metadata: {} }]);
  });

  it('--fast sets DEEPALIGN_FAST=1 and --out writes elsewhere', () => {
    const out = join(tmpdir(), `deepalign-nb-out-${process.pid}.ipynb`);
    const run = runCli(['console.log(process.env.DEEPALIGN_FAST, process.env.DEEPALIGN_NOTEBOOK?.endsWith("throwaway.ipynb"))'], ['--fast', '--out', out]);
    expect(run.status).toBe(0);
    expect(readFileSync(run.path, 'utf8')).toBe(run.original);
    const nb = JSON.parse(readFileSync(out, 'utf8'));
    expect(nb.cells[1].outputs[0].text).toEqual(['1 true\n']);
  });
});
