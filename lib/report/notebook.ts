// The bridge to the notebook front end. lib code runs in three places: plain Node (scripts,
// vitest), our headless runner (scripts/nb.ts) and the tslab Jupyter kernel. The last two load
// lib through tslab's executor, which publishes `globalThis.__tslab__.require`; through it we reach
// tslab's display channel. Nothing here imports tslab directly, so plain Node never loads its
// bundled TypeScript compiler.

/** One Jupyter display message: a MIME bundle plus its metadata. */
export interface DisplayBundle {
  data: Record<string, string>;
  metadata?: Record<string, unknown>;
}

interface TslabJupyterModule {
  lastWriteDisplayData:
    | ((message: { data: Record<string, string>; metadata: Record<string, unknown>; transient: { display_id?: string } }, update: boolean) => void)
    | null;
}

interface TslabHost {
  require: (id: string) => unknown;
}

function tslabJupyter(): TslabJupyterModule | undefined {
  const host = (globalThis as { __tslab__?: TslabHost }).__tslab__;
  if (!host || typeof host.require !== 'function') return undefined;
  try {
    // Same module instance tslab's public `display` API writes through (and our runner hooks).
    return host.require('tslab/dist/jupyter.js') as TslabJupyterModule;
  } catch {
    return undefined;
  }
}

/** True when running inside a notebook (tslab kernel or scripts/nb.ts) that can show rich output. */
export function inNotebook(): boolean {
  return typeof tslabJupyter()?.lastWriteDisplayData === 'function';
}

let displayCounter = 0;

/**
 * Shows a MIME bundle as a display_data output. Pass `displayId` to create an updatable
 * display and `update: true` to replace it in place (progress bars do this).
 * Returns false when not in a notebook (nothing is shown).
 */
export function display(bundle: DisplayBundle, options: { displayId?: string; update?: boolean } = {}): boolean {
  const write = tslabJupyter()?.lastWriteDisplayData;
  if (typeof write !== 'function') return false;
  write({ data: bundle.data, metadata: bundle.metadata ?? {}, transient: { display_id: options.displayId } }, options.update === true);
  return true;
}

/** A fresh display id for an updatable output. */
export function newDisplayId(prefix = 'deepalign'): string {
  displayCounter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${displayCounter}`;
}

/** Escapes text for inclusion in HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
