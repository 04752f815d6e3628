//! Test harness: a graph on in-memory "ports" with two uplinks and a few VMs, and helpers to build
//! frames (independently of dp-packet, so the nodes are checked against a second implementation).

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use dp_packet::MacAddr;
use dp_pipeline::{
    BufferPool, Ctx, DpConfig, DropReason, Graph, GraphCounters, PacketBuf, PortEntry, PortKind,
    PortTable, TxSink, WorkerCtx,
};
use dp_tables::{Iface, PortId, RouteTarget, Snapshot, UnderlayTarget, VniTable};

pub const PF0: PortId = 0;
pub const PF1: PortId = 1;
/// vm1: VNI 100, 10.100.1.1, 2000:100:1::1.
pub const VM1: PortId = 2;
/// vm2: VNI 100, 10.100.1.2, 2000:100:1::2.
pub const VM2: PortId = 3;
/// vm3: VNI 200, 10.200.1.1, 2000:200:1::1.
pub const VM3: PortId = 4;
/// vm4: VNI 100, 10.100.1.4, no IPv6 address.
pub const VM4: PortId = 5;
/// A VF port with no interface bound.
pub const VF_UNBOUND: PortId = 6;

pub const VF_COUNT: usize = 5;

/// Our MAC on port `p` (the gateway MAC the VM sees).
pub fn own_mac(p: PortId) -> [u8; 6] {
    [0x22, 0x22, 0x22, 0x22, 0x22, p as u8]
}

/// The VM's MAC on port `p`.
pub fn vm_mac(p: PortId) -> [u8; 6] {
    [0x66, 0x66, 0x66, 0x66, 0x66, p as u8]
}

