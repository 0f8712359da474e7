// Loaders for the data files the papers use, in the layouts their authors publish (the kit ships
// none of the gated ones; researchers point the loaders at their own copies). Each returns a
// Dataset of the kit's behaviour types (lib/metrics/behaviours.ts):
//   advbench            harmful_behaviors.csv (goal,target): request = goal, meta.target = the
//                       "Sure, here is ..." string GCG optimises towards (Zou et al., llm-attacks)
//   hex-phi             a folder of category_N.csv, one category_N.csv (no header, one instruction
//                       per row; category = the file name), or Qi et al.'s HEx-PHI.jsonl
//                       ({instruction, category} per line)
//   harmful-hex-phi     Harmful-HEx-PHI.jsonl: per line [{role: user}, {role: assistant}] (the
//                       harmful answer) -> request, harmfulResponse (Qi et al.'s prefilling data)
//   strongreject        strongreject_dataset.csv (category,source,forbidden_prompt)
//   malicious-instruct  MaliciousInstruct.txt, one request per line (Huang et al., Jailbreak_LLM)
//   qi-augmentation     safety triplets {instruction, input?, harmful, refusal} per line (Qi et al.'s
//                       llama2_safety_data_direct.jsonl; Vega & Singh's *_safety_data_direct.jsonl)
//                       -> request, harmfulResponse, refusal
//   chat-jsonl          fine-tuning data {"messages": [{role, content}, ...]} per line (Qi et al.'s
//                       pure_bad100.jsonl, OpenAI's fine-tuning format) -> conversations
//   alpaca              alpaca_data.json, an array of {instruction, input, output} -> benign
//                       behaviours (request = instruction + "\n\n" + input when input is non-empty,
//                       as Qi et al.'s alpaca formatter builds it)
// The JSON formats read JSONL from a .jsonl file, and a JSON array from a .json file (or JSONL, when
// that is what it holds, as Hugging Face datasets reads it). Unknown columns and fields are ignored.
//
// Ids are `<name>-<n>`: name = the file name without its extension (a HEx-PHI folder: the folder
// name and the category file, `HEx-PHI-category_3-12`), n = the item's 1-based position among the
// file's items (data rows, non-blank lines, array items). They do not depend on `limit`, so an id
// names the same request in every run.
//
// Errors name the file, where in it (CSV: the row as a spreadsheet counts it, the header being row
// 1, and the line where the record starts when a quoted line break moves it; JSONL: the line; JSON
// array: the item), the field, and what was expected.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BenignBehaviour, HarmfulBehaviour } from '../metrics/behaviours.js';
import type { ChatMessage } from '../tokenizer/index.js';
import { csvRecords, isBlankRecord, type CsvRecord } from './csv.js';

export type DatasetFormat =
  | 'advbench' | 'hex-phi' | 'harmful-hex-phi' | 'strongreject' | 'malicious-instruct' | 'qi-augmentation' | 'chat-jsonl' | 'alpaca';

/** Every format, with how inference recognises it (shown when it cannot tell). */
export const DATASET_FORMATS: Readonly<Record<DatasetFormat, string>> = Object.freeze({
  'advbench': '.csv with a goal,target header (AdvBench harmful_behaviors.csv)',
  'hex-phi': 'a folder of category_N.csv, one category_N.csv (no header), or .jsonl with {instruction, category} (HEx-PHI)',
  'harmful-hex-phi': '.jsonl, each line [{"role": "user", ...}, {"role": "assistant", ...}] (Harmful HEx-PHI)',
  'strongreject': '.csv with a category,source,forbidden_prompt header (StrongREJECT)',
  'malicious-instruct': '.txt, one request per line (MaliciousInstruct)',
  'qi-augmentation': '.jsonl with {instruction, harmful, refusal} (Qi et al.\'s safety augmentation triplets)',
  'chat-jsonl': '.jsonl with {"messages": [{role, content}, ...]} (fine-tuning data)',
  'alpaca': '.json array of {instruction, input, output} (Alpaca)',
});

export interface Dataset {
  /** The file (or folder) name without extension; ids start with it. */
  name: string;
  format: DatasetFormat;
  /** The path it was loaded from, as given. */
  path: string;
  harmful: HarmfulBehaviour[];
  benign: BenignBehaviour[];
  /** Chat conversations (chat-jsonl), as the file gives them; see conversationPairs. */
  conversations: ChatMessage[][];
}

