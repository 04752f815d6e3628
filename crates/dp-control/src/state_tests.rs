use super::*;
use dp_tables::{Publisher, RouteTarget, Snapshot, Vni};
use std::net::{IpAddr, Ipv4Addr};

use crate::errors::DpError;

const VNI: Vni = 100;

fn host() -> Ipv6Addr {
    "fc00:1::1".parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn new_state() -> State {
    let vfs = (0..4u16).map(|i| VfDevice {
        name: format!("dtapvf_{i}"),
        port: 2 + i,
    });
    let mut s = State::new(
        Publisher::new(Snapshot::default()),
        host(),
        UnderlayMode::Static,
        vfs,
        [0, 1],
    );
    s.initialize();
    s
}

fn spec(id: &str, device: &str, vni: Vni, ipv4: &str, ipv6: &str) -> InterfaceSpec {
    InterfaceSpec {
        id: id.into(),
        vni,
        ipv4: ipv4.parse().unwrap(),
        ipv6: ipv6.parse().unwrap(),
        device: device.into(),
        pxe: None,
        hostname: None,
        preferred_underlay: None,
        meter: Default::default(),
    }
}

/// vm1 on dtapvf_0 and vm2 on dtapvf_1 in VNI 100, like dpservice's test set-up.
fn with_two_vms() -> State {
    let mut s = new_state();
    s.create_interface(spec("vm1", "dtapvf_0", VNI, "10.100.1.1", "2000:100:1::1"))
        .unwrap();
    s.create_interface(spec("vm2", "dtapvf_1", VNI, "10.100.1.2", "2000:100:1::2"))
        .unwrap();
    s
}

/// Everything observable about the state, to prove that rejected calls change nothing.
fn dump(s: &State) -> String {
    let snap = s.snapshot();
    let mut vnis: Vec<_> = snap.vnis.iter().collect();
    vnis.sort_by_key(|(vni, _)| **vni);
    let tables: Vec<_> = vnis
        .iter()
        .map(|(vni, t)| {
            let mut r4: Vec<_> = t.v4.iter().map(|(a, l, v)| (a, l, *v)).collect();
            let mut r6: Vec<_> = t.v6.iter().map(|(a, l, v)| (a, l, *v)).collect();
            r4.sort_by_key(|x| (x.0, x.1));
            r6.sort_by_key(|x| (x.0, x.1));
            (**vni, r4, r6)
        })
        .collect();
    let prefixes: Vec<_> = s
        .list_interfaces()
        .iter()
        .map(|i| s.list_prefixes(&i.id).unwrap())
        .collect();
    let mut underlays: Vec<_> = s.underlays.iter().map(|(a, u)| (*a, *u)).collect();
    underlays.sort_by_key(|x| x.0);
    let mut published_underlay: Vec<_> = snap.underlay.iter().collect();
    published_underlay.sort_by_key(|x| *x.0);
    let mut public: Vec<_> = snap.public.iter().collect();
    public.sort_by_key(|x| *x.0);
    let mut neighbor_nats: Vec<_> = snap.neighbor_nats.iter().collect();
    neighbor_nats.sort_by_key(|x| *x.0);
    let services: Vec<_> = s
        .list_interfaces()
        .iter()
        .map(|i| {
            (
                s.get_vip(&i.id),
                s.get_nat(&i.id),
                s.list_firewall_rules(&i.id).unwrap(),
            )
        })
        .collect();
    let lb_prefixes: Vec<_> = s
        .list_interfaces()
        .iter()
        .map(|i| s.list_lb_prefixes(&i.id).unwrap())
        .collect();
    let lbs = (
        s.list_load_balancers(),
        s.list_lb_targets(None),
        lb_prefixes,
        snap.lb_generation,
        snap.load_balancers.len(),
    );
    format!(
        "{} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        snap.generation,
        snap.ifaces_by_port,
        tables,
        s.list_interfaces(),
        prefixes,
        underlays,
        published_underlay,
        public,
        neighbor_nats,
        services,
        s.list_local_nats(ip("0.0.0.0")),
        s.list_neighbor_nats(ip("0.0.0.0")),
        lbs,
    )
}

/// Runs a call that must fail with `err` and checks it left no trace.
fn rejected<T: std::fmt::Debug>(
    s: &mut State,
    err: DpError,
    f: impl FnOnce(&mut State) -> Result<T, DpError>,
) {
    let before = dump(s);
    assert_eq!(f(s).unwrap_err(), err);
    assert_eq!(dump(s), before, "a rejected call changed the state");
}

fn local(port: PortId) -> RouteTarget {
    RouteTarget::Local { port }
}

// ----- interfaces -------------------------------------------------------------------------------

#[test]
fn create_interface_publishes_iface_and_routes() {
    let mut s = new_state();
    let g0 = s.snapshot().generation;
    let mut sp = spec("vm1", "dtapvf_0", VNI, "10.100.1.1", "2000:100:1::1");
    sp.hostname = Some("vm1-host".into());
    sp.pxe = Some(Pxe {
        next_server: ip("2001:dede::1"),
        boot_filename: "ipxe".into(),
    });
    let created = s.create_interface(sp).unwrap();
    assert_eq!(created.underlay, v6("fc00:1::d000:1:0:1"));
    assert_eq!(created.vf_name, "dtapvf_0");

    let snap = s.snapshot();
    assert_eq!(snap.generation, g0 + 1);
    let iface = snap.iface(2).unwrap();
    assert_eq!(iface.id, "vm1");
    assert_eq!((iface.vni, iface.port), (VNI, 2));
    assert_eq!(iface.ipv4, Ipv4Addr::new(10, 100, 1, 1));
    assert_eq!(iface.ipv6, v6("2000:100:1::1"));
    assert_eq!(iface.underlay_ipv6, created.underlay);
    assert_eq!(iface.hostname.as_deref(), Some("vm1-host"));
    let pxe = iface.pxe.as_ref().unwrap();
    assert_eq!(pxe.boot_filename, "ipxe");
    assert_eq!(
        pxe.next_server, None,
        "an IPv6 PXE server is no DHCPv4 siaddr"
    );
    assert_eq!(pxe.next_server_v6, Some(v6("2001:dede::1")));
    assert!(snap.iface(3).is_none());
    let t = snap.vni(VNI).unwrap();
    assert_eq!(t.lookup_v4("10.100.1.1".parse().unwrap()), Some(&local(2)));
    assert_eq!(t.lookup_v6(v6("2000:100:1::1")), Some(&local(2)));
    assert_eq!((t.v4.len(), t.v6.len()), (1, 1));
    assert_eq!(
        s.underlay_use(created.underlay),
        Some(UnderlayUse::Interface { port: 2, vni: VNI })
    );
    assert_eq!(
        snap.underlay_target(created.underlay),
        Some(dp_tables::UnderlayTarget::Iface { port: 2, vni: VNI })
    );
    assert_eq!(snap.underlay.len(), 1);

    let info = s.get_interface("vm1").unwrap();
    assert_eq!(info.device, "dtapvf_0");
    assert_eq!(info.underlay, created.underlay);
    assert_eq!(info.hostname.as_deref(), Some("vm1-host"));

    // The underlay counter goes on.
    let second = s
        .create_interface(spec("vm2", "dtapvf_1", VNI, "10.100.1.2", "::"))
        .unwrap();
    assert_eq!(second.underlay, v6("fc00:1::d000:1:0:2"));
}

#[test]
fn single_stack_interfaces_get_one_route() {
    let mut s = new_state();
    s.create_interface(spec("v4only", "dtapvf_0", VNI, "10.0.0.1", "::"))
        .unwrap();
    s.create_interface(spec("v6only", "dtapvf_1", VNI, "0.0.0.0", "2000::1"))
        .unwrap();
    let snap = s.snapshot();
    let t = snap.vni(VNI).unwrap();
    assert_eq!((t.v4.len(), t.v6.len()), (1, 1));
    assert_eq!(t.lookup_v4("10.0.0.1".parse().unwrap()), Some(&local(2)));
    assert_eq!(t.lookup_v6(v6("2000::1")), Some(&local(3)));
    assert!(t.lookup_v4(Ipv4Addr::UNSPECIFIED).is_none());
    assert!(t.lookup_v6(Ipv6Addr::UNSPECIFIED).is_none());
}

#[test]
fn devices_resolve_by_name_and_tap_alias() {
    let mut s = new_state();
    let c = s
        .create_interface(spec("vm1", "net_tap3", VNI, "10.0.0.1", "::"))
        .unwrap();
    assert_eq!(c.vf_name, "dtapvf_1");
    let i = s.get_interface("vm1").unwrap();
    assert_eq!((i.port, i.device.as_str()), (3, "net_tap3"));
    assert!(s.snapshot().iface(3).is_some());

    // Unknown devices.
    for dev in [
        "invalid",
        "net_tap9",
        "net_tap03",
        "net_tap",
        "net_tap-2",
        "dtapvf_9",
    ] {
        rejected(&mut s, DpError::NotFound, |s| {
            s.create_interface(spec("vm2", dev, VNI, "10.0.0.2", "::"))
        });
    }
    // Uplinks are never free (dpservice's PF ports are always allocated).
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_interface(spec("vm2", "net_tap0", VNI, "10.0.0.2", "::"))
    });
    // The VF is in use, whichever name is used.
    for dev in ["net_tap3", "dtapvf_1"] {
        rejected(&mut s, DpError::AlreadyExists, |s| {
            s.create_interface(spec("vm2", dev, VNI, "10.0.0.2", "::"))
        });
    }
    // Same id, same device: the device check comes first (dpservice answers 202).
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_interface(spec("vm1", "dtapvf_1", VNI, "10.0.0.1", "::"))
    });
}

