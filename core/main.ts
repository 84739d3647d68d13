#!/usr/bin/env node
/**
 * `presenced [--config FILE]`: validate the configuration, start the node, stop cleanly on
 * SIGINT/SIGTERM. A configuration error exits with status 2 and a message naming the key.
 */
import { loadConfig, ConfigError } from './config.js';
import { createLogger } from './log.js';
import { PresenceNode } from './node.js';
import { VERSION } from './version.js';
import { rpcCommand } from './cli.js';
import { isOrphanCommitFailure } from './store/store.js';
import { ListenError } from '../transport/listen.js';

function usage(): never {
  process.stderr.write(
    'usage: presenced [--config FILE] [--version]\n       presenced rpc [--url URL | --config FILE | --cluster FILE] METHOD [PARAM ...]\n',
  );
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'rpc') {
    process.exitCode = await rpcCommand(argv.slice(1));
    return;
  }
  let configPath: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') {
      configPath = argv[++i];
      if (configPath === undefined) usage();
    } else if (a.startsWith('--config=')) configPath = a.slice('--config='.length);
    else if (a === '--version' || a === '-v') {
      process.stdout.write(`presenced ${VERSION}\n`);
      return;
    } else usage();
  }

  let config: Awaited<ReturnType<typeof loadConfig>>;
  try {
    config = await loadConfig(configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`presenced: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.log_level);
  // Every unhandled rejection still ends the process (Node's default), except lmdb-js's orphan
  // batch-start write of a failed commit (store.ts): the store has already turned that failure into
  // 503s for the writes that were in it, and stays up (issue 12, a full disk).
  process.on('unhandledRejection', (reason) => {
    if (isOrphanCommitFailure(reason)) return;
    throw reason;
  });
  const node = new PresenceNode(config, log);
  try {
    await node.start();
  } catch (err) {
    await node.stop().catch(() => undefined);
    if (err instanceof ConfigError) {
      process.stderr.write(`presenced: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    // A listener that cannot be bound (a port in use, an address not of this host) is a
    // configuration error like any other: exit 2, naming the key.
    if (err instanceof ListenError) {
      process.stderr.write(`presenced: configuration error: ${err.setting}: ${err.message}\n`);
      process.exit(2);
    }
    log.fatal({ err }, 'start failed');
    process.exit(1);
  }
  log.info({ version: VERSION, config: configPath ?? '(defaults)' }, 'presenced ready');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    node
      .stop()
      .then(() => {
        log.info({}, 'stopped');
        log.flush?.();
        process.exit(0);
      })
      .catch((err) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`presenced: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
