/**
 * A test UA run as its own process, so that it can live in a network namespace
 * (`ip netns exec NS node netns-ua.js '<json>'`): it subscribes to a node, takes the Contact of
 * the 200 and of the first NOTIFY, sends an in-dialog refresh to that Contact (as a proxy would
 * route it), and prints what it saw as one JSON line; then, if asked, one line per further
 * NOTIFY of the dialog (e.g. from the same node restarted on the same store).
 */
import { TestUa, type UaProto } from './sip-ua.js';
import { subscribe } from './presence.js';

export interface NetnsUaTask {
  proto: UaProto;
  server: string;
  serverPort: number;
  local: string;
  presentity: string;
  /** Send the refresh to the Contact of the 200 (false when it names an address that is not reachable, e.g. advertised). */
  refresh: boolean;
  /** Further NOTIFYs to wait for and report (one line each), after the first report. */
  moreNotifies?: number;
}

/** One further NOTIFY. */
export interface NetnsNotifyReport {
  contact: string;
  via: string;
  subscriptionState: string;
}

export interface NetnsUaReport {
  status: number;
  contact: string;
  notifyContact: string;
  notifyVia: string;
  /** Status of the in-dialog refresh sent to the 200's Contact. */
  refreshStatus?: number;
}

const print = (line: object): void => {
  process.stdout.write(JSON.stringify(line) + '\n');
};

async function main(task: NetnsUaTask): Promise<void> {
  const ua = await TestUa.open(task.proto, task.serverPort, undefined, { server: task.server, local: task.local });
  try {
    const { res, dialog } = await subscribe(ua, task.presentity, { expires: 120 });
    const notify = await dialog.nextNotify();
    const report: NetnsUaReport = {
      status: res.status,
      contact: res.headers.get('contact') ?? '',
      notifyContact: notify.headers.get('contact') ?? '',
      notifyVia: notify.headers.get('via') ?? '',
    };
    if (task.refresh) {
      const m = /^<?sips?:[^@>]+@([^:;>]+):(\d+)/.exec(report.contact);
      if (!m) throw new Error(`no host:port in the Contact ${report.contact}`);
      ua.serverHost = m[1]!;
      ua.serverPort = Number(m[2]);
      if (task.proto !== 'udp') await ua.connect();
      report.refreshStatus = (await dialog.request(120)).status;
    }
    print(report);
    for (let i = 0; i < (task.moreNotifies ?? 0); i++) {
      // However long the test takes to restart the node: it ends this process if it gives up.
      const n = await dialog.nextNotify(60_000);
      print({
        contact: n.headers.get('contact') ?? '',
        via: n.headers.get('via') ?? '',
        subscriptionState: n.headers.get('subscription-state') ?? '',
      });
    }
  } finally {
    await ua.close();
  }
}

main(JSON.parse(process.argv[2] ?? '{}') as NetnsUaTask).then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
