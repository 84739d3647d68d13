/**
 * Presence authorisation rules: RFC 4745 (common policy) conditions and combining, RFC 5025
 * (pres-rules) sub-handling and transformations, applied to a composed PIDF document.
 *
 * Combining (RFC 4745 §10): every rule whose conditions all match contributes; sub-handling
 * takes the maximum (block < confirm < polite-block < allow), boolean permissions OR, set
 * permissions union. No matching rule: confirm (the watcher is pending; presence_xml
 * behaviour and the requirement).
 *
 * The same rules may grant a watcher the presentity's watcher information (RFC 3857) with an
 * action of presenced's own namespace (RFC 4745 §8 leaves actions to extensions):
 * `<wr:winfo-handling>` block < allow, combined by maximum; no grant: block.
 */
import { withDocument, elementChildren, XmlRejected, type XmlLimits, XmlElement, XmlDocument } from './xml.js';
import { PIDF_NS, DM_NS, RPID_NS } from './pidf.js';

export const CP_NS = 'urn:ietf:params:xml:ns:common-policy';
export const PR_NS = 'urn:ietf:params:xml:ns:pres-rules';
export const WR_NS = 'urn:presenced:params:xml:ns:winfo-rules';

export type SubHandling = 'block' | 'confirm' | 'polite-block' | 'allow';
const ORDER: SubHandling[] = ['block', 'confirm', 'polite-block', 'allow'];

export type WinfoHandling = 'block' | 'allow';
const WINFO_ORDER: WinfoHandling[] = ['block', 'allow'];

/** What a watcher may see; `undefined` fields were granted by no rule. */
export interface Transformations {
  /** 'all' or the set of selectors (occurrence-id:x, class:x, service-uri:x, service-uri-scheme:x). */
  services?: 'all' | string[];
  persons?: 'all' | string[];
  devices?: 'all' | string[];
  /** Attribute permissions granted (activities, note, mood, place-is, ... ) or 'all'. */
  attributes?: 'all' | string[];
}

export interface RulesOutcome {
  handling: SubHandling;
  /** undefined: the matching rules carry no transformations → the whole document (Kamailio behaviour). */
  transformations: Transformations | undefined;
  matchedRules: string[];
  /** Whether the watcher may subscribe to the presentity's presence.winfo. */
  winfoHandling: WinfoHandling;
}

export interface EvaluateInput {
  rulesXml: string | undefined;
  watcherUri: string;
  /** Spheres the presentity currently publishes (rpid:sphere), for the sphere condition. */
  spheres: string[];
  now: number;
}

function domainOf(uri: string): string {
  const at = uri.lastIndexOf('@');
  const rest = at === -1 ? uri.slice(uri.indexOf(':') + 1) : uri.slice(at + 1);
  return rest.split(/[;:>?]/)[0]!.toLowerCase();
}

function sameIdentity(a: string, b: string): boolean {
  const norm = (u: string): string => {
    const s = u.trim();
    const colon = s.indexOf(':');
    const scheme = colon === -1 ? 'sip' : s.slice(0, colon).toLowerCase();
    const rest = colon === -1 ? s : s.slice(colon + 1);
    const at = rest.lastIndexOf('@');
    const user = at === -1 ? '' : rest.slice(0, at);
    return `${scheme === 'sips' || scheme === 'pres' ? 'sip' : scheme}:${user}@${domainOf(s)}`;
  };
  return norm(a) === norm(b);
}

function child(el: XmlElement, name: string, ns: string): XmlElement | undefined {
  return elementChildren(el).find((c) => c.name === name && c.namespaceUri === ns);
}

/** RFC 4745 §7.1 identity: any <one> or <many> child matching is enough. */
function identityMatches(identity: XmlElement, watcher: string): boolean {
  for (const c of elementChildren(identity)) {
    if (c.namespaceUri !== CP_NS) continue;
    if (c.name === 'one') {
      const id = c.attr('id')?.value;
      if (id && sameIdentity(id, watcher)) return true;
    } else if (c.name === 'many') {
      const domain = c.attr('domain')?.value?.toLowerCase();
      if (domain && domainOf(watcher) !== domain) continue;
      let excepted = false;
      for (const ex of elementChildren(c)) {
        if (ex.name !== 'except' || ex.namespaceUri !== CP_NS) continue;
        const exId = ex.attr('id')?.value;
        const exDomain = ex.attr('domain')?.value?.toLowerCase();
        if ((exId && sameIdentity(exId, watcher)) || (exDomain && domainOf(watcher) === exDomain)) excepted = true;
      }
      if (!excepted) return true;
    }
  }
  return false;
}

