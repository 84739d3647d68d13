/**
 * `reg` (RFC 3680) composition: the registrations of every live publication of a presentity
 * (pua_reginfo PUBLISHes them from usrloc) in one full-state reginfo document. Publications
 * naming the same address of record are merged into one <registration>: its contacts from
 * all of them (a contact id, else its URI, seen in a newer publication hides older copies),
 * its state active while any of those contacts is (RFC 3680 §5.1.2), terminated when it has
 * contacts and none is active, else (no contact at all) the newest publication's state for it.
 */
import { withDocument, elementChildren, XmlRejected, type XmlElement, type XmlLimits } from './xml.js';
import { escapeAttr, standalone } from './pidf.js';

export const REGINFO_NS = 'urn:ietf:params:xml:ns:reginfo';

export interface RegPublication {
  body: string;
  receivedAt: number;
}

interface Registration {
  aor: string;
  id: string;
  state: string;
  contacts: Map<string, { xml: string; active: boolean }>;
}

function contactKey(c: XmlElement): string {
  const id = c.attr('id')?.value;
  if (id !== undefined) return `id:${id}`;
  for (const u of elementChildren(c)) if (u.name === 'uri') return `uri:${u.content.trim()}`;
  return `xml:${c.toString()}`;
}

export function composeReginfo(pubs: RegPublication[], versionSlot: string, limits: XmlLimits): string {
  const regs = new Map<string, Registration>();
  const ordered = pubs.slice().sort((a, b) => b.receivedAt - a.receivedAt);
  for (const p of ordered) {
    try {
      withDocument(p.body, limits, (doc) => {
        const inherited = { ...doc.root.namespaces };
        for (const el of elementChildren(doc.root)) {
          if (el.name !== 'registration' || el.namespaceUri !== REGINFO_NS) continue;
          const aor = el.attr('aor')?.value ?? '';
          let reg = regs.get(aor);
          if (!reg) {
            reg = { aor, id: el.attr('id')?.value ?? '', state: (el.attr('state')?.value ?? 'init').trim(), contacts: new Map() };
            regs.set(aor, reg);
          }
          const inner = { ...inherited, ...el.namespaces };
          for (const c of elementChildren(el)) {
            if (c.name !== 'contact' || c.namespaceUri !== REGINFO_NS) continue;
            const key = contactKey(c);
            if (reg.contacts.has(key)) continue;
            reg.contacts.set(key, { xml: standalone(c, inner), active: (c.attr('state')?.value ?? '').trim() === 'active' });
          }
        }
      });
    } catch (err) {
      if (!(err instanceof XmlRejected)) throw err;
    }
  }
  let out = `<?xml version="1.0" encoding="UTF-8"?>\n<reginfo xmlns="${REGINFO_NS}" version="${versionSlot}" state="full">`;
  for (const [n, reg] of [...regs.values()].entries()) {
    const contacts = [...reg.contacts.values()];
    // RFC 3680 §5.1.2: active while a contact is; with contacts, none active, terminated.
    const state = contacts.some((c) => c.active) ? 'active' : contacts.length > 0 ? 'terminated' : reg.state;
    // RFC 3680 §5.1: id and aor are required; a publication without an id gets a stable one.
    const id = reg.id !== '' ? reg.id : `r${n}`;
    out += `<registration aor="${escapeAttr(reg.aor)}" id="${escapeAttr(id)}" state="${escapeAttr(state)}">`;
    for (const c of contacts) out += c.xml;
    out += '</registration>';
  }
  return out + '</reginfo>\n';
}
