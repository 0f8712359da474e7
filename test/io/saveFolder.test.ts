// saveModel replaces a folder as a whole: a failure or a crash at any point leaves the old folder
// or the new one (never new files beside old ones), leftovers of a crash are repaired on the next
// load or save, options and weights are checked before anything is written, and damaged JSON
// files name themselves.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import { recoverFolder, setFolderWriteHook, writeFolderAtomic, writeSafetensors, type FolderWriteStage } from '../../lib/io/index.js';
import { createModel, loadModel, saveModel, type Decoder } from '../../lib/model/index.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-savefolder-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const tinyLlama = {
  model_type: 'llama', vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2,
  num_key_value_heads: 1, rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 32, tie_word_embeddings: false,
  bos_token_id: 1, eos_token_id: 2, pad_token_id: 0, initializer_range: 0.1,
};

function weights(model: Decoder): Record<string, number[]> {
  return Object.fromEntries([...model.variables()].map(([n, v]) => [n, Array.from(v.dataSync())]));
}

/** name -> contents (base64) of every file in dir. */
function readFolder(dir: string): Record<string, string> {
  return Object.fromEntries(fs.readdirSync(dir).sort().map((f) => [f, fs.readFileSync(path.join(dir, f)).toString('base64')]));
}

/** The folder `name` under a fresh parent, holding `model` saved with the given generation config. */
async function savedFolder(name: string, model: Decoder, marker: string): Promise<string> {
  const dir = path.join(tmp, name, 'model');
  await saveModel(model, dir, { generationConfig: { marker } });
  return dir;
}

async function expectFolderHolds(dir: string, model: Decoder, marker: string): Promise<void> {
  const loaded = await loadModel(dir);
  expect(loaded.generationConfig.marker).toBe(marker);
  expect(weights(loaded)).toEqual(weights(model));
  loaded.dispose();
}

const oldModel = createModel(tinyLlama, { seed: 1 });
const newModel = createModel(tinyLlama, { seed: 2 });

