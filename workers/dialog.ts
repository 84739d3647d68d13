/**
 * dialog-info (RFC 4235) composition for dialog;sla: the <dialog> elements of every
 * publication of a shared line (newest first; a dialog id seen in a newer publication hides
 * older copies) in one full document. Each <dialog> keeps the namespaces it uses (e.g. the
 * BLA appearance extension), declared on the element itself.
 */
import { withDocument, elementChildren, XmlRejected, type XmlLimits } from './xml.js';
import { escapeAttr, standalone } from './pidf.js';

export const DIALOG_INFO_NS = 'urn:ietf:params:xml:ns:dialog-info';

export function composeDialogInfo(presentityUri: string, bodies: string[], versionSlot: string, limits: XmlLimits): string {
  const dialogs: string[] = [];
  const seen = new Set<string>();
  for (const body of bodies) {
    try {
      withDocument(body, limits, (doc) => {
        const inherited = { ...doc.root.namespaces };
        for (const child of elementChildren(doc.root)) {
          if (child.name !== 'dialog' || child.namespaceUri !== DIALOG_INFO_NS) continue;
          const id = child.attr('id')?.value ?? '';
          if (seen.has(id)) continue;
          seen.add(id);
          dialogs.push(standalone(child, inherited));
        }
      });
    } catch (err) {
      if (!(err instanceof XmlRejected)) throw err;
    }
  }
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<dialog-info xmlns="${DIALOG_INFO_NS}" version="${versionSlot}" state="full" entity="${escapeAttr(presentityUri)}">` +
    dialogs.join('') +
    '</dialog-info>\n'
  );
}
