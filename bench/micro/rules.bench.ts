/**
 * pres-rules evaluation (RFC 4745/5025, workers/pres-rules.ts) for one watcher against a
 * document of 10 rules and 100 identities, once per SUBSCRIBE and per watcher on a rules
 * change: the first evaluation of a document version compiles it (parse + walk), later ones
 * use the compiled form; and the transformation of a composed PIDF for a restricted watcher.
 */
import { evaluateRules, applyTransformations } from '../../workers/pres-rules.js';
import { composePidf } from '../../workers/pidf.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';
import { rulesDocument } from '../fixtures/rules.js';
import { pidfDocument, DOMAIN } from '../fixtures/messages.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow } from './harness.js';

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const rulesXml = rulesDocument(10, 10);
  const presentity = `sip:alice@${DOMAIN}`;
  const composed = composePidf({ presentityUri: presentity, bodies: [pidfDocument(presentity, 5)], dummy: false }, DEFAULT_XML_LIMITS);
  let sink = 0;
  const evaluate = (watcherUri: string) => () => {
    sink += evaluateRules({ rulesXml, watcherUri, spheres: [], now: Date.now() }, DEFAULT_XML_LIMITS).matchedRules.length;
  };
  let version = 0;
  const rows = await measure(
    'pres-rules',
    [
      {
        // A different document each time (a comment makes the content new): compile + evaluate.
        name: `evaluateRules, new document version each time (compile), 10 rules/100 ids`,
        fn: () => {
          const xml = rulesXml.replace('?>', `?><!--v${version++}-->`);
          sink += evaluateRules({ rulesXml: xml, watcherUri: 'sip:w99@example.com', spheres: [], now: Date.now() }, DEFAULT_XML_LIMITS)
            .matchedRules.length;
        },
      },
      { name: `evaluateRules, compiled document (${rulesXml.length} B), match in last rule`, fn: evaluate('sip:w99@example.com') },
      { name: 'evaluateRules, compiled document, no match (confirm)', fn: evaluate('sip:stranger@example.org') },
      {
        name: 'applyTransformations (services all, activities+note)',
        fn: () => {
          sink += applyTransformations(composed, { services: 'all', attributes: ['activities', 'note'] }, DEFAULT_XML_LIMITS).length;
        },
      },
    ],
    o,
  );
  if (sink === -1) process.stdout.write('');
  return rows;
}

if (isMain(import.meta.url)) runStandalone(suite);
