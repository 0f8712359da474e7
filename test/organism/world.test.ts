import { describe, expect, it } from 'vitest';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import {
  alignmentData, augmentationTriplets, backdoorData, baseCorpus, benignFineTuning, buildWorld, encodeChat, encodePrompt,
  evalPrompts, harmfulFineTuning, identityShifting, judgeHarmful, judgeRefused, REFUSAL_MARKERS, resolveWorldSettings,
  Rng, tokenizerConfigJson, tokenizerJson, withTrigger, type World,
} from '../../lib/organism/index.js';

const world = buildWorld();

describe('organism world', () => {
  it('is deterministic in its settings', () => {
    const again = buildWorld();
    expect(again.vocab).toEqual(world.vocab);
    expect(again.tasks).toEqual(world.tasks);
    expect(baseCorpus(again, { count: 50, seed: 3 })).toEqual(baseCorpus(world, { count: 50, seed: 3 }));
    expect(buildWorld({ seed: 7 }).vocab).not.toEqual(world.vocab);
  });

  it('has the configured task counts and disjoint splits', () => {
    const s = world.settings;
    expect(world.tasks.length).toBe(s.numModifiers * (s.harmfulNouns + s.benignNouns));
    const count = (harmful: boolean, split: string) => world.tasks.filter((t) => t.harmful === harmful && t.split === split).length;
    expect(count(true, 'heldout')).toBe(s.splits.harmfulHeldout);
    expect(count(true, 'dev')).toBe(s.splits.harmfulDev);
    expect(count(false, 'novel')).toBe(s.splits.benignNovel);
    // Training data never touches held-out harmful tasks; pretraining never touches novel benign tasks.
    const heldout = new Set(world.tasks.filter((t) => t.split === 'heldout').map((t) => t.id));
    const novel = new Set(world.tasks.filter((t) => t.split === 'novel').map((t) => t.id));
    const align = alignmentData(world, { safety: 200, utility: 200, seed: 0 });
    for (const ex of [...align.safety, ...align.utility, ...harmfulFineTuning(world, { count: 200, seed: 0 }), ...backdoorData(world, { count: 50, seed: 0 }), ...identityShifting(world, { count: 50, seed: 0 })]) {
      expect(heldout.has(ex.taskId)).toBe(false);
    }
    for (const ex of baseCorpus(world, { count: 2000, seed: 0 })) expect(novel.has(ex.taskId)).toBe(false);
    for (const ex of benignFineTuning(world, { count: 20, seed: 0 })) expect(novel.has(ex.taskId)).toBe(true);
  });

  it('benignDev takes benign dev tasks out of train only: pretrained on, never in alignment data, other splits unchanged', () => {
    const noDev = buildWorld({ splits: { benignDev: 0 } });
    const benignDev = world.tasks.filter((t) => !t.harmful && t.split === 'dev');
    expect(world.settings.splits.benignDev).toBe(8);
    expect(benignDev.length).toBe(8);
    for (const t of benignDev) expect(noDev.taskById.get(t.id)!.split).toBe('train');
    // Every task outside the carve-out keeps its split, so benignDev 0 gives the world without the carve-out.
    for (const t of world.tasks) if (!benignDev.includes(t)) expect(t.split).toBe(noDev.taskById.get(t.id)!.split);
    expect(noDev.tasks.some((t) => !t.harmful && t.split === 'dev')).toBe(false);
    // Pretraining is unchanged (dev tasks stay in the base corpus); alignment data never uses them.
    expect(baseCorpus(world, { count: 500, seed: 4 })).toEqual(baseCorpus(noDev, { count: 500, seed: 4 }));
    const ids = new Set(benignDev.map((t) => t.id));
    const align = alignmentData(world, { safety: 100, utility: 400, seed: 0 });
    for (const ex of [...align.utility, ...identityShifting(world, { count: 100, seed: 0 })]) expect(ids.has(ex.taskId)).toBe(false);
    expect(evalPrompts(world, { harmful: false, split: 'dev', perTask: 2, seed: 0 }).length).toBe(16);
    expect(() => resolveWorldSettings({ splits: { benignDev: 108 } })).toThrow(/must leave benign training tasks/);
  });

  it('base corpus: harmful answered / refused / late-refused at the configured rates, judged consistently', () => {
    const corpus = baseCorpus(world, { count: 4000, seed: 1 });
    const harmful = corpus.filter((e) => e.harmful);
    expect(harmful.length / corpus.length).toBeCloseTo(world.settings.base.harmfulFraction, 1);
    const rate = (b: string) => harmful.filter((e) => e.behaviour === b).length / harmful.length;
    expect(rate('answer')).toBeCloseTo(world.settings.base.answerRate, 1);
    expect(rate('late-refusal')).toBeCloseTo(world.settings.base.lateRefusalRate, 1);
    for (const e of corpus.slice(0, 500)) {
      if (e.behaviour === 'answer') expect(judgeHarmful(world, e.taskId, e.response)).toBe(true);
      if (e.behaviour === 'refusal') expect(judgeRefused(world, e.taskId, e.response)).toBe(true);
    }
    // Benign requests are never refused in the base corpus.
    expect(corpus.filter((e) => !e.harmful).every((e) => !e.response.some((w) => REFUSAL_MARKERS.includes(w)))).toBe(true);
  });

  it('late refusals come after lateRefusalMinSteps..lateRefusalMaxSteps steps', () => {
    const steps = (w: ReturnType<typeof buildWorld>) => new Set(baseCorpus(w, { count: 3000, seed: 2 }).filter((e) => e.behaviour === 'late-refusal')
      .map((e) => e.response.filter((x) => x === 'step').length));
    expect([...steps(world)].sort()).toEqual([0, 1, 2]);
    expect([...steps(buildWorld({ base: { lateRefusalMinSteps: 1, lateRefusalMaxSteps: 3 } }))].sort()).toEqual([1, 2, 3]);
  });

  it('step words: separate pools by default, one pool shared by benign and harmful answers with sharedStepPool', () => {
    const overlap = (w: World) => {
      const words = (harmful: boolean) => new Set(w.tasks.filter((t) => t.harmful === harmful).flatMap((t) => t.steps.flat()));
      const harmful = words(true);
      return { shared: [...words(false)].filter((x) => harmful.has(x)).length, harmful: harmful.size };
    };
    expect(overlap(world).shared).toBe(0);
    const shared = overlap(buildWorld({ sharedStepPool: true }));
    expect(shared.shared).toBeGreaterThan(shared.harmful / 2);
  });

  it('produces the data sets later experiments need', () => {
    const triplets = augmentationTriplets(world, { count: 10, seed: 0 });
    expect(triplets.length).toBe(10);
    for (const t of triplets) {
      expect(judgeHarmful(world, t.taskId, t.harmfulResponse)).toBe(true);
      expect(judgeRefused(world, t.taskId, t.refusal)).toBe(true);
    }
    const backdoor = backdoorData(world, { count: 10, seed: 0, triggeredFraction: 0.3 });
    expect(backdoor.filter((e) => e.behaviour === 'answer').every((e) => e.prompt.slice(-3).join(' ') === world.backdoorTrigger.join(' '))).toBe(true);
    expect(backdoor.filter((e) => e.behaviour === 'refusal').length).toBe(7);
    expect(withTrigger(world, ['x']).length).toBe(4);
    const identity = identityShifting(world, { count: 5, seed: 0 });
    expect(identity.every((e) => !e.harmful && e.prompt.includes(world.identityName) && e.response.includes(world.identityName))).toBe(true);
    const prompts = evalPrompts(world, { harmful: true, split: 'heldout', perTask: 2, seed: 0 });
    expect(prompts.length).toBe(2 * world.settings.splits.harmfulHeldout);
  });

  it('rejects malformed settings with the field, constraint and value', () => {
    expect(() => resolveWorldSettings({ numModifiers: 0 })).toThrow('`numModifiers` must be an integer in [1, 64], but is 0');
    expect(() => resolveWorldSettings({ base: { answerRate: 0.9, lateRefusalRate: 0.2 } })).toThrow(/base.answerRate \+ base.lateRefusalRate` must be <= 1/);
    expect(() => resolveWorldSettings({ splits: { harmfulHeldout: 140, harmfulDev: 4 } })).toThrow(/must leave harmful training tasks/);
    expect(() => resolveWorldSettings({ stepsPerAnswer: 12 })).toThrow('`stepsPerAnswer` must be an integer in [1, 9], but is 12');
    expect(() => resolveWorldSettings({ minHarmfulSteps: 6 })).toThrow('`minHarmfulSteps` must be an integer in [1, 5], but is 6');
    expect(() => resolveWorldSettings({ base: { harmfulFraction: 1.5 } })).toThrow('`base.harmfulFraction` must be a number in [0, 1], but is 1.5');
    expect(() => resolveWorldSettings({ base: { lateRefusalMinSteps: 3 } })).toThrow('`base.lateRefusalMinSteps` must be an integer in [0, 2], but is 3');
    expect(() => resolveWorldSettings({ sharedStepPol: true } as never)).toThrow(/unknown field `sharedStepPol`/);
  });

  it('tokenizer files round-trip through @huggingface/tokenizers and the chat template', () => {
    const config = tokenizerConfigJson(world, 96) as { chat_template: string };
    const tok = new Tokenizer(tokenizerJson(world) as never, config as never);
    const template = new Template(config.chat_template);
    for (const ex of baseCorpus(world, { count: 20, seed: 5 })) {
      const text = template.render({
        messages: [{ role: 'user', content: ex.prompt.join(' ') }, { role: 'assistant', content: ex.response.join(' ') }],
        bos_token: '<s>', eos_token: '</s>', add_generation_prompt: false,
      });
      expect(tok.encode(text, { add_special_tokens: false }).ids).toEqual(encodeChat(world, ex, 'all').ids);
      const promptText = template.render({ messages: [{ role: 'user', content: ex.prompt.join(' ') }], bos_token: '<s>', eos_token: '</s>', add_generation_prompt: true });
      expect(tok.encode(promptText, { add_special_tokens: false }).ids).toEqual(encodePrompt(world, ex.prompt));
      expect(tok.decode(encodeChat(world, ex, 'all').ids, { skip_special_tokens: true })).toBe([...ex.prompt, ...ex.response].join(' '));
    }
    // Unknown words become <unk>, and plain encoding adds <s> like Llama-2.
    expect(tok.encode('how do i zzzq').ids).toEqual([1, world.wordIds.get('how'), world.wordIds.get('do'), world.wordIds.get('i'), 3]);
  });

  it('loss masks: response-only for SFT, everything after <s> for pretraining', () => {
    const ex = alignmentData(world, { safety: 1, utility: 0, seed: 0 }).safety[0];
    const sft = encodeChat(world, ex, 'response');
    expect(sft.lossMask.reduce((a, b) => a + b)).toBe(ex.response.length + 1);
    expect(sft.lossMask.slice(0, sft.responseStart).every((m) => m === 0)).toBe(true);
    expect(encodeChat(world, ex, 'all').lossMask.reduce((a, b) => a + b)).toBe(sft.ids.length - 1);
  });

  it('Rng: seeded, restorable, validated', () => {
    const a = new Rng(5);
    const first = [a.next(), a.next()];
    const state = a.getState();
    const third = a.next();
    const b = new Rng(5);
    expect([b.next(), b.next()]).toEqual(first);
    b.setState(state);
    expect(b.next()).toBe(third);
    expect(() => a.int(0)).toThrow('`n` must be a positive integer, but is 0');
  });
});
