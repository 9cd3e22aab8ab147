/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * dns.bpf.h — DNS answers delivered to local processes, for names of
 * remote addresses: packets from port 53 (UDP, and TCP segments with
 * payload) to a local socket have their first SNOOP_DNS_CAP payload bytes
 * copied into a record with the socket's owner (from the cookie map,
 * never the current task: both places below run in softirq). User space
 * parses the answer and keeps names, addresses and TTLs; nothing else of
 * the payload reaches the trace.
 *
 * Two places read them, never both in one recording:
 * - with packets recorded, the packets group's receive program
 *   (snoop_netif_receive, pkt.bpf.h) calls snoop_dns_rx, which costs every
 *   other packet one port compare: the program runs per received packet
 *   anyway, and this is the cheap place;
 * - without it (--packets=off, or that group refused), the cgroup_skb
 *   ingress program snoop_dns_ingress on the cgroup v2 root, which runs for
 *   every packet a local socket receives (its only work is the port check
 *   for all but port 53).
 */

#define SNOOP_DNS_PORT 53

/* An skb dynptr reads past the linear data (the kfunc is in Linux 6.4;
 * tp_btf programs may call it on kernels from about 6.12). Weak, so a
 * kernel without it refuses only the program that calls it, not the
 * whole object. */
extern int bpf_dynptr_from_skb(struct __sk_buff *s, __u64 flags,
			       struct bpf_dynptr *ptr__uninit) __ksym __weak;

/* A reserved DNS record with everything but the payload filled in. */
static __always_inline struct snoop_dns *snoop_dns_reserve(__u8 proto, __u32 seq, __u64 cookie,
							   const struct snoop_owner *o)
{
	struct snoop_dns *d = snoop_reserve(sizeof(*d), SNOOP_KIND_DNS);

	if (!d)
		return NULL;
	d->kind = SNOOP_KIND_DNS;
	d->proto = proto;
	d->seq = seq;
	d->ts_ns = bpf_ktime_get_boot_ns();
	d->cookie = cookie;
	if (o) {
		d->pid = o->pid;
		d->tid = o->tid;
		__builtin_memcpy(d->comm, o->comm, sizeof(d->comm));
	} else {
		d->pid = 0;
		d->tid = 0;
		__builtin_memset(d->comm, 0, sizeof(d->comm));
	}
	return d;
}

/* Copy `cap` (<= SNOOP_DNS_CAP) bytes in constant-size pieces, each read
 * by `read(dst, n, pos)` into d->data + pos with a bounded destination,
 * which every verifier accepts; stops at the first read that fails. */
#define SNOOP_DNS_COPY(d, cap, pos, read)                                           \
	do {                                                                        \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 512)                           \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 256)                           \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 128)                           \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 64)                            \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 32)                            \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 16)                            \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 8)                             \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 4)                             \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 2)                             \
		SNOOP_DNS_PIECE_OF(d, cap, pos, read, 1)                             \
	} while (0)
#define SNOOP_DNS_PIECE_OF(d, cap, pos, read, n)                                    \
	if ((cap) & (n)) {                                                          \
		if ((pos) > SNOOP_DNS_CAP - (n))                                    \
			break;                                                      \
		if (read((d)->data + (pos), (n), (pos)))                            \
			break;                                                      \
		(pos) += (n);                                                       \
	}

/* A packet from port 53 seen at netif_receive_skb (the packets group's
 * receive program; skb->data is the L3 header at l3), before the stack
 * found its socket: `cookie` is the one snoop_flows names for the tuple
 * (snoop_rx_cookie, looked up once by the caller for this and the
 * packet's own record), with one more try here for an unbound client's
 * sendto() (learned with the wildcard local address and the resolver as
 * peer). A packet no known socket would take (forwarded,
 * to a closed port, to a socket snoop never saw) gives no record: only
 * answers delivered to a local process count, as at cgroup_skb ingress.
 * The payload is read through an skb dynptr, so a TCP segment whose
 * payload sits in page fragments (every TCP segment over loopback or
 * veth) is read whole; a kernel whose verifier refuses the dynptr here
 * refuses this program, and the recorder loads it again without this
 * part and reads DNS at cgroup_skb ingress instead. */