pub fn vm_ipv4(p: PortId) -> Ipv4Addr {
    match p {
        VM1 => Ipv4Addr::new(10, 100, 1, 1),
        VM2 => Ipv4Addr::new(10, 100, 1, 2),
        VM3 => Ipv4Addr::new(10, 200, 1, 1),
        VM4 => Ipv4Addr::new(10, 100, 1, 4),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

pub fn vm_ipv6(p: PortId) -> Ipv6Addr {
    match p {
        VM1 => "2000:100:1::1".parse().unwrap(),
        VM2 => "2000:100:1::2".parse().unwrap(),
        VM3 => "2000:200:1::1".parse().unwrap(),
        _ => Ipv6Addr::UNSPECIFIED,
    }
}

/// The host's underlay address (`--ipv6`).
pub fn host_underlay() -> Ipv6Addr {
    "fc00:1::1".parse().unwrap()
}

/// The underlay address of the interface on VF port `p`.
pub fn vm_underlay(p: PortId) -> Ipv6Addr {
    format!("fc00:1::{p}").parse().unwrap()
}

/// The underlay router's MAC on pf0 and pf1, and its link-local address (`--router`).
pub const ROUTER_MAC0: [u8; 6] = [0x52, 0x54, 0, 0, 0xff, 0x00];
pub const ROUTER_MAC1: [u8; 6] = [0x52, 0x54, 0, 0, 0xff, 0x01];
pub fn router_mac(p: PortId) -> [u8; 6] {
    if p == PF0 {
        ROUTER_MAC0
    } else {
        ROUTER_MAC1
    }
}
pub fn router_ll() -> Ipv6Addr {
    "fe80::ffff".parse().unwrap()
}

/// Our link-local address on port `p` (EUI-64 of our MAC there).
pub fn own_link_local(p: PortId) -> Ipv6Addr {
    let m = own_mac(p);
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

pub fn vm_vni(p: PortId) -> u32 {
    match p {
        VM3 => 200,
        _ => 100,
    }
}

/// The VM's link-local address (EUI-64 of its MAC).
pub fn vm_link_local(p: PortId) -> Ipv6Addr {
    let m = vm_mac(p);
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

pub fn iface(p: PortId) -> Iface {
    Iface {
        id: format!("vm{}", p - 1),
        vni: vm_vni(p),
        port: p,
        ipv4: vm_ipv4(p),
        ipv6: vm_ipv6(p),
        underlay_ipv6: vm_underlay(p),
        hostname: None,
        pxe: None,
        prefixes_v4: vec![],
        prefixes_v6: vec![],
        services: Default::default(),
        meter: Default::default(),
    }
}

/// The graph, its ports, tables, settings and buffers.
pub struct Harness {
    pub ports: PortTable,
    pub ifaces: Vec<Iface>,
    pub config: DpConfig,
    pub snapshot: Snapshot,
    pub graph: Graph,
    pub pool: BufferPool,
    pub counters: Arc<GraphCounters>,
    /// The worker the graph runs as (the only one, unless a test says otherwise).
    pub worker: WorkerCtx,
    /// What the graph transmitted in the middle of a run (full transmit batches), in order.
    flushed: Vec<(PortId, Vec<u8>)>,
    pub rx: u64,
    pub tx: u64,
    /// The worker clock passed to the graph.
    pub now_ns: u64,
}

impl Harness {
    /// The standard setup: every VM's MAC already learned, IPv6 overlay on.
    pub fn new() -> Self {
        Self::with(|_, _| {})
    }

    /// The standard setup after `tweak` changed interfaces or settings.
    pub fn with(tweak: impl FnOnce(&mut Vec<Iface>, &mut DpConfig)) -> Self {
        let mut entries = vec![
            PortEntry::new(PortKind::Uplink, "pf0", MacAddr(own_mac(PF0))),
            PortEntry::new(PortKind::Uplink, "pf1", MacAddr(own_mac(PF1))),
        ];
        for i in 0..=VF_COUNT {
            let p = VM1 + i as PortId;
            entries.push(PortEntry::new(
                PortKind::Vf,
                format!("vf{i}"),
                MacAddr(own_mac(p)),
            ));
        }
        let ports = PortTable::new(entries);
        for p in VM1..=VM4 {
            ports.get(p).unwrap().learn_peer_mac(MacAddr(vm_mac(p)));
        }
        let mut ifaces: Vec<Iface> = (VM1..=VM4).map(iface).collect();
        let mut config = DpConfig {
            underlay_ipv6: host_underlay(),
            dhcp_mtu: 1337,
            ipv6_overlay: true,
            router: Some(router_ll()),
            ..DpConfig::default()
        };
        tweak(&mut ifaces, &mut config);
        let snapshot = snapshot_of(&ifaces, ports.len());
        let counters = Arc::new(GraphCounters::default());
        let graph = Graph::new(ports.len(), Arc::clone(&counters));
        Harness {
            ports,
            ifaces,
            config,
            snapshot,
            graph,
            pool: BufferPool::new(512, 2048),
            counters,
            worker: WorkerCtx::single(),
            flushed: Vec::new(),
            rx: 0,
            tx: 0,
            now_ns: 0,
        }
    }

    /// Rebuilds the tables after `self.ifaces` changed.
    pub fn republish(&mut self) {
        self.snapshot = snapshot_of(&self.ifaces, self.ports.len());
    }

    /// Replaces the firewall rules of the interface on `port` and publishes them under a new
    /// firewall generation (as the control plane does on every rule change), keeping every
    /// other table (routes added by the test included).
    pub fn set_firewall(&mut self, port: PortId, rules: Vec<dp_tables::FirewallRule>) {
        let generation = dp_tables::next_firewall_generation(self.snapshot.firewall_generation);
        let iface = self
            .ifaces
            .iter_mut()
            .find(|i| i.port == port)
            .expect("an interface on the port");
        iface.services.firewall = Arc::new(dp_tables::FirewallRules::new(generation, rules));
        let iface = Arc::new(iface.clone());
        self.snapshot.set_iface(port, Some(iface));
        self.snapshot.firewall_generation = generation;
    }

    /// Feeds frames into the graph, runs it once and returns what was transmitted, per port in
    /// port order (within a port, in order of transmission).
    /// More frames than a batch holds go through in several runs, as a worker would take them.
    pub fn run(&mut self, frames: &[(PortId, Vec<u8>)]) -> Vec<(PortId, Vec<u8>)> {
        let mut out = Vec::new();
        for chunk in frames.chunks(dp_pipeline::BATCH_SIZE) {
            for (port, bytes) in chunk {
                let mut buf = self.pool.alloc().expect("pool exhausted");
                buf.set_frame(bytes).expect("frame too large");
                buf.meta.in_port = *port;
                self.graph.push_rx(buf).expect("rx batch full");
                self.rx += 1;
            }
            let (ctx, graph, worker, pool, mut sink) = self.parts();
            graph.run(&ctx, worker, pool, &mut sink);
            out.extend(self.drain());
        }
        // Port order; within a port, order of transmission (a stable sort keeps it).
        out.sort_by_key(|(port, _)| *port);
        out
    }

    /// Runs the periodic work at the harness's clock and returns the frames it sent.
    pub fn tick(&mut self) -> Vec<(PortId, Vec<u8>)> {
        let (ctx, graph, worker, pool, mut sink) = self.parts();
        graph.tick(&ctx, worker, pool, &mut sink);
        self.drain()
    }

    /// The context of a graph run at the harness's clock, with the graph and the pool it needs
    /// mutably alongside (borrowed apart, so one place builds the context).
    fn parts(
        &mut self,
    ) -> (
        Ctx<'_>,
        &mut Graph,
        &mut WorkerCtx,
        &mut BufferPool,
        Collect<'_>,
    ) {
        let ctx = Ctx {
            tables: &self.snapshot,
            config: &self.config,
            ports: &self.ports,
            now_ns: self.now_ns,
        };
        let sink = Collect {
            out: &mut self.flushed,
            tx: &mut self.tx,
        };
        (ctx, &mut self.graph, &mut self.worker, &mut self.pool, sink)
    }

    /// Advances the clock by `ms` milliseconds and ticks.
    pub fn tick_after_ms(&mut self, ms: u64) -> Vec<(PortId, Vec<u8>)> {
        self.now_ns += ms * 1_000_000;
        self.tick()
    }

    /// Makes `mac` the known router MAC on uplink `port`, confirmed now.
    pub fn learn_router(&self, port: PortId, mac: [u8; 6]) {
        self.ports
            .get(port)
            .unwrap()
            .confirm_peer(MacAddr(mac), self.now_ns);
    }

    /// Both uplinks' routers known (the usual state for the encapsulation tests).
    pub fn with_routers(mut self) -> Self {
        self.learn_router(PF0, ROUTER_MAC0);
        self.learn_router(PF1, ROUTER_MAC1);
        self.now_ns = 0;
        self
    }

    /// Adds a route to the VNI's table.
    pub fn add_route_v4(&mut self, vni: u32, net: Ipv4Addr, len: u8, target: RouteTarget) {
        let mut table = self
            .snapshot
            .vnis
            .get(&vni)
            .map(|t| (**t).clone())
            .unwrap_or_default();
        table.v4.insert(u32::from(net), len, target).unwrap();
        self.snapshot.vnis.insert(vni, Arc::new(table));
    }

    /// Adds a route to the VNI's table.
    pub fn add_route_v6(&mut self, vni: u32, net: Ipv6Addr, len: u8, target: RouteTarget) {
        let mut table = self
            .snapshot
            .vnis
            .get(&vni)
            .map(|t| (**t).clone())
            .unwrap_or_default();
        table.v6.insert(u128::from(net), len, target).unwrap();
        self.snapshot.vnis.insert(vni, Arc::new(table));
    }

    fn drain(&mut self) -> Vec<(PortId, Vec<u8>)> {
        // What went out in the middle of the run first: it was sent first. Then every port's
        // batch and the capture copies, as the worker flushes them.
        let (_, graph, _, pool, mut sink) = self.parts();
        graph.flush_tx(pool, &mut sink);
        std::mem::take(&mut self.flushed)
    }

    /// Takes what other workers handed to this one (its `worker` has rings), runs the graph
    /// over it and returns what was transmitted, as [`Harness::run`].
    pub fn run_handed_in(&mut self) -> Vec<(PortId, Vec<u8>)> {
        let (ctx, graph, worker, pool, mut sink) = self.parts();
        graph.receive_handoffs(worker, pool);
        graph.run(&ctx, worker, pool, &mut sink);
        graph.notify_handoffs(worker);
        let mut out = self.drain();
        out.sort_by_key(|(port, _)| *port);
        out
    }

    /// Runs one frame and returns what came out.
    pub fn run1(&mut self, port: PortId, frame: Vec<u8>) -> Vec<(PortId, Vec<u8>)> {
        self.run(&[(port, frame)])
    }

    /// Runs one frame that arrived with an offload request (a TAP's virtio-net header, e.g. a
    /// partial checksum) and returns what came out.
    pub fn run1_offload(
        &mut self,
        port: PortId,
        frame: Vec<u8>,
        offload: dp_pipeline::Offload,
    ) -> Vec<(PortId, Vec<u8>)> {
        let buf = self.pool.alloc().expect("pool exhausted");
        self.run_in(buf, port, &frame, offload)
    }

    /// [`Harness::run1_offload`] in a large buffer (the pool must have them: `with_large`), for
    /// superframes beyond a normal buffer.
    pub fn run1_large(
        &mut self,
        port: PortId,
        frame: Vec<u8>,
        offload: dp_pipeline::Offload,
    ) -> Vec<(PortId, Vec<u8>)> {
        let buf = self.pool.alloc_large().expect("no large buffer");
        self.run_in(buf, port, &frame, offload)
    }

    /// Runs the graph on one frame in `buf`, received on `port` with `offload`.
    fn run_in(
        &mut self,
        mut buf: PacketBuf,
        port: PortId,
        frame: &[u8],
        offload: dp_pipeline::Offload,
    ) -> Vec<(PortId, Vec<u8>)> {
        buf.set_frame(frame).expect("frame too large");
        buf.meta.in_port = port;
        buf.meta.offload = offload;
        self.graph.push_rx(buf).expect("rx batch full");
        self.rx += 1;
        let (ctx, graph, worker, pool, mut sink) = self.parts();
        graph.run(&ctx, worker, pool, &mut sink);
        let mut out = self.drain();
        out.sort_by_key(|(port, _)| *port);
        out
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.counters.drops(reason)
    }

    pub fn total_drops(&self) -> u64 {
        self.counters.total_drops()
    }

    /// Every drop counter that is not zero.
    pub fn nonzero_drops(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.drops(r)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Asserts that exactly one frame was dropped in total since the start, for `reason`.
    pub fn assert_single_drop(&self, reason: DropReason) {
        assert_eq!(self.nonzero_drops(), vec![(reason, 1)]);
    }

    /// Every received, originated or handed-in frame was either sent, dropped or handed off to
    /// another worker, and every buffer went back to the pool.
    pub fn assert_conservation(&self) {
        assert_eq!(
            self.rx + self.counters.originated() + self.counters.handed_in(),
            self.tx + self.total_drops() + self.counters.handed_off(),
            "rx + originated + handed_in = tx + drops + handed_off"
        );
        // Every edge a packet took was declared by its node (recorded in debug builds).
        assert_eq!(
            self.graph.undeclared_edges(),
            vec![],
            "undeclared edges taken"
        );
        assert_eq!(
            self.pool.available(),
            self.pool.capacity(),
            "buffers leaked"
        );
    }
}

/// The harness's transmit path for batches that fill up in the middle of a run: it records them.
struct Collect<'a> {
    out: &'a mut Vec<(PortId, Vec<u8>)>,
    tx: &'a mut u64,
}

impl TxSink for Collect<'_> {
    fn flush(
        &mut self,
        port: PortId,
        batch: &mut Vec<PacketBuf>,
        pool: &mut BufferPool,
        _: &GraphCounters,
    ) {
        for buf in batch.drain(..) {
            self.out.push((port, buf.data().to_vec()));
            pool.free(buf);
            *self.tx += 1;
        }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// The tables as the control plane installs them: per VNI, a /32 and a /128 route per VM to its port.
pub fn snapshot_of(ifaces: &[Iface], port_count: usize) -> Snapshot {
    let mut snapshot = Snapshot {
        ifaces_by_port: Arc::new(vec![None; port_count]),
        ..Snapshot::default()
    };
    let mut vnis: std::collections::HashMap<u32, VniTable> = Default::default();
    for i in ifaces {
        snapshot.set_iface(i.port, Some(Arc::new(i.clone())));
        snapshot.set_underlay(
            i.underlay_ipv6,
            UnderlayTarget::Iface {
                port: i.port,
                vni: i.vni,
            },
        );
        let t = vnis.entry(i.vni).or_default();
        let target = RouteTarget::Local { port: i.port };
        if !i.ipv4.is_unspecified() {
            t.v4.insert(u32::from(i.ipv4), 32, target).unwrap();
        }
        if !i.ipv6.is_unspecified() {
            t.v6.insert(u128::from(i.ipv6), 128, target).unwrap();
        }
        for &(net, len) in &i.prefixes_v4 {
            t.v4.insert(u32::from(net), len, target).unwrap();
        }
        for &(net, len) in &i.prefixes_v6 {
            t.v6.insert(u128::from(net), len, target).unwrap();
        }
    }
    snapshot.vnis = vnis.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
    // VIPs and NATs as the control plane publishes them: public addresses and underlay routes.
    for i in ifaces {
        let public = Arc::make_mut(&mut snapshot.public);
        if let Some(vip) = i.services.vip {
            public.insert(
                (i.vni, u32::from(vip)),
                dp_tables::PublicTarget::Vip {
                    port: i.port,
                    private: i.ipv4,
                },
            );
            snapshot.set_underlay(
                vip_underlay(i.port),
                UnderlayTarget::Vip {
                    port: i.port,
                    vni: i.vni,
                },
            );
        }
        if let Some(nat) = i.services.nat {
            Arc::make_mut(&mut snapshot.public)
                .insert((i.vni, u32::from(nat.ip)), dp_tables::PublicTarget::Nat);
            snapshot.set_underlay(
                nat_underlay(i.port),
                UnderlayTarget::Nat {
                    port: i.port,
                    vni: i.vni,
                },
            );
        }
    }
    snapshot
}

/// The underlay route of the VIP of the interface on port `p`.
pub fn vip_underlay(p: PortId) -> Ipv6Addr {
    format!("fc00:1::100:{p}").parse().unwrap()
}

/// The underlay route of the NAT of the interface on port `p`.
pub fn nat_underlay(p: PortId) -> Ipv6Addr {
    format!("fc00:1::200:{p}").parse().unwrap()
}

/// A TCP segment (20-byte header, window 512) with its checksum over IPv4.
pub fn tcp_v4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = tcp_header(sport, dport, flags, payload);
    let c = inet_checksum(&[&pseudo_v4(src, dst, 6, t.len()), &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// A TCP segment with its checksum over IPv6.
pub fn tcp_v6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut t = tcp_header(sport, dport, flags, payload);
    let c = inet_checksum(&[&pseudo_v6(src, dst, 6, t.len()), &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn tcp_header(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes()); // sequence
    t.extend_from_slice(&(if flags & TCP_ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
    t.push(5 << 4);
    t.push(flags);
    t.extend_from_slice(&512u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    t.extend_from_slice(payload);
    t
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The inner IP packet of an encapsulated frame (after the Ethernet and outer IPv6 headers).
pub fn inner_of(frame: &[u8]) -> &[u8] {
    &frame[14 + 40..]
}

// ---------------------------------------------------------------------------------------------
// Frame builders (independent of dp-packet).

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_IPV6: u16 = 0x86dd;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// RFC 1071 checksum of `parts` concatenated (each part of even length except maybe the last).
pub fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p);
    }
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u32 = 0;
    for w in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet with a 20-byte header (ident 1, DF clear) and a correct header checksum.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1, 0, 0, ttl, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = inet_checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(hop_limit);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, next]);
    p
}

pub fn udp_v4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = udp_header(sport, dport, payload);
    let c = inet_checksum(&[&pseudo_v4(src, dst, 17, u.len()), &u]);
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

pub fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = udp_header(sport, dport, payload);
    let c = inet_checksum(&[&pseudo_v6(src, dst, 17, u.len()), &u]);
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

fn udp_header(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An ICMPv4 message with its checksum.
pub fn icmpv4(ty: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    let c = inet_checksum(&[&m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMPv6 message (type, code, body after the checksum) with its checksum.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(body);
    let c = inet_checksum(&[&pseudo_v6(src, dst, 58, m.len()), &m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A whole frame: VM `p` sends UDP over IPv4 to the gateway's MAC.
pub fn vm_udp4(p: PortId, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let u = udp_v4(src, dst, 40000, 5000, payload);
    eth(
        own_mac(p),
        vm_mac(p),
        ETH_IPV4,
        &ipv4(src, dst, 17, ttl, &u),
    )
}

/// A whole frame: VM `p` sends UDP over IPv6 to the gateway's MAC.
pub fn vm_udp6(p: PortId, src: Ipv6Addr, dst: Ipv6Addr, hop: u8, payload: &[u8]) -> Vec<u8> {
    let u = udp_v6(src, dst, 40000, 5000, payload);
    eth(
        own_mac(p),
        vm_mac(p),
        ETH_IPV6,
        &ipv6(src, dst, 17, hop, &u),
    )
}

/// An outer IPv6 header + payload (traffic class and flow label given).
pub fn ipv6_tc(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop_limit: u8,
    tc: u8,
    label: u32,
    payload: &[u8],
) -> Vec<u8> {
    let vtc = (6u32 << 28) | (u32::from(tc) << 20) | (label & 0xfffff);
    let mut h = vtc.to_be_bytes().to_vec();
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(hop_limit);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// A frame from the router on uplink `p`: outer IPv6 from `outer_src` to `outer_dst` with next
/// header `next` around `inner`.
pub fn from_underlay(
    p: PortId,
    outer_src: Ipv6Addr,
    outer_dst: Ipv6Addr,
    next: u8,
    inner: &[u8],
) -> Vec<u8> {
    eth(
        own_mac(p),
        router_mac(p),
        ETH_IPV6,
        &ipv6_tc(outer_src, outer_dst, next, 62, 0, 0x12345, inner),
    )
}

/// A remote hypervisor's underlay address.
pub fn remote_underlay() -> Ipv6Addr {
    "fc00:2::d000:1:0:1".parse().unwrap()
}

/// Parses hex with optional whitespace.
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Hex of bytes, for assertion messages and for pasting.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts two frames are equal, showing both in hex when they are not.
#[track_caller]
pub fn assert_frame(got: &[u8], want: &[u8]) {
    if got != want {
        panic!(
            "frame mismatch\n got: {}\nwant: {}\n(first difference at byte {})",
            to_hex(got),
            to_hex(want),
            got.iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Valid frames of every kind a VM sends, for truncation tables and fuzzing.

pub const GW4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
pub const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

pub fn tmpl_arp(p: PortId) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&vm_mac(p));
    a.extend_from_slice(&vm_ipv4(p).octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&GW4.octets());
    eth(BROADCAST, vm_mac(p), ETH_ARP, &a)
}

pub fn tmpl_echo4(p: PortId) -> Vec<u8> {
    let m = icmpv4(8, 0, [0, 1, 0, 1], b"0123456789");
    eth(
        own_mac(p),
        vm_mac(p),
        ETH_IPV4,
        &ipv4(vm_ipv4(p), GW4, 1, 64, &m),
    )
}

pub fn tmpl_echo6(p: PortId) -> Vec<u8> {
    let (src, dst) = (vm_ipv6(p), GW6);
    let m = icmpv6(src, dst, 128, 0, b"\0\x01\0\x010123456789");
    eth(own_mac(p), vm_mac(p), ETH_IPV6, &ipv6(src, dst, 58, 64, &m))
}

pub fn tmpl_dhcp(p: PortId) -> Vec<u8> {
    let mut b = vec![1, 1, 6, 0, 1, 2, 3, 4, 0, 0, 0, 0];
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&vm_mac(p));
    b.extend_from_slice(&[0; 10 + 64 + 128]);
    b.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 1, 55, 3, 1, 3, 6, 77, 4]);
    b.extend_from_slice(b"iPXE");
    b.push(255);
    let u = udp_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &b);
    eth(
        BROADCAST,
        vm_mac(p),
        ETH_IPV4,
        &ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 17, 64, &u),
    )
}

pub fn tmpl_dhcpv6(p: PortId) -> Vec<u8> {
    let src = vm_link_local(p);
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    let mut m = vec![1, 0xab, 0xcd, 0xef, 0, 1, 0, 10, 0, 3, 0, 1];
    m.extend_from_slice(&vm_mac(p));
    m.extend_from_slice(&[0, 3, 0, 12, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 14, 0, 0]);
    let u = udp_v6(src, dst, 546, 547, &m);
    eth(
        [0x33, 0x33, 0, 1, 0, 2],
        vm_mac(p),
        ETH_IPV6,
        &ipv6(src, dst, 17, 1, &u),
    )
}

pub fn tmpl_ns(p: PortId) -> Vec<u8> {
    let src = vm_link_local(p);
    let dst: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let mut body = vec![0; 4];
    body.extend_from_slice(&GW6.octets());
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&vm_mac(p));
    let m = icmpv6(src, dst, 135, 0, &body);
    eth(
        [0x33, 0x33, 0xff, 0, 0, 1],
        vm_mac(p),
        ETH_IPV6,
        &ipv6(src, dst, 58, 255, &m),
    )
}

pub fn tmpl_rs(p: PortId) -> Vec<u8> {
    let src = vm_link_local(p);
    let dst: Ipv6Addr = "ff02::2".parse().unwrap();
    let mut body = vec![0; 4];
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&vm_mac(p));
    let m = icmpv6(src, dst, 133, 0, &body);
    eth(
        [0x33, 0x33, 0, 0, 0, 2],
        vm_mac(p),
        ETH_IPV6,
        &ipv6(src, dst, 58, 255, &m),
    )
}

pub fn tmpl_udp4(p: PortId) -> Vec<u8> {
    vm_udp4(p, vm_ipv4(p), vm_ipv4(VM2), 64, b"forward me")
}

pub fn tmpl_udp6(p: PortId) -> Vec<u8> {
    vm_udp6(p, vm_ipv6(p), vm_ipv6(VM2), 64, b"forward me")
}

pub fn tmpl_ttl1(p: PortId) -> Vec<u8> {
    vm_udp4(p, vm_ipv4(p), vm_ipv4(VM2), 1, b"expire me")
}

/// Every template with its name; each is answered or forwarded when sent by VM1 unchanged.
pub fn templates(p: PortId) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("arp", tmpl_arp(p)),
        ("echo4", tmpl_echo4(p)),
        ("echo6", tmpl_echo6(p)),
        ("dhcp", tmpl_dhcp(p)),
        ("dhcpv6", tmpl_dhcpv6(p)),
        ("ns", tmpl_ns(p)),
        ("rs", tmpl_rs(p)),
        ("udp4", tmpl_udp4(p)),
        ("udp6", tmpl_udp6(p)),
        ("ttl1", tmpl_ttl1(p)),
    ]
}

/// A frame VM `p` sends: `ip` from its MAC to our MAC on its port.
pub fn from_vm4(p: PortId, ip: &[u8]) -> Vec<u8> {
    eth(own_mac(p), vm_mac(p), ETH_IPV4, ip)
}

pub fn from_vm6(p: PortId, ip: &[u8]) -> Vec<u8> {
    eth(own_mac(p), vm_mac(p), ETH_IPV6, ip)
}

/// A frame VM `p` receives: `ip` from our MAC on its port to its MAC.
pub fn to_vm4(p: PortId, ip: &[u8]) -> Vec<u8> {
    eth(vm_mac(p), own_mac(p), ETH_IPV4, ip)
}

pub fn to_vm6(p: PortId, ip: &[u8]) -> Vec<u8> {
    eth(vm_mac(p), own_mac(p), ETH_IPV6, ip)
}

/// VM `from` sends `ip` (IPv4): whether it arrived, as the single frame out, at VM `to` as
/// exactly `want` (the packet as it should arrive, e.g. with TTL 63).
#[track_caller]
pub fn delivers(h: &mut Harness, from: PortId, to: PortId, ip: &[u8], want: &[u8]) -> bool {
    let out = h.run1(from, from_vm4(from, ip));
    match out.as_slice() {
        [] => false,
        [(port, frame)] => {
            assert_eq!(*port, to);
            assert_frame(frame, &to_vm4(to, want));
            true
        }
        _ => panic!("more than one frame: {out:?}"),
    }
}

/// A UDP datagram over IPv4 with TTL `ttl`, carrying `data`.
pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, ttl: u8, data: &[u8]) -> Vec<u8> {
    ipv4(src, dst, 17, ttl, &udp_v4(src, dst, sport, dport, data))
}

/// A TCP segment over IPv4 with TTL `ttl` and no payload.
pub fn tcp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8, ttl: u8) -> Vec<u8> {
    ipv4(
        src,
        dst,
        6,
        ttl,
        &tcp_v4(src, dst, sport, dport, flags, b""),
    )
}

/// A UDP datagram between two VMs: whether it arrived, as the single frame out, intact but
/// for its TTL (one less).
#[track_caller]
pub fn udp_passes(h: &mut Harness, from: PortId, to: PortId, sport: u16, dport: u16) -> bool {
    let (src, dst) = (vm_ipv4(from), vm_ipv4(to));
    delivers(
        h,
        from,
        to,
        &udp4(src, dst, sport, dport, 64, b"udp"),
        &udp4(src, dst, sport, dport, 63, b"udp"),
    )
}
