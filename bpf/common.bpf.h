/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * common.bpf.h — maps, configuration and helpers shared by every concern
 * (messages, packets, connections, processes, iterators, interface capture).
 * Included once, by snoop.bpf.c, before the per-concern headers.
 */
#ifndef SNOOP_COMMON_BPF_H
#define SNOOP_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "snoop.h"

#define SNOOP_AF_INET 2
#define SNOOP_AF_INET6 10
#define SNOOP_IPPROTO_TCP 6
#define SNOOP_IPPROTO_UDP 17
#define SNOOP_MSG_PEEK 2
#define SNOOP_ETH_P_IP 0x0800
#define SNOOP_ETH_P_IPV6 0x86DD
#define SNOOP_TCP_ESTABLISHED 1
#define SNOOP_TCP_CLOSE 7
#define SNOOP_TCP_LISTEN 10
#define SNOOP_PACKET_OUTGOING 4

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by userspace through rodata before load. */
const volatile struct snoop_config snoop_cfg = {};
/* Wake the reader only when this many bytes wait in the ring (0: never
 * force; the reader polls on a timer anyway). */
const volatile __u64 snoop_wakeup_bytes = 0;
/* 1 when the TCP state hook is attached: it learns every TCP 5-tuple at
 * ESTABLISHED / LISTEN (and iter/tcp those open at start), so message
 * hooks need not learn it again. */
const volatile __u8 snoop_tcp_flows_learned = 0;
/* How often (records per CPU, minus one; a power of two minus one) to
 * check the ring's fill level against snoop_wakeup_bytes. */
const volatile __u64 snoop_wakeup_mask = 0;

/* Dummy instances so the skeleton generator emits the contract's types. */
struct snoop_msg snoop_dummy_msg = {};
struct snoop_msgs snoop_dummy_msgs = {};
struct snoop_pkt snoop_dummy_pkt = {};
struct snoop_conn snoop_dummy_conn = {};
struct snoop_proc snoop_dummy_proc = {};
struct snoop_dns snoop_dummy_dns = {};
struct snoop_owner snoop_dummy_owner = {};
struct snoop_flow_key snoop_dummy_flow_key = {};
struct snoop_peer snoop_dummy_peer = {};
struct snoop_config snoop_dummy_config = {};

struct snoop_counter {
	__u64 events;
	__u64 drops;
};
struct snoop_counter snoop_dummy_counter = {};

/* One ring buffer per CPU: records never contend for a shared ring's lock
 * and producer position across CPUs (measured: ~9% less time per program
 * run and ~4% more datagrams/s under load than one shared ring). Userspace
 * sizes the outer map to the possible CPUs, creates the rings and puts
 * them in after load; the template below only gives their type. */
struct snoop_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* resized by userspace before load */
	__type(key, __u32);
	__array(values, struct snoop_ring);
} snoop_rings SEC(".maps");

/* Per CPU, per record kind: records emitted and reserves that failed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SNOOP_KIND_MAX);
	__type(key, __u32);
	__type(value, struct snoop_counter);
} snoop_counters SEC(".maps");

/* Per CPU: records submitted (paces the ring fill-level checks). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} snoop_submits SEC(".maps");

/* Per CPU, per enum snoop_pressure_kind: map pressure events. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SNOOP_PRESSURE_MAX);
	__type(key, __u32);
	__type(value, __u64);
} snoop_pressure SEC(".maps");

/* tgid -> 1: processes selected by --pid / --comm / --follow. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} snoop_tracked SEC(".maps");

/* comm -> 1: names selected by --comm. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, char[SNOOP_COMM_LEN]);
	__type(value, __u8);
} snoop_comms SEC(".maps");

/* socket cookie -> owner, learned in process context only. Entries leave
 * at TCP_CLOSE and at socket release (UDP, or TCP already closed), so the
 * map holds live sockets. A plain hash, not an LRU: it never drops a live
 * socket's owner, and an insert into a full map fails and is counted
 * (SNOOP_PRESSURE_OWNER_FULL). An LRU's silent evictions needed a
 * per-socket mark to be counted, which cost ~2.8 us per short connection
 * (BENCHMARKS.md). Size set by userspace (--owner-map-entries). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct snoop_owner);
} snoop_owners SEC(".maps");

/* 5-tuple (as the socket sees it) -> socket cookie, for received packets. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct snoop_flow_key);
	__type(value, __u64);
} snoop_flows SEC(".maps");

/* tid -> peer address of the UDP datagram being sent/received. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct snoop_peer);
} snoop_peers SEC(".maps");

static __always_inline void snoop_pressure_inc(__u32 what)
{
	__u64 *n = bpf_map_lookup_elem(&snoop_pressure, &what);

	if (n)
		(*n)++;
}

/* Insert or replace the owner of a socket; counts an insert refused
 * because the owner map is full. */
