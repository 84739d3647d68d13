/**
 * Node selectors (RFC 4825 §6.3) and their namespace bindings from the query component
 * (§6.4), parsed on the main thread into the plain structure the worker evaluates.
 *
 *   node-selector    = element-selector ["/" terminal-selector]
 *   element-selector = step *( "/" step )
 *   step             = by-name / by-pos / by-attr / by-pos-attr
 *   by-pos           = NameorAny "[" position "]"
 *   by-attr          = NameorAny "[" "@" att-name "=" AttValue "]"
 *   by-pos-attr      = NameorAny "[" position "]" "[" "@" att-name "=" AttValue "]"
 *   terminal         = "@" att-name / "namespace::*"
 */
import type { NodeSelector, SelectorStep, TerminalSelector, NameTest } from '../../workers/xcap.js';
import { xcapErrors } from './errors.js';

const NCNAME = /^[A-Za-z_\u00C0-\uFFFF][\w.\-\u00B7\u00C0-\uFFFF]*$/;

/** `xmlns(p=urn:...)xmlns(q=...)` → prefix map (RFC 4825 §6.4). Throws 400 on anything else. */
export function parseNamespaceBindings(query: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!query) return out;
  let text: string;
  try {
    text = decodeURIComponent(query.replace(/\+/g, '%20'));
  } catch {
    throw xcapErrors.badRequest('the query component is not properly percent-encoded');
  }
  const re = /\s*xmlns\(\s*([^=\s)]+)\s*=\s*([^)\s]*)\s*\)\s*/y;
  while (re.lastIndex < text.length) {
    const m = re.exec(text);
    if (!m) throw xcapErrors.badRequest('the query component must be a list of xmlns(prefix=namespace)');
    if (!NCNAME.test(m[1]!)) throw xcapErrors.badRequest(`"${m[1]}" is not a namespace prefix`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function unescapeAttValue(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (_m, r: string) =>
    r.startsWith('#x')
      ? String.fromCodePoint(parseInt(r.slice(2), 16))
      : r.startsWith('#')
        ? String.fromCodePoint(parseInt(r.slice(1), 10))
        : PREDEFINED[r]!,
  );
}

/** Split on "/" outside quoted attribute values. */
function splitSteps(text: string): string[] {
  const parts: string[] = [];
  let quote = '';
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '/') {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (quote) throw xcapErrors.badRequest('unterminated attribute value in the node selector');
  parts.push(text.slice(start));
  return parts;
}

function resolve(qn: string, bindings: Record<string, string>, forAttribute: boolean): { ns: string | null; local: string } {
  const colon = qn.indexOf(':');
  if (colon === -1) {
    if (qn !== '*' && !NCNAME.test(qn)) throw xcapErrors.badRequest(`"${qn}" is not an XML name`);
    return { ns: forAttribute ? '' : null, local: qn };
  }
  const prefix = qn.slice(0, colon);
  const local = qn.slice(colon + 1);
  if (!NCNAME.test(prefix) || !NCNAME.test(local)) throw xcapErrors.badRequest(`"${qn}" is not a qualified name`);
  const ns = bindings[prefix];
  if (ns === undefined) throw xcapErrors.badRequest(`namespace prefix "${prefix}" is not bound in the query component (RFC 4825 §6.4)`);
  return { ns, local };
}

const STEP = /^([^[\]]+)(?:\[([0-9]+)\])?(?:\[@([^=\]\s]+)\s*=\s*("[^"]*"|'[^']*')\])?$/;

function parseStep(source: string, bindings: Record<string, string>): SelectorStep {
  const m = STEP.exec(source);
  if (!m) throw xcapErrors.badRequest(`"${source}" is not a node selector step`);
  const name = resolve(m[1]!, bindings, false) as NameTest;
  const step: SelectorStep = { name, source };
  if (m[2] !== undefined) {
    const position = Number(m[2]);
    if (!Number.isSafeInteger(position) || position < 1) throw xcapErrors.badRequest(`position ${m[2]} must be 1 or more`);
    step.position = position;
  }
  if (m[3] !== undefined) {
    const attr = resolve(m[3], bindings, true);
    if (attr.local === '*') throw xcapErrors.badRequest('an attribute test needs a name');
    step.attr = { ns: attr.ns ?? '', local: attr.local, value: unescapeAttValue(m[4]!.slice(1, -1)) };
  }
  return step;
}

/** Parse a percent-decoded node selector (the part after "~~/"). Throws XcapError 400. */
export function parseNodeSelector(text: string, bindings: Record<string, string>): NodeSelector {
  if (text === '') throw xcapErrors.badRequest('empty node selector');
  const parts = splitSteps(text);
  let terminal: TerminalSelector | undefined;
  const lastPart = parts[parts.length - 1]!;
  if (lastPart === 'namespace::*') {
    terminal = { kind: 'namespace' };
    parts.pop();
  } else if (lastPart.startsWith('@')) {
    const a = resolve(lastPart.slice(1), bindings, true);
    if (a.local === '*') throw xcapErrors.badRequest('an attribute selector needs a name');
    terminal = { kind: 'attribute', ns: a.ns ?? '', local: a.local };
    parts.pop();
  }
  if (parts.length === 0) throw xcapErrors.badRequest('a node selector starts with the root element');
  const steps = parts.map((p) => parseStep(p, bindings));
  return terminal ? { steps, terminal } : { steps };
}