/** RFC 4745 §7.3 validity: now falls in one of the from/until intervals. */
function validityMatches(validity: XmlElement, now: number): boolean {
  const kids = elementChildren(validity);
  for (let i = 0; i < kids.length; i++) {
    if (kids[i]!.name !== 'from') continue;
    const from = Date.parse(kids[i]!.content.trim());
    const untilEl = kids[i + 1]?.name === 'until' ? kids[i + 1] : undefined;
    const until = untilEl ? Date.parse(untilEl.content.trim()) : Infinity;
    if (!Number.isNaN(from) && now >= from && now < until) return true;
  }
  return false;
}

function conditionsMatch(conditions: XmlElement | undefined, input: EvaluateInput): boolean {
  if (!conditions) return true;
  for (const c of elementChildren(conditions)) {
    if (c.namespaceUri !== CP_NS) return false; // an unknown condition never matches (RFC 4745 §6)
    if (c.name === 'identity' && !identityMatches(c, input.watcherUri)) return false;
    if (c.name === 'sphere') {
      const wanted = (c.attr('value')?.value ?? '').split(/\s+/).filter(Boolean);
      if (!wanted.some((w) => input.spheres.includes(w))) return false;
    }
    if (c.name === 'validity' && !validityMatches(c, input.now)) return false;
  }
  return true;
}

function mergeSet(cur: 'all' | string[] | undefined, add: 'all' | string[]): 'all' | string[] {
  if (cur === 'all' || add === 'all') return 'all';
  return [...new Set([...(cur ?? []), ...add])].sort();
}

/** provide-services / provide-persons / provide-devices content → a selector set. */
function readSelectors(el: XmlElement, allName: string): 'all' | string[] {
  const out: string[] = [];
  for (const c of elementChildren(el)) {
    if (c.name === allName) return 'all';
    const v = c.content.trim();
    out.push(`${c.name}:${v}`);
  }
  return out;
}

const ATTRIBUTE_PERMISSIONS: Record<string, string> = {
  'provide-activities': 'activities',
  'provide-class': 'class',
  'provide-deviceID': 'deviceID',
  'provide-mood': 'mood',
  'provide-place-is': 'place-is',
  'provide-place-type': 'place-type',
  'provide-privacy': 'privacy',
  'provide-relationship': 'relationship',
  'provide-status-icon': 'status-icon',
  'provide-sphere': 'sphere',
  'provide-time-offset': 'time-offset',
  'provide-user-input': 'user-input',
  'provide-note': 'note',
};

const NOTHING: RulesOutcome = { handling: 'confirm', transformations: undefined, matchedRules: [], winfoHandling: 'block' };

export function evaluateRules(input: EvaluateInput, limits: XmlLimits): RulesOutcome {
  if (input.rulesXml === undefined) return { ...NOTHING, matchedRules: [] };
  try {
    return withDocument(input.rulesXml, limits, (doc) => {
      let best = -1;
      let winfoBest = 0;
      let t: Transformations | undefined;
      const matched: string[] = [];
      for (const rule of elementChildren(doc.root)) {
        if (rule.name !== 'rule' || rule.namespaceUri !== CP_NS) continue;
        if (!conditionsMatch(child(rule, 'conditions', CP_NS), input)) continue;
        matched.push(rule.attr('id')?.value ?? '');
        const actions = child(rule, 'actions', CP_NS);
        const sh = actions ? child(actions, 'sub-handling', PR_NS) : undefined;
        if (sh) best = Math.max(best, ORDER.indexOf(sh.content.trim() as SubHandling));
        const wh = actions ? child(actions, 'winfo-handling', WR_NS) : undefined;
        if (wh) winfoBest = Math.max(winfoBest, WINFO_ORDER.indexOf(wh.content.trim() as WinfoHandling));
        const tr = child(rule, 'transformations', CP_NS);
        if (tr) {
          t ??= {};
          for (const p of elementChildren(tr)) {
            if (p.namespaceUri !== PR_NS) continue;
            if (p.name === 'provide-services') t.services = mergeSet(t.services, readSelectors(p, 'all-services'));
            else if (p.name === 'provide-persons') t.persons = mergeSet(t.persons, readSelectors(p, 'all-persons'));
            else if (p.name === 'provide-devices') t.devices = mergeSet(t.devices, readSelectors(p, 'all-devices'));
            else if (p.name === 'provide-all-attributes') t.attributes = 'all';
            else if (p.name === 'provide-unknown-attribute' && isTrue(p.content)) {
              t.attributes = mergeSet(t.attributes, [`unknown:${p.attr('ns')?.value ?? ''} ${p.attr('name')?.value ?? ''}`]);
            } else if (ATTRIBUTE_PERMISSIONS[p.name] && isTrue(p.content)) {
              t.attributes = mergeSet(t.attributes, [ATTRIBUTE_PERMISSIONS[p.name]!]);
            }
          }
        }
      }
      // Matching rules without a sub-handling grant nothing above confirm.
      const handling: SubHandling = matched.length === 0 ? 'confirm' : best < 0 ? 'confirm' : ORDER[best]!;
      return { handling, transformations: t, matchedRules: matched, winfoHandling: WINFO_ORDER[winfoBest]! };
    });
  } catch (err) {
    // An unusable rules document authorises nobody beyond confirm (and nobody's watcher info).
    if (err instanceof XmlRejected) return { ...NOTHING, matchedRules: [] };
    throw err;
  }
}