#[test]
fn create_interface_errors_change_nothing() {
    let mut s = with_two_vms();
    // Same id on a free device.
    rejected(&mut s, DpError::VmHandle, |s| {
        s.create_interface(spec("vm1", "dtapvf_2", VNI, "10.100.1.9", "::"))
    });
    // Address routed already in the VNI (IPv4, then IPv6).
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_interface(spec("vm4", "dtapvf_2", VNI, "1.2.3.4", "2000:100:1::1"))
    });
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_interface(spec("vm4", "dtapvf_2", VNI, "10.100.1.1", "1234::"))
    });
    // An external route for exactly the VM's /32 also conflicts.
    s.create_route(VNI, ip("10.100.1.9"), 32, VNI, ip("fc00:2::1"))
        .unwrap();
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_interface(spec("vm4", "dtapvf_2", VNI, "10.100.1.9", "::"))
    });
    // Rolled back properly: the same device and id work afterwards.
    s.create_interface(spec("vm4", "dtapvf_2", VNI, "1.2.3.4", "1234::"))
        .unwrap();
    s.delete_interface("vm4").unwrap();
    // The same addresses in another VNI are fine.
    s.create_interface(spec(
        "vm4",
        "dtapvf_2",
        VNI + 1,
        "10.100.1.1",
        "2000:100:1::1",
    ))
    .unwrap();
}

#[test]
fn preferred_underlay_addresses() {
    let mut s = new_state();
    let preferred = v6("fc00:1::8000:0:1");
    let mut sp = spec("vm1", "dtapvf_0", VNI, "10.0.0.1", "::");
    sp.preferred_underlay = Some(preferred);
    assert_eq!(s.create_interface(sp).unwrap().underlay, preferred);
    // `::` means "generate one"; the counter was not used by the preferred address.
    let mut sp = spec("vm2", "dtapvf_1", VNI, "10.0.0.2", "::");
    sp.preferred_underlay = Some(Ipv6Addr::UNSPECIFIED);
    assert_eq!(
        s.create_interface(sp).unwrap().underlay,
        v6("fc00:1::d000:1:0:1")
    );
    // Taken by an interface, then by a prefix.
    let mut sp = spec("vm3", "dtapvf_2", VNI, "10.0.0.3", "::");
    sp.preferred_underlay = Some(preferred);
    rejected(&mut s, DpError::VnfInsert, |s| {
        s.create_interface(sp.clone())
    });
    let pfx_ul = v6("fc00:1::c000:0:2");
    assert_eq!(
        s.create_prefix("vm1", ip("1.2.3.0"), 24, Some(pfx_ul))
            .unwrap(),
        pfx_ul
    );
    sp.preferred_underlay = Some(pfx_ul);
    rejected(&mut s, DpError::VnfInsert, |s| {
        s.create_interface(sp.clone())
    });
    rejected(&mut s, DpError::VnfInsert, |s| {
        s.create_prefix("vm2", ip("1.2.4.0"), 24, Some(preferred))
    });
    // Freed with its owner.
    s.delete_prefix("vm1", ip("1.2.3.0"), 24).unwrap();
    s.delete_interface("vm1").unwrap();
    sp.preferred_underlay = Some(preferred);
    assert_eq!(s.create_interface(sp).unwrap().underlay, preferred);
    assert!(s.accepts_preferred_underlay(preferred));
    assert!(!s.accepts_preferred_underlay(v6("fc00:2::8000:0:1")));
}

#[test]
fn delete_interface_removes_everything_it_owns() {
    let mut s = with_two_vms();
    let ul1 = s.get_interface("vm1").unwrap().underlay;
    let pfx_ul = s.create_prefix("vm1", ip("192.168.7.0"), 24, None).unwrap();
    let pfx6_ul = s.create_prefix("vm1", ip("2000:aaaa::"), 64, None).unwrap();
    s.create_route(VNI, ip("10.200.0.0"), 16, 200, ip("fc00:2::1"))
        .unwrap();
    let g = s.snapshot().generation;
    let before = s.snapshot();
    for ul in [ul1, pfx_ul, pfx6_ul] {
        assert_eq!(
            before.underlay_target(ul),
            Some(dp_tables::UnderlayTarget::Iface { port: 2, vni: VNI })
        );
    }

    let removed = s.delete_interface("vm1").unwrap();
    assert_eq!(removed.port, 2);
    let snap = s.snapshot();
    assert_eq!(snap.generation, g + 1);
    assert!(snap.iface(2).is_none());
    let t = snap.vni(VNI).unwrap();
    assert!(t.lookup_v4("10.100.1.1".parse().unwrap()).is_none());
    assert!(t.lookup_v6(v6("2000:100:1::1")).is_none());
    assert!(t.lookup_v4("192.168.7.1".parse().unwrap()).is_none());
    assert!(t.lookup_v6(v6("2000:aaaa::1")).is_none());
    // Others' routes stay.
    assert_eq!(t.lookup_v4("10.100.1.2".parse().unwrap()), Some(&local(3)));
    assert!(matches!(
        t.lookup_v4("10.200.1.1".parse().unwrap()),
        Some(RouteTarget::Remote { vni: 200, .. })
    ));
    for ul in [ul1, pfx_ul, pfx6_ul] {
        assert_eq!(s.underlay_use(ul), None);
        assert_eq!(snap.underlay_target(ul), None);
    }
    rejected(&mut s, DpError::NotFound, |s| s.delete_interface("vm1"));
    rejected(&mut s, DpError::NotFound, |s| s.get_interface("vm1"));
    // The port is free again.
    s.create_interface(spec("vm1", "dtapvf_0", VNI, "10.100.1.1", "2000:100:1::1"))
        .unwrap();
}

#[test]
fn vni_lives_with_its_interfaces() {
    let mut s = with_two_vms();
    s.create_route(VNI, ip("0.0.0.0"), 0, VNI, ip("fc00::ffff"))
        .unwrap();
    assert_eq!(s.vni_in_use(VNI, VniType::Ipv4), Ok(true));
    s.delete_interface("vm1").unwrap();
    assert_eq!(s.vni_in_use(VNI, VniType::Ipv6), Ok(true));
    s.delete_interface("vm2").unwrap();
    assert_eq!(s.vni_in_use(VNI, VniType::Ipv4), Ok(false));
    assert!(s.snapshot().vni(VNI).is_none());
    // Its routes went with it (dpservice frees the tables).
    s.create_interface(spec("vm1", "dtapvf_0", VNI, "10.100.1.1", "::"))
        .unwrap();
    assert_eq!(s.list_routes(VNI).unwrap(), vec![]);
}

#[test]
fn interfaces_are_listed_in_port_order() {
    let mut s = new_state();
    s.create_interface(spec("b", "dtapvf_2", 7, "10.0.0.3", "::"))
        .unwrap();
    s.create_interface(spec("a", "dtapvf_0", 8, "10.0.0.1", "::"))
        .unwrap();
    s.create_interface(spec("c", "dtapvf_1", 7, "10.0.0.2", "::"))
        .unwrap();
    let ids: Vec<String> = s.list_interfaces().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["a", "c", "b"]);
    s.delete_interface("c").unwrap();
    let ids: Vec<String> = s.list_interfaces().into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["a", "b"]);
}

// ----- alias prefixes ---------------------------------------------------------------------------

#[test]
fn prefixes_route_to_the_interface() {
    let mut s = with_two_vms();
    let ul = s.create_prefix("vm1", ip("1.2.3.0"), 24, None).unwrap();
    assert_eq!(ul, v6("fc00:1::d000:1:0:3"));
    let ul6 = s.create_prefix("vm1", ip("1234::"), 64, None).unwrap();
    let snap = s.snapshot();
    let t = snap.vni(VNI).unwrap();
    assert_eq!(t.lookup_v4("1.2.3.77".parse().unwrap()), Some(&local(2)));
    assert_eq!(t.lookup_v6(v6("1234::5")), Some(&local(2)));
    let iface = snap.iface(2).unwrap();
    assert_eq!(iface.prefixes_v4, vec![(Ipv4Addr::new(1, 2, 3, 0), 24)]);
    assert_eq!(iface.prefixes_v6, vec![(v6("1234::"), 64)]);
    assert!(iface.owns_source_v4("1.2.3.9".parse().unwrap()));
    assert_eq!(
        s.underlay_use(ul),
        Some(UnderlayUse::Prefix {
            port: 2,
            vni: VNI,
            addr: ip("1.2.3.0"),
            len: 24
        })
    );
    assert_eq!(
        s.list_prefixes("vm1").unwrap(),
        vec![
            PrefixInfo {
                addr: ip("1.2.3.0"),
                len: 24,
                underlay: ul
            },
            PrefixInfo {
                addr: ip("1234::"),
                len: 64,
                underlay: ul6
            },
        ]
    );
    assert_eq!(s.list_prefixes("vm2").unwrap(), vec![]);
    // Prefixes are no external routes.
    assert_eq!(s.list_routes(VNI).unwrap(), vec![]);

    s.delete_prefix("vm1", ip("1.2.3.0"), 24).unwrap();
    let snap = s.snapshot();
    assert!(snap
        .vni(VNI)
        .unwrap()
        .lookup_v4("1.2.3.77".parse().unwrap())
        .is_none());
    assert!(snap.iface(2).unwrap().prefixes_v4.is_empty());
    assert_eq!(s.underlay_use(ul), None);
    assert_eq!(s.list_prefixes("vm1").unwrap().len(), 1);
    // Re-create works (no residue).
    s.create_prefix("vm1", ip("1.2.3.0"), 24, None).unwrap();
}

