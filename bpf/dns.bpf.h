/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * dns.bpf.h — DNS answers delivered to local processes, for names of
 * remote addresses. A cgroup_skb ingress program on the cgroup v2 root sees
 * every packet just before a local socket receives it, with skb->sk that
 * socket: packets from port 53 (UDP, and TCP segments with payload) have
 * their first SNOOP_DNS_CAP payload bytes copied into a record with the
 * socket's owner (from the cookie map, never the current task: this can
 * run in softirq). Every other packet costs the port check only. User
 * space parses the answer and keeps names, addresses and TTLs; nothing
 * else of the payload reaches the trace.
 */

#define SNOOP_DNS_PORT 53

/* Copy `n` bytes (a constant) of payload when `cap` has that bit: each
 * read has a constant size and a bounded destination, which every
 * verifier accepts. */
#define SNOOP_DNS_PIECE(n)                                                          \
	if (cap & (n)) {                                                            \
		if (pos > SNOOP_DNS_CAP - (n))                                      \
			goto done;                                                  \
		if (bpf_skb_load_bytes(skb, off + pos, d->data + pos, (n)))         \
			goto done;                                                  \
		pos += (n);                                                         \
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

	struct snoop_dns *d = snoop_reserve(sizeof(*d), SNOOP_KIND_DNS);

	if (!d)
		return 1;
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

	__u32 pos = 0;

	SNOOP_DNS_PIECE(512)
	SNOOP_DNS_PIECE(256)
	SNOOP_DNS_PIECE(128)
	SNOOP_DNS_PIECE(64)
	SNOOP_DNS_PIECE(32)
	SNOOP_DNS_PIECE(16)
	SNOOP_DNS_PIECE(8)
	SNOOP_DNS_PIECE(4)
	SNOOP_DNS_PIECE(2)
	SNOOP_DNS_PIECE(1)
done:
	d->len = pos;
	snoop_submit(d);
	return 1;
}
