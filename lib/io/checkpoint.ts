// A Hugging Face model folder: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json ({"weight_map": {tensor name: shard file}}).
import * as fs from 'fs';
import * as path from 'path';
import { fromHF, type ModelConfig } from './hfConfig.js';
import { readJsonFile } from './json.js';
import { readSafetensorsHeader, readTensor, type LoadedTensor, type SafetensorsHeader, type TensorInfo } from './safetensors.js';

/** A JSON object file; errors name the file and say what it should hold (`what`). */
export function readJson(file: string, what = 'a JSON object'): Record<string, any> {
  return readJsonFile(file, what);
}

/** Read and normalise `dir/config.json`. */
export function readModelConfig(dir: string): ModelConfig {
  const file = path.join(dir, 'config.json');
  return fromHF(readJson(file, 'a Hugging Face model config'), file);
}

/** Where each tensor of a checkpoint folder lives; headers are parsed, data is not read. */
export interface CheckpointIndex {
  dir: string;
  /** tensor name -> its header entry and the header of the file holding it */
  tensors: Map<string, { info: TensorInfo; header: SafetensorsHeader }>;
}

export function indexCheckpoint(dir: string): CheckpointIndex {
  const single = path.join(dir, 'model.safetensors');
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  const tensors: CheckpointIndex['tensors'] = new Map();
  let files: string[];
  let weightMap: Record<string, string> | undefined;
  if (fs.existsSync(indexFile)) {
    const index = readJson(indexFile, 'a sharded safetensors index ({"weight_map": {tensor name: shard file}})');
    weightMap = index.weight_map;
    if (!weightMap || typeof weightMap !== 'object' || Array.isArray(weightMap)) throw new Error(`${indexFile}: missing "weight_map" object (tensor name -> shard file)`);
    for (const [name, shard] of Object.entries(weightMap)) {
      if (typeof shard !== 'string' || shard === '') {
        throw new Error(`${indexFile}: weight_map entry "${name}" must be a shard file name, but is ${JSON.stringify(shard)}`);
      }
    }
    files = [...new Set(Object.values(weightMap))].map((f) => path.join(dir, f));
  } else if (fs.existsSync(single)) {
    files = [single];
  } else {
    throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
  }
  for (const file of files) {
    if (!fs.existsSync(file)) throw new Error(`${indexFile}: shard ${path.basename(file)} is listed but missing`);
    const header = readSafetensorsHeader(file);
    for (const [name, info] of header.tensors) {
      if (tensors.has(name)) throw new Error(`${file}: tensor "${name}" also appears in ${tensors.get(name)!.header.file}`);
      tensors.set(name, { info, header });
    }
  }
  if (weightMap) {
    for (const [name, shard] of Object.entries(weightMap)) {
      const at = tensors.get(name);
      if (!at) throw new Error(`${indexFile}: weight_map lists "${name}" in ${shard} but that file has no such tensor`);
      if (path.basename(at.header.file) !== path.basename(shard)) {
        throw new Error(`${indexFile}: weight_map puts "${name}" in ${shard} but it is in ${path.basename(at.header.file)}`);
      }
    }
  }
  return { dir, tensors };
}

/** Read one tensor of a checkpoint (float32/int32). */
export function readCheckpointTensor(index: CheckpointIndex, name: string): LoadedTensor {
  const at = index.tensors.get(name);
  if (!at) throw new Error(`${index.dir}: checkpoint has no tensor "${name}"`);
  return readTensor(at.header, name);
}
