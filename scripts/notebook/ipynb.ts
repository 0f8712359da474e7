// Reading and writing .ipynb files (nbformat 4.5) so that a re-run with the same seed gives a
// minimal git diff. The on-disk layout matches what Jupyter itself writes (nbformat's
// `writes`: keys sorted, one-space indent, multi-line strings split into lists of lines), so a
// notebook saved from JupyterLab and one written by our runner differ only where outputs differ.
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';

export type MimeBundle = Record<string, unknown>;

export interface StreamOutput {
  output_type: 'stream';
  name: 'stdout' | 'stderr';
  text: string;
}
export interface DisplayDataOutput {
  output_type: 'display_data';
  data: MimeBundle;
  metadata: Record<string, unknown>;
}
export interface ErrorOutput {
  output_type: 'error';
  ename: string;
  evalue: string;
  traceback: string[];
}
export type Output = StreamOutput | DisplayDataOutput | ErrorOutput;

export interface Cell {
  cell_type: 'code' | 'markdown' | 'raw';
  id: string;
  source: string;
  metadata: Record<string, unknown>;
  outputs?: Output[];
  execution_count?: number | null;
}

export interface Notebook {
  cells: Cell[];
  metadata: Record<string, unknown>;
  nbformat: number;
  nbformat_minor: number;
}

/** The kernel every deepalign notebook declares; `npm run kernel:install` registers it. */
export const DEEPALIGN_KERNELSPEC = {
  display_name: 'deepalign (TypeScript)',
  language: 'typescript',
  name: 'deepalign',
};

/** What tslab's kernel_info reply reports (tslab/dist/jupyter.js handleKernel); nbclient copies
 * it into the notebook metadata, so we write the same to keep both runners' files identical. */
export const TSLAB_LANGUAGE_INFO = {
  codemirror_mode: { mode: 'typescript', name: 'javascript', typescript: true },
  file_extension: '.ts',
  mimetype: 'text/typescript',
  name: 'typescript',
  version: '3.7.2',
};

const joinSource = (value: unknown, where: string): string => {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((line) => typeof line === 'string')) return value.join('');
  throw new Error(`${where}: expected a string or a list of strings, got ${JSON.stringify(value)?.slice(0, 80)}`);
};

/** Reads a notebook, joining line lists into strings and giving every cell an id. */
export function readNotebook(path: string): Notebook {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: not a readable JSON notebook (${(error as Error).message})`);
  }
  const nb = raw as Record<string, unknown>;
  if (nb.nbformat !== 4 || !Array.isArray(nb.cells)) {
    throw new Error(`${path}: expected nbformat 4 with a "cells" list, got nbformat ${JSON.stringify(nb.nbformat)}`);
  }
  const stem = basename(path, '.ipynb');
  const cells = (nb.cells as Record<string, unknown>[]).map((cell, index): Cell => {
    const where = `${path}: cell ${index + 1}`;
    const cellType = cell.cell_type;
    if (cellType !== 'code' && cellType !== 'markdown' && cellType !== 'raw') {
      throw new Error(`${where}: unknown cell_type ${JSON.stringify(cellType)}; expected code, markdown or raw`);
    }
    const out: Cell = {
      cell_type: cellType,
      id: typeof cell.id === 'string' && /^[a-zA-Z0-9-_]{1,64}$/.test(cell.id) ? cell.id : stableCellId(stem, index),
      source: joinSource(cell.source ?? '', `${where} source`),
      metadata: (cell.metadata as Record<string, unknown>) ?? {},
    };
    if (cellType === 'code') {
      out.outputs = ((cell.outputs as Record<string, unknown>[]) ?? []).map((o) => readOutput(o, where));
      out.execution_count = (cell.execution_count as number | null) ?? null;
    }
    return out;
  });
  return { cells, metadata: (nb.metadata as Record<string, unknown>) ?? {}, nbformat: 4, nbformat_minor: 5 };
}

function readOutput(o: Record<string, unknown>, where: string): Output {
  switch (o.output_type) {
    case 'stream':
      return { output_type: 'stream', name: o.name as 'stdout' | 'stderr', text: joinSource(o.text, `${where} stream`) };
    case 'display_data':
    case 'execute_result': {
      const data: MimeBundle = {};
      for (const [mime, value] of Object.entries((o.data as MimeBundle) ?? {})) {
        data[mime] = Array.isArray(value) ? value.join('') : value;
      }
      return { output_type: 'display_data', data, metadata: (o.metadata as Record<string, unknown>) ?? {} };
    }
    case 'error':
      return o as unknown as ErrorOutput;
    default:
      throw new Error(`${where}: unknown output_type ${JSON.stringify(o.output_type)}`);
  }
}

/** A deterministic id for a cell that has none, so re-runs do not churn ids. */
export function stableCellId(stem: string, index: number): string {
  return createHash('sha256').update(`${stem}:${index}`).digest('hex').slice(0, 8);
}

/** Python's str.splitlines(keepends=True), which nbformat uses to split multi-line strings. */
export function splitLinesKeepEnds(text: string): string[] {
  const lines: string[] = [];
  const breaks = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/g;
  let start = 0;
  for (let m = breaks.exec(text); m; m = breaks.exec(text)) {
    lines.push(text.slice(start, m.index + m[0].length));
    start = m.index + m[0].length;
  }
  if (start < text.length) lines.push(text.slice(start));
  return lines;
}

// nbformat splits text/* values and these two; images and JSON stay whole.
const splitsMime = (mime: string) => mime.startsWith('text/') || mime === 'application/javascript' || mime === 'image/svg+xml';

/** Recursively sorts object keys (Python's json.dumps(sort_keys=True)). */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) sorted[key] = sortKeys((value as Record<string, unknown>)[key]);
    return sorted;
  }
  return value;
}

/** The exact text Jupyter would write for this notebook. */
export function serializeNotebook(nb: Notebook): string {
  const cells = nb.cells.map((cell) => {
    const out: Record<string, unknown> = {
      cell_type: cell.cell_type,
      id: cell.id,
      metadata: cell.metadata,
      source: splitLinesKeepEnds(cell.source),
    };
    if (cell.cell_type === 'code') {
      out.execution_count = cell.execution_count ?? null;
      out.outputs = (cell.outputs ?? []).map((o) => {
        if (o.output_type === 'stream') return { ...o, text: splitLinesKeepEnds(o.text) };
        if (o.output_type === 'display_data') {
          const data: Record<string, unknown> = {};
          for (const [mime, value] of Object.entries(o.data)) {
            data[mime] = typeof value === 'string' && splitsMime(mime) ? splitLinesKeepEnds(value) : value;
          }
          return { ...o, data };
        }
        return o;
      });
    }
    return out;
  });
  const doc = { cells, metadata: nb.metadata, nbformat: 4, nbformat_minor: 5 };
  return JSON.stringify(sortKeys(doc), null, 1) + '\n';
}

/** Writes via a temporary file and rename, so an interrupted run never leaves half a notebook. */
export function writeNotebook(path: string, nb: Notebook): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, serializeNotebook(nb));
  renameSync(tmp, path);
}

/** Folds carriage returns the way a terminal (and Jupyter's renderer) would: within each line
 * only the text after the last `\r` survives. Keeps committed progress output to one line. */
export function foldCarriageReturns(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      const trimmed = line.endsWith('\r') ? line.slice(0, -1) : line;
      const last = trimmed.lastIndexOf('\r');
      return last === -1 ? trimmed : trimmed.slice(last + 1);
    })
    .join('\n');
}
