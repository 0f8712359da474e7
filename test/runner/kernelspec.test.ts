import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelSpec, writeKernelSpec } from '../../scripts/notebook/kernelspec.js';
import { DEEPALIGN_KERNELSPEC } from '../../scripts/notebook/ipynb.js';

describe('kernel spec', () => {
  it('registers "deepalign" running tslab through the repo-root wrapper', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-kernel-'));
    const path = writeKernelSpec(dir);
    expect(path).toBe(join(dir, 'kernels', 'deepalign', 'kernel.json'));
    const spec = JSON.parse(readFileSync(path, 'utf8'));
    expect(spec).toEqual(kernelSpec());
    expect(spec.display_name).toBe('deepalign (TypeScript)');
    // The notebooks' metadata names the same kernel, so nbconvert/Jupyter pick it by default.
    expect(DEEPALIGN_KERNELSPEC.name).toBe('deepalign');
    expect(DEEPALIGN_KERNELSPEC.display_name).toBe(spec.display_name);
    const [node, wrapper, connection] = spec.argv;
    expect(existsSync(node)).toBe(true);
    expect(existsSync(wrapper)).toBe(true);
    expect(connection).toBe('{connection_file}');
  });
});
