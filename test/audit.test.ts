// eslint-disable-next-line @typescript-eslint/no-require-imports
const { judge, acceptedIds } = require('../scripts/audit.js') as {
  judge: (report: unknown, accepted: Set<string>) => { verdict: string; message: string };
  acceptedIds: (md: string) => Set<string>;
};

describe('npm run audit', () => {
  const advisory = (id: string) => ({ source: 1, name: 'x', url: `https://github.com/advisories/${id}`, severity: 'high' });
  const report = { vulnerabilities: { axios: { severity: 'high', via: [advisory('GHSA-wf5p-g6vw-rhxx')] }, 'follow-redirects': { severity: 'moderate', via: ['axios'] } } };

  it('fails on an advisory SECURITY.md does not justify, naming package, severity and id', () => {
    const r = judge(report, new Set());
    expect(r.verdict).toBe('fail');
    expect(r.message).toContain('axios high: GHSA-wf5p-g6vw-rhxx');
  });

  it('passes when every advisory is accepted in the Dependencies section', () => {
    const accepted = acceptedIds('# Security\n## Dependencies\nAccepted advisories:\n- GHSA-wf5p-g6vw-rhxx: not reachable, we never pass user URLs to axios\n## Other\nGHSA-aaaa-bbbb-cccc\n');
    expect([...accepted]).toEqual(['GHSA-wf5p-g6vw-rhxx']);
    // The transitive entry (via: ["axios"]) carries no id of its own; it is covered by axios's.
    expect(judge(report, accepted).verdict).toBe('pass');
    expect(judge({ vulnerabilities: { ...report.vulnerabilities, pino: { severity: 'low', via: [advisory('GHSA-2222-3333-4444')] } } }, accepted)).toEqual({ verdict: 'fail', message: expect.stringContaining('pino low: GHSA-2222-3333-4444') });
  });

  it('says plainly when the advisory service is unavailable, without a verdict', () => {
    const r = judge({ statusCode: 405, uri: 'https://registry.npmjs.org/-/npm/v1/security/advisories/bulk' }, new Set());
    expect(r).toEqual({ verdict: 'unavailable', message: expect.stringMatching(/advisory service unavailable \(405/) });
  });

  it('passes a clean report', () => {
    expect(judge({ vulnerabilities: {}, metadata: { vulnerabilities: { total: 0 } } }, new Set()).verdict).toBe('pass');
  });
});