#[test]
fn prefix_errors_change_nothing() {
    let mut s = with_two_vms();
    s.create_prefix("vm1", ip("1.2.3.0"), 24, None).unwrap();
    rejected(&mut s, DpError::NoVm, |s| {
        s.create_prefix("invalid_name", ip("1.2.3.0"), 24, None)
    });
    rejected(&mut s, DpError::NoVm, |s| s.list_prefixes("invalid_name"));
    rejected(&mut s, DpError::NoVm, |s| {
        s.delete_prefix("invalid_name", ip("1.2.3.0"), 24)
    });
    // Exists (also for another interface, also written with host bits).
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_prefix("vm1", ip("1.2.3.0"), 24, None)
    });
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_prefix("vm2", ip("1.2.3.4"), 24, None)
    });
    // The VM's own address.
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_prefix("vm2", ip("10.100.1.2"), 32, None)
    });
    // Lengths beyond the family.
    rejected(&mut s, DpError::RouteInsert, |s| {
        s.create_prefix("vm1", ip("1.2.5.0"), 33, None)
    });
    rejected(&mut s, DpError::RouteInsert, |s| {
        s.create_prefix("vm1", ip("1234::"), 129, None)
    });
    // Deleting what is not there / not ours.
    rejected(&mut s, DpError::RouteNotFound, |s| {
        s.delete_prefix("vm1", ip("1.2.9.0"), 24)
    });
    rejected(&mut s, DpError::RouteNotFound, |s| {
        s.delete_prefix("vm1", ip("1.2.3.0"), 40)
    });
    rejected(&mut s, DpError::RouteBadPort, |s| {
        s.delete_prefix("vm2", ip("1.2.3.0"), 24)
    });
    s.create_route(VNI, ip("5.5.0.0"), 16, VNI, ip("fc00:2::1"))
        .unwrap();
    rejected(&mut s, DpError::RouteBadPort, |s| {
        s.delete_prefix("vm1", ip("5.5.0.0"), 16)
    });
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_prefix("vm1", ip("5.5.0.0"), 16, None)
    });
    // Deleted twice.
    s.delete_prefix("vm1", ip("1.2.3.0"), 24).unwrap();
    rejected(&mut s, DpError::RouteNotFound, |s| {
        s.delete_prefix("vm1", ip("1.2.3.0"), 24)
    });
}

#[test]
fn prefixes_keep_their_host_bits_in_listings() {
    let mut s = with_two_vms();
    let ul = s.create_prefix("vm1", ip("1.2.3.4"), 24, None).unwrap();
    assert_eq!(
        s.list_prefixes("vm1").unwrap(),
        vec![PrefixInfo {
            addr: ip("1.2.3.4"),
            len: 24,
            underlay: ul
        }]
    );
    assert_eq!(
        s.snapshot().iface(2).unwrap().prefixes_v4,
        vec![(Ipv4Addr::new(1, 2, 3, 0), 24)]
    );
    s.delete_prefix("vm1", ip("1.2.3.0"), 24).unwrap();
    assert_eq!(s.list_prefixes("vm1").unwrap(), vec![]);
}

// ----- routes -----------------------------------------------------------------------------------

#[test]
fn routes_are_stored_as_remote_targets() {
    let mut s = with_two_vms();
    let nh = v6("fc00:2::64:0:1");
    s.create_route(VNI, ip("10.100.2.0"), 24, VNI, IpAddr::V6(nh))
        .unwrap();
    s.create_route(VNI, ip("2000:100:2::"), 104, 7, IpAddr::V6(nh))
        .unwrap();
    let snap = s.snapshot();
    let t = snap.vni(VNI).unwrap();
    assert_eq!(
        t.lookup_v4("10.100.2.9".parse().unwrap()),
        Some(&RouteTarget::Remote {
            vni: VNI,
            underlay: nh,
            public: false
        })
    );
    assert_eq!(
        t.lookup_v6(v6("2000:100:2::7")),
        Some(&RouteTarget::Remote {
            vni: 7,
            underlay: nh,
            public: false
        })
    );
    // The VM /32 still wins over a covering route.
    s.create_route(VNI, ip("10.100.0.0"), 16, VNI, IpAddr::V6(nh))
        .unwrap();
    let snap = s.snapshot();
    let t = snap.vni(VNI).unwrap();
    assert_eq!(t.lookup_v4("10.100.1.1".parse().unwrap()), Some(&local(2)));

    s.delete_route(VNI, ip("10.100.2.0"), 24).unwrap();
    s.delete_route(VNI, ip("2000:100:2::"), 104).unwrap();
    let snap = s.snapshot();
    let t = snap.vni(VNI).unwrap();
    assert!(matches!(
        t.lookup_v4("10.100.2.9".parse().unwrap()),
        Some(RouteTarget::Remote { .. })
    ));
    assert!(t.lookup_v6(v6("2000:100:2::7")).is_none());
}

#[test]
fn route_errors_change_nothing() {
    let mut s = with_two_vms();
    let nh = ip("fc00:2::64:0:1");
    s.create_route(999, ip("1.2.3.4"), 24, VNI, nh)
        .expect_err("no VNI 999 yet");
    s.create_interface(spec("vm4", "dtapvf_3", 999, "10.99.1.4", "2000:99:1::4"))
        .unwrap();
    s.create_route(999, ip("1.2.3.4"), 24, VNI, nh).unwrap();
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_route(999, ip("1.2.3.4"), 24, VNI, nh)
    });
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_route(999, ip("1.2.3.255"), 24, VNI, nh)
    });
    s.create_route(999, ip("1.2.3.4"), 25, VNI, nh).unwrap();
    s.delete_route(999, ip("1.2.3.4"), 25).unwrap();
    s.delete_route(999, ip("1.2.3.4"), 24).unwrap();
    rejected(&mut s, DpError::RouteNotFound, |s| {
        s.delete_route(999, ip("1.2.3.4"), 24)
    });
    // Unknown VNI.
    rejected(&mut s, DpError::NoVni, |s| {
        s.create_route(300, ip("0.0.0.0"), 0, 0, ip("1234::"))
    });
    rejected(&mut s, DpError::NoVni, |s| s.list_routes(300));
    rejected(&mut s, DpError::NoVni, |s| {
        s.delete_route(300, ip("0.0.0.0"), 0)
    });
    // IPv4 next hop (checked before the VNI, as dpservice does).
    rejected(&mut s, DpError::BadIpVer, |s| {
        s.create_route(VNI, ip("4.5.6.7"), 32, 0, ip("1.2.3.4"))
    });
    rejected(&mut s, DpError::BadIpVer, |s| {
        s.create_route(300, ip("4.5.6.7"), 32, 0, ip("1.2.3.4"))
    });
    // Lengths beyond the family.
    rejected(&mut s, DpError::RouteInsert, |s| {
        s.create_route(VNI, ip("4.5.6.7"), 33, 0, nh)
    });
    rejected(&mut s, DpError::RouteInsert, |s| {
        s.create_route(VNI, ip("::"), 200, 0, nh)
    });
    rejected(&mut s, DpError::RouteNotFound, |s| {
        s.delete_route(VNI, ip("10.100.1.1"), 40)
    });
    // Interface and prefix routes are not external routes.
    rejected(&mut s, DpError::RouteBadPort, |s| {
        s.delete_route(VNI, ip("10.100.1.1"), 32)
    });
    rejected(&mut s, DpError::RouteBadPort, |s| {
        s.delete_route(VNI, ip("2000:100:1::2"), 128)
    });
    s.create_prefix("vm1", ip("7.7.7.0"), 24, None).unwrap();
    rejected(&mut s, DpError::RouteBadPort, |s| {
        s.delete_route(VNI, ip("7.7.7.0"), 24)
    });
    rejected(&mut s, DpError::RouteExists, |s| {
        s.create_route(VNI, ip("7.7.7.0"), 24, 0, nh)
    });
}

