/**
 * Event packages the node serves. Every package is one file implementing EventPackage; this
 * registry enables them from the configuration (disable_presence, disable_winfo, disable_bla)
 * and finds the one an Event header names.
 */
import type { EventPackage } from './types.js';
import { parseEventHeader } from './types.js';

export class PackageRegistry {
  private readonly byName = new Map<string, EventPackage>();

  constructor(packages: EventPackage[]) {
    for (const p of packages) this.byName.set(p.name, p);
  }

  /** Package for an Event header value (RFC 6665 §8.2.1: parameters other than id select nothing, except dialog;sla; RFC 4235 §3.2's call-id/from-tag/to-tag narrow a `dialog` subscription, not the package). */
  lookup(eventHeader: string | undefined): EventPackage | undefined {
    if (eventHeader === undefined) return undefined;
    const ev = parseEventHeader(eventHeader);
    if (!ev) return undefined;
    if (ev.name === 'dialog') {
      if (ev.params.has('sla') || ev.params.has('ma')) return this.byName.get('dialog;sla');
      return this.byName.get('dialog');
    }
    return this.byName.get(ev.name);
  }

  get(name: string): EventPackage | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  all(): EventPackage[] {
    return [...this.byName.values()];
  }

  /** Every content type a PUBLISH may carry, for Accept in OPTIONS. */
  acceptedTypes(): string[] {
    const s = new Set<string>();
    for (const p of this.byName.values()) for (const t of p.publishTypes) s.add(t);
    return [...s];
  }
}
