// The deepalign kernel under real Jupyter (nbconvert + nbclient), when Jupyter is installed:
// cells run at the repo root, display data arrives, and a failing cell's error text reaches
// nbconvert's error message (tslab alone reports an empty error; scripts/jupyter-kernel.cjs adds it).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeKernelSpec } from '../../scripts/notebook/kernelspec.js';

const repoRoot = resolve(__dirname, '..', '..');
const hasJupyter = spawnSync('jupyter', ['nbconvert', '--version'], { encoding: 'utf8' }).status === 0;

function nbconvert(sources: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'deepalign-jupyter-'));
  writeKernelSpec(join(dir, 'jupyter-data'));
  const path = join(dir, 'k.ipynb');
  const cells = sources.map((source, i) => ({ cell_type: 'code', id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null }));
  writeFileSync(path, JSON.stringify({ cells, metadata: {}, nbformat: 4, nbformat_minor: 5 }));
  const run = spawnSync(
    'jupyter',
    ['nbconvert', '--to', 'notebook', '--execute', '--ExecutePreprocessor.kernel_name=deepalign', '--ExecutePreprocessor.timeout=120', '--output', 'out.ipynb', path],
    { cwd: dir, encoding: 'utf8', env: { ...process.env, JUPYTER_PATH: join(dir, 'jupyter-data'), PYDEVD_DISABLE_FILE_VALIDATION: '1' }, timeout: 120_000 },
  );
  return { ...run, out: join(dir, 'out.ipynb') };
}

describe.skipIf(!hasJupyter)('deepalign Jupyter kernel', () => {
  it('runs cells at the repo root with display data, and reports a failing cell with its error', () => {
    const ok = nbconvert(["import * as tslab from 'tslab';\ntslab.display.html('<i>hi</i>');\nconsole.log(process.cwd());"]);
    expect(ok.status).toBe(0);
    const outputs = JSON.parse(readFileSync(ok.out, 'utf8')).cells[0].outputs;
    expect(outputs[0]).toMatchObject({ output_type: 'display_data', data: { 'text/html': ['<i>hi</i>'] } });
    expect(outputs[1]).toMatchObject({ output_type: 'stream', name: 'stdout', text: [`${repoRoot}\n`] });

    const failing = nbconvert(['console.log(1)', "const n: number = 'not a number';"]);
    expect(failing.status).not.toBe(0);
    expect(failing.stderr).toContain("CellError: 1:7 - Type 'string' is not assignable to type 'number'.");
  });
});