#[test]
fn route_listing_matches_dpservice() {
    let mut s = with_two_vms();
    s.create_interface(spec("vm3", "dtapvf_2", 200, "10.200.1.3", "::"))
        .unwrap();
    let nh = v6("fc00:2::64:0:1");
    let router = v6("fc00::ffff");
    for (p, l) in [
        ("192.168.30.0", 32),
        ("10.100.2.0", 24),
        ("0.0.0.0", 0),
        ("10.0.0.0", 8),
        ("10.100.0.0", 16),
    ] {
        s.create_route(VNI, ip(p), l, VNI, IpAddr::V6(nh)).unwrap();
    }
    s.create_route(VNI, ip("::"), 0, VNI, IpAddr::V6(router))
        .unwrap();
    s.create_route(VNI, ip("2000:100:2::"), 104, VNI, IpAddr::V6(nh))
        .unwrap();
    s.create_route(200, ip("0.0.0.0"), 0, 200, IpAddr::V6(router))
        .unwrap();
    s.create_prefix("vm1", ip("172.16.0.0"), 12, None).unwrap();

    let routes = s.list_routes(VNI).unwrap();
    let listed: Vec<(IpAddr, u8)> = routes.iter().map(|r| (r.addr, r.len)).collect();
    // IPv4 external routes only, in rte_rib order; no interface, prefix or IPv6 routes.
    assert_eq!(
        listed,
        vec![
            (ip("0.0.0.0"), 0),
            (ip("10.100.2.0"), 24),
            (ip("10.100.0.0"), 16),
            (ip("10.0.0.0"), 8),
            (ip("192.168.30.0"), 32),
        ]
    );
    assert!(routes.iter().all(|r| r.vni == VNI && r.nexthop_vni == VNI));
    assert_eq!(routes[1].nexthop, nh);

    let all = s.list_routes(0).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[5].vni, 200);
    assert_eq!(all[5].nexthop, router);
}

// ----- VNIs -------------------------------------------------------------------------------------

#[test]
fn vni_in_use_types() {
    let s = with_two_vms();
    assert_eq!(s.vni_in_use(VNI, VniType::Ipv4), Ok(true));
    assert_eq!(s.vni_in_use(VNI, VniType::Ipv6), Ok(true));
    assert_eq!(s.vni_in_use(999, VniType::Ipv4), Ok(false));
    assert_eq!(s.vni_in_use(VNI, VniType::Both), Err(DpError::WrongType));
}

#[test]
fn reset_vni_keeps_only_interface_routes() {
    let mut s = with_two_vms();
    s.create_interface(spec("vm3", "dtapvf_2", 200, "10.200.1.3", "::"))
        .unwrap();
    let nh = ip("fc00:2::1");
    s.create_route(VNI, ip("0.0.0.0"), 0, VNI, nh).unwrap();
    s.create_route(VNI, ip("::"), 0, VNI, nh).unwrap();
    s.create_route(200, ip("0.0.0.0"), 0, 200, nh).unwrap();
    let pfx_ul = s.create_prefix("vm1", ip("1.2.3.0"), 24, None).unwrap();

    rejected(&mut s, DpError::WrongType, |s| {
        s.reset_vni(VNI, VniType::Ipv4)
    });
    rejected(&mut s, DpError::WrongType, |s| {
        s.reset_vni(VNI, VniType::Ipv6)
    });
    // An unknown VNI is no error and changes nothing.
    let before = dump(&s);
    s.reset_vni(4242, VniType::Both).unwrap();
    assert_eq!(dump(&s), before);

    s.reset_vni(VNI, VniType::Both).unwrap();
    let snap = s.snapshot();
    let t = snap.vni(VNI).unwrap();
    assert_eq!((t.v4.len(), t.v6.len()), (2, 2));
    assert_eq!(t.lookup_v4("10.100.1.1".parse().unwrap()), Some(&local(2)));
    assert_eq!(t.lookup_v6(v6("2000:100:1::2")), Some(&local(3)));
    assert!(t.lookup_v4("1.2.3.4".parse().unwrap()).is_none());
    assert_eq!(s.list_routes(VNI).unwrap(), vec![]);
    // Other VNIs are untouched.
    assert_eq!(s.list_routes(200).unwrap().len(), 1);
    // As in dpservice, the prefix registration survives (only its route is gone) ...
    assert_eq!(s.list_prefixes("vm1").unwrap().len(), 1);
    assert_eq!(snap.iface(2).unwrap().prefixes_v4.len(), 1);
    // ... re-creating it replaces the registration ...
    let new_ul = s.create_prefix("vm1", ip("1.2.3.0"), 24, None).unwrap();
    assert_ne!(new_ul, pfx_ul);
    assert_eq!(s.underlay_use(pfx_ul), None);
    assert_eq!(s.list_prefixes("vm1").unwrap().len(), 1);
    s.reset_vni(VNI, VniType::Both).unwrap();
    // ... and deleting it removes the registration while reporting the missing route.
    assert_eq!(
        s.delete_prefix("vm1", ip("1.2.3.0"), 24),
        Err(DpError::RouteNotFound)
    );
    assert_eq!(s.list_prefixes("vm1").unwrap(), vec![]);
    assert_eq!(s.underlay_use(new_ul), None);
    assert!(s.snapshot().iface(2).unwrap().prefixes_v4.is_empty());
}

#[test]
fn initialize_resets_every_vni() {
    let mut s = with_two_vms();
    assert!(s.is_initialized());
    s.create_interface(spec("vm3", "dtapvf_2", 200, "10.200.1.3", "::"))
        .unwrap();
    let nh = ip("fc00:2::1");
    s.create_route(VNI, ip("0.0.0.0"), 0, VNI, nh).unwrap();
    s.create_route(200, ip("0.0.0.0"), 0, 200, nh).unwrap();
    s.initialize();
    assert_eq!(s.list_routes(0).unwrap(), vec![]);
    assert_eq!(s.list_interfaces().len(), 3);
    let snap = s.snapshot();
    assert_eq!(
        snap.vni(200)
            .unwrap()
            .lookup_v4("10.200.1.3".parse().unwrap()),
        Some(&local(4))
    );

    let fresh = State::new(
        Publisher::new(Snapshot::default()),
        host(),
        UnderlayMode::Static,
        [],
        [],
    );
    assert!(!fresh.is_initialized());
}

// ----- publishing cost --------------------------------------------------------------------------

#[test]
fn many_route_changes_do_not_copy_tables() {
    let publisher = Publisher::new(Snapshot::default());
    let reader = publisher.reader();
    let mut s = State::new(
        publisher,
        host(),
        UnderlayMode::Static,
        [VfDevice {
            name: "dtapvf_0".into(),
            port: 2,
        }],
        [0, 1],
    );
    s.initialize();
    s.create_interface(spec("vm1", "dtapvf_0", VNI, "10.100.1.1", "::"))
        .unwrap();
    let nh = ip("fc00:2::1");
    for i in 0..20_000u32 {
        let addr = IpAddr::V4(Ipv4Addr::from((11 << 24) | (i << 8)));
        s.create_route(VNI, addr, 24, VNI, nh).unwrap();
        // A worker picks up the snapshot between batches.
        let snap = reader.load();
        assert!(snap
            .vni(VNI)
            .unwrap()
            .lookup_v4(Ipv4Addr::from((11 << 24) | (i << 8) | 1))
            .is_some());
    }
    assert_eq!(s.list_routes(VNI).unwrap().len(), 20_000);
    assert!(
        s.table_copies() <= 2,
        "{} full table copies",
        s.table_copies()
    );
    // A reader holding an old snapshot keeps seeing it unchanged.
    let held: Arc<Snapshot> = Arc::clone(&reader.load());
    s.delete_route(VNI, ip("11.0.0.0"), 24).unwrap();
    s.delete_route(VNI, ip("11.0.1.0"), 24).unwrap();
    assert_eq!(held.vni(VNI).unwrap().v4.len(), 20_001);
    assert_eq!(reader.load().vni(VNI).unwrap().v4.len(), 19_999);
}

#[test]
fn a_worker_holding_the_previous_snapshot_causes_no_copies() {
    // The worker keeps the snapshot before the current one while the next change comes (a
    // batch in progress): double buffering would clone the table every time, the third copy
    // avoids it.
    let publisher = Publisher::new(Snapshot::default());
    let reader = publisher.reader();
    let mut s = State::new(
        publisher,
        host(),
        UnderlayMode::Static,
        [VfDevice {
            name: "dtapvf_0".into(),
            port: 2,
        }],
        [0, 1],
    );
    s.initialize();
    s.create_interface(spec("vm1", "dtapvf_0", VNI, "10.100.1.1", "::"))
        .unwrap();
    let nh = ip("fc00:2::1");
    let mut worker: Arc<Snapshot> = Arc::clone(&reader.load());
    for i in 0..5_000u32 {
        let before = Arc::clone(&reader.load());
        s.create_route(
            VNI,
            IpAddr::V4(Ipv4Addr::from((11 << 24) | (i << 8))),
            24,
            VNI,
            nh,
        )
        .unwrap();
        worker = before;
        assert_eq!(worker.vni(VNI).unwrap().v4.len(), i as usize + 1);
    }
    assert_eq!(reader.load().vni(VNI).unwrap().v4.len(), 5_001);
    assert!(
        s.table_copies() <= 2,
        "{} full table copies",
        s.table_copies()
    );
    drop(worker);
}

