/** A filter rule: a call matches when every given field matches; calls matching any rule are counted. */
export interface Rule {
  functions?: string[];
  files?: string[];
  modules?: string[];
}

/** The original prototype's cases. File globs match the absolute path of the function's source. */
export const PRESETS: Readonly<Record<string, Rule>> = {
  'rpc-client': { files: ['*/oslo_messaging/rpc/client.py'], functions: ['call', 'cast'] },
  'sqlalchemy-execute': { files: ['*/sqlalchemy/engine/base.py'], functions: ['execute'] },
  'oslo-lock': { files: ['*/oslo_concurrency/lockutils.py'], functions: ['lock'] },
  'model-save': { files: ['*/oslo_db/sqlalchemy/models.py'], functions: ['save'] },
};

export interface FilterOptions {
  function?: readonly string[];
  module?: readonly string[];
  file?: readonly string[];
  preset?: readonly string[];
}

/** Rules for the in-process agent; an empty list means every call. */
export function buildRules(o: FilterOptions): Rule[] {
  const rules: Rule[] = [];
  const own: Rule = {};
  if (o.function?.length) own.functions = [...o.function];
  if (o.module?.length) own.modules = [...o.module];
  if (o.file?.length) own.files = [...o.file];
  if (Object.keys(own).length > 0) rules.push(own);
  for (const p of o.preset ?? []) {
    const r = PRESETS[p];
    if (r) rules.push(r);
  }
  return rules;
}
