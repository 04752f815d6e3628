//! The router's MAC from the kernel's IPv6 neighbour table, on a real TAP with static entries
//! (`ip -6 neigh add … nud permanent`). Needs root; prints why it skips without it. The TAP is
//! the port's own (gone when it is dropped, on failure too), its name unique to the run.

mod common;

use common::*;
use dp_ports::neighbor::{self, NTF_ROUTER, NUD_PERMANENT};
use dp_ports::{MacAddr, TapOptions, TapPort};

#[test]
fn the_router_entry_of_the_tap_is_found() {
    if !can_run("the_router_entry_of_the_tap_is_found") {
        return;
    }
    let name = unique("dpnb");
    let _tap = TapPort::create_with(&name, None, &TapOptions::default()).unwrap();
    run(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.ipv6.conf.{name}.disable_ipv6=0"),
    ]);
    // Nothing yet (the kernel may add entries of its own; none is a router with an address).
    assert_eq!(neighbor::router_mac(&name).unwrap(), None);

    // A neighbour that is not a router is not taken.
    run(&[
        "ip",
        "-6",
        "neigh",
        "add",
        "fe80::2",
        "lladdr",
        "52:54:00:00:00:02",
        "dev",
        &name,
        "nud",
        "permanent",
    ]);
    assert_eq!(neighbor::router_mac(&name).unwrap(), None);

    // The router is.
    run(&[
        "ip",
        "-6",
        "neigh",
        "add",
        "fe80::ffff",
        "lladdr",
        "52:54:00:12:34:56",
        "dev",
        &name,
        "nud",
        "permanent",
        "router",
    ]);
    let index = neighbor::ifindex(&name).unwrap();
    let all = neighbor::neighbors(index).unwrap();
    let router = all
        .iter()
        .find(|n| n.addr == "fe80::ffff".parse::<std::net::Ipv6Addr>().unwrap())
        .unwrap_or_else(|| panic!("fe80::ffff not in {all:?}"));
    assert_eq!(router.state, NUD_PERMANENT);
    assert_ne!(router.flags & NTF_ROUTER, 0);
    assert!(all.iter().all(|n| n.ifindex == index), "{all:?}");
    assert_eq!(
        neighbor::router_mac(&name).unwrap(),
        Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
    );

    // Another interface's router is not this one's.
    let other = unique("dpnb");
    let _other = TapPort::create_with(&other, None, &TapOptions::default()).unwrap();
    assert_eq!(neighbor::router_mac(&other).unwrap(), None);
    assert!(neighbor::router_mac("dpnb-nonexist").is_err());
}