#[test]
fn deferred_changes_publish_once() {
    let mut s = with_two_vms();
    let g = s.snapshot().generation;
    let nh = ip("fc00:2::1");
    let mut last = 0;
    for i in 0..10u32 {
        let addr = IpAddr::V4(Ipv4Addr::from((11 << 24) | (i << 8)));
        let (r, change) = s.deferred(|s| s.create_route(VNI, addr, 24, VNI, nh));
        r.unwrap();
        last = change.unwrap();
    }
    // Applied (validation and listings see them) but not published yet.
    assert!(s.has_pending());
    assert_eq!(s.snapshot().generation, g);
    assert_eq!(s.list_routes(VNI).unwrap().len(), 10);
    let (r, change) = s.deferred(|s| s.create_route(VNI, ip("11.0.0.0"), 24, VNI, nh));
    assert_eq!(r, Err(DpError::RouteExists));
    assert_eq!(change, None, "a rejected change is no change");
    assert!(s
        .snapshot()
        .vni(VNI)
        .unwrap()
        .lookup_v4("11.0.0.1".parse().unwrap())
        .is_none());
    // One publish for all ten; asking again publishes nothing.
    assert!(s.publish_through(last - 5));
    assert!(!s.publish_through(last));
    assert!(!s.publish_pending());
    assert!(!s.has_pending());
    assert_eq!(s.snapshot().generation, g + 1);
    assert!(s
        .snapshot()
        .vni(VNI)
        .unwrap()
        .lookup_v4("11.0.9.1".parse().unwrap())
        .is_some());
    // Outside `deferred`, every change publishes at once (pending ones included).
    let (_, change) = s.deferred(|s| s.delete_route(VNI, ip("11.0.0.0"), 24));
    assert!(change.is_some());
    s.delete_route(VNI, ip("11.0.1.0"), 24).unwrap();
    assert!(!s.has_pending());
    assert_eq!(s.snapshot().generation, g + 2);
    assert_eq!(s.snapshot().vni(VNI).unwrap().v4.len(), 8 + 2);
    // No whole table was copied: the unpublished table was changed in place.
    assert!(s.table_copies() <= 1, "{} copies", s.table_copies());
}

// ----- firewall ---------------------------------------------------------------------------------

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn fw_rule(id: &str, priority: u32, action: FirewallAction) -> FirewallRuleSpec {
    FirewallRuleSpec {
        id: id.into(),
        direction: TrafficDirection::Ingress,
        action,
        priority,
        src_addr: ip("0.0.0.0"),
        src_len: 0,
        dst_addr: ip("10.100.1.1"),
        dst_len: 32,
        filter: RuleFilter::Tcp(PortFilter {
            src_lower: None,
            src_upper: None,
            dst_lower: Some(80),
            dst_upper: Some(80),
        }),
    }
}

fn fw_version(s: &State, port: PortId) -> u32 {
    s.snapshot().iface(port).unwrap().services.firewall.version
}

#[test]
fn firewall_rules_publish_with_new_versions() {
    let mut s = with_two_vms();
    assert_eq!(fw_version(&s, 2), 0, "no rules yet: version 0");
    s.create_firewall_rule("vm1", fw_rule("r1", 100, FirewallAction::Accept))
        .unwrap();
    let v1 = fw_version(&s, 2);
    assert_ne!(v1, 0);
    let snap = s.snapshot();
    let fw = &snap.iface(2).unwrap().services.firewall;
    let rules = fw.rules(TrafficDirection::Ingress);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].id, "r1");
    assert_eq!(
        rules[0].filter,
        dp_tables::ProtocolFilter::Tcp {
            src: dp_tables::PortRange::ANY,
            dst: dp_tables::PortRange { lo: 80, hi: 80 }
        }
    );
    assert_eq!(
        rules[0].dst,
        dp_tables::IpNet {
            addr: u128::from(u32::from(v4("10.100.1.1"))),
            len: 32,
            is_v6: false
        }
    );
    assert!(fw.rules(TrafficDirection::Egress).is_empty());
    // vm2 is untouched.
    assert_eq!(fw_version(&s, 3), 0);

    // DROP and any priority are accepted (dpservice: NO_DROP_SUPPORT); the evaluation order
    // is the packet path's (priority, drop first), the listing is creation order.
    s.create_firewall_rule("vm1", fw_rule("r0", 5, FirewallAction::Drop))
        .unwrap();
    let v2 = fw_version(&s, 2);
    assert!(v2 > v1);
    let ids: Vec<_> = s
        .list_firewall_rules("vm1")
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["r1", "r0"]);
    let snap = s.snapshot();
    let order: Vec<_> = snap
        .iface(2)
        .unwrap()
        .services
        .firewall
        .rules(TrafficDirection::Ingress)
        .iter()
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(order, ["r0", "r1"]);

    assert_eq!(
        s.get_firewall_rule("vm1", "r0").unwrap(),
        fw_rule("r0", 5, FirewallAction::Drop)
    );
    // Another interface's rules have versions of their own counter value (never reused).
    s.create_firewall_rule("vm2", fw_rule("r1", 1, FirewallAction::Accept))
        .unwrap();
    let v_vm2 = fw_version(&s, 3);
    assert!(v_vm2 > v2);

    s.delete_firewall_rule("vm1", "r1").unwrap();
    let v3 = fw_version(&s, 2);
    assert!(v3 > v_vm2);
    assert_eq!(s.list_firewall_rules("vm1").unwrap().len(), 1);
    s.delete_firewall_rule("vm1", "r0").unwrap();
    let snap = s.snapshot();
    let fw = &snap.iface(2).unwrap().services.firewall;
    assert!(fw.is_empty());
    assert!(fw.version > v3, "emptying the rules is a change too");
}

#[test]
fn firewall_errors_change_nothing() {
    let mut s = with_two_vms();
    s.set_limits(crate::Limits {
        firewall_rules_per_interface: 2,
        ..Default::default()
    });
    s.create_firewall_rule("vm1", fw_rule("r1", 0, FirewallAction::Accept))
        .unwrap();
    rejected(&mut s, DpError::NoVm, |s| {
        s.create_firewall_rule("nope", fw_rule("r9", 0, FirewallAction::Accept))
    });
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_firewall_rule("vm1", fw_rule("r1", 7, FirewallAction::Drop))
    });
    s.create_firewall_rule("vm1", fw_rule("r2", 0, FirewallAction::Accept))
        .unwrap();
    rejected(&mut s, DpError::LimitReached, |s| {
        s.create_firewall_rule("vm1", fw_rule("r3", 0, FirewallAction::Accept))
    });
    // The same id on another interface is another rule.
    s.create_firewall_rule("vm2", fw_rule("r1", 0, FirewallAction::Accept))
        .unwrap();
    rejected(&mut s, DpError::NoVm, |s| {
        s.delete_firewall_rule("nope", "r1")
    });
    rejected(&mut s, DpError::NotFound, |s| {
        s.delete_firewall_rule("vm1", "r9")
    });
    assert_eq!(s.get_firewall_rule("nope", "r1"), Err(DpError::NoVm));
    assert_eq!(s.get_firewall_rule("vm1", "r9"), Err(DpError::NotFound));
    assert_eq!(s.list_firewall_rules("nope"), Err(DpError::NoVm));
}

#[test]
fn deleting_an_interface_drops_its_rules() {
    let mut s = with_two_vms();
    s.create_firewall_rule("vm1", fw_rule("r1", 0, FirewallAction::Accept))
        .unwrap();
    let v = fw_version(&s, 2);
    s.delete_interface("vm1").unwrap();
    s.create_interface(spec("vm1", "dtapvf_0", VNI, "10.100.1.1", "::"))
        .unwrap();
    assert!(s.list_firewall_rules("vm1").unwrap().is_empty());
    assert_eq!(fw_version(&s, 2), 0);
    s.create_firewall_rule("vm1", fw_rule("r1", 0, FirewallAction::Accept))
        .unwrap();
    assert!(
        fw_version(&s, 2) > v,
        "a recreated interface gets new versions"
    );
}

// ----- VIPs -------------------------------------------------------------------------------------

#[test]
fn vip_publishes_public_address_and_underlay() {
    let mut s = with_two_vms();
    let g = s.snapshot().generation;
    let ul = s.create_vip("vm1", ip("172.20.0.1"), None).unwrap();
    assert_eq!(
        ul,
        v6("fc00:1::d000:1:0:3"),
        "allocated like interfaces' addresses"
    );
    let snap = s.snapshot();
    assert_eq!(snap.generation, g + 1);
    assert_eq!(
        snap.underlay_target(ul),
        Some(dp_tables::UnderlayTarget::Vip { port: 2, vni: VNI })
    );
    assert_eq!(
        snap.public_target(VNI, v4("172.20.0.1")),
        Some(dp_tables::PublicTarget::Vip {
            port: 2,
            private: v4("10.100.1.1")
        })
    );
    assert_eq!(snap.public.len(), 1);
    assert_eq!(snap.iface(2).unwrap().services.vip, Some(v4("172.20.0.1")));
    assert_eq!(snap.iface(3).unwrap().services.vip, None);
    assert_eq!(
        s.underlay_use(ul),
        Some(UnderlayUse::Vip { port: 2, vni: VNI })
    );
    assert_eq!(
        s.get_vip("vm1").unwrap(),
        VipInfo {
            ip: v4("172.20.0.1"),
            underlay: ul
        }
    );

    let removed = s.delete_vip("vm1").unwrap();
    assert_eq!(removed.ip, v4("172.20.0.1"));
    let snap = s.snapshot();
    assert!(snap.public.is_empty());
    assert_eq!(snap.underlay_target(ul), None);
    assert_eq!(snap.iface(2).unwrap().services.vip, None);
    assert_eq!(s.get_vip("vm1"), Err(DpError::SnatNoData));
    // Again, with a preferred underlay address.
    let preferred = v6("fc00:1::8000:0:1");
    assert_eq!(
        s.create_vip("vm1", ip("172.20.0.1"), Some(preferred)),
        Ok(preferred)
    );
}

