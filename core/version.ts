import { readFileSync } from 'node:fs';

/** Version from package.json, read once at start. */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

export const SERVER_HEADER = `presenced/${VERSION}`;
