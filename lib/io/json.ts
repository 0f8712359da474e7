// Reading the kit's JSON files (config.json, generation_config.json, safetensors indexes, training
// state.json, world.json, ...): every failure names the file and what it should have held, so a
// truncated or hand-edited file says which one it is ("Unterminated string in JSON at position
// 1118" alone does not).
import * as fs from 'fs';

export type JsonShape = 'object' | 'array' | 'any';

/**
 * Parse the JSON file `file`. `what` describes what it should hold (e.g. "the training state
 * written by train()"); it appears in every error together with the path. `shape` checks the
 * top-level value (default: a JSON object).
 */
export function readJsonFile<T = any>(file: string, what: string, shape: JsonShape = 'object'): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${file}: file not found (expected ${what})`);
    throw new Error(`${file}: cannot read ${what} (${(e as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const hint = text.trim() === '' ? 'the file is empty' : `${(e as Error).message}; ${text.length} bytes, possibly truncated by an interrupted write`;
    throw new Error(`${file}: not valid JSON (${hint}); expected ${what}`);
  }
  const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : typeof value;
  if (shape === 'object' && got !== 'an object') throw new Error(`${file}: holds ${got}, expected ${what} (a JSON object)`);
  if (shape === 'array' && got !== 'an array') throw new Error(`${file}: holds ${got}, expected ${what} (a JSON array)`);
  return value as T;
}