#[test]
fn vip_errors_change_nothing() {
    let mut s = with_two_vms();
    let ul = s.create_vip("vm1", ip("172.20.0.1"), None).unwrap();
    rejected(&mut s, DpError::NoVm, |s| {
        s.create_vip("nope", ip("172.20.0.9"), None)
    });
    rejected(&mut s, DpError::BadIpVer, |s| {
        s.create_vip("vm2", ip("1234::1"), None)
    });
    // The preferred underlay is checked before the interface's VIP (dpservice's order).
    rejected(&mut s, DpError::VnfInsert, |s| {
        s.create_vip("vm1", ip("172.20.0.9"), Some(ul))
    });
    rejected(&mut s, DpError::SnatExists, |s| {
        s.create_vip("vm1", ip("172.20.0.9"), None)
    });
    // Another interface's VIP, or a NAT address of the VNI.
    rejected(&mut s, DpError::DnatExists, |s| {
        s.create_vip("vm2", ip("172.20.0.1"), None)
    });
    s.create_nat("vm1", ip("172.21.1.1"), 100, 102, None)
        .unwrap();
    rejected(&mut s, DpError::DnatExists, |s| {
        s.create_vip("vm2", ip("172.21.1.1"), None)
    });
    s.create_neighbor_nat(ip("172.21.1.2"), VNI, 500, 520, v6("fc00:2::64:0:1"))
        .unwrap();
    rejected(&mut s, DpError::DnatExists, |s| {
        s.create_vip("vm2", ip("172.21.1.2"), None)
    });
    rejected(&mut s, DpError::NoVm, |s| s.delete_vip("nope"));
    rejected(&mut s, DpError::SnatNoData, |s| s.delete_vip("vm2"));
    assert_eq!(s.get_vip("nope"), Err(DpError::NoVm));
    assert_eq!(s.get_vip("vm2"), Err(DpError::SnatNoData));
    // The same address in another VNI is another public address.
    s.create_interface(spec("vm3", "dtapvf_2", 200, "10.200.1.1", "::"))
        .unwrap();
    s.create_vip("vm3", ip("172.20.0.1"), None).unwrap();
    // A full public address table.
    s.set_limits(crate::Limits {
        public_addresses: 4,
        ..Default::default()
    });
    rejected(&mut s, DpError::DnatCreate, |s| {
        s.create_vip("vm2", ip("172.20.0.2"), None)
    });
}

// ----- NAT --------------------------------------------------------------------------------------

#[test]
fn nat_shares_an_address_and_publishes_it() {
    let mut s = with_two_vms();
    let ul1 = s
        .create_nat("vm1", ip("172.21.1.1"), 100, 102, None)
        .unwrap();
    let ul2 = s
        .create_nat("vm2", ip("172.21.1.1"), 102, 103, None)
        .unwrap();
    assert_ne!(ul1, ul2);
    let snap = s.snapshot();
    assert_eq!(
        snap.underlay_target(ul1),
        Some(dp_tables::UnderlayTarget::Nat { port: 2, vni: VNI })
    );
    assert_eq!(
        snap.underlay_target(ul2),
        Some(dp_tables::UnderlayTarget::Nat { port: 3, vni: VNI })
    );
    assert_eq!(
        snap.public_target(VNI, v4("172.21.1.1")),
        Some(dp_tables::PublicTarget::Nat)
    );
    assert_eq!(
        snap.iface(2).unwrap().services.nat,
        Some(dp_tables::NatRange {
            ip: v4("172.21.1.1"),
            min_port: 100,
            max_port: 102
        })
    );
    assert_eq!(
        s.get_nat("vm2").unwrap(),
        NatInfo {
            ip: v4("172.21.1.1"),
            min_port: 102,
            max_port: 103,
            underlay: ul2
        }
    );
    // Newest first, with the interfaces' own addresses (dpservice's test order).
    let list = s.list_local_nats(ip("172.21.1.1")).unwrap();
    let l: Vec<_> = list
        .iter()
        .map(|n| {
            (
                n.iface_id.as_str(),
                n.iface_ipv4,
                n.vni,
                n.min_port,
                n.max_port,
            )
        })
        .collect();
    assert_eq!(
        l,
        [
            ("vm2", v4("10.100.1.2"), VNI, 102, 103),
            ("vm1", v4("10.100.1.1"), VNI, 100, 102)
        ]
    );
    assert_eq!(s.list_local_nats(ip("0.0.0.0")).unwrap().len(), 2);
    assert!(s.list_local_nats(ip("172.21.9.9")).unwrap().is_empty());
    assert_eq!(s.list_local_nats(ip("1234::1")), Err(DpError::BadIpVer));

    // The public address stays while any NAT uses it.
    s.delete_nat("vm2").unwrap();
    let snap = s.snapshot();
    assert_eq!(
        snap.public_target(VNI, v4("172.21.1.1")),
        Some(dp_tables::PublicTarget::Nat)
    );
    assert_eq!(snap.underlay_target(ul2), None);
    assert_eq!(snap.iface(3).unwrap().services.nat, None);
    s.delete_nat("vm1").unwrap();
    assert!(s.snapshot().public.is_empty());
    assert_eq!(s.get_nat("vm1"), Err(DpError::SnatNoData));
    // A VIP and a NAT on one interface coexist; the VIP may reuse a former NAT address.
    s.create_vip("vm1", ip("172.21.1.1"), None).unwrap();
    s.create_nat("vm1", ip("172.21.1.5"), 100, 102, None)
        .unwrap();
    assert_eq!(s.snapshot().public.len(), 2);
}

#[test]
fn nat_errors_change_nothing() {
    let mut s = with_two_vms();
    let ul = s
        .create_nat("vm1", ip("172.21.1.1"), 100, 200, None)
        .unwrap();
    s.create_vip("vm1", ip("172.20.0.1"), None).unwrap();
    rejected(&mut s, DpError::NoVm, |s| {
        s.create_nat("nope", ip("172.21.1.1"), 300, 400, None)
    });
    rejected(&mut s, DpError::BadIpVer, |s| {
        s.create_nat("vm2", ip("1234::1"), 1024, 2048, None)
    });
    rejected(&mut s, DpError::VnfInsert, |s| {
        s.create_nat("vm2", ip("172.21.1.1"), 300, 400, Some(ul))
    });
    rejected(&mut s, DpError::SnatExists, |s| {
        s.create_nat("vm1", ip("172.21.1.1"), 300, 400, None)
    });
    // Overlapping ranges on one address in the VNI.
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_nat("vm2", ip("172.21.1.1"), 199, 300, None)
    });
    s.create_neighbor_nat(ip("172.21.1.1"), VNI, 500, 520, v6("fc00:2::64:0:1"))
        .unwrap();
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_nat("vm2", ip("172.21.1.1"), 510, 600, None)
    });
    // A VIP of the VNI is no NAT address.
    rejected(&mut s, DpError::DnatExists, |s| {
        s.create_nat("vm2", ip("172.20.0.1"), 100, 200, None)
    });
    s.set_limits(crate::Limits {
        public_addresses: 2,
        ..Default::default()
    });
    rejected(&mut s, DpError::DnatCreate, |s| {
        s.create_nat("vm2", ip("172.21.1.9"), 100, 200, None)
    });
    // An address in use needs no new entry.
    s.create_nat("vm2", ip("172.21.1.1"), 200, 300, None)
        .unwrap();
    rejected(&mut s, DpError::NoVm, |s| s.delete_nat("nope"));
    s.delete_nat("vm2").unwrap();
    rejected(&mut s, DpError::SnatNoData, |s| s.delete_nat("vm2"));
    assert_eq!(s.get_nat("nope"), Err(DpError::NoVm));
}

#[test]
fn neighbor_nats_publish_sorted() {
    let mut s = with_two_vms();
    let nh = v6("fc00:2::64:0:1");
    let nh2 = v6("fc00:3::64:0:1");
    s.create_neighbor_nat(ip("172.21.1.1"), VNI, 600, 700, nh)
        .unwrap();
    s.create_neighbor_nat(ip("172.21.1.1"), VNI, 500, 520, nh2)
        .unwrap();
    // Another VNI without interfaces here.
    s.create_neighbor_nat(ip("172.21.1.2"), 300, 100, 200, nh)
        .unwrap();
    let snap = s.snapshot();
    let ranges = &snap.neighbor_nats[&(VNI, u32::from(v4("172.21.1.1")))];
    assert_eq!(
        ranges,
        &vec![
            dp_tables::NeighborNat {
                min_port: 500,
                max_port: 520,
                underlay: nh2
            },
            dp_tables::NeighborNat {
                min_port: 600,
                max_port: 700,
                underlay: nh
            }
        ]
    );
    assert_eq!(
        snap.public_target(VNI, v4("172.21.1.1")),
        Some(dp_tables::PublicTarget::Nat)
    );
    assert_eq!(
        snap.public_target(300, v4("172.21.1.2")),
        Some(dp_tables::PublicTarget::Nat)
    );
    // Listing: creation order, every VNI; 0.0.0.0 lists all.
    let l: Vec<_> = s
        .list_neighbor_nats(ip("172.21.1.1"))
        .unwrap()
        .iter()
        .map(|n| (n.vni, n.min_port, n.max_port, n.underlay))
        .collect();
    assert_eq!(l, [(VNI, 600, 700, nh), (VNI, 500, 520, nh2)]);
    assert_eq!(s.list_neighbor_nats(ip("0.0.0.0")).unwrap().len(), 3);

    // A local NAT keeps the address public after its neighbors went.
    s.create_nat("vm1", ip("172.21.1.1"), 100, 102, None)
        .unwrap();
    s.delete_neighbor_nat(ip("172.21.1.1"), VNI, 600, 700)
        .unwrap();
    s.delete_neighbor_nat(ip("172.21.1.1"), VNI, 500, 520)
        .unwrap();
    let snap = s.snapshot();
    assert!(!snap
        .neighbor_nats
        .contains_key(&(VNI, u32::from(v4("172.21.1.1")))));
    assert_eq!(
        snap.public_target(VNI, v4("172.21.1.1")),
        Some(dp_tables::PublicTarget::Nat)
    );
    s.delete_neighbor_nat(ip("172.21.1.2"), 300, 100, 200)
        .unwrap();
    assert_eq!(s.snapshot().public.len(), 1);
}

