// Tables: danfojs-node DataFrames shown in notebooks and written as CSV.
//
// danfojs is loaded lazily (it costs ~0.6 s and pulls in @tensorflow/tfjs), only when a table is
// made. Its own toCSV does not quote fields containing commas or quotes, so CSV is written here
// (RFC 4180), from the DataFrame's columns and values.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as Danfo from 'danfojs-node';
import { display, escapeHtml, inNotebook } from './notebook.js';
import { displayPath, reportPath } from './paths.js';

export type DataFrame = Danfo.DataFrame;
export type Cell = string | number | boolean | null | undefined;
export type TableRecord = Record<string, Cell>;

let danfo: typeof Danfo | undefined;
/** danfojs-node, required on first use from the working directory (the repo root). */
export function danfojs(): typeof Danfo {
  return (danfo ??= createRequire(join(process.cwd(), 'noop.js'))('danfojs-node') as typeof Danfo);
}

/** A DataFrame from records (columns in first-seen key order) or a DataFrame as is. */
export function toDataFrame(table: DataFrame | TableRecord[], where = 'toDataFrame'): DataFrame {
  if (Array.isArray(table)) {
    if (table.length === 0) throw new Error(`${where}: no rows (an empty list of records has no columns)`);
    const columns: string[] = [];
    for (const row of table) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
    // Missing keys become null so every row has every column, in the same order.
    const rows = table.map((row) => columns.map((c) => (row[c] === undefined ? null : row[c])));
    return new (danfojs().DataFrame)(rows, { columns });
  }
  if (table && Array.isArray((table as DataFrame).columns) && Array.isArray((table as DataFrame).values)) return table as DataFrame;
  throw new Error(`${where}: expected a danfojs DataFrame or an array of records, got ${typeof table}`);
}

function rowsOf(df: DataFrame): Cell[][] {
  return (df.values as unknown[]).map((row) => (Array.isArray(row) ? (row as Cell[]) : [row as Cell]));
}

const csvField = (value: Cell): string => {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
};

/** RFC 4180 CSV (header row, `\n` line ends, full number precision). */
export function tableToCsv(table: DataFrame | TableRecord[]): string {
  const df = toDataFrame(table, 'tableToCsv');
  const lines = [df.columns.map(csvField).join(',')];
  for (const row of rowsOf(df)) lines.push(row.map(csvField).join(','));
  return lines.join('\n') + '\n';
}

/** Numbers for reading: integers as is, others to 4 significant digits (the CSV keeps all). */
export function formatCell(value: Cell): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') {
    if (Number.isInteger(value) || !Number.isFinite(value)) return String(value);
    return Math.abs(value) >= 1e-3 && Math.abs(value) < 1e5 ? String(Number(value.toPrecision(4))) : value.toExponential(3);
  }
  return String(value);
}

/** A plain-text table with aligned columns (numbers right-aligned). */
export function tableToText(table: DataFrame | TableRecord[]): string {
  const df = toDataFrame(table, 'tableToText');
  const rows = rowsOf(df);
  const cells = [df.columns.map(String), ...rows.map((row) => row.map(formatCell))];
  const widths = df.columns.map((_, j) => Math.max(...cells.map((r) => r[j]!.length)));
  const numeric = df.columns.map((_, j) => rows.every((r) => typeof r[j] === 'number' || r[j] == null));
  return cells
    .map((r) => r.map((c, j) => (numeric[j] ? c.padStart(widths[j]!) : c.padEnd(widths[j]!))).join('  ').trimEnd())
    .join('\n');
}

/** An HTML table (Jupyter's dataframe styling class). */
export function tableToHtml(table: DataFrame | TableRecord[]): string {
  const df = toDataFrame(table, 'tableToHtml');
  const head = df.columns.map((c) => `<th>${escapeHtml(String(c))}</th>`).join('');
  const body = rowsOf(df)
    .map((row) => `<tr>${row.map((v) => `<td>${escapeHtml(formatCell(v))}</td>`).join('')}</tr>`)
    .join('\n');
  return `<table class="dataframe">\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

export interface ShowTableOptions {
  /** Figures root for the CSV; defaults to figuresDir(). */
  dir?: string;
}

/**
 * Shows a table (HTML in a notebook, aligned text elsewhere) and, when `name` is given, writes
 * `<dir>/<name>.csv`. Returns nothing (a cell ending in showTable(...) prints nothing extra); use
 * toDataFrame for the DataFrame and tableToCsv for the text.
 */
export function showTable(table: DataFrame | TableRecord[], name?: string, options: ShowTableOptions = {}): void {
  const df = toDataFrame(table, `showTable(${name ?? ''})`);
  let note = '';
  if (name !== undefined) {
    const path = `${reportPath(name, options.dir, 'showTable')}.csv`;
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, tableToCsv(df));
    note = `table ${name}: wrote ${displayPath(path)}`;
  }
  const text = tableToText(df);
  if (inNotebook()) {
    display({ data: { 'text/html': tableToHtml(df) + (note ? `\n<p><small>${escapeHtml(note)}</small></p>` : ''), 'text/plain': text + (note ? `\n${note}` : '') } });
  } else {
    console.log(text + (note ? `\n${note}` : ''));
  }
}
