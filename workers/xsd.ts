/**
 * XML Schema validation of XCAP documents (RFC 4825 §5.3, §8.2.5) with libxml2's XSD engine.
 *
 * The schemas are the .xsd files of workers/schemas/, re-stated from the RFCs. They stay real
 * .xsd files (readable, diffable, checkable with xmllint) rather than TypeScript strings; tsc
 * does not copy them, so they are read from the source tree next to dist/ — the way the node
 * runs (npm start, npm test) — once per thread when this module loads. Each schema set is
 * compiled on its first use and kept for the life of the thread.
 *
 * Schemas import one another (pres-rules imports common-policy, rls-services imports
 * resource-lists, ...). libxml2 resolves those imports through an input provider that serves
 * only these files under a private URL scheme: nothing is read from disk or network while
 * compiling, and nothing at all while validating (xsi:schemaLocation hints in a document are
 * not followed when the validator has its own compiled schema).
 */
import { readFile, readdir, access } from 'node:fs/promises';
import { NS } from './namespaces.js';
import {
  XmlDocument,
  XsdValidator,
  XmlValidateError,
  xmlRegisterInputProvider,
  XmlBufferInputProvider,
  type ErrorDetail,
} from 'libxml2-wasm';

/** The schema sets, by the file that roots each one (pidf-publish: PIDF as PUBLISHed, see that file). */
export type SchemaName = 'pres-rules' | 'resource-lists' | 'rls-services' | 'pidf' | 'pidf-publish' | 'xcap-caps';

const SCHEME = 'presenced-xsd:/';

/** workers/schemas/ beside this file (running from source), else in the source tree above dist/. */
async function schemaDir(): Promise<URL> {
  const candidates = [new URL('./schemas/', import.meta.url), new URL('../../workers/schemas/', import.meta.url)];
  const present = await Promise.all(
    candidates.map((d) =>
      access(new URL('common-policy.xsd', d)).then(
        () => true,
        () => false,
      ),
    ),
  );
  const found = candidates[present.indexOf(true)];
  if (found) return found;
  throw new Error(`XCAP schemas not found (looked in ${candidates.map((u) => u.pathname).join(', ')})`);
}

const dir = await schemaDir();
const files: Record<string, Uint8Array> = {};
for (const name of await readdir(dir)) {
  if (name.endsWith('.xsd')) files[SCHEME + name] = await readFile(new URL(name, dir));
}

/** Names libxml2 asked for that are not among the files (an import that would be skipped). */
const missing: string[] = [];
const buffers = new XmlBufferInputProvider(files);
xmlRegisterInputProvider({
  match: (name) => {
    if (!name.startsWith(SCHEME)) return false;
    if (!buffers.match(name)) missing.push(name);
    return true;
  },
  open: (name) => buffers.open(name),
  read: (fd, buf) => buffers.read(fd, buf),
  close: (fd) => buffers.close(fd),
});

const compiled = new Map<SchemaName, XsdValidator>();

function validatorFor(name: SchemaName): XsdValidator {
  let v = compiled.get(name);
  if (v) return v;
  const source = files[`${SCHEME}${name}.xsd`];
  if (!source) throw new Error(`no schema ${name}.xsd in ${dir.pathname}`);
  const doc = XmlDocument.fromBuffer(source, { url: `${SCHEME}${name}.xsd` });
  missing.length = 0;
  try {
    v = XsdValidator.fromDoc(doc);
  } finally {
    doc.dispose();
  }
  // libxml2 only warns when an xs:import cannot be loaded, and the set would then silently
  // lack a namespace: refuse such a set.
  if (missing.length) {
    v.dispose();
    throw new Error(`schema ${name}.xsd imports ${missing.join(', ')}, which is not in ${dir.pathname}`);
  }
  compiled.set(name, v);
  return v;
}

/** Conventional prefixes for libxml2's "{namespace}name" in messages. */
const PREFIXES: Record<string, string> = {
  [NS.commonPolicy]: 'cp',
  [NS.presRules]: 'pr',
  [NS.resourceLists]: 'rl',
  [NS.rlsServices]: 'rls',
  [NS.pidf]: 'pidf',
  [NS.xcapCaps]: 'caps',
  'http://www.w3.org/XML/1998/namespace': 'xml',
};

function shorten(message: string): string {
  return message
    .replace(/\{([^}]*)\}([\w.-]+|\*)/g, (m, ns: string, local: string) => (PREFIXES[ns] ? `${PREFIXES[ns]}:${local}` : m))
    .trim();
}

/** A phrase for <schema-validation-error phrase="...">: the first error, where it is, how many more. */
function phrase(details: ErrorDetail[], withLine: boolean): string {
  const errors = details.filter((d) => d.level >= 2);
  const list = errors.length ? errors : details;
  const first = list[0];
  if (!first) return 'the document does not match the schema';
  const where = withLine && first.line > 0 ? `line ${first.line}: ` : '';
  let text = where + shorten(first.message);
  if (text.length > 300) text = text.slice(0, 297) + '...';
  return list.length > 1 ? `${text} (and ${list.length - 1} more)` : text;
}

/**
 * Validate a parsed document against a schema set. Undefined when it is valid; otherwise the
 * phrase naming the first error (with its line when `withLine`: the client's own document).
 */
export function schemaErrors(doc: XmlDocument, schema: SchemaName, withLine: boolean): string | undefined {
  try {
    validatorFor(schema).validate(doc);
    return undefined;
  } catch (err) {
    if (err instanceof XmlValidateError) return phrase(err.details, withLine);
    throw err;
  }
}

/** The target namespace of every schema file (for xcap-caps and its test). */
export function schemaNamespaces(): string[] {
  const out: string[] = [];
  const decoder = new TextDecoder();
  for (const bytes of Object.values(files)) {
    const m = /targetNamespace="([^"]+)"/.exec(decoder.decode(bytes));
    if (m && !out.includes(m[1]!)) out.push(m[1]!);
  }
  return out;
}