describe('saveModel over an existing folder', () => {
  it('a write that fails after config.json and the weights leaves the old folder intact and loadable', async () => {
    const dir = await savedFolder('fail-mid-write', oldModel, 'old');
    const before = readFolder(dir);
    // A tokenizer folder whose tokenizer_config.json is a folder: copying it fails (EISDIR) after
    // config.json, generation_config.json and model.safetensors are written.
    const tok = path.join(tmp, 'bad-tokenizer');
    fs.mkdirSync(path.join(tok, 'tokenizer_config.json'), { recursive: true });
    fs.writeFileSync(path.join(tok, 'tokenizer.json'), '{}');
    await expect(saveModel(newModel, dir, { tokenizer: tok, generationConfig: { marker: 'new' } })).rejects.toThrow(/EISDIR/);
    expect(readFolder(dir)).toEqual(before);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['model']);
    await expectFolderHolds(dir, oldModel, 'old');
  });

  it('a failure reported by the write hook at the last moment before the swap also leaves the old folder', async () => {
    const dir = await savedFolder('fail-staged', oldModel, 'old');
    const before = readFolder(dir);
    setFolderWriteHook((stage) => { if (stage === 'staged') throw new Error('ENOSPC: no space left on device (simulated)'); });
    try {
      await expect(saveModel(newModel, dir, { generationConfig: { marker: 'new' } })).rejects.toThrow('ENOSPC');
    } finally {
      setFolderWriteHook(undefined);
    }
    expect(readFolder(dir)).toEqual(before);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['model']);
  });

  it('a crash at any stage leaves a state that the next load turns into the old or the new folder, with no leftovers', async () => {
    const dir = await savedFolder('crash', oldModel, 'old');
    // What a SIGKILL at each stage would leave on disk: a copy of the parent folder at that moment.
    const states = path.join(tmp, 'crash-states');
    setFolderWriteHook((stage: FolderWriteStage) => fs.cpSync(path.dirname(dir), path.join(states, stage), { recursive: true }));
    try {
      await saveModel(newModel, dir, { generationConfig: { marker: 'new' } });
    } finally {
      setFolderWriteHook(undefined);
    }
    await expectFolderHolds(dir, newModel, 'new');
    const expected: Record<FolderWriteStage, [Decoder, string]> = { staged: [oldModel, 'old'], committed: [newModel, 'new'], swapped: [newModel, 'new'] };
    for (const [stage, [model, marker]] of Object.entries(expected)) {
      const crashed = path.join(states, stage);
      // The crashed writer was this process (so it is not running): its leftovers are stale.
      expect(fs.readdirSync(crashed).length, stage).toBeGreaterThan(1);
      if (stage === 'committed') expect(fs.existsSync(path.join(crashed, 'model')), 'the folder is missing between the renames').toBe(false);
      await expectFolderHolds(path.join(crashed, 'model'), model, marker);
      expect(fs.readdirSync(crashed), stage).toEqual(['model']);
    }
    // The next save repairs too (here: the state between the two renames, copied again).
    setFolderWriteHook((stage) => { if (stage === 'committed') fs.cpSync(path.dirname(dir), path.join(states, 'again'), { recursive: true }); });
    try {
      await saveModel(oldModel, dir, { generationConfig: { marker: 'old' } });
    } finally {
      setFolderWriteHook(undefined);
    }
    const again = path.join(states, 'again', 'model');
    await saveModel(oldModel, again, { generationConfig: { marker: 'third' } });
    expect(fs.readdirSync(path.dirname(again))).toEqual(['model']);
    await expectFolderHolds(again, oldModel, 'third');
  });

  it("leftovers of a live writer are left alone; a dead writer's are removed", () => {
    const parent = path.join(tmp, 'live');
    const dir = path.join(parent, 'model');
    fs.mkdirSync(dir, { recursive: true });
    const exited = spawnSync(process.execPath, ['-e', '0']).pid!;
    fs.mkdirSync(`${dir}.saving-${process.ppid}`);
    fs.mkdirSync(`${dir}.saving-${exited}`);
    fs.mkdirSync(`${dir}.old-${exited}`);
    recoverFolder(dir);
    expect(fs.readdirSync(parent).sort()).toEqual(['model', `model.saving-${process.ppid}`]);
    // A missing folder whose live writer is between its renames: a reader waits, then says so.
    fs.renameSync(dir, `${dir}.old-${process.ppid}`);
    expect(() => recoverFolder(dir, 100)).toThrow(`${dir} is missing while another process is replacing it`);
  });

  it('replaces the whole folder: a sharded checkpoint saved over by a single file loses its index and shards', async () => {
    const dir = await savedFolder('resharded', oldModel, 'old');
    fs.rmSync(path.join(dir, 'model.safetensors'));
    const vars = [...oldModel.variables()];
    const weightMap: Record<string, string> = {};
    vars.forEach(([name, v], i) => {
      const file = `model-0000${(i % 2) + 1}-of-00002.safetensors`;
      weightMap[name] = file;
    });
    for (const file of new Set(Object.values(weightMap))) {
      writeSafetensors(path.join(dir, file), vars.filter(([n]) => weightMap[n] === file).map(([name, v]) => ({ name, shape: v.shape, data: v.dataSync() as Float32Array })));
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    await expectFolderHolds(dir, oldModel, 'old');
    await saveModel(newModel, dir, { generationConfig: { marker: 'new' } });
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors']);
    await expectFolderHolds(dir, newModel, 'new');
  });

  it('writes `files` with the model, and refuses to replace a folder that is not a model folder', async () => {
    const dir = path.join(tmp, 'with-files');
    await saveModel(oldModel, dir, { files: { 'world.json': '{"a": 1}\n', 'blob.bin': new Uint8Array([1, 2, 3]) } });
    expect(fs.readFileSync(path.join(dir, 'world.json'), 'utf8')).toBe('{"a": 1}\n');
    expect(Array.from(fs.readFileSync(path.join(dir, 'blob.bin')))).toEqual([1, 2, 3]);
    const notes = path.join(tmp, 'notes');
    fs.mkdirSync(notes);
    fs.writeFileSync(path.join(notes, 'todo.txt'), 'keep me');
    await expect(saveModel(oldModel, notes)).rejects.toThrow(`saveModel: ${notes} is a non-empty folder without config.json`);
    expect(readFolder(notes)).toEqual({ 'todo.txt': Buffer.from('keep me').toString('base64') });
  });
});

