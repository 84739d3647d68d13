/**
 * The layering of DESIGN.md ("Folders", and the layers of core/), as rules CI checks
 * (`npm run check:layers`, run by .ci/run before the tests). README "Architecture" explains them.
 *
 * Folders: transport/ imports nothing of core/ or workers/; workers/ nothing of transport/ and
 * of core/ only the store (records, read API); core/ imports workers/ only for types, except the
 * pool that runs the tasks.
 *
 * Inside core/, imports only go down this list (a layer may import its own and every lower one).
 */
const LAYERS = [
  ['base', '^core/(config|log|errors|ids|timers|uris|events|pool|metrics|version)\\.ts$'],
  ['store', '^core/store/'],
  ['dialogs', '^core/dialogs/'],
  ['state', '^core/state/'],
  ['packages', '^core/packages/'],
  ['notify', '^core/notify/'],
  ['authorization', '^core/authorization/'],
  ['sip', '^core/sip/'],
  ['xcap', '^core/xcap/'],
  ['rpc', '^core/rpc/'],
  ['rls', '^core/rls/'],
  ['node', '^core/node\\.ts$'],
  ['main', '^core/(main|cli)\\.ts$'],
];
/** Rank of each layer: sip/, xcap/, rpc/ and rls/ are one level, beside each other. */
const RANK = { base: 1, store: 2, dialogs: 3, state: 4, packages: 5, notify: 6, authorization: 7, sip: 8, xcap: 8, rpc: 8, rls: 8, node: 9, main: 10 };

const layerRules = [];
for (const [name, path] of LAYERS) {
  const above = LAYERS.filter(([other]) => RANK[other] > RANK[name]).map(([, p]) => p);
  if (above.length > 0) {
    layerRules.push({
      name: `core-${name}-imports-only-down`,
      comment: `core/ ${name} may import only its own layer and the ones below it (DESIGN.md, core/ layers)`,
      severity: 'error',
      from: { path },
      to: { path: above },
    });
  }
  // The handlers of one level do not call each other: the composition root hands each what it needs.
  const peers = LAYERS.filter(([other]) => other !== name && RANK[other] === RANK[name]).map(([, p]) => p);
  if (peers.length > 0) {
    layerRules.push({
      name: `core-${name}-not-its-peers`,
      comment: `core/ ${name} does not import the other handlers of its level (${peers.join(', ')})`,
      severity: 'error',
      from: { path },
      to: { path: peers },
    });
  }
}

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle means a layer is missing (DESIGN.md)',
      severity: 'error',
      from: { path: '^(core|transport|workers)/' },
      to: { circular: true },
    },
    {
      name: 'transport-knows-no-presence',
      comment: 'transport/ is a SIP stack that knows nothing of presence: nothing of core/ or workers/',
      severity: 'error',
      from: { path: '^transport/' },
      to: { path: '^(core|workers)/' },
    },
    {
      name: 'workers-no-transport',
      comment: 'workers/ are pure functions over XML and store keys: nothing of transport/',
      severity: 'error',
      from: { path: '^workers/' },
      to: { path: '^transport/' },
    },
    {
      name: 'workers-only-store-of-core',
      comment: 'workers/ import of core/ only the record types and the store read API',
      severity: 'error',
      from: { path: '^workers/' },
      to: { path: '^core/', pathNot: '^core/store/(records|store|interfaces)\\.ts$' },
    },
    {
      name: 'core-workers-types-only',
      comment: 'core/ imports workers/ only for task names and message types (and the namespace URIs both speak); the pool alone runs tasks',
      severity: 'error',
      from: { path: '^core/', pathNot: '^core/pool\\.ts$' },
      to: { path: '^workers/', pathNot: '^workers/namespaces\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'nothing-imports-the-composition-root',
      comment: 'core/node.ts builds the node; only main.ts may import it (tests and benchmarks start it as a process or through main)',
      severity: 'error',
      from: { path: '^(core|transport|workers)/', pathNot: '^core/main\\.ts$' },
      to: { path: '^core/node\\.ts$' },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
