import { createSign, randomUUID } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { generate } from 'selfsigned';
import { keyId } from '../../src/config';
import type { Sql } from '../../src/db/connect';
import { putSettings } from '../../src/db/settings';
import { createTestDatabase, type TestDatabase } from '../helpers/db';
import { binaryEvent, post, taskData } from '../helpers/events';
import { PROVIDER_ROUTES, startFakeApi, type FakeApi } from '../helpers/fakeApi';
import { captureLogs } from '../helpers/logCapture';
import { CANARY_DB_KEY, startTestWorker } from '../helpers/worker';

const KEY = { id: keyId(CANARY_DB_KEY), secret: CANARY_DB_KEY };
const JWT_SECRET = 'ses-webhook-jwt-secret-for-tests-0123456789ab';
const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:ses-events';

/**
 * Amazon SES events through SNS: messages signed (SignatureVersion 1 and 2) with a test
 * certificate served over HTTPS by a local "SNS host" that only this suite's SNS_CERT_HOST_PATTERN
 * allows; the worker fetches the certificate and visits the SubscribeURL through node's https
 * client, which trusts the test CA here (and AWS's public CAs in production).
 */
describe('SES webhook through SNS', () => {
  let db: TestDatabase;
  let ses: FakeApi;
  let snsHost: https.Server;
  let snsBase: string;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let su: Sql;
  let admin: string;
  let privateKey: string;
  const confirmations: string[] = [];
  const logs = captureLogs();
  const savedCa = https.globalAgent.options.ca;

  const sign = (m: Record<string, string>, version: "1" | "2"): Record<string, string> => {
    const keys = m.Type === 'Notification' ? ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type'] : ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];
    const s = createSign(version === '1' ? 'RSA-SHA1' : 'RSA-SHA256');
    for (const k of keys) if (k in m) s.update(`${k}\n${m[k]}\n`);
    return { ...m, SignatureVersion: version, SigningCertURL: `${snsBase}/SimpleNotificationService-test.pem`, Signature: s.sign(privateKey, 'base64') };
  };
  const notification = (sesEvent: unknown, topic = TOPIC) => ({ Type: 'Notification', MessageId: randomUUID(), TopicArn: topic, Message: JSON.stringify(sesEvent), Timestamp: new Date().toISOString() });
  const hook = (body: unknown) => fetch(new URL('/api/v1/webhooks/ses/acme', worker.url), { method: 'POST', headers: { 'content-type': 'text/plain; charset=UTF-8', 'x-amz-sns-message-type': 'Notification' }, body: JSON.stringify(body) });
  const adminCall = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(new URL(`/api/v1/admin/tenants/${path}`, worker.url), { method, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, json: await res.json().catch(() => null) };
  };
  const sendOne = async (to: string) => {
    const id = `evt-${randomUUID()}`;
    expect((await post(worker.url, binaryEvent({ tenant: 'acme', id, data: taskData({ notify_email: to }) }))).status).toBe(202);
    return (await su`SELECT message_id FROM email_deliveries WHERE tenant_id = 'acme' AND event_id = ${id}`)[0]!.message_id as string;
  };
  const status = async (messageId: string) => (await su`SELECT delivery_status, bounce_type FROM email_deliveries WHERE tenant_id = 'acme' AND message_id = ${messageId}`)[0];

  beforeAll(async () => {
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }] }],
    });
    privateKey = pems.private;
    snsHost = https.createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
      if (req.url?.endsWith('.pem')) {
        res.writeHead(200, { 'content-type': 'application/x-pem-file' }).end(pems.cert);
      } else if (req.url?.startsWith('/confirm')) {
        confirmations.push(req.url);
        res.writeHead(200, { 'content-type': 'text/xml' }).end('<ConfirmSubscriptionResponse/>');
      } else res.writeHead(404).end();
    });
    await new Promise<void>((r) => snsHost.listen(0, 'localhost', () => r()));
    snsBase = `https://localhost:${(snsHost.address() as AddressInfo).port}`;
    // The worker runs in this process: its https client trusts the test CA for this suite only.
    https.globalAgent.options.ca = [pems.cert];

    db = await createTestDatabase();
    su = db.admin();
    ses = await startFakeApi(PROVIDER_ROUTES.ses);
    await putSettings(db.worker(1), { current: KEY }, 'acme', {
      provider: 'ses', api_key: 'CANARY-ses-secret-key-000000', from_email: 'noreply@acme.example', enabled: true, daily_limit: 100,
      provider_settings: { region: 'eu-west-1', access_key_id: 'AKIACANARY000000', endpoint: ses.url },
    });
    worker = await startTestWorker(db, logs.logger, { ADMIN_JWT_SECRET: JWT_SECRET, SNS_CERT_HOST_PATTERN: '^localhost:\\d+$', SMTP_ALLOWED_HOSTS: 'localhost' });
    admin = await new SignJWT({ role: 'platform_admin', sub: 'ops' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(new TextEncoder().encode(JWT_SECRET));
    expect((await adminCall('PUT', 'acme/email-webhooks/ses', { topic_arns: [TOPIC] })).status).toBe(201);
  });
  afterAll(async () => {
    https.globalAgent.options.ca = savedCa;
    await worker.shutdown();
    await ses.close();
    await new Promise((r) => snsHost.close(r));
    await db.drop();
  });

  it('confirms a subscription to a registered topic by visiting its SubscribeURL on the SNS host', async () => {
    const m = sign({ Type: 'SubscriptionConfirmation', MessageId: randomUUID(), Token: 'tok-1', TopicArn: TOPIC, Message: 'confirm', SubscribeURL: `${snsBase}/confirm?Token=tok-1`, Timestamp: new Date().toISOString() }, '2');
    const res = await hook(m);
    expect(res.status).toBe(200);
    expect(confirmations).toEqual(['/confirm?Token=tok-1']);
  });

  it('refuses a SubscribeURL that is not on an SNS host, and visits nothing', async () => {
    const m = sign({ Type: 'SubscriptionConfirmation', MessageId: randomUUID(), Token: 'tok-2', TopicArn: TOPIC, Message: 'confirm', SubscribeURL: 'https://169.254.169.254/latest/meta-data/', Timestamp: new Date().toISOString() }, '2');
    expect((await hook(m)).status).toBe(401);
    expect(confirmations).toHaveLength(1);
  });

  it.each(['1', '2'] as const)('applies an SES event-publishing Bounce signed with SignatureVersion %s and suppresses the address', async (version) => {
    const to = `gone-v${version}@ses.example`;
    const messageId = await sendOne(to);
    const event = { eventType: 'Bounce', mail: { messageId, destination: [to] }, bounce: { bounceType: 'Permanent', bounceSubType: 'General', bouncedRecipients: [{ emailAddress: to, diagnosticCode: 'smtp; 550 5.1.1 user unknown' }], timestamp: new Date().toISOString() } };
    const res = await hook(sign(notification(event), version));
    expect(res.status).toBe(200);
    expect(await status(messageId)).toEqual({ delivery_status: 'bounced', bounce_type: 'hard' });
    expect((await su`SELECT reason FROM email_suppressions WHERE tenant_id = 'acme' AND address = ${to}`)[0]).toEqual({ reason: 'hard_bounce' });
    const before = ses.accepted.length;
    expect((await post(worker.url, binaryEvent({ tenant: 'acme', data: taskData({ notify_email: to }) }))).status).toBe(202);
    expect(ses.accepted.length).toBe(before);
  });

  it('reads identity notifications (notificationType) too', async () => {
    const messageId = await sendOne('fine@ses.example');
    const res = await hook(sign(notification({ notificationType: 'Delivery', mail: { messageId }, delivery: { recipients: ['fine@ses.example'], timestamp: new Date().toISOString() } }), '2'));
    expect(res.status).toBe(200);
    expect(await status(messageId)).toEqual({ delivery_status: 'delivered', bounce_type: null });
  });

  it('refuses a tampered message (401) and a topic the tenant did not register (403), writing nothing', async () => {
    const messageId = await sendOne('safe@ses.example');
    const complaint = { eventType: 'Complaint', mail: { messageId }, complaint: { complainedRecipients: [{ emailAddress: 'safe@ses.example' }], timestamp: new Date().toISOString() } };
    const signed = sign(notification(complaint), '2');
    const tampered = { ...signed, Message: signed.Message!.replace('Complaint', 'Delivery') };
    expect((await hook(tampered)).status).toBe(401);
    const other = await hook(sign(notification(complaint, 'arn:aws:sns:eu-west-1:999999999999:someone-else'), '2'));
    expect(other.status).toBe(403);
    expect(((await other.json()) as { code: string }).code).toBe('webhook_forbidden');
    const wrongHost = { ...signed, SigningCertURL: 'https://attacker.example/cert.pem' };
    expect((await hook(wrongHost)).status).toBe(401);
    expect(await status(messageId)).toEqual({ delivery_status: null, bounce_type: null });
    expect(await su`SELECT 1 FROM email_suppressions WHERE tenant_id = 'acme' AND address = 'safe@ses.example'`).toHaveLength(0);
  });
});