describe('saveModel checks every option and the weights before writing', () => {
  it.each([
    ['dtype F64', { dtype: 'F64' }, '`dtype` must be one of F32, BF16, F16, but is "F64"'],
    ['a tokenizer folder without tokenizer.json', { tokenizer: tmp }, `tokenizer folder ${tmp} has no tokenizer.json`],
    ['a generation config JSON cannot hold', { generationConfig: { n: 1n } }, 'cannot be written as JSON'],
    ['a file name with a folder', { files: { 'sub/x.json': '{}' } }, '`files` key "sub/x.json" must be a plain file name'],
    ['a file that would replace config.json', { files: { 'config.json': '{}' } }, '`files` cannot replace config.json'],
    ['an unknown option', { dtpye: 'F16' }, 'unknown option `dtpye`'],
    ['allowNonFinite that is not a boolean', { allowNonFinite: 'yes' }, '`allowNonFinite` must be true or false'],
  ])('%s leaves the folder untouched', async (_, opts, message) => {
    const dir = await savedFolder(`untouched-${_.replace(/\W+/g, '-')}`, oldModel, 'old');
    const before = readFolder(dir);
    const mtime = fs.statSync(path.join(dir, 'config.json')).mtimeMs;
    await expect(saveModel(newModel, dir, opts as never)).rejects.toThrow(message);
    expect(readFolder(dir)).toEqual(before);
    expect(fs.statSync(path.join(dir, 'config.json')).mtimeMs).toBe(mtime);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['model']);
  });

  it('non-finite weights are refused, naming the tensors and counts, unless allowNonFinite; loadModel warns about them', async () => {
    const model = createModel(tinyLlama, { seed: 3 });
    const v = model.variables().get('model.layers.0.mlp.up_proj.weight')!;
    const data = v.dataSync().slice() as Float32Array;
    data[0] = NaN;
    data[5] = Infinity;
    v.assign(tf.tensor(data, v.shape));
    const n = model.variables().get('model.norm.weight')!;
    n.assign(tf.fill(n.shape, -Infinity));
    const dir = path.join(tmp, 'non-finite');
    await expect(saveModel(model, dir)).rejects.toThrow(
      `saveModel: refusing to write ${dir}: 2 of 12 weight tensors hold NaN or ±Infinity: "model.layers.0.mlp.up_proj.weight" (2 of 384), "model.norm.weight" (16 of 16); pass { allowNonFinite: true } to write them anyway`,
    );
    expect(fs.existsSync(dir)).toBe(false);
    await saveModel(model, dir, { allowNonFinite: true });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      const loaded = await loadModel(dir);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn.mock.calls[0][0]).toBe(`loadModel ${dir}: 2 weight tensors hold NaN or ±Infinity: "model.layers.0.mlp.up_proj.weight" (2 of 384), "model.norm.weight" (16 of 16); the model's outputs will not be finite`);
      loaded.dispose();
      (await loadModel(path.join(tmp, 'with-files'))).dispose();
      expect(warn).toHaveBeenCalledTimes(1);
    } finally {
      warn.mockRestore();
    }
    model.dispose();
  });
});

describe('damaged JSON files name the file and what it should hold', () => {
  it('config.json, generation_config.json and a sharded index', async () => {
    const dir = path.join(tmp, 'damaged-json');
    await saveModel(oldModel, dir);
    const cut = (file: string) => {
      const text = fs.readFileSync(file, 'utf8');
      fs.writeFileSync(file, text.slice(0, Math.floor(text.length / 2)));
      return text;
    };
    const gen = path.join(dir, 'generation_config.json');
    const genText = cut(gen);
    await expect(loadModel(dir)).rejects.toThrow(new RegExp(`^${gen.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON \\(.*possibly truncated by an interrupted write\\); expected a generation config \\(generation_config\\.json\\)$`));
    fs.writeFileSync(gen, genText);
    const config = path.join(dir, 'config.json');
    cut(config);
    await expect(loadModel(dir)).rejects.toThrow(`${config}: not valid JSON (`);
    await expect(loadModel(dir)).rejects.toThrow('expected a Hugging Face model config (config.json)');
    fs.writeFileSync(config, '[1, 2]');
    await expect(loadModel(dir)).rejects.toThrow(`${config}: holds an array, expected a Hugging Face model config (config.json) (a JSON object)`);
    fs.writeFileSync(config, '');
    await expect(loadModel(dir)).rejects.toThrow(`${config}: not valid JSON (the file is empty)`);
    await saveModel(oldModel, path.join(tmp, 'damaged-index'));
    const index = path.join(tmp, 'damaged-index', 'model.safetensors.index.json');
    fs.writeFileSync(index, '{"weight_map": {"a": "model-0');
    await expect(loadModel(path.join(tmp, 'damaged-index'))).rejects.toThrow(`${index}: not valid JSON (`);
    await expect(loadModel(path.join(tmp, 'damaged-index'))).rejects.toThrow('expected a sharded safetensors index');
  });

  it('writeFolderAtomic refuses the root folder and the working folder, and follows a symlinked folder', async () => {
    expect(() => writeFolderAtomic(path.parse(tmp).root, () => undefined)).toThrow('cannot replace the root folder');
    expect(() => writeFolderAtomic(path.dirname(process.cwd()), () => undefined)).toThrow('which holds the current working folder');
    const real = path.join(tmp, 'real-model');
    const link = path.join(tmp, 'linked-model');
    await saveModel(oldModel, real, { generationConfig: { marker: 'old' } });
    fs.symlinkSync(real, link);
    await saveModel(newModel, link, { generationConfig: { marker: 'new' } });
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    await expectFolderHolds(real, newModel, 'new');
  });
});
