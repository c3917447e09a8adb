import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  username: string | undefined;
  envelope: { from: string; to: string[] };
  parsed: ParsedMail;
}

export interface FakeSmtp {
  port: number;
  received: ReceivedMail[];
  /** Connections opened by clients (a pooled transport reuses them). */
  connections: number;
  /** Connections open right now. */
  openConnections(): number;
  /** Return an SMTP reply code to refuse the recipient (4xx defer, 5xx reject). */
  rejectRecipient: number | undefined;
  close(): Promise<void>;
}

/** A real SMTP server (smtp-server) on 127.0.0.1 with AUTH, for nodemailer to talk to. */
export async function startFakeSmtp(users: Record<string, string>): Promise<FakeSmtp> {
  const fake: FakeSmtp = { port: 0, received: [], connections: 0, openConnections: () => 0, rejectRecipient: undefined, close: async () => {} };
  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    onConnect(_session, cb) {
      fake.connections++;
      cb();
    },
    onAuth(auth, _session, cb) {
      if (auth.username && users[auth.username] === auth.password) return cb(null, { user: auth.username });
      const err = Object.assign(new Error('Invalid username or password'), { responseCode: 535 });
      return cb(err);
    },
    onRcptTo(_address, _session, cb) {
      if (fake.rejectRecipient) return cb(Object.assign(new Error('recipient refused'), { responseCode: fake.rejectRecipient }));
      return cb();
    },
    onData(stream, session, cb) {
      simpleParser(stream)
        .then((parsed) => {
          fake.received.push({
            username: session.user as string | undefined,
            envelope: { from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address) },
            parsed,
          });
          cb();
        })
        .catch(cb);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  fake.port = (server.server.address() as AddressInfo).port;
  fake.openConnections = () => (server as unknown as { connections: Set<unknown> }).connections.size;
  fake.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return fake;
}
