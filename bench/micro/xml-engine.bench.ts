/**
 * The XML engine choice (DESIGN.md "XML engine"), kept measured: the same PIDF parse + XPath +
 * serialise with libxml2-wasm (what workers/xml.ts uses) and with libxmljs2 (native addon,
 * devDependency; it loads on the main thread only, so both run there).
 */
import { XmlDocument, ParseOption } from 'libxml2-wasm';
import { withDocument, DEFAULT_XML_LIMITS } from '../../workers/xml.js';
import { PIDF_NS } from '../../workers/pidf.js';
import { pidfDocument, DOMAIN } from '../fixtures/messages.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow, type MicroTask } from './harness.js';

const XPATH = '/p:presence/p:tuple/p:status/p:basic';
const OPTIONS =
  ParseOption.XML_PARSE_NONET | ParseOption.XML_PARSE_NO_XXE | ParseOption.XML_PARSE_NOERROR | ParseOption.XML_PARSE_NOWARNING;

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const xml = pidfDocument(`sip:alice@${DOMAIN}`, 5);
  let sink = 0;
  const tasks: MicroTask[] = [
    {
      name: `libxml2-wasm: parse + XPath + serialise (5 tuples, ${xml.length} B)`,
      fn: () => {
        const doc = XmlDocument.fromString(xml, { option: OPTIONS });
        try {
          sink += doc.find(XPATH, { p: PIDF_NS }).length + doc.toString().length;
        } finally {
          doc.dispose();
        }
      },
    },
    {
      name: 'libxml2-wasm via withDocument (+ size/DTD/depth precheck)',
      fn: () => {
        sink += withDocument(xml, DEFAULT_XML_LIMITS, (doc) => doc.find(XPATH, { p: PIDF_NS }).length + doc.toString().length);
      },
    },
    {
      name: 'libxml2-wasm: parse + XPath only',
      fn: () => {
        const doc = XmlDocument.fromString(xml, { option: OPTIONS });
        try {
          sink += doc.find(XPATH, { p: PIDF_NS }).length;
        } finally {
          doc.dispose();
        }
      },
    },
  ];
  let note: string | undefined;
  try {
    const libxmljs = (await import('libxmljs2')).default;
    tasks.push(
      {
        name: 'libxmljs2: parse + XPath + serialise',
        fn: () => {
          const doc = libxmljs.parseXml(xml, { nonet: true, noent: false, dtdload: false });
          sink += doc.find(XPATH, { p: PIDF_NS }).length + doc.toString(false).length;
        },
      },
      {
        name: 'libxmljs2: parse + XPath only',
        fn: () => {
          const doc = libxmljs.parseXml(xml, { nonet: true, noent: false, dtdload: false });
          sink += doc.find(XPATH, { p: PIDF_NS }).length;
        },
      },
    );
  } catch (err) {
    note = `libxmljs2 did not load (${(err as Error).message.split('\n')[0]}); see native-notes.md`;
  }
  const rows = await measure('xml-engine', tasks, o);
  if (note) rows.push({ group: 'xml-engine', task: 'libxmljs2', opsPerSec: NaN, meanUs: NaN, p99Us: NaN, samples: 0, batch: 1, note });
  if (sink === -1) process.stdout.write('');
  return rows;
}

if (isMain(import.meta.url)) runStandalone(suite);