static __always_inline void snoop_dns_rx(struct sk_buff *skb, const void *l3, __u8 family,
					 __u8 proto, const __u8 raddr[16], __u16 lport, __u64 cookie)
{
	__u32 l4, l3len;

	if (proto != SNOOP_IPPROTO_UDP && proto != SNOOP_IPPROTO_TCP)
		return;
	if (family == SNOOP_AF_INET) {
		const struct iphdr *ip = bpf_core_cast(l3, struct iphdr);

		l4 = ip->ihl * 4;
		l3len = bpf_ntohs(ip->tot_len);
	} else {
		const struct ipv6hdr *ip6 = bpf_core_cast(l3, struct ipv6hdr);

		l4 = sizeof(struct ipv6hdr);
		l3len = l4 + bpf_ntohs(ip6->payload_len);
	}

	if (!cookie) {
		/* An unbound client's sendto(): learned with the wildcard
		 * local address and the resolver as peer. */
		struct snoop_flow_key k = {};
		__u64 *c;

		__builtin_memcpy(k.raddr, raddr, 16);
		k.lport = lport;
		k.rport = SNOOP_DNS_PORT;
		k.proto = proto;
		c = bpf_map_lookup_elem(&snoop_flows, &k);
		if (c)
			cookie = *c;
	}
	if (!cookie)
		return;
	struct snoop_owner *o = bpf_map_lookup_elem(&snoop_owners, &cookie);

	if (!snoop_owner_wanted(o))
		return;

	__u32 off, seq = 0;

	if (proto == SNOOP_IPPROTO_TCP) {
		const struct tcphdr *th = bpf_core_cast(l3 + l4, struct tcphdr);
		/* Data offset: the top 4 bits of the 16 bits from byte 12 (one
		 * load the verifier knows covers tcphdr's bitfields). */
		__u16 w = bpf_ntohs(*(const __u16 *)((const void *)th + 12));

		off = l4 + (w >> 12) * 4;
		seq = bpf_ntohl(th->seq);
	} else {
		off = l4 + sizeof(struct udphdr);
	}
	/* The IP length, not skb->len: at this point a short frame still
	 * carries its link-layer padding. */
	if (l3len > skb->len)
		l3len = skb->len;
	if (l3len <= off)
		return;
	__u32 cap = l3len - off;

	if (cap > SNOOP_DNS_CAP)
		cap = SNOOP_DNS_CAP;

	struct bpf_dynptr ptr;

	if (bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &ptr))
		return;

	struct snoop_dns *d = snoop_dns_reserve(proto, seq, cookie, o);

	if (!d)
		return;
	__u32 pos = 0;

#define SNOOP_DNS_READ_SKB(dst, n, at) bpf_dynptr_read(dst, n, &ptr, off + (at), 0)
	SNOOP_DNS_COPY(d, cap, pos, SNOOP_DNS_READ_SKB);
#undef SNOOP_DNS_READ_SKB
	d->len = pos;
	snoop_submit(d);
}

SEC("cgroup_skb/ingress")
int snoop_dns_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 l4;
	__u8 proto;
	__u8 sport[2];

	/* skb->data is the network header here. */
	if (skb->protocol == bpf_htons(SNOOP_ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > end)
			return 1;
		if (ip->frag_off & bpf_htons(0x1fff))
			return 1;
		proto = ip->protocol;
		l4 = (ip->ihl & 0xf) * 4;
	} else if (skb->protocol == bpf_htons(SNOOP_ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		if ((void *)(ip6 + 1) > end)
			return 1;
		proto = ip6->nexthdr;
		l4 = sizeof(struct ipv6hdr);
	} else {
		return 1;
	}
	if (proto != SNOOP_IPPROTO_UDP && proto != SNOOP_IPPROTO_TCP)
		return 1;
	/* Byte by byte through one pointer that the bounds check covers: no
	 * unaligned load at a variable offset (a strict-alignment verifier
	 * refuses it), and no offset recomputed from data that the check
	 * did not see. */
	__u8 *sp = (__u8 *)data + l4;

	if ((void *)(sp + 2) <= end) {
		sport[0] = sp[0];
		sport[1] = sp[1];
	} else if (bpf_skb_load_bytes(skb, l4, sport, 2)) {
		return 1;
	}
	if (sport[1] != SNOOP_DNS_PORT || sport[0] != 0)
		return 1;

	/* A packet from port 53: find its payload. */
	__u32 off, seq = 0;

	if (proto == SNOOP_IPPROTO_TCP) {
		struct tcphdr th;

		if (bpf_skb_load_bytes(skb, l4, &th, sizeof(th)))
			return 1;
		off = l4 + th.doff * 4;
		seq = bpf_ntohl(th.seq);
	} else {
		off = l4 + sizeof(struct udphdr);
	}
	if (skb->len <= off)
		return 1;
	__u32 cap = skb->len - off;

	if (cap > SNOOP_DNS_CAP)
		cap = SNOOP_DNS_CAP;

	__u64 cookie = bpf_get_socket_cookie(skb);
	struct snoop_owner *o = bpf_map_lookup_elem(&snoop_owners, &cookie);

	if (!snoop_owner_wanted(o))
		return 1;

	struct snoop_dns *d = snoop_dns_reserve(proto, seq, cookie, o);

	if (!d)
		return 1;
	__u32 pos = 0;

#define SNOOP_DNS_READ_CTX(dst, n, at) bpf_skb_load_bytes(skb, off + (at), dst, n)
	SNOOP_DNS_COPY(d, cap, pos, SNOOP_DNS_READ_CTX);
#undef SNOOP_DNS_READ_CTX
	d->len = pos;
	snoop_submit(d);
	return 1;
}
