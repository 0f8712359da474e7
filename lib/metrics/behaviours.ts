// Behaviour sets: what an experiment asks of a target. Harmful requests (each optionally with a
// harmful reference answer, for per-token KL, prefilling and augmentation) and benign requests with
// reference answers (for utility). Any source provides them: the organism world, dataset files
// (HEx-PHI, AdvBench, ...), or a hand-written list.

export interface HarmfulBehaviour {
  /** Unique within its set (shown in errors and traces). */
  id: string;
  request: string;
  /** A harmful reference answer (Harmful HEx-PHI's, the organism's exact answer). */
  harmfulResponse?: string;
  /** A refusal to train on (augmentation triplets (x, h, r)). */
  refusal?: string;
  category?: string;
  /** Provider-specific keys a judge may need (the organism's task id). */
  meta?: Record<string, string>;
}

export interface BenignBehaviour {
  id: string;
  request: string;
  /** The reference answer utility is judged against. */
  response: string;
  category?: string;
  meta?: Record<string, string>;
}

export interface BehaviourSet {
  name: string;
  harmful: HarmfulBehaviour[];
  benign: BenignBehaviour[];
}

/** Throws, naming the set and what is missing, unless `items` is non-empty with unique ids and non-empty requests. */
export function checkBehaviours<T extends { id: string; request: string }>(items: readonly T[], where: string): readonly T[] {
  if (!Array.isArray(items) || items.length === 0) throw new Error(`${where}: the behaviour set is empty (expected at least one request)`);
  const seen = new Set<string>();
  items.forEach((b, i) => {
    if (typeof b?.id !== 'string' || b.id === '') throw new Error(`${where}: behaviour ${i} has no \`id\` (expected a non-empty string)`);
    if (seen.has(b.id)) throw new Error(`${where}: behaviour id "${b.id}" appears twice (ids must be unique)`);
    seen.add(b.id);
    if (typeof b.request !== 'string' || b.request.trim() === '') throw new Error(`${where}: behaviour "${b.id}" has an empty \`request\``);
  });
  return items;
}

/** The harmful reference answer of `b`, or an error naming the behaviour and the experiment that needs it. */
export function harmfulResponseOf(b: HarmfulBehaviour, where: string): string {
  if (typeof b.harmfulResponse !== 'string' || b.harmfulResponse.trim() === '') {
    throw new Error(`${where}: behaviour "${b.id}" has no \`harmfulResponse\` (this experiment needs harmful reference answers)`);
  }
  return b.harmfulResponse;
}