#[test]
fn neighbor_nat_errors_change_nothing() {
    let mut s = with_two_vms();
    let nh = v6("fc00:2::64:0:1");
    s.create_neighbor_nat(ip("172.21.1.1"), VNI, 500, 520, nh)
        .unwrap();
    rejected(&mut s, DpError::BadIpVer, |s| {
        s.create_neighbor_nat(ip("1234::1"), VNI, 500, 520, nh)
    });
    // The same or an overlapping range, in this or another VNI (dpservice's test).
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_neighbor_nat(ip("172.21.1.1"), VNI, 500, 520, nh)
    });
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_neighbor_nat(ip("172.21.1.1"), 200, 501, 521, nh)
    });
    // Overlapping a local NAT.
    s.create_nat("vm1", ip("172.21.1.1"), 100, 102, None)
        .unwrap();
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_neighbor_nat(ip("172.21.1.1"), VNI, 101, 200, nh)
    });
    // A VIP of the VNI.
    s.create_vip("vm2", ip("172.20.0.1"), None).unwrap();
    rejected(&mut s, DpError::DnatExists, |s| {
        s.create_neighbor_nat(ip("172.20.0.1"), VNI, 100, 200, nh)
    });
    // Adjacent ranges are fine (the upper bound is excluded).
    s.create_neighbor_nat(ip("172.21.1.1"), VNI, 520, 521, nh)
        .unwrap();
    s.set_limits(crate::Limits {
        neighbor_nats: 2,
        ..Default::default()
    });
    rejected(&mut s, DpError::LimitReached, |s| {
        s.create_neighbor_nat(ip("172.21.1.1"), VNI, 900, 901, nh)
    });
    s.set_limits(crate::Limits {
        public_addresses: 2,
        ..Default::default()
    });
    rejected(&mut s, DpError::DnatCreate, |s| {
        s.create_neighbor_nat(ip("172.21.1.7"), VNI, 900, 901, nh)
    });
    rejected(&mut s, DpError::BadIpVer, |s| {
        s.delete_neighbor_nat(ip("1234::1"), VNI, 500, 520)
    });
    rejected(&mut s, DpError::NotFound, |s| {
        s.delete_neighbor_nat(ip("172.21.1.1"), VNI, 500, 521)
    });
    rejected(&mut s, DpError::NotFound, |s| {
        s.delete_neighbor_nat(ip("172.21.1.1"), 200, 500, 520)
    });
    assert_eq!(s.list_neighbor_nats(ip("1234::1")), Err(DpError::BadIpVer));
}

#[test]
fn deleting_an_interface_releases_vip_nat_and_vni_neighbor_nats() {
    let mut s = with_two_vms();
    let nh = v6("fc00:2::64:0:1");
    let vip_ul = s.create_vip("vm1", ip("172.20.0.1"), None).unwrap();
    let nat_ul = s
        .create_nat("vm1", ip("172.21.1.1"), 100, 102, None)
        .unwrap();
    s.create_nat("vm2", ip("172.21.1.1"), 102, 104, None)
        .unwrap();
    s.create_neighbor_nat(ip("172.21.1.1"), VNI, 500, 520, nh)
        .unwrap();
    s.create_neighbor_nat(ip("172.21.1.3"), 300, 500, 520, nh)
        .unwrap();
    s.delete_interface("vm1").unwrap();
    let snap = s.snapshot();
    assert_eq!(snap.underlay_target(vip_ul), None);
    assert_eq!(snap.underlay_target(nat_ul), None);
    assert_eq!(snap.public_target(VNI, v4("172.20.0.1")), None);
    assert_eq!(
        snap.public_target(VNI, v4("172.21.1.1")),
        Some(dp_tables::PublicTarget::Nat)
    );
    assert_eq!(s.list_local_nats(ip("0.0.0.0")).unwrap().len(), 1);
    // The VNI's last interface takes the VNI's neighbor NATs along (as dpservice).
    s.delete_interface("vm2").unwrap();
    let snap = s.snapshot();
    assert!(!snap
        .neighbor_nats
        .contains_key(&(VNI, u32::from(v4("172.21.1.1")))));
    assert_eq!(
        snap.public.keys().copied().collect::<Vec<_>>(),
        [(300, u32::from(v4("172.21.1.3")))]
    );
    assert_eq!(s.list_neighbor_nats(ip("0.0.0.0")).unwrap().len(), 1);
    assert_eq!(s.underlays.iter().count(), 0);
    // The address is free for a VIP again.
    s.create_interface(spec("vm1", "dtapvf_0", VNI, "10.100.1.1", "::"))
        .unwrap();
    s.create_vip("vm1", ip("172.21.1.1"), None).unwrap();
}

#[test]
fn initialize_removes_neighbor_nats_only() {
    let mut s = with_two_vms();
    let nh = v6("fc00:2::64:0:1");
    s.create_vip("vm1", ip("172.20.0.1"), None).unwrap();
    s.create_nat("vm2", ip("172.21.1.1"), 100, 102, None)
        .unwrap();
    s.create_firewall_rule("vm1", fw_rule("r1", 0, FirewallAction::Accept))
        .unwrap();
    s.create_neighbor_nat(ip("172.21.1.1"), VNI, 500, 520, nh)
        .unwrap();
    s.create_neighbor_nat(ip("172.21.1.2"), VNI, 500, 520, nh)
        .unwrap();
    let g = s.snapshot().generation;
    s.initialize();
    let snap = s.snapshot();
    assert_eq!(snap.generation, g + 1);
    assert!(snap.neighbor_nats.is_empty());
    assert!(s.list_neighbor_nats(ip("0.0.0.0")).unwrap().is_empty());
    assert_eq!(
        snap.public.len(),
        2,
        "the VIP and the local NAT's address stay"
    );
    assert_eq!(snap.public_target(VNI, v4("172.21.1.2")), None);
    assert!(s.get_vip("vm1").is_ok() && s.get_nat("vm2").is_ok());
    assert_eq!(s.list_firewall_rules("vm1").unwrap().len(), 1);
}

/// The packet path decides flows again when the firewall generation changes: after an
/// interface or its rules changed, never after a route change.
#[test]
fn firewall_generation_follows_interface_changes_only() {
    let mut s = with_two_vms();
    let g0 = s.snapshot().firewall_generation;
    assert_ne!(g0, 0);
    s.create_route(VNI, ip("10.9.0.0"), 16, VNI, ip("fc00:2::1"))
        .unwrap();
    assert_eq!(s.snapshot().firewall_generation, g0, "routes do not count");
    let rule = crate::firewall::FirewallRuleSpec {
        id: "r1".into(),
        direction: dp_tables::TrafficDirection::Ingress,
        action: dp_tables::FirewallAction::Accept,
        priority: 1,
        src_addr: ip("0.0.0.0"),
        src_len: 0,
        dst_addr: ip("0.0.0.0"),
        dst_len: 0,
        filter: crate::firewall::RuleFilter::Any,
    };
    s.create_firewall_rule("vm1", rule).unwrap();
    let g1 = s.snapshot().firewall_generation;
    assert!(g1 > g0, "a rule counts");
    s.delete_interface("vm2").unwrap();
    assert!(s.snapshot().firewall_generation > g1, "an interface counts");
}

// ----- load balancers ---------------------------------------------------------------------------

fn tcp(port: u16) -> dp_tables::LbPort {
    dp_tables::LbPort {
        proto: dp_packet::IpProtocol::TCP,
        port,
    }
}

