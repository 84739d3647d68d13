/**
 * The web console's two files, served on the admin port when `web_console` is 1: the page
 * (below) and the script esbuild bundled at build time (dist/console/app.js, from
 * core/console/web/app.ts). Read once at start; a missing bundle stops the start.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../config.js';

export interface ConsoleAssets {
  page: string;
  script: string;
}

// dist/core/console/assets.js → dist/console/app.js
const BUNDLE = fileURLToPath(new URL('../../console/app.js', import.meta.url));

export async function loadConsoleAssets(): Promise<ConsoleAssets> {
  let script: string;
  try {
    script = await readFile(BUNDLE, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `web_console: the console bundle ${BUNDLE} cannot be read (${(err as NodeJS.ErrnoException).code}); run npm run build, or set web_console to 0`,
    );
  }
  return { page: PAGE, script };
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>presenced console</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f6f7f9; }
  main { max-width: 1200px; margin: 0 auto; padding: 16px 24px; }
  header { display: flex; align-items: center; gap: 24px; flex-wrap: wrap; }
  h1 { font-size: 20px; margin: 0; }
  .figures { display: flex; gap: 12px; flex-wrap: wrap; }
  .figure { background: #fff; border: 1px solid #d9dde3; border-radius: 6px; padding: 6px 12px; min-width: 110px; }
  .figure .value { font-size: 18px; font-weight: 600; }
  .figure .label { font-size: 12px; color: #5b6472; }
  .search { margin: 16px 0 8px; display: flex; gap: 8px; }
  .search input { flex: 1; padding: 6px 8px; font-size: 14px; }
  .presentities { columns: 3; padding-left: 18px; }
  section.event { background: #fff; border: 1px solid #d9dde3; border-radius: 6px; padding: 8px 16px; margin: 12px 0; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; vertical-align: top; padding: 4px 8px; border-bottom: 1px solid #eceef1; }
  pre { margin: 0; white-space: pre-wrap; word-break: break-all; font-size: 12px; max-height: 240px; overflow: auto; }
  .state { font-weight: 600; }
  .empty { color: #5b6472; }
  .error { color: #a01c1c; }
</style>
</head>
<body>
<div id="app">loading…</div>
<script type="module" src="app.js"></script>
</body>
</html>
`;