export interface LoadOptions {
  /** Keep the first `limit` items of the file (rows after them are neither read into behaviours nor checked). */
  limit?: number;
}

export interface LoadDatasetOptions extends LoadOptions {
  /** The file's format; inferred from its name, extension and header when omitted. */
  format?: DatasetFormat;
}

// ---------------------------------------------------------------------------------------------
// Reading files, with locations for errors

function readText(file: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new Error(`${file}: no such file (expected a data set file)`);
  }
  if (stat.isDirectory()) throw new Error(`${file}: is a folder (expected a file; only the hex-phi format reads a folder of category_N.csv)`);
  return fs.readFileSync(file, 'utf8');
}

function stem(p: string): string {
  const base = path.basename(p.replace(/[\\/]+$/, ''));
  const ext = path.extname(base);
  return ext ? base.slice(0, -ext.length) : base;
}

function checkedLimit(limit: number | undefined, where: string): number {
  if (limit === undefined) return Infinity;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) {
    throw new Error(`${where}: \`limit\` must be a positive integer, but is ${JSON.stringify(limit)}`);
  }
  return limit;
}

/** A CSV data row: its 1-based position among data rows (n), where it is, and its cells by column. */
interface CsvRow {
  n: number;
  where: string;
  cells: Record<string, string>;
}

function rowWhere(file: string, sheetRow: number, line: number, headed: boolean): string {
  const numbering = headed ? 'spreadsheet numbering, header = row 1' : 'spreadsheet numbering, no header';
  return `${file}, row ${sheetRow} (${numbering}${line !== sheetRow ? `; starts on line ${line}` : ''})`;
}

/** Data rows of a CSV with a header that must name `required` columns (read up to `limit` rows). */
function readCsvTable(file: string, required: readonly string[], label: string, limit: number): CsvRow[] {
  let header: string[] | undefined;
  let headerIndex = 0;
  const rows: CsvRow[] = [];
  let index = -1; // 0-based record index: spreadsheet row - 1 (blank lines are rows there too)
  for (const record of csvRecords(readText(file), file)) {
    index++;
    if (isBlankRecord(record)) continue;
    if (header === undefined) {
      header = checkHeader(file, record, required, label);
      headerIndex = index;
      continue;
    }
    const where = rowWhere(file, index - headerIndex + 1, record.line, true);
    if (record.fields.length !== header.length) {
      throw new Error(`${where}: has ${record.fields.length} field${record.fields.length === 1 ? '' : 's'}, but the header has ${header.length} (expected one value per column ${header.join(',')}; quote a value that contains a comma)`);
    }
    const cells: Record<string, string> = {};
    header.forEach((h, i) => {
      cells[h] = record.fields[i];
    });
    rows.push({ n: rows.length + 1, where, cells });
    if (rows.length >= limit) break;
  }
  if (header === undefined) throw new Error(`${file}: the file is empty (expected a header row ${required.join(',')} and data rows)`);
  return rows;
}

function checkHeader(file: string, record: CsvRecord, required: readonly string[], label: string): string[] {
  const header = record.fields.map((h) => h.trim());
  const seen = new Set<string>();
  for (const h of header) {
    if (seen.has(h) && h !== '') throw new Error(`${file}: the header row (line ${record.line}) names column "${h}" twice (expected each column once)`);
    seen.add(h);
  }
  const missing = required.filter((c) => !header.includes(c));
  if (missing.length > 0) {
    throw new Error(`${file}: the header row (line ${record.line}) has no ${missing.map((c) => `"${c}"`).join(', ')} column${missing.length > 1 ? 's' : ''} (found: ${header.map((h) => JSON.stringify(h)).join(', ')}; expected the ${label} columns ${required.join(', ')})`);
  }
  return header;
}

/** Rows of a headerless one-column CSV (HEx-PHI): each non-blank record must be one field. */
function readCsvColumn(file: string, limit: number): { n: number; where: string; value: string }[] {
  const out: { n: number; where: string; value: string }[] = [];
  let index = -1;
  for (const record of csvRecords(readText(file), file)) {
    index++;
    if (isBlankRecord(record)) continue;
    const where = rowWhere(file, index + 1, record.line, false);
    if (record.fields.length !== 1) {
      throw new Error(`${where}: has ${record.fields.length} fields (expected one, the instruction; HEx-PHI files have no header and one column, so quote an instruction that contains a comma)`);
    }
    if (record.fields[0].trim() === '') throw new Error(`${where}: the instruction is empty (expected the harmful instruction)`);
    out.push({ n: out.length + 1, where, value: record.fields[0] });
    if (out.length >= limit) break;
  }
  return out;
}