// ───── RFC 5025 §3.3: applying transformations to a PIDF document ─────

/** Elements whose visibility an attribute permission controls, by namespace and local name. */
function attributeOf(el: XmlElement): string | undefined {
  if (el.namespaceUri === RPID_NS) return el.name; // activities, mood, place-is, class, sphere, ...
  if (el.namespaceUri === DM_NS && el.name === 'deviceID') return 'deviceID';
  if (el.namespaceUri === PIDF_NS && el.name === 'note') return 'note';
  if (el.namespaceUri === DM_NS && el.name === 'note') return 'note';
  return undefined;
}

/** Always shown for a provided element (RFC 5025 §3.3): status/basic, contact, timestamp. */
const ALWAYS = new Set([`${PIDF_NS} status`, `${PIDF_NS} contact`, `${PIDF_NS} timestamp`, `${DM_NS} timestamp`]);

function selected(el: XmlElement, sel: 'all' | string[] | undefined): boolean {
  if (sel === 'all') return true;
  if (!sel || sel.length === 0) return false;
  const id = el.attr('id')?.value ?? '';
  const cls = elementChildren(el).find((c) => c.name === 'class' && c.namespaceUri === RPID_NS)?.content.trim();
  const contact = elementChildren(el).find((c) => c.name === 'contact' && c.namespaceUri === PIDF_NS)?.content.trim() ?? '';
  const deviceId = elementChildren(el).find((c) => c.name === 'deviceID' && c.namespaceUri === DM_NS)?.content.trim();
  for (const s of sel) {
    const colon = s.indexOf(':');
    const kind = s.slice(0, colon);
    const v = s.slice(colon + 1);
    if (kind === 'occurrence-id' && v === id) return true;
    if (kind === 'class' && cls !== undefined && v === cls) return true;
    if (kind === 'service-uri' && contact === v) return true;
    if (kind === 'service-uri-scheme' && contact.toLowerCase().startsWith(v.toLowerCase() + ':')) return true;
    if (kind === 'deviceID' && deviceId !== undefined && v === deviceId) return true;
  }
  return false;
}

function attributeAllowed(el: XmlElement, t: Transformations): boolean {
  if (ALWAYS.has(`${el.namespaceUri} ${el.name}`)) return true;
  const attr = attributeOf(el);
  if (t.attributes === 'all') return true;
  const granted = t.attributes ?? [];
  if (attr !== undefined) return granted.includes(attr);
  return granted.includes(`unknown:${el.namespaceUri} ${el.name}`);
}

/** Remove what `t` does not provide: whole tuples/persons/devices, then attributes inside the rest. */
export function applyTransformations(xml: string, t: Transformations, limits: XmlLimits): string {
  return withDocument(xml, limits, (doc: XmlDocument) => {
    for (const el of elementChildren(doc.root)) {
      let keep: boolean;
      if (el.namespaceUri === PIDF_NS && el.name === 'tuple') keep = selected(el, t.services);
      else if (el.namespaceUri === DM_NS && el.name === 'person') keep = selected(el, t.persons);
      else if (el.namespaceUri === DM_NS && el.name === 'device') keep = selected(el, t.devices);
      else keep = attributeAllowed(el, t); // top-level <note> and extensions
      if (!keep) {
        el.remove();
        continue;
      }
      if (el.name === 'tuple' || el.name === 'person' || el.name === 'device') {
        for (const attr of elementChildren(el)) {
          if (el.name === 'tuple' && attr.namespaceUri === PIDF_NS && attr.name === 'status') continue;
          if (!attributeAllowed(attr, t)) attr.remove();
        }
      }
    }
    return doc.toString();
  });
}

/** rpid:sphere values in a composed PIDF (for the sphere condition). */
export function spheresOf(xml: string | undefined, limits: XmlLimits): string[] {
  if (!xml) return [];
  try {
    return withDocument(xml, limits, (doc) =>
      doc.find('//rpid:sphere', { rpid: RPID_NS }).map((n) => {
        const el = n as XmlElement;
        const kid = elementChildren(el)[0];
        return kid ? kid.name : el.content.trim();
      }),
    );
  } catch {
    return [];
  }
}

/** xs:boolean (RFC 5025 permissions): "true" or "1" grant; "false", "0" and anything else do not. */
function isTrue(text: string): boolean {
  const v = text.trim();
  return v === 'true' || v === '1';
}
