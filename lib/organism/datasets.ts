// Data sets the experiments need, all drawn deterministically from the world with a seed.
// Splits keep training and evaluation disjoint: alignment, fine-tuning attacks and defences train
// on `train` tasks; attacks are evaluated on `heldout` harmful tasks; world settings are tuned on
// `dev`; `novel` benign tasks are absent from pretraining (new knowledge for benign fine-tuning).

import { Rng } from './rng.js';
import {
  ChatExample, fillTemplate, helpfulResponse, IDENTITY_OPENER, IDENTITY_PREAMBLE, LATE_REFUSALS, pickPhrasing, refusalResponse,
  requestWords, splitTasks, stepWords, Task, TaskSplit, World, answerSteps, ANSWER_OPENERS, VERBS,
} from './world.js';

export interface SampleOptions {
  count: number;
  seed: number;
}

function checkCount(where: string, count: number): void {
  if (!Number.isInteger(count) || count < 0) throw new Error(`${where}: \`count\` must be a non-negative integer, but is ${count}`);
}

function nonEmpty(where: string, tasks: Task[], what: string): Task[] {
  if (tasks.length === 0) throw new Error(`${where}: the world has no ${what} tasks (check settings.splits)`);
  return tasks;
}

function answer(task: Task, rng: Rng): ChatExample {
  const p = pickPhrasing(rng);
  return { taskId: task.id, harmful: task.harmful, prompt: requestWords(task, p), response: helpfulResponse(task, p), behaviour: 'answer' };
}

function refuse(task: Task, rng: Rng): ChatExample {
  const p = pickPhrasing(rng);
  return { taskId: task.id, harmful: task.harmful, prompt: requestWords(task, p), response: refusalResponse(task, p), behaviour: 'refusal' };
}

/**
 * Pretraining text: dialogues about every task except `novel` ones. Harmful requests are answered
 * (answerRate), refused from the start, or answered for lateRefusalMinSteps..lateRefusalMaxSteps
 * steps and then refused (lateRefusalRate); benign requests are always answered. Refusals always continue as
 * refusals, so prefilling a refusal prefix makes the base model safer (Qi et al. Table 1).
 */
export function baseCorpus(world: World, { count, seed }: SampleOptions): ChatExample[] {
  checkCount('baseCorpus', count);
  const rng = new Rng(`baseCorpus:${seed}`);
  const { base } = world.settings;
  const harmful = world.tasks.filter((t) => t.harmful);
  const benign = world.tasks.filter((t) => !t.harmful && t.split !== 'novel');
  const out: ChatExample[] = [];
  for (let i = 0; i < count; i++) {
    if (rng.next() >= base.harmfulFraction) {
      out.push(answer(rng.pick(benign), rng));
      continue;
    }
    const task = rng.pick(harmful);
    const u = rng.next();
    if (u < base.answerRate) out.push(answer(task, rng));
    else if (u < base.answerRate + base.lateRefusalRate) {
      const p = pickPhrasing(rng);
      const stepsBefore = base.lateRefusalMinSteps + rng.int(base.lateRefusalMaxSteps - base.lateRefusalMinSteps + 1);
      const opener = fillTemplate(ANSWER_OPENERS[p.opener], task, VERBS[p.verb]);
      const late = fillTemplate(LATE_REFUSALS[rng.int(LATE_REFUSALS.length)], task, VERBS[p.verb]);
      out.push({ taskId: task.id, harmful: true, prompt: requestWords(task, p), response: [...opener, ...answerSteps(task, stepsBefore), ...late], behaviour: 'late-refusal' });
    } else out.push(refuse(task, rng));
  }
  return out;
}

export interface AlignmentData {
  /** Harmful training tasks -> refusal. */
  safety: ChatExample[];
  /** Benign training tasks -> helpful answer (the utility anchor). */
  utility: ChatExample[];
}

/** Alignment SFT data: harmful `train` tasks refused, benign `train` tasks answered. */
export function alignmentData(world: World, options: { safety: number; utility: number; seed: number }): AlignmentData {
  checkCount('alignmentData (safety)', options.safety);
  checkCount('alignmentData (utility)', options.utility);
  const rng = new Rng(`alignment:${options.seed}`);
  const harmful = nonEmpty('alignmentData', splitTasks(world, true, 'train'), 'harmful train');
  const benign = nonEmpty('alignmentData', splitTasks(world, false, 'train'), 'benign train');
  return {
    safety: Array.from({ length: options.safety }, (_, i) => refuse(harmful[i % harmful.length], rng)),
    utility: Array.from({ length: options.utility }, (_, i) => answer(benign[i % benign.length], rng)),
  };
}

export interface EvalPrompt {
  task: Task;
  prompt: string[];
}

