/**
 * The metric and label names a PromQL expression (or a Grafana
 * label_values() query) refers to, so a test can hold dashboards and alert
 * rules to the metrics a real daemon exports. A small extractor, not a
 * parser: selectors are `name{matchers}` or a bare name; ranges and Grafana
 * variables ($job, $__rate_interval) are dropped; every identifier followed
 * by "(" must be a PromQL function or aggregation (else it throws, so a typo
 * cannot hide as a function); the rest, minus keywords, are metric names.
 * Label names come from matchers and from by/without/on/ignoring/group_*
 * clauses. Brackets must balance; deeper syntax is Prometheus's to check.
 */

export interface PromqlRefs {
  /** Metric names, as written (a histogram's _bucket/_sum/_count included), once each. */
  metrics: string[];
  /** Labels in a selector's matchers, by metric. */
  matchers: { metric: string; label: string }[];
  /** Labels in by/without/on/ignoring/group_left/group_right clauses. */
  grouping: string[];
}

const FUNCTIONS = new Set(
  (
    "abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min count_over_time day_of_month " +
    "day_of_week day_of_year days_in_month delta deriv exp floor histogram_avg histogram_count histogram_fraction " +
    "histogram_quantile histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase irate " +
    "label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month " +
    "predict_linear present_over_time quantile_over_time rate resets round scalar sgn sort sort_desc sqrt " +
    "stddev_over_time stdvar_over_time sum_over_time time timestamp vector year " +
    // aggregations
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile"
  ).split(" "),
);
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "atan2"]);
const IDENT = "[a-zA-Z_:][a-zA-Z0-9_:]*";

/** The names `expr` refers to; throws on unbalanced brackets or an unknown function. */
export function promqlRefs(expr: string): PromqlRefs {
  checkBalanced(expr);
  const matchers: PromqlRefs["matchers"] = [];
  const metrics = new Set<string>();
  // Selectors with matchers: the name and the labels it matches on.
  let rest = expr.replace(new RegExp(`(?<![\\w:$])(${IDENT})?\\s*\\{([^}]*)\\}`, "g"), (_all, name: string | undefined, body: string) => {
    if (name === undefined) throw new Error(`a selector without a metric name in ${JSON.stringify(expr)}`);
    for (const m of body.replace(/"(?:[^"\\]|\\.)*"/g, '""').matchAll(new RegExp(`(${IDENT})\\s*(?:=~|!~|!=|=)`, "g"))) {
      matchers.push({ metric: name, label: m[1]! });
    }
    metrics.add(name);
    return " ";
  });
  rest = rest
    .replace(/"(?:[^"\\]|\\.)*"/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\$\{?\w+\}?/g, " ");
  const grouping: string[] = [];
  rest = rest.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_all, labels: string) => {
    grouping.push(...labels.split(",").map((l) => l.trim()).filter(Boolean));
    return " ";
  });
  for (const m of rest.matchAll(new RegExp(`(?<![\\w:.])(${IDENT})(\\s*\\()?`, "g"))) {
    const [, name, call] = m as unknown as [string, string, string | undefined];
    if (call) {
      if (!FUNCTIONS.has(name)) throw new Error(`"${name}(" is not a PromQL function in ${JSON.stringify(expr)}`);
      continue;
    }
    if (KEYWORDS.has(name.toLowerCase())) continue;
    metrics.add(name);
  }
  return { metrics: [...metrics], matchers, grouping };
}

/** Grafana's label_values(selector, label) as the selector's refs plus the label. */
export function labelValuesRefs(query: string): PromqlRefs {
  const m = /^label_values\((.+),\s*(\w+)\)$/.exec(query.trim());
  if (!m) throw new Error(`not a label_values(metric, label) query: ${query}`);
  const refs = promqlRefs(m[1]!);
  return { ...refs, grouping: [...refs.grouping, m[2]!] };
}

function checkBalanced(expr: string): void {
  const closing: Record<string, string> = { ")": "(", "]": "[", "}": "{" };
  const open: string[] = [];
  for (const c of expr.replace(/"(?:[^"\\]|\\.)*"/g, "")) {
    if (c === "(" || c === "[" || c === "{") open.push(c);
    else if (c in closing && open.pop() !== closing[c]) throw new Error(`unbalanced "${c}" in ${JSON.stringify(expr)}`);
  }
  if (open.length > 0) throw new Error(`unclosed "${open.at(-1)}" in ${JSON.stringify(expr)}`);
}