static __always_inline void snoop_owner_put(__u64 cookie, const struct snoop_owner *o, __u64 flags)
{
	if (bpf_map_update_elem(&snoop_owners, &cookie, o, flags) == -7 /* E2BIG */)
		snoop_pressure_inc(SNOOP_PRESSURE_OWNER_FULL);
}

/* Count n records of a kind as emitted, or as dropped (a packet set or a
 * message batch is counted as the rows it holds). */
static __always_inline void snoop_count_n(__u32 kind, __u32 n, int dropped)
{
	struct snoop_counter *c = bpf_map_lookup_elem(&snoop_counters, &kind);

	if (!c)
		return;
	if (dropped)
		c->drops += n;
	else
		c->events += n;
}

static __always_inline void snoop_count(__u32 kind, int dropped)
{
	snoop_count_n(kind, 1, dropped);
}

/* This CPU's ring (NULL only if userspace did not fill the slot). A
 * program runs start to end on one CPU, so reserve and submit see the same
 * ring. */
static __always_inline void *snoop_ring(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&snoop_rings, &cpu);
}

/* Reserve a slot in this CPU's ring; counts a drop when it is full. */
static __always_inline void *snoop_reserve(__u64 size, __u32 kind)
{
	void *ring = snoop_ring();
	void *rec = ring ? bpf_ringbuf_reserve(ring, size, 0) : NULL;

	snoop_count(kind, rec == NULL);
	return rec;
}

/* Submit; wake the reader when the ring holds snoop_wakeup_bytes. Asking
 * the ring how full it is reads the consumer position the reader writes
 * (a cache miss across CPUs), so it is asked only every
 * snoop_wakeup_mask + 1 records of this CPU. */
