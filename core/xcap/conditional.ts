/**
 * Conditional requests (RFC 7232 §3.1, §3.2, §6) on a document's ETag. XCAP scopes one ETag
 * to a whole document (RFC 4825 §7.11), so an element or attribute request is conditional on
 * the ETag of the document it lives in.
 */

export interface EntityTag {
  weak: boolean;
  tag: string;
}

/** `*` or a comma-separated list of entity-tags; lenient about missing quotes. */
export function parseEntityTags(value: string): '*' | EntityTag[] {
  const v = value.trim();
  if (v === '*') return '*';
  const out: EntityTag[] = [];
  const re = /\s*(W\/)?(?:"([^"]*)"|([^\s,"]+))\s*(?:,|$)/gy;
  while (re.lastIndex < v.length) {
    const m = re.exec(v);
    if (!m) break;
    out.push({ weak: m[1] !== undefined, tag: m[2] ?? m[3]! });
  }
  return out;
}

/**
 * The outcome of If-Match / If-None-Match for `current` (undefined = no document):
 * 412, 304 (a GET or HEAD whose If-None-Match matched), or undefined to go on.
 */
export function evaluatePreconditions(
  method: string,
  current: string | undefined,
  ifMatch: string | undefined,
  ifNoneMatch: string | undefined,
): 304 | 412 | undefined {
  // RFC 7232 §6 step 1: If-Match uses the strong comparison.
  if (ifMatch !== undefined && ifMatch !== '') {
    const tags = parseEntityTags(ifMatch);
    const ok = current !== undefined && (tags === '*' || tags.some((t) => !t.weak && t.tag === current));
    if (!ok) return 412;
  }
  // Step 3: If-None-Match uses the weak comparison.
  if (ifNoneMatch !== undefined && ifNoneMatch !== '') {
    const tags = parseEntityTags(ifNoneMatch);
    const matched = current !== undefined && (tags === '*' || tags.some((t) => t.tag === current));
    if (matched) return method === 'GET' || method === 'HEAD' ? 304 : 412;
  }
  return undefined;
}

export function quoteEtag(etag: string): string {
  return `"${etag}"`;
}
