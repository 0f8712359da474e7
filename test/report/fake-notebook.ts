// A stand-in for the tslab host that lib/report talks to in a notebook (globalThis.__tslab__),
// recording display messages the way the runner and the Jupyter kernel receive them.
export interface Recorded {
  data: Record<string, string>;
  metadata: Record<string, unknown>;
  displayId?: string;
  update: boolean;
}

export function installFakeNotebook(): { messages: Recorded[]; uninstall: () => void } {
  const messages: Recorded[] = [];
  const jupyter = {
    lastWriteDisplayData: (
      m: { data: Record<string, string>; metadata: Record<string, unknown>; transient: { display_id?: string } },
      update: boolean,
    ) => {
      messages.push({ data: m.data, metadata: m.metadata, displayId: m.transient.display_id, update });
    },
  };
  const g = globalThis as { __tslab__?: unknown };
  const previous = g.__tslab__;
  g.__tslab__ = {
    require: (id: string) => {
      if (id === 'tslab/dist/jupyter.js') return jupyter;
      throw new Error(`fake tslab: unexpected require(${id})`);
    },
  };
  return {
    messages,
    uninstall: () => {
      g.__tslab__ = previous;
    },
  };
}