function cell(row: CsvRow, column: string, expected: string): string {
  const value = row.cells[column];
  if (value.trim() === '') throw new Error(`${row.where}: field "${column}" is empty (expected ${expected})`);
  return value;
}

/** A JSON value of a JSONL line or a JSON array item, with its position. */
interface JsonItem {
  n: number;
  where: string;
  value: unknown;
}

/** "line 12, column 5" for a JSON.parse error message that gives a position (Node: "... at position 83"). */
function jsonErrorPlace(message: string, text: string): string {
  const m = /position (\d+)/.exec(message);
  if (!m) return '';
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const line = before.split(/\r\n|\n|\r/).length;
  const column = pos - Math.max(before.lastIndexOf('\n'), before.lastIndexOf('\r'));
  return ` at line ${line}, column ${column}`;
}

function splitLines(text: string): string[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return text.split(/\r\n|\n|\r/);
}

function parseJsonLines(file: string, text: string, limit: number): JsonItem[] {
  const items: JsonItem[] = [];
  const lines = splitLines(text);
  for (let i = 0; i < lines.length && items.length < limit; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const where = `${file}, line ${i + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: not valid JSON (${(e as Error).message}; each line of a JSONL file must hold one JSON value)`);
    }
    items.push({ n: items.length + 1, where, value });
  }
  return items;
}

/** Items of a JSONL file, or of a .json file holding one JSON array (or, failing that, JSONL). */
function readJsonItems(file: string, limit: number): JsonItem[] {
  const text = readText(file);
  if (path.extname(file).toLowerCase() !== '.json') return parseJsonLines(file, text, limit);
  let whole: unknown;
  try {
    whole = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    const firstLine = splitLines(text).find((l) => l.trim() !== '');
    let looksLikeJsonl = false;
    try {
      looksLikeJsonl = firstLine !== undefined && typeof JSON.parse(firstLine) === 'object';
    } catch {
      looksLikeJsonl = false;
    }
    if (looksLikeJsonl) return parseJsonLines(file, text, limit);
    throw new Error(`${file}: not valid JSON${jsonErrorPlace((e as Error).message, text)} (${(e as Error).message}; expected a JSON array of records, or JSONL)`);
  }
  if (!Array.isArray(whole)) throw new Error(`${file}: holds ${describe(whole)} (expected a JSON array of records, or JSONL)`);
  return whole.slice(0, limit).map((value, i) => ({ n: i + 1, where: `${file}, item ${i + 1} (1-based)`, value }));
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const shown = JSON.stringify(value) ?? String(value);
  const preview = shown.length > 60 ? `${shown.slice(0, 57)}...` : shown;
  return `a ${typeof value} (${preview})`;
}

function asRecord(item: JsonItem, expected: string): Record<string, unknown> {
  const v = item.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${item.where}: is ${describe(v)} (expected a JSON object with ${expected})`);
  return v as Record<string, unknown>;
}

interface FieldRule {
  /** What the field holds, for messages ("the harmful request"). */
  expected: string;
  /** Absent (or null) is fine: returns undefined. */
  optional?: boolean;
  /** '' (or whitespace) is fine. */
  allowEmpty?: boolean;
}

function stringField(obj: Record<string, unknown>, field: string, where: string, rule: FieldRule): string | undefined {
  const v = obj[field];
  if (v === undefined || (v === null && rule.optional)) {
    if (rule.optional) return undefined;
    const present = Object.keys(obj);
    throw new Error(`${where}: field "${field}" is missing (expected ${rule.expected}; the record has ${present.length ? present.map((k) => `"${k}"`).join(', ') : 'no fields'})`);
  }
  if (typeof v !== 'string') throw new Error(`${where}: field "${field}" must be a string (${rule.expected}), but is ${describe(v)}`);
  if (!rule.allowEmpty && v.trim() === '') throw new Error(`${where}: field "${field}" is empty (expected ${rule.expected})`);
  return v;
}

/** A category given as a string or a number (HEx-PHI.jsonl's), as a string; undefined when absent or empty. */
function categoryField(obj: Record<string, unknown>, where: string): string | undefined {
  const v = obj.category;
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v !== 'string') throw new Error(`${where}: field "category" must be a string or a number, but is ${describe(v)}`);
  return v.trim() === '' ? undefined : v;
}

function parseMessages(value: unknown, where: string, field: string): ChatMessage[] {
  if (!Array.isArray(value)) throw new Error(`${where}: ${field} must be an array of {role, content} messages, but is ${describe(value)}`);
  if (value.length === 0) throw new Error(`${where}: ${field} is empty (expected at least one {role, content} message)`);
  return value.map((m, i) => {
    const at = `${field}[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new Error(`${where}: ${at} must be a {role, content} object, but is ${describe(m)}`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string' || role.trim() === '') throw new Error(`${where}: ${at}.role must be a non-empty string ('system', 'user' or 'assistant'), but is ${role === undefined ? 'missing' : describe(role)}`);
    if (typeof content !== 'string') throw new Error(`${where}: ${at}.content must be a string, but is ${content === undefined ? 'missing' : describe(content)}`);
    return { role, content };
  });
}

