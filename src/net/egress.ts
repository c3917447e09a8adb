import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { WorkerError, isWorkerError } from '../errors';

/**
 * Where a tenant may make the worker connect. A tenant chooses its SMTP host (and, where the
 * platform allows endpoint overrides, a provider's base URL); without a check, that is a way to
 * make the worker talk to the database, the cluster's internal services or the cloud metadata
 * endpoint (SSRF). The check runs on the *resolved* addresses, at save time (admin API, CLI)
 * and again when the worker connects, so a name that later re-resolves inward is refused too.
 */
export interface EgressPolicy {
  /** ALLOW_PRIVATE_SMTP_HOSTS: loopback and private ranges are allowed (dev, an in-cluster relay). */
  readonly allowPrivate: boolean;
  /** SMTP_ALLOWED_HOSTS: host names (exact) and IP addresses/CIDRs a tenant may always use. */
  readonly allowedHosts: readonly string[];
}

/** Private and loopback ranges: allowed with ALLOW_PRIVATE_SMTP_HOSTS. */
const PRIVATE = new BlockList();
/** Link-local (cloud metadata lives here), unspecified, multicast, reserved: only by SMTP_ALLOWED_HOSTS. */
const NEVER = new BlockList();
for (const [net, bits] of [['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['192.0.0.0', 24], ['198.18.0.0', 15]] as const) PRIVATE.addSubnet(net, bits, 'ipv4');
// fc00::/7 unique local; 64:ff9b:1::/48 local-use NAT64 (RFC 8215: the IPv4 address may sit anywhere in it).
for (const [net, bits] of [['::1', 128], ['fc00::', 7], ['64:ff9b:1::', 48]] as const) PRIVATE.addSubnet(net, bits, 'ipv6');
for (const [net, bits] of [['0.0.0.0', 8], ['169.254.0.0', 16], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) NEVER.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [['::', 128], ['fe80::', 10], ['ff00::', 8], ['fd00:ec2::254', 128]] as const) NEVER.addSubnet(net, bits, 'ipv6');

export type AddressClass = 'public' | 'private' | 'forbidden';

/** The eight 16-bit groups of an IPv6 address, in any notation (the URL parser canonicalises it). */
function ipv6Groups(ip: string): number[] | null {
  let host: string;
  try {
    host = new URL(`http://[${ip}]/`).hostname.slice(1, -1); // dotted tails become hex: ::ffff:7f00:1
  } catch {
    return null;
  }
  const [head, tail] = host.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.length === 8 ? groups.map((g) => parseInt(g, 16)) : null;
}

/**
 * The IPv4 address an IPv6 address carries, in every form a connection can reach it through:
 * IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), IPv4-compatible
 * (::a.b.c.d, deprecated but still routed by some stacks), NAT64's well-known prefix
 * (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::). Any notation: dotted or hex, compressed or not.
 */
export function embeddedIpv4(ip: string): string | null {
  const g = ipv6Groups(ip);
  if (!g) return null;
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  if (zero(0, 5) && g[5] === 0xffff) return v4(g[6]!, g[7]!);
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) return v4(g[6]!, g[7]!);
  if (zero(0, 6) && !(g[6] === 0 && g[7]! <= 1)) return v4(g[6]!, g[7]!); // :: and ::1 stay IPv6
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return v4(g[6]!, g[7]!);
  if (g[0] === 0x2002) return v4(g[1]!, g[2]!);
  return null;
}

/** The class of one IP address. An IPv6 address that carries an IPv4 one is judged by the IPv4 address. */
export function classifyAddress(address: string): AddressClass {
  let ip = address.replace(/^\[|\]$/g, '').toLowerCase();
  const zone = ip.indexOf('%');
  if (zone >= 0) ip = ip.slice(0, zone);
  const family = isIP(ip);
  if (family === 0) return 'forbidden';
  if (family === 6) {
    const v4 = embeddedIpv4(ip);
    if (v4) return classifyAddress(v4);
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (NEVER.check(ip, type)) return 'forbidden';
  if (PRIVATE.check(ip, type)) return 'private';
  return 'public';
}

/**
 * A refused destination, as the WorkerError its callers answer with, in words safe for an answer
 * or a log (no addresses of other tenants): `destination_forbidden` when it resolves to an
 * address the policy refuses, `provider_network` when it does not resolve. The same object
 * fails a connection through the policy's lookup, so the SDKs' errors carry it as their cause.
 */
function refused(host: string, reason: 'internal' | 'unresolvable'): WorkerError {
  return reason === 'internal'
    ? new WorkerError('destination_forbidden', `${host} resolves to a loopback, private, link-local or metadata address, which this platform does not allow (SMTP_ALLOWED_HOSTS, ALLOW_PRIVATE_SMTP_HOSTS)`, { detail: { code: 'egress_internal' } })
    : new WorkerError('provider_network', `${host} could not be resolved`, { detail: { code: 'egress_unresolvable' } });
}

/** Why the egress policy refused a destination, when `err` is its refusal; null for any other error. */
export function refusalReason(err: unknown): 'internal' | 'unresolvable' | null {
  if (!isWorkerError(err)) return null;
  return err.detail?.code === 'egress_internal' ? 'internal' : err.detail?.code === 'egress_unresolvable' ? 'unresolvable' : null;
}

type Resolver = (host: string) => Promise<string[]>;

const systemResolver: Resolver = (host) =>
  new Promise((resolve, reject) => {
    dnsLookup(host, { all: true, verbatim: true }, (err, addresses: LookupAddress[]) => (err ? reject(err) : resolve(addresses.map((a) => a.address))));
  });

/** Decides, for one policy, which host names and addresses a tenant may reach. */
export class Egress {
  private readonly names: ReadonlySet<string>;
  private readonly allowed = new BlockList();

  constructor(
    readonly policy: EgressPolicy,
    private readonly resolver: Resolver = systemResolver,
  ) {
    const names = new Set<string>();
    for (const entry of policy.allowedHosts) {
      // The same normalisation as the host being checked, so `relay.example.` lists `relay.example`.
      const e = normaliseHost(entry);
      // An address or a range; IPv6 may be bracketed, before or around its prefix: [fd00::]/8.
      const ip = /^\[?([0-9a-f:.]+)\]?(?:\/(\d{1,3}))?$/.exec(e);
      const family = ip ? isIP(ip[1]!) : 0;
      if (ip && family !== 0) {
        const bits = ip[2] === undefined ? (family === 4 ? 32 : 128) : Number(ip[2]);
        this.allowed.addSubnet(ip[1]!, bits, family === 4 ? 'ipv4' : 'ipv6'); // throws when bits is out of range
      } else if (e.includes('/')) {
        // A range whose address is not one (10.0.0/8) would otherwise become a name that never matches.
        throw new RangeError(`not a CIDR: ${e}`);
      } else {
        names.add(e);
      }
    }
    this.names = names;
  }

  /** Whether the worker may connect to this address (already resolved). */
  addressAllowed(address: string): boolean {
    const cls = classifyAddress(address);
    if (cls === 'public') return true;
    const ip = address.replace(/^\[|\]$/g, '');
    const family = isIP(ip);
    if (family !== 0 && this.allowed.check(ip, family === 4 ? 'ipv4' : 'ipv6')) return true;
    return cls === 'private' && this.policy.allowPrivate;
  }

  /** A host name the platform listed by name is trusted whatever it resolves to (an in-cluster relay). */
  nameAllowed(host: string): boolean {
    return this.names.has(normaliseHost(host));
  }

  /**
   * A `lookup` for sockets (node:net, http(s).Agent, undici's connector): the name is resolved
   * through this policy, so the connection goes to an address that was checked, with no second
   * resolution in between for a rebinding name to change its answer. A refusal fails the
   * connection with the refusal (refusalReason says which).
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.check(hostname).then(
      (addresses) => {
        const family = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0;
        const all = addresses.map((address) => ({ address, family: isIP(address) })).filter((a) => family === 0 || a.family === family);
        if (all.length === 0) {
          callback(Object.assign(new Error(`${hostname} has no IPv${family} address`), { code: 'ENOTFOUND' }), '', 0);
          return;
        }
        if (options.all) (callback as (err: null, addresses: typeof all) => void)(null, all);
        else callback(null, all[0]!.address, all[0]!.family);
      },
      (err: Error) => callback(err as NodeJS.ErrnoException, '', 0),
    );
  };

  /**
   * Resolve `host` and refuse it if any address it resolves to is not allowed (one bad address
   * is enough: the connection may pick any of them). Returns the allowed addresses.
   */
  async check(host: string): Promise<string[]> {
    const h = normaliseHost(host);
    if (h === 'localhost' || h.endsWith('.localhost')) {
      if (this.nameAllowed(h) || this.policy.allowPrivate) return ['127.0.0.1'];
      throw refused(host, 'internal');
    }
    if (isIP(h) !== 0) {
      if (this.nameAllowed(h) || this.addressAllowed(h)) return [h];
      throw refused(host, 'internal');
    }
    let addresses: string[];
    try {
      addresses = await this.resolver(h);
    } catch {
      throw refused(host, 'unresolvable');
    }
    if (this.nameAllowed(h)) return addresses;
    if (addresses.length === 0) throw refused(host, 'unresolvable');
    if (!addresses.every((a) => this.addressAllowed(a))) throw refused(host, 'internal');
    return addresses;
  }
}

function normaliseHost(host: string): string {
  return host.trim().toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
}

/** The host a tenant-chosen destination connects to: the SMTP host, or the host of an endpoint override URL. */
export function destinationHost(value: string): string | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return value;
  try {
    return new URL(value).hostname;
  } catch {
    return undefined;
  }
}