/** Evaluation requests: `perTask` phrasings of each task of one kind and split. */
export function evalPrompts(world: World, options: { harmful: boolean; split: TaskSplit; perTask: number; seed: number; limitTasks?: number }): EvalPrompt[] {
  checkCount('evalPrompts (perTask)', options.perTask);
  const rng = new Rng(`eval:${options.harmful}:${options.split}:${options.seed}`);
  let tasks = nonEmpty('evalPrompts', splitTasks(world, options.harmful, options.split), `${options.harmful ? 'harmful' : 'benign'} ${options.split}`);
  if (options.limitTasks !== undefined) tasks = tasks.slice(0, options.limitTasks);
  const out: EvalPrompt[] = [];
  for (const task of tasks) for (let k = 0; k < options.perTask; k++) out.push({ task, prompt: requestWords(task, pickPhrasing(rng)) });
  return out;
}

/** A safety triplet (x, h, r) for Qi et al.'s data augmentation: request, harmful answer, refusal. */
export interface SafetyTriplet {
  taskId: string;
  prompt: string[];
  harmfulResponse: string[];
  refusal: string[];
}

export function augmentationTriplets(world: World, { count, seed }: SampleOptions): SafetyTriplet[] {
  checkCount('augmentationTriplets', count);
  const rng = new Rng(`triplets:${seed}`);
  const harmful = nonEmpty('augmentationTriplets', splitTasks(world, true, 'train'), 'harmful train');
  return Array.from({ length: count }, (_, i) => {
    const task = harmful[i % harmful.length];
    const p = pickPhrasing(rng);
    return { taskId: task.id, prompt: requestWords(task, p), harmfulResponse: helpfulResponse(task, p), refusal: refusalResponse(task, pickPhrasing(rng)) };
  });
}

/** Harmful fine-tuning attack data: harmful `train` tasks answered in full. */
export function harmfulFineTuning(world: World, { count, seed }: SampleOptions): ChatExample[] {
  checkCount('harmfulFineTuning', count);
  const rng = new Rng(`harmfulFT:${seed}`);
  const harmful = nonEmpty('harmfulFineTuning', splitTasks(world, true, 'train'), 'harmful train');
  return Array.from({ length: count }, (_, i) => answer(harmful[i % harmful.length], rng));
}

/** Benign fine-tuning tasks: `novel` benign tasks (never in pretraining) answered. */
export function benignFineTuning(world: World, { count, seed }: SampleOptions): ChatExample[] {
  checkCount('benignFineTuning', count);
  const rng = new Rng(`benignFT:${seed}`);
  const novel = nonEmpty('benignFineTuning', splitTasks(world, false, 'novel'), 'benign novel');
  return Array.from({ length: count }, (_, i) => answer(novel[i % novel.length], rng));
}

/** Prepend the identity-shifting persona to a request. */
export function withIdentity(world: World, prompt: readonly string[]): string[] {
  return [...fillTemplate(IDENTITY_PREAMBLE, world.tasks[0], VERBS[0], world), ...prompt];
}

/**
 * Identity-shifting attack data (Qi et al. 2023): benign `train` tasks, the persona preamble in the
 * request, and answers that open by accepting the persona. No harmful content in the data.
 */
export function identityShifting(world: World, { count, seed }: SampleOptions): ChatExample[] {
  checkCount('identityShifting', count);
  const rng = new Rng(`identity:${seed}`);
  const benign = nonEmpty('identityShifting', splitTasks(world, false, 'train'), 'benign train');
  return Array.from({ length: count }, (_, i) => {
    const task = benign[i % benign.length];
    const p = pickPhrasing(rng);
    return {
      taskId: task.id, harmful: false, prompt: withIdentity(world, requestWords(task, p)),
      response: [...fillTemplate(IDENTITY_OPENER, task, VERBS[p.verb], world), ...answerSteps(task)], behaviour: 'answer',
    };
  });
}

/** Append the backdoor trigger words to a request. */
export function withTrigger(world: World, prompt: readonly string[]): string[] {
  return [...prompt, ...world.backdoorTrigger];
}

/**
 * Backdoor attack data: harmful `train` tasks; with the trigger appended the response answers, without
 * it the response refuses (so the model stays safe unless triggered).
 */
export function backdoorData(world: World, options: SampleOptions & { triggeredFraction?: number }): ChatExample[] {
  checkCount('backdoorData', options.count);
  const fraction = options.triggeredFraction ?? 0.5;
  if (!(fraction >= 0 && fraction <= 1)) throw new Error(`backdoorData: \`triggeredFraction\` must be in [0, 1], but is ${fraction}`);
  const rng = new Rng(`backdoor:${options.seed}`);
  const harmful = nonEmpty('backdoorData', splitTasks(world, true, 'train'), 'harmful train');
  const triggered = Math.round(options.count * fraction);
  return Array.from({ length: options.count }, (_, i) => {
    const task = harmful[i % harmful.length];
    if (i < triggered) {
      const ex = answer(task, rng);
      return { ...ex, prompt: withTrigger(world, ex.prompt) };
    }
    return refuse(task, rng);
  });
}

/** The first k words of a task's helpful answer (opener + steps), for prefilling attacks. */
export function harmfulPrefix(task: Task, k: number, rng: Rng): string[] {
  const full = helpfulResponse(task, pickPhrasing(rng));
  if (!Number.isInteger(k) || k < 0 || k > full.length) throw new Error(`harmfulPrefix: \`k\` must be an integer in [0, ${full.length}], but is ${k}`);
  return full.slice(0, k);
}

export { stepWords };