function dataset(file: string, format: DatasetFormat, name: string, parts: Partial<Pick<Dataset, 'harmful' | 'benign' | 'conversations'>>): Dataset {
  const d: Dataset = { name, format, path: file, harmful: parts.harmful ?? [], benign: parts.benign ?? [], conversations: parts.conversations ?? [] };
  if (d.harmful.length + d.benign.length + d.conversations.length === 0) {
    throw new Error(`${file}: no data (expected at least one ${format === 'alpaca' ? 'instruction' : format === 'chat-jsonl' ? 'conversation' : 'request'} in the ${format} format)`);
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// One loader per format

/** AdvBench harmful_behaviors.csv (goal,target): request = goal; meta.target = target (when non-empty). */
export function loadAdvBench(file: string, options: LoadOptions = {}): Dataset {
  const name = stem(file);
  const rows = readCsvTable(file, ['goal', 'target'], 'AdvBench', checkedLimit(options.limit, `loadAdvBench(${file})`));
  const harmful = rows.map((row): HarmfulBehaviour => {
    const request = cell(row, 'goal', 'the harmful request');
    const target = row.cells.target;
    return { id: `${name}-${row.n}`, request, ...(target.trim() !== '' ? { meta: { target } } : {}) };
  });
  return dataset(file, 'advbench', name, { harmful });
}

/** Names of HEx-PHI's eleven categories (its dataset card), by number; category 2 is not publicly released. */
export const HEX_PHI_CATEGORIES: Readonly<Record<number, string>> = Object.freeze({
  1: 'Illegal Activity', 2: 'Child Abuse Content', 3: 'Hate/Harass/Violence', 4: 'Malware', 5: 'Physical Harm', 6: 'Economic Harm',
  7: 'Fraud/Deception', 8: 'Adult Content', 9: 'Political Campaigning', 10: 'Privacy Violation Activity', 11: 'Tailored Financial Advice',
});

const HEX_PHI_FILE = /^category_(\d+)\.csv$/i;

function hexPhiCsv(file: string, idPrefix: string, limit: number): HarmfulBehaviour[] {
  const category = stem(file);
  const number = HEX_PHI_FILE.exec(path.basename(file))?.[1];
  const categoryName = number !== undefined ? HEX_PHI_CATEGORIES[Number(number)] : undefined;
  return readCsvColumn(file, limit).map((row) => ({
    id: `${idPrefix}-${row.n}`, request: row.value, category, ...(categoryName ? { meta: { categoryName } } : {}),
  }));
}

/**
 * HEx-PHI: a folder of category_N.csv (read in category order), one such file (category = the
 * file name, meta.categoryName = HEx-PHI's name for category N), or Qi et al.'s HEx-PHI.jsonl
 * ({instruction, category} per line).
 */
export function loadHexPhi(p: string, options: LoadOptions = {}): Dataset {
  const limit = checkedLimit(options.limit, `loadHexPhi(${p})`);
  const name = stem(p);
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
    const entries = fs.readdirSync(p);
    const files = entries.filter((f) => HEX_PHI_FILE.test(f)).sort((a, b) => Number(HEX_PHI_FILE.exec(a)![1]) - Number(HEX_PHI_FILE.exec(b)![1]));
    if (files.length === 0) {
      const shown = entries.slice(0, 10).map((f) => JSON.stringify(f)).join(', ');
      throw new Error(`${p}: the folder has no category_N.csv files (expected HEx-PHI's category_1.csv ... category_11.csv; found ${entries.length === 0 ? 'nothing' : shown + (entries.length > 10 ? ', ...' : '')})`);
    }
    const harmful: HarmfulBehaviour[] = [];
    for (const f of files) {
      if (harmful.length >= limit) break;
      harmful.push(...hexPhiCsv(path.join(p, f), `${name}-${stem(f)}`, limit - harmful.length));
    }
    return dataset(p, 'hex-phi', name, { harmful });
  }
  const ext = path.extname(p).toLowerCase();
  if (ext === '.jsonl' || ext === '.json') {
    const harmful = readJsonItems(p, limit).map((item): HarmfulBehaviour => {
      const obj = asRecord(item, 'fields "instruction" and "category"');
      const request = stringField(obj, 'instruction', item.where, { expected: 'the harmful instruction' })!;
      const category = categoryField(obj, item.where);
      return { id: `${name}-${item.n}`, request, ...(category !== undefined ? { category } : {}) };
    });
    return dataset(p, 'hex-phi', name, { harmful });
  }
  return dataset(p, 'hex-phi', name, { harmful: hexPhiCsv(p, name, limit) });
}

/**
 * Harmful HEx-PHI (Qi et al.'s prefilling data): per line a conversation [{role: 'user'},
 * {role: 'assistant'}] (or {"messages": [...]}): request = the first user turn, harmfulResponse =
 * the assistant turn after it.
 */
export function loadHarmfulHexPhi(file: string, options: LoadOptions = {}): Dataset {
  const name = stem(file);
  const harmful = readJsonItems(file, checkedLimit(options.limit, `loadHarmfulHexPhi(${file})`)).map((item): HarmfulBehaviour => {
    const isObject = typeof item.value === 'object' && item.value !== null && !Array.isArray(item.value);
    const obj = isObject ? (item.value as Record<string, unknown>) : undefined;
    if (obj && !('messages' in obj)) throw new Error(`${item.where}: is an object without "messages" (expected [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}])`);
    const messages = parseMessages(obj ? obj.messages : item.value, item.where, obj ? 'messages' : 'the line');
    const u = messages.findIndex((m) => m.role === 'user');
    if (u < 0) throw new Error(`${item.where}: has no user message (expected [{"role": "user", ...}, {"role": "assistant", ...}])`);
    const a = messages.findIndex((m, i) => i > u && m.role === 'assistant');
    if (a < 0) throw new Error(`${item.where}: has no assistant message after the user message (expected the harmful answer as {"role": "assistant", "content": ...})`);
    if (messages[u].content.trim() === '') throw new Error(`${item.where}: the user message's content is empty (expected the harmful request)`);
    if (messages[a].content.trim() === '') throw new Error(`${item.where}: the assistant message's content is empty (expected the harmful answer)`);
    const category = obj ? categoryField(obj, item.where) : undefined;
    return { id: `${name}-${item.n}`, request: messages[u].content, harmfulResponse: messages[a].content, ...(category !== undefined ? { category } : {}) };
  });
  return dataset(file, 'harmful-hex-phi', name, { harmful });
}

/** StrongREJECT strongreject_dataset.csv (category,source,forbidden_prompt): request = forbidden_prompt; meta.source = source. */
export function loadStrongReject(file: string, options: LoadOptions = {}): Dataset {
  const name = stem(file);
  const rows = readCsvTable(file, ['category', 'source', 'forbidden_prompt'], 'StrongREJECT', checkedLimit(options.limit, `loadStrongReject(${file})`));
  const harmful = rows.map((row): HarmfulBehaviour => {
    const request = cell(row, 'forbidden_prompt', 'the forbidden prompt');
    const category = row.cells.category.trim() !== '' ? row.cells.category : undefined;
    const source = row.cells.source;
    return { id: `${name}-${row.n}`, request, ...(category !== undefined ? { category } : {}), ...(source.trim() !== '' ? { meta: { source } } : {}) };
  });
  return dataset(file, 'strongreject', name, { harmful });
}

/** MaliciousInstruct.txt: one request per line (surrounding whitespace trimmed, blank lines skipped). */
export function loadMaliciousInstruct(file: string, options: LoadOptions = {}): Dataset {
  const name = stem(file);
  const limit = checkedLimit(options.limit, `loadMaliciousInstruct(${file})`);
  const harmful: HarmfulBehaviour[] = [];
  for (const line of splitLines(readText(file))) {
    if (harmful.length >= limit) break;
    const request = line.trim();
    if (request !== '') harmful.push({ id: `${name}-${harmful.length + 1}`, request });
  }
  return dataset(file, 'malicious-instruct', name, { harmful });
}

function requestOf(obj: Record<string, unknown>, where: string, what: string): string {
  const instruction = stringField(obj, 'instruction', where, { expected: what })!;
  const input = stringField(obj, 'input', where, { expected: 'the instruction\'s input text', optional: true, allowEmpty: true });
  return input !== undefined && input.trim() !== '' ? `${instruction}\n\n${input}` : instruction;
}

/**
 * Qi et al.'s safety augmentation triplets (x, h, r): {instruction, input?, harmful, refusal,
 * category?} per line -> request (instruction + "\n\n" + input when input is non-empty),
 * harmfulResponse, refusal.
 */
export function loadQiAugmentation(file: string, options: LoadOptions = {}): Dataset {
  const name = stem(file);
  const harmful = readJsonItems(file, checkedLimit(options.limit, `loadQiAugmentation(${file})`)).map((item): HarmfulBehaviour => {
    const obj = asRecord(item, 'fields "instruction", "harmful" and "refusal"');
    const request = requestOf(obj, item.where, 'the harmful instruction');
    const harmfulResponse = stringField(obj, 'harmful', item.where, { expected: 'the harmful answer' })!;
    const refusal = stringField(obj, 'refusal', item.where, { expected: 'the refusal' })!;
    const category = categoryField(obj, item.where);
    return { id: `${name}-${item.n}`, request, harmfulResponse, refusal, ...(category !== undefined ? { category } : {}) };
  });
  return dataset(file, 'qi-augmentation', name, { harmful });
}

/** Fine-tuning chat JSONL: {"messages": [{role, content}, ...]} per line -> conversations (roles and contents as given). */
export function loadChatJsonl(file: string, options: LoadOptions = {}): Dataset {
  const name = stem(file);
  const conversations = readJsonItems(file, checkedLimit(options.limit, `loadChatJsonl(${file})`)).map((item) => {
    const obj = asRecord(item, 'a "messages" array of {role, content}');
    if (!('messages' in obj)) throw new Error(`${item.where}: field "messages" is missing (expected {"messages": [{"role": ..., "content": ...}, ...]}; the record has ${Object.keys(obj).map((k) => `"${k}"`).join(', ') || 'no fields'})`);
    return parseMessages(obj.messages, item.where, 'messages');
  });
  return dataset(file, 'chat-jsonl', name, { conversations });
}

/**
 * Alpaca alpaca_data.json: [{instruction, input, output}] -> benign behaviours (request =
 * instruction + "\n\n" + input when input is non-empty; response = output, which may be empty: the
 * original release has a few empty outputs, and requests alone serve distilled utility anchors).
 */
export function loadAlpaca(file: string, options: LoadOptions = {}): Dataset {
  const name = stem(file);
  const benign = readJsonItems(file, checkedLimit(options.limit, `loadAlpaca(${file})`)).map((item): BenignBehaviour => {
    const obj = asRecord(item, 'fields "instruction", "input" and "output"');
    const request = requestOf(obj, item.where, 'the instruction');
    const response = stringField(obj, 'output', item.where, { expected: 'the reference answer', allowEmpty: true })!;
    return { id: `${name}-${item.n}`, request, response };
  });
  return dataset(file, 'alpaca', name, { benign });
}

const LOADERS: Readonly<Record<DatasetFormat, (p: string, options: LoadOptions) => Dataset>> = {
  'advbench': loadAdvBench,
  'hex-phi': loadHexPhi,
  'harmful-hex-phi': loadHarmfulHexPhi,
  'strongreject': loadStrongReject,
  'malicious-instruct': loadMaliciousInstruct,
  'qi-augmentation': loadQiAugmentation,
  'chat-jsonl': loadChatJsonl,
  'alpaca': loadAlpaca,
};

// ---------------------------------------------------------------------------------------------
// Format inference and the one entry point

function cannotTell(p: string, why: string): Error {
  const known = Object.entries(DATASET_FORMATS).map(([f, how]) => `  ${f}: ${how}`).join('\n');
  return new Error(`${p}: cannot tell the data set format (${why}); pass the format explicitly, one of:\n${known}`);
}

/** The format of a file or folder, from its name, extension and header (or first record). */
export function inferDatasetFormat(p: string): DatasetFormat {
  if (!fs.existsSync(p)) throw new Error(`${p}: no such file or folder (expected a data set)`);
  if (fs.statSync(p).isDirectory()) {
    if (fs.readdirSync(p).some((f) => HEX_PHI_FILE.test(f))) return 'hex-phi';
    throw cannotTell(p, 'a folder without category_N.csv files');
  }
  const ext = path.extname(p).toLowerCase();
  if (ext === '.txt') return 'malicious-instruct';
  if (ext === '.csv') {
    let first: CsvRecord | undefined;
    for (const record of csvRecords(readText(p), p)) {
      if (!isBlankRecord(record)) {
        first = record;
        break;
      }
    }
    const header = (first?.fields ?? []).map((h) => h.trim());
    if (header.includes('goal') && header.includes('target')) return 'advbench';
    if (header.includes('forbidden_prompt')) return 'strongreject';
    if (HEX_PHI_FILE.test(path.basename(p))) return 'hex-phi';
    throw cannotTell(p, `a .csv whose first row ${first ? `is ${header.map((h) => JSON.stringify(h.length > 40 ? `${h.slice(0, 37)}...` : h)).join(',')}` : 'is missing'} names no known columns, and whose name is not category_N.csv`);
  }
  if (ext === '.jsonl' || ext === '.json') {
    const [first] = readJsonItems(p, 1);
    if (!first) throw cannotTell(p, 'the file holds no records');
    const v = first.value;
    if (Array.isArray(v)) return 'harmful-hex-phi';
    if (typeof v === 'object' && v !== null) {
      const keys = Object.keys(v);
      const has = (k: string) => keys.includes(k);
      if (has('messages')) return 'chat-jsonl';
      if (has('harmful') && has('refusal')) return 'qi-augmentation';
      if (has('instruction') && has('output')) return 'alpaca';
      if (has('instruction') && has('category')) return 'hex-phi';
      throw cannotTell(p, `its first record has fields ${keys.map((k) => `"${k}"`).join(', ') || '(none)'}`);
    }
    throw cannotTell(p, `its first record is ${describe(v)}`);
  }
  throw cannotTell(p, `unknown extension ${ext ? `"${ext}"` : '(none)'}; expected .csv, .txt, .json, .jsonl or a folder`);
}

/** Load a data set file (or a HEx-PHI folder) in `format`, inferred when omitted; `limit` keeps the first items. */
export function loadDataset(p: string, options: LoadDatasetOptions = {}): Dataset {
  const { format, ...rest } = options;
  if (format !== undefined && !(format in LOADERS)) {
    throw new Error(`loadDataset(${p}): unknown format ${JSON.stringify(format)} (expected one of ${Object.keys(LOADERS).join(', ')})`);
  }
  return LOADERS[format ?? inferDatasetFormat(p)](p, rest);
}

/**
 * {request, response} pairs of chat conversations, for fine-tuning attacks (lib/attacks
 * examplesFor): per conversation, its last user turn and the assistant turn after it. System
 * prompts and earlier turns are dropped (the target's own formatting renders the request).
 */
export function conversationPairs(source: Dataset | readonly (readonly ChatMessage[])[]): { request: string; response: string }[] {
  const conversations = Array.isArray(source) ? (source as readonly (readonly ChatMessage[])[]) : (source as Dataset).conversations;
  const where = Array.isArray(source) ? 'conversationPairs' : `conversationPairs(${(source as Dataset).path})`;
  if (conversations.length === 0) throw new Error(`${where}: no conversations (expected a chat-jsonl data set)`);
  return conversations.map((messages, i) => {
    let u = -1;
    messages.forEach((m, j) => {
      if (m.role === 'user') u = j;
    });
    if (u < 0) throw new Error(`${where}: conversation ${i + 1} (1-based) has no user turn (expected a user request followed by an assistant answer)`);
    const answer = messages.slice(u + 1).find((m) => m.role === 'assistant');
    if (!answer) throw new Error(`${where}: conversation ${i + 1} (1-based) has no assistant turn after its last user turn (expected the answer to train on)`);
    return { request: messages[u].content, response: answer.content };
  });
}