static __always_inline __u64 snoop_wake_flags(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&snoop_submits, &zero);
	void *ring;

	if (snoop_wakeup_bytes && n && ((*n)++ & snoop_wakeup_mask) == 0 &&
	    (ring = snoop_ring()) &&
	    bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= snoop_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void snoop_submit(void *rec)
{
	bpf_ringbuf_submit(rec, snoop_wake_flags());
}

static __always_inline int snoop_tracking(void)
{
	return snoop_cfg.filter_pid || snoop_cfg.filter_comm;
}

static __always_inline int snoop_is_tracked(__u32 tgid)
{
	return bpf_map_lookup_elem(&snoop_tracked, &tgid) != NULL;
}

static __always_inline void snoop_track(__u32 tgid)
{
	__u8 one = 1;

	if (bpf_map_update_elem(&snoop_tracked, &tgid, &one, BPF_ANY))
		snoop_pressure_inc(SNOOP_PRESSURE_TRACKED_FULL);
}

/* Is the current task one we record? Process context only. A task whose
 * comm matches --comm joins the tracked set here, which also covers
 * processes that existed before recording started. */
static __always_inline int snoop_current_wanted(__u32 tgid)
{
	if (snoop_cfg.cgroup && bpf_get_current_cgroup_id() != snoop_cfg.cgroup)
		return 0;
	if (!snoop_tracking())
		return 1;
	if (snoop_is_tracked(tgid))
		return 1;
	if (snoop_cfg.filter_comm) {
		char comm[SNOOP_COMM_LEN] = {};

		bpf_get_current_comm(comm, sizeof(comm));
		if (bpf_map_lookup_elem(&snoop_comms, comm)) {
			snoop_track(tgid);
			return 1;
		}
	}
	return 0;
}

/* Is this (possibly unknown) socket owner one we record? */
static __always_inline int snoop_owner_wanted(const struct snoop_owner *o)
{
	if (snoop_cfg.cgroup && (!o || o->cgroup != snoop_cfg.cgroup))
		return 0;
	if (!snoop_tracking())
		return 1;
	if (!o)
		return 0;
	if (snoop_is_tracked(o->pid))
		return 1;
	/* An owner whose comm matches --comm but has not sent or received
	 * yet (e.g. a server before its first read). */
	if (snoop_cfg.filter_comm && bpf_map_lookup_elem(&snoop_comms, o->comm)) {
		snoop_track(o->pid);
		return 1;
	}
	return 0;
}

static __always_inline int snoop_port_ok(__u16 lport, __u16 rport)
{
	return !snoop_cfg.port || lport == snoop_cfg.port || rport == snoop_cfg.port;
}

static __always_inline int snoop_proto_ok(__u8 proto)
{
	return !snoop_cfg.proto || proto == snoop_cfg.proto;
}

static __always_inline int snoop_is_v4mapped(const __u8 a[16])
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/* -4 / -6: judged on the addresses, so v4-mapped traffic on an AF_INET6
 * socket counts as IPv4. */
static __always_inline int snoop_family_ok(__u8 family, const __u8 raddr[16])
{
	__u8 f = family;

	if (!snoop_cfg.family)
		return 1;
	if (family == SNOOP_AF_INET6 && snoop_is_v4mapped(raddr))
		f = SNOOP_AF_INET;
	return f == snoop_cfg.family;
}

/* IPv4 -> v4-mapped IPv6. The unspecified address 0.0.0.0 becomes :: (all
 * zero), so "no address" is the same 16 bytes for both families. */
static __always_inline void snoop_map_v4(__u8 out[16], __u32 be_addr)
{
	__u32 *w = (__u32 *)out;

	w[0] = 0;
	w[1] = 0;
	w[2] = be_addr ? bpf_htonl(0xffff) : 0;
	w[3] = be_addr;
}

/* Read family, addresses and ports of a socket (any sock_common). */
static __always_inline __u16 snoop_sk_addrs(const struct sock_common *skc, __u8 laddr[16],
					    __u8 raddr[16], __u16 *lport, __u16 *rport)
{
	/* Every caller holds a BTF pointer (tp_btf / iterator context), so
	 * these are direct loads (no helper call per field, CO-RE relocated
	 * all the same); the hot paths run this for every message. */
	__u16 family = skc->skc_family;

	if (family == SNOOP_AF_INET) {
		snoop_map_v4(laddr, skc->skc_rcv_saddr);
		snoop_map_v4(raddr, skc->skc_daddr);
	} else if (family == SNOOP_AF_INET6) {
		__builtin_memcpy(laddr, skc->skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(raddr, skc->skc_v6_daddr.in6_u.u6_addr8, 16);
	}
	*lport = skc->skc_num;
	*rport = bpf_ntohs(skc->skc_dport);
	return family;
}

static __always_inline void snoop_fill_owner_cur(struct snoop_owner *o, __u64 pid_tgid)
{
	o->pid = pid_tgid >> 32;
	o->tid = (__u32)pid_tgid;
	o->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

/* The hot paths read task and socket facts with direct (BTF) loads, not
 * helper calls: each helper call cost ~15-40 ns per message here
 * (measured with `benches/record/bpfcost.sh`), more than the loads. */

/* The task's comm, as bpf_get_current_comm copies it. The kernel keeps
 * comm NUL-padded; userspace zeroes anything after the first NUL anyway. */
static __always_inline void snoop_task_comm(char dst[SNOOP_COMM_LEN], const struct task_struct *t)
{
	__u64 *d = (__u64 *)dst;
	const __u64 *s = (const __u64 *)t->comm;

	d[0] = s[0];
	d[1] = s[1];
}

/* The task's cgroup v2 id, as bpf_get_current_cgroup_id computes it: the
 * kernfs id of the default hierarchy's cgroup of its css_set. */
static __always_inline __u64 snoop_task_cgroup(const struct task_struct *t)
{
	return t->cgroups->dfl_cgrp->kn->id;
}

/* A socket's cookie: the stored one once generated (every socket snoop
 * saw has one), the helper only the first time. */
static __always_inline __u64 snoop_sk_cookie(struct sock *sk)
{
	__u64 c = sk->__sk_common.skc_cookie.counter;

	return c ? c : bpf_get_socket_cookie(sk);
}

/* Is a snoop_flows entry of this kind kept (learned, and forgotten at
 * close)? The map serves two readers: received packets (every tuple) and
 * a passively opened connection's owner before accept() (its listener's
 * entry). Without packet capture only listeners' entries are read, so
 * the others are neither learned nor forgotten: an LRU update and a
 * lookup less per TCP end, measured in BENCHMARKS.md. capture_pkts is
 * rodata, so the verifier drops the dead branch. */
static __always_inline int snoop_flow_kept(int listener)
{
	return listener || snoop_cfg.capture_pkts;
}

/* Remember the 5-tuple of a socket for received-packet attribution. */
static __always_inline void snoop_learn_flow(const __u8 laddr[16], const __u8 raddr[16],
					     __u16 lport, __u16 rport, __u8 proto, __u64 cookie)
{
	struct snoop_flow_key k = {};

	__builtin_memcpy(k.laddr, laddr, 16);
	__builtin_memcpy(k.raddr, raddr, 16);
	k.lport = lport;
	k.rport = rport;
	k.proto = proto;
	bpf_map_update_elem(&snoop_flows, &k, &cookie, BPF_ANY);
}

/* Cookie of the socket bound to (laddr, lport) with no peer: unconnected
 * UDP or a TCP listener, bound to laddr or to the wildcard (:: / 0.0.0.0,
 * both all-zero here). */
static __always_inline __u64 *snoop_lookup_bound(const __u8 laddr[16], __u16 lport, __u8 proto)
{
	struct snoop_flow_key k = {};
	__u64 *c;

	__builtin_memcpy(k.laddr, laddr, 16);
	k.lport = lport;
	k.proto = proto;
	c = bpf_map_lookup_elem(&snoop_flows, &k);
	if (c)
		return c;
	__builtin_memset(k.laddr, 0, 16);
	return bpf_map_lookup_elem(&snoop_flows, &k);
}

/* Cookie of the socket a received packet goes to, from its tuple: the
 * connected socket's entry, else the bound one (unconnected UDP,
 * listeners); 0 when snoop knows no such socket. */
static __always_inline __u64 snoop_rx_cookie(const __u8 laddr[16], const __u8 raddr[16],
					     __u16 lport, __u16 rport, __u8 proto)
{
	struct snoop_flow_key k = {};
	__u64 *c;

	__builtin_memcpy(k.laddr, laddr, 16);
	__builtin_memcpy(k.raddr, raddr, 16);
	k.lport = lport;
	k.rport = rport;
	k.proto = proto;
	c = bpf_map_lookup_elem(&snoop_flows, &k);
	if (!c)
		c = snoop_lookup_bound(laddr, lport, proto);
	return c ? *c : 0;
}

#endif /* SNOOP_COMMON_BPF_H */
