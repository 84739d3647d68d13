/**
 * PIDF work done once per PUBLISH (validation) and once per presentity change (composition
 * of every live publication into the NOTIFY body, workers/pidf.ts composePidf).
 */
import { composePidf, validatePidf } from '../../workers/pidf.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';
import { pidfDocument, DOMAIN } from '../fixtures/messages.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow } from './harness.js';

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const presentity = `sip:alice@${DOMAIN}`;
  // One publication per device: one tuple, a person and a device each, distinct ids (none hidden).
  const pubs = Array.from({ length: 20 }, (_, k) => pidfDocument(presentity, 1, `device ${k}`, `p${k}`));
  const five = pidfDocument(presentity, 5);
  let sink = 0;
  const compose = (n: number) => () => {
    sink += composePidf({ presentityUri: presentity, bodies: pubs.slice(0, n), dummy: false }, DEFAULT_XML_LIMITS).length;
  };
  const rows = await measure(
    'pidf',
    [
      { name: `validatePidf (5 tuples, ${five.length} B)`, fn: () => void (sink += validatePidf(five, DEFAULT_XML_LIMITS).ok ? 1 : 0) },
      { name: 'composePidf, 1 publication', fn: compose(1) },
      { name: 'composePidf, 5 publications', fn: compose(5) },
      { name: 'composePidf, 20 publications', fn: compose(20) },
    ],
    o,
  );
  if (sink === -1) process.stdout.write('');
  return rows;
}

if (isMain(import.meta.url)) runStandalone(suite);