#[test]
fn load_balancers_publish_their_targets_and_keep_their_vni() {
    let mut s = new_state();
    let ul = s
        .create_load_balancer("lb1", 300, ip("10.20.30.40"), vec![tcp(80)], None)
        .unwrap();
    // The VNI exists for the balancer alone, as in dpservice (test_vni_existence).
    assert!(s.vni_in_use(300, VniType::Ipv4).unwrap());
    assert_eq!(
        s.underlay_use(ul),
        Some(UnderlayUse::LoadBalancer {
            vni: 300,
            ip: ip("10.20.30.40")
        })
    );
    let info = s.get_load_balancer("lb1").unwrap();
    assert_eq!(
        (info.vni, info.ip, info.underlay),
        (300, ip("10.20.30.40"), ul)
    );
    let gen0 = s.snapshot().lb_generation;
    s.create_lb_target("lb1", ip("fc00:2::2")).unwrap();
    s.create_lb_target("lb1", ip("fc00:2::1")).unwrap();
    // Listed sorted, published with a Maglev table, under a new generation.
    assert_eq!(
        s.list_lb_targets(Some("lb1")).unwrap(),
        [v6("fc00:2::1"), v6("fc00:2::2")]
    );
    let snap = s.snapshot();
    assert!(snap.lb_generation > gen0);
    let lb = snap.load_balancer(300, ip("10.20.30.40")).unwrap();
    assert_eq!(lb.targets, [v6("fc00:2::1"), v6("fc00:2::2")]);
    assert!(lb.pick(12345).is_some());
    assert!(snap.load_balancer(100, ip("10.20.30.40")).is_none());
    s.delete_lb_target("lb1", ip("fc00:2::1")).unwrap();
    assert_eq!(s.list_lb_targets(None).unwrap(), [v6("fc00:2::2")]);
    // An interface in the VNI comes and goes: the balancer keeps the VNI.
    s.create_interface(spec("vm4", "dtapvf_3", 300, "10.30.0.4", "::"))
        .unwrap();
    s.delete_interface("vm4").unwrap();
    assert!(s.vni_in_use(300, VniType::Ipv4).unwrap());
    s.delete_load_balancer("lb1").unwrap();
    assert!(!s.vni_in_use(300, VniType::Ipv4).unwrap());
    assert_eq!(s.underlay_use(ul), None);
    assert!(s.snapshot().load_balancers.is_empty());
}

#[test]
fn load_balancers_are_listed_in_creation_order() {
    let mut s = new_state();
    s.create_load_balancer("lb2", VNI, ip("1234::1"), vec![tcp(80)], None)
        .unwrap();
    s.create_load_balancer("lb1", VNI, ip("1.2.3.4"), vec![tcp(80), tcp(443)], None)
        .unwrap();
    let ids: Vec<_> = s.list_load_balancers().into_iter().map(|l| l.id).collect();
    assert_eq!(ids, ["lb2", "lb1"]);
    assert_eq!(
        s.get_load_balancer("lb1").unwrap().ports,
        [tcp(80), tcp(443)]
    );
}

#[test]
fn load_balancer_errors_change_nothing() {
    let mut s = with_two_vms();
    s.create_load_balancer("lb1", VNI, ip("10.20.30.40"), vec![tcp(80)], None)
        .unwrap();
    let lb = |id: &'static str, addr: &'static str| {
        move |s: &mut State| s.create_load_balancer(id, VNI, ip(addr), vec![tcp(80)], None)
    };
    rejected(&mut s, DpError::AlreadyExists, lb("lb1", "10.20.30.41"));
    rejected(&mut s, DpError::AlreadyExists, lb("lb2", "10.20.30.40"));
    rejected(&mut s, DpError::NotFound, |s| s.get_load_balancer("nope"));
    rejected(&mut s, DpError::NotFound, |s| {
        s.delete_load_balancer("nope")
    });
    rejected(&mut s, DpError::NoLb, |s| {
        s.create_lb_target("nope", ip("::1"))
    });
    rejected(&mut s, DpError::NoLb, |s| {
        s.delete_lb_target("nope", ip("::1"))
    });
    rejected(&mut s, DpError::NoLb, |s| s.list_lb_targets(Some("nope")));
    rejected(&mut s, DpError::BadIpVer, |s| {
        s.create_lb_target("lb1", ip("1.2.3.4"))
    });
    rejected(&mut s, DpError::BadIpVer, |s| {
        s.delete_lb_target("lb1", ip("1.2.3.4"))
    });
    rejected(&mut s, DpError::NotFound, |s| {
        s.delete_lb_target("lb1", ip("fc00:2::1"))
    });
    s.create_lb_target("lb1", ip("fc00:2::1")).unwrap();
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_lb_target("lb1", ip("fc00:2::1"))
    });
    // Table limits.
    let mut limits = *s.limits();
    limits.load_balancers = 1;
    limits.lb_targets = 1;
    s.set_limits(limits);
    rejected(&mut s, DpError::OutOfMemory, lb("lb2", "10.20.30.41"));
    rejected(&mut s, DpError::BackipAdd, |s| {
        s.create_lb_target("lb1", ip("fc00:2::2"))
    });
    // A preferred underlay address that is taken.
    let taken = s.get_load_balancer("lb1").unwrap().underlay;
    rejected(&mut s, DpError::VnfInsert, |s| {
        s.create_load_balancer("lb3", VNI, ip("10.20.30.42"), vec![tcp(80)], Some(taken))
    });
}

#[test]
fn lb_prefixes_deliver_to_their_interface_without_a_route() {
    let mut s = with_two_vms();
    let ul = s
        .create_lb_prefix("vm1", ip("10.20.30.40"), 32, None)
        .unwrap();
    assert_eq!(
        s.underlay_use(ul),
        Some(UnderlayUse::LbPrefix {
            port: 2,
            vni: VNI,
            addr: ip("10.20.30.40"),
            len: 32
        })
    );
    let snap = s.snapshot();
    assert_eq!(
        snap.underlay_target(ul),
        Some(dp_tables::UnderlayTarget::Iface { port: 2, vni: VNI })
    );
    // The VM may send from the prefix (its answers as the balancer) ...
    assert!(snap
        .iface(2)
        .unwrap()
        .owns_source_v4(Ipv4Addr::new(10, 20, 30, 40)));
    // ... but the VNI routes nothing there.
    assert_eq!(
        snap.vni(VNI)
            .unwrap()
            .lookup_v4(Ipv4Addr::new(10, 20, 30, 40)),
        None
    );
    assert_eq!(s.list_lb_prefixes("vm1").unwrap()[0].underlay, ul);
    assert!(s.list_prefixes("vm1").unwrap().is_empty());
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_lb_prefix("vm1", ip("10.20.30.40"), 32, None)
    });
    rejected(&mut s, DpError::NoVm, |s| {
        s.create_lb_prefix("nope", ip("10.20.30.40"), 32, None)
    });
    rejected(&mut s, DpError::NoVm, |s| s.list_lb_prefixes("nope"));
    rejected(&mut s, DpError::NoVm, |s| {
        s.delete_lb_prefix("nope", ip("10.20.30.40"), 32)
    });
    rejected(&mut s, DpError::NotFound, |s| {
        s.delete_lb_prefix("vm1", ip("10.20.30.41"), 32)
    });
    s.delete_lb_prefix("vm1", ip("10.20.30.40"), 32).unwrap();
    assert_eq!(s.underlay_use(ul), None);
    assert!(!s
        .snapshot()
        .iface(2)
        .unwrap()
        .owns_source_v4(Ipv4Addr::new(10, 20, 30, 40)));
    // They go with their interface.
    let ul = s.create_lb_prefix("vm2", ip("1.2.3.0"), 24, None).unwrap();
    s.delete_interface("vm2").unwrap();
    assert_eq!(s.underlay_use(ul), None);
}

#[test]
fn metering_is_checked_as_dpservice_and_published() {
    let mut s = with_two_vms();
    let metered = |total, public| {
        let mut sp = spec("vm3", "dtapvf_2", VNI, "10.100.1.3", "2000:100:1::3");
        sp.meter = dp_tables::MeterConfig {
            total_mbps: total,
            public_mbps: public,
        };
        sp
    };
    // dpservice's dp_port_meter_config: public above total (a total of 0 included), or a total
    // beyond its 32-bit VF rate limit, is PORT_METER, and nothing is created.
    rejected(&mut s, DpError::PortMeter, |s| {
        s.create_interface(metered(100, 101))
    });
    rejected(&mut s, DpError::PortMeter, |s| {
        s.create_interface(metered(0, 10))
    });
    rejected(&mut s, DpError::PortMeter, |s| {
        s.create_interface(metered(u64::from(u32::MAX) + 1, 0))
    });
    // Device and route errors come first, as in dpservice.
    let mut taken = metered(100, 101);
    taken.device = "dtapvf_0".into();
    rejected(&mut s, DpError::AlreadyExists, |s| {
        s.create_interface(taken)
    });

    s.create_interface(metered(100, 20)).unwrap();
    let info = s.get_interface("vm3").unwrap();
    let m = dp_tables::MeterConfig {
        total_mbps: 100,
        public_mbps: 20,
    };
    assert_eq!(info.meter, m);
    assert_eq!(s.snapshot().iface(4).unwrap().meter, m);
    assert!(!s.snapshot().iface(2).unwrap().meter.is_metered());
    // Equal rates and the largest total are accepted.
    s.create_interface(InterfaceSpec {
        id: "vm4".into(),
        device: "dtapvf_3".into(),
        ipv4: "10.100.1.4".parse().unwrap(),
        ipv6: "::".parse().unwrap(),
        ..metered(u64::from(u32::MAX), u64::from(u32::MAX))
    })
    .unwrap();
    assert_eq!(
        s.list_interfaces().last().map(|i| i.meter.total_mbps),
        Some(u64::from(u32::MAX))
    );
}
