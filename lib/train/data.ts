// Batches mixed by composition: each step takes a fixed number of examples from each source
// (e.g. 16 safety + 64 utility anchor), each source walking its own seeded shuffle epoch by
// epoch. The sampler's whole state is a few integers, saved in checkpoints, so a resumed run
// sees exactly the batches an uninterrupted one would.

import { tf } from '../engine/tf.js';
import { checkSeed, Rng } from '../util/rng.js';
import type { Batch } from '../objectives/index.js';

/** One training sequence: token ids and which positions are targets. */
export interface TrainExample {
  ids: number[];
  /** lossMask[t] = 1: token t is a target (predicted from position t - 1). Same length as ids. */
  lossMask: number[];
  /** Objective-specific per-example data (collated by the objective's own helper). */
  extras?: Record<string, unknown>;
}

export interface DataSource {
  name: string;
  examples: TrainExample[];
  /** Examples from this source in every batch. */
  perBatch: number;
}

export interface SamplerState {
  sources: { name: string; epoch: number; position: number }[];
}

export class MixedBatchSampler {
  private readonly orders = new Map<string, { epoch: number; order: number[] }>();
  private state: SamplerState;

  constructor(readonly sources: DataSource[], readonly seed: number) {
    checkSeed(seed, 'MixedBatchSampler: seed');
    if (sources.length === 0) throw new Error('MixedBatchSampler: `sources` is empty');
    const names = new Set<string>();
    for (const s of sources) {
      if (names.has(s.name)) throw new Error(`MixedBatchSampler: duplicate source name "${s.name}"`);
      names.add(s.name);
      if (s.examples.length === 0) throw new Error(`MixedBatchSampler: source "${s.name}" has no examples`);
      if (!Number.isInteger(s.perBatch) || s.perBatch < 1) throw new Error(`MixedBatchSampler: source "${s.name}" \`perBatch\` must be a positive integer, but is ${s.perBatch}`);
      s.examples.forEach((e, i) => {
        if (e.ids.length !== e.lossMask.length) throw new Error(`MixedBatchSampler: source "${s.name}" example ${i} has ${e.ids.length} ids but ${e.lossMask.length} loss-mask entries`);
        if (e.ids.length < 2) throw new Error(`MixedBatchSampler: source "${s.name}" example ${i} is shorter than 2 tokens`);
      });
    }
    this.state = { sources: sources.map((s) => ({ name: s.name, epoch: 0, position: 0 })) };
  }

  get batchSize(): number {
    return this.sources.reduce((a, s) => a + s.perBatch, 0);
  }

  private orderFor(source: DataSource, epoch: number): number[] {
    const cached = this.orders.get(source.name);
    if (cached && cached.epoch === epoch) return cached.order;
    const order = new Rng(`${this.seed}:${source.name}:epoch${epoch}`).shuffled(source.examples.map((_, i) => i));
    this.orders.set(source.name, { epoch, order });
    return order;
  }

  /** The next batch's examples, source by source (in the order sources were given). */
  next(): { examples: TrainExample[]; sources: string[] } {
    const examples: TrainExample[] = [];
    const names: string[] = [];
    this.sources.forEach((source, k) => {
      const st = this.state.sources[k];
      for (let i = 0; i < source.perBatch; i++) {
        if (st.position >= source.examples.length) {
          st.epoch++;
          st.position = 0;
        }
        examples.push(source.examples[this.orderFor(source, st.epoch)[st.position++]]);
        names.push(source.name);
      }
    });
    return { examples, sources: names };
  }

  getState(): SamplerState {
    return JSON.parse(JSON.stringify(this.state));
  }

  setState(state: SamplerState): void {
    const expected = this.sources.map((s) => s.name).join(',');
    const got = state.sources.map((s) => s.name).join(',');
    if (expected !== got) throw new Error(`MixedBatchSampler.setState: checkpoint sources [${got}] differ from this run's [${expected}]`);
    this.state = JSON.parse(JSON.stringify(state));
  }
}

/** Right-pad examples into a Batch (padding gets attentionMask 0 and lossMask 0). */
export function collate(examples: TrainExample[], sources: string[], padId: number, extras: Record<string, unknown> = {}): Batch {
  const length = Math.max(...examples.map((e) => e.ids.length));
  const b = examples.length;
  const ids = new Int32Array(b * length).fill(padId);
  const attention = new Int32Array(b * length);
  const loss = new Float32Array(b * length);
  examples.forEach((e, r) => {
    for (let t = 0; t < e.ids.length; t++) {
      ids[r * length + t] = e.ids[t];
      attention[r * length + t] = 1;
      loss[r * length + t] = t === 0 ? 0 : e.lossMask[t];
    }
  });
  return {
    inputIds: tf.tensor2d(ids, [b, length], 'int32'),
    attentionMask: tf.tensor2d(attention, [b, length], 'int32'),
    lossMask: tf.tensor2d(loss, [b, length], 'float32'),
    sources,
    extras,
  };
}

export function disposeBatch(batch: Batch): void {
  batch.inputIds.dispose();
  batch.attentionMask.dispose();
  batch.lossMask.dispose();
  for (const v of Object.values(batch.extras)) if (v instanceof tf.Tensor) v.dispose();
}
