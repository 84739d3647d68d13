/**
 * What XML Schema validation adds to an XCAP PUT (workers/xcap.ts checkDocument = parse +
 * root + XSD + uniqueness) against parsing alone, per application usage and document size.
 */
import { checkDocument } from '../../workers/xcap.js';
import { withDocument, DEFAULT_XML_LIMITS } from '../../workers/xml.js';
import { USAGE_BY_AUID } from '../../core/xcap/auids.js';
import { ALLOW_ALL_RULES, rulesDocument } from '../fixtures/rules.js';
import { pidfDocument } from '../fixtures/messages.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow, type MicroTask } from './harness.js';

function resourceLists(lists: number, entries: number): string {
  let s = '<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">';
  for (let l = 0; l < lists; l++) {
    s += `<list name="l${l}"><display-name>List ${l}</display-name>`;
    for (let e = 0; e < entries; e++) s += `<entry uri="sip:u${l}-${e}@example.com"><display-name>User ${e}</display-name></entry>`;
    s += '</list>';
  }
  return s + '</resource-lists>';
}

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const limits = { ...DEFAULT_XML_LIMITS, maxBytes: 1 << 20 };
  const docs: Array<[string, string, string]> = [
    ['pres-rules allow-all', 'pres-rules', ALLOW_ALL_RULES],
    ['pres-rules 10 rules × 10 identities', 'pres-rules', rulesDocument(10, 10)],
    ['resource-lists 4 lists × 25 entries', 'resource-lists', resourceLists(4, 25)],
    ['pidf-manipulation 5 tuples + RPID', 'pidf-manipulation', pidfDocument('sip:alice@example.com', 5)],
  ];
  let sink = 0;
  const tasks: MicroTask[] = [];
  for (const [label, auid, xml] of docs) {
    const usage = USAGE_BY_AUID.get(auid)!.rules;
    tasks.push(
      { name: `${label} (${xml.length} B): parse only`, fn: () => (sink += withDocument(xml, limits, (d) => d.root.name.length)) },
      {
        name: `${label} (${xml.length} B): checkDocument with XSD`,
        fn: () => {
          if (!checkDocument({ xml, usage }).ok) throw new Error(`${label} does not validate`);
          sink++;
        },
      },
    );
  }
  const rows = await measure('xcap-schema', tasks, o);
  if (sink === -1) process.stdout.write('');
  return rows;
}

if (isMain(import.meta.url)) runStandalone(suite);
