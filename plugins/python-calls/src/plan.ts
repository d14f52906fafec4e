import { buildRules, type Rule } from './presets.js';
import type { Options } from './options.js';

/** A rule that names functions or modules can be resolved to the functions it selects. */
export function ruleResolvable(rule: Rule): boolean {
  return Boolean(rule.functions?.length || rule.modules?.length);
}

function describeRule(rule: Rule): string {
  const parts: string[] = [];
  if (rule.functions?.length) parts.push(`function=${rule.functions.join(',')}`);
  if (rule.modules?.length) parts.push(`module=${rule.modules.join(',')}`);
  if (rule.files?.length) parts.push(`file=${rule.files.join(',')}`);
  return parts.join(' ');
}

/**
 * Which technique each rule of the options uses in the profiler, and why (what `doctor` shows;
 * the agent's `plan()` says the same per process, in the attach event). Every rule must be
 * resolvable for the functions to be instrumented: one that is not needs the global hook, which
 * then counts the others too.
 */
export function describePlan(options: Options): string {
  const rules = buildRules(options);
  if (rules.length === 0)
    return 'every call (no rule): global hook (sys.setprofile before 3.12, sys.monitoring on 3.12+), which sees every call';
  const every = rules.every(ruleResolvable);
  return rules
    .map((r) => {
      const what = describeRule(r);
      if (every)
        return `${what}: instrumented (names functions or modules: only the matching functions, found in loaded modules and at import, count: their __code__ becomes a counting trampoline; async generators get sys.monitoring events on their code objects only, on 3.12+)`;
      if (ruleResolvable(r))
        return `${what}: global hook (another rule needs it, and it counts this one too)`;
      return `${what}: global hook (a bare file glob names no function to resolve; add function or module to instrument instead)`;
    })
    .join('; ');
}
