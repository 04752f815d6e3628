//! The underlay of the multi-host tests: a network namespace acting as a plain Linux IPv6
//! router between the hypervisors' uplinks (docs/multihost.md has the picture).
//!
//! - It holds the kernel side of every uplink TAP (moved in with `ip link set X netns R`).
//! - Each uplink link carries only the router's link-local `fe80::ffff` (`addrgenmode none`, no
//!   DAD): that is what the daemons' `--router fe80::ffff` resolves by neighbor discovery. The
//!   router's own global address `fc00::ffff/128` sits on its loopback.
//! - A hypervisor's underlay /64 is routed **on-link** over both of its uplinks, spread by the
//!   kernel's multipath hash: the router resolves each underlay address (the host's and every
//!   interface's) by neighbor solicitation on the chosen link. Linux refuses device-only IPv6
//!   multipath routes in the classic form (`nexthop dev A nexthop dev B`: "Device only routes
//!   can not be added for IPv6 using the multipath API"), so the route uses nexthop objects:
//!   one per uplink (`ip -6 nexthop add id N dev X`) and a group per hypervisor.
//! - Setting an uplink down removes its nexthop object (the kernel flushes nexthops of a device
//!   that goes down) and its link-local address (link-locals are never kept on down);
//!   [`Router::link_up`] restores both, as a routing daemon would.

use std::collections::BTreeMap;
use std::time::Duration;

use super::vm::Netns;
use super::{run, Out};

/// The router's address on every uplink link (the daemons' `--router`).
pub const ROUTER_LL: &str = "fe80::ffff";
/// The router's own underlay address (on its loopback).
pub const ROUTER_ADDR: &str = "fc00::ffff";

pub struct Router {
    pub ns: Netns,
    /// uplink name → its nexthop id.
    nexthops: BTreeMap<String, u32>,
    /// prefix → (group id, member uplinks).
    groups: BTreeMap<String, (u32, Vec<String>)>,
}

impl Router {
    /// A namespace with IPv6 forwarding on and `fc00::ffff/128` on its loopback.
    pub fn new(ns_name: &str) -> Result<Router, String> {
        let ns = Netns::new(ns_name)?;
        let r = Router {
            ns,
            nexthops: BTreeMap::new(),
            groups: BTreeMap::new(),
        };
        r.sh(&format!(
            "set -e; sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.conf.default.forwarding=1; \
             ip -6 addr add {ROUTER_ADDR}/128 dev lo"
        ))?;
        Ok(r)
    }

    /// Runs a shell snippet in the router namespace; it must succeed.
    pub fn sh(&self, script: &str) -> Result<Out, String> {
        run(
            &mut self.ns.command(&["sh", "-c", script]),
            Duration::from_secs(10),
        )?
        .check()
    }

    /// Moves the host-namespace device `link` (an uplink TAP of a daemon) into the router and
    /// configures it: only `fe80::ffff` as address, forwarding on, up.
    pub fn attach(&mut self, link: &str) -> Result<(), String> {
        run(
            std::process::Command::new("ip").args(["link", "set", link, "netns", &self.ns.name]),
            Duration::from_secs(5),
        )?
        .check()?;
        self.sh(&format!(
            "set -e; ip link set {link} addrgenmode none; \
             sysctl -qw net.ipv6.conf.{link}.forwarding=1 net.ipv6.conf.{link}.accept_ra=0; \
             ip link set {link} up; ip -6 addr add {ROUTER_LL}/64 dev {link} nodad"
        ))?;
        let id = 1 + self.nexthops.len() as u32;
        self.nexthops.insert(link.to_string(), id);
        Ok(())
    }

    /// Routes `prefix` (e.g. `fc00:1::/64`) on-link over `links`, multipath.
    pub fn route_multipath(&mut self, prefix: &str, links: &[&str]) -> Result<(), String> {
        let gid = 1000 + self.groups.len() as u32;
        self.groups.insert(
            prefix.to_string(),
            (gid, links.iter().map(|l| l.to_string()).collect()),
        );
        self.sync_routes()
    }

    /// Routes `prefix` on-link over `links` as [`Router::route_multipath`] does, or moves it
    /// there if it is routed already (its nexthop group keeps its id, only its members change):
    /// how a routing daemon follows an announcement that moved, e.g. a migrated VM's /128.
    pub fn set_route(&mut self, prefix: &str, links: &[&str]) -> Result<(), String> {
        let gid = match self.groups.get(prefix) {
            Some((gid, _)) => *gid,
            None => {
                1000 + self
                    .groups
                    .values()
                    .map(|(g, _)| g - 999)
                    .max()
                    .unwrap_or(0)
            }
        };
        self.groups.insert(
            prefix.to_string(),
            (gid, links.iter().map(|l| l.to_string()).collect()),
        );
        self.sync_routes()
    }

    /// (Re)creates every nexthop whose link is up, every group and route (idempotent).
    fn sync_routes(&self) -> Result<(), String> {
        let mut script = String::from("set -e\n");
        let mut up = Vec::new();
        for (link, id) in &self.nexthops {
            if self.is_up(link)? {
                script.push_str(&format!("ip -6 nexthop replace id {id} dev {link}\n"));
                up.push(link.clone());
            }
        }
        for (prefix, (gid, links)) in &self.groups {
            let members: Vec<String> = links
                .iter()
                .filter(|l| up.contains(l))
                .map(|l| self.nexthops[l].to_string())
                .collect();
            if members.is_empty() {
                continue;
            }
            script.push_str(&format!(
                "ip nexthop replace id {gid} group {}\nip -6 route replace {prefix} nhid {gid}\n",
                members.join("/")
            ));
        }
        self.sh(&script).map(|_| ())
    }

    fn is_up(&self, link: &str) -> Result<bool, String> {
        let o = self.ns.output(&["ip", "-o", "link", "show", "dev", link])?;
        Ok(o.split('<')
            .nth(1)
            .and_then(|f| f.split('>').next())
            .is_some_and(|flags| flags.split(',').any(|f| f == "UP")))
    }

    /// `ip link set <link> down` in the router (the hypervisor's port sees its link go down).
    pub fn link_down(&self, link: &str) -> Result<(), String> {
        self.sh(&format!("ip link set {link} down")).map(|_| ())
    }

    /// `ip link set <link> up`, then restores what the kernel removed on down: the link-local
    /// `fe80::ffff` and the link's nexthop in its group.
    pub fn link_up(&self, link: &str) -> Result<(), String> {
        self.sh(&format!(
            "set -e; ip link set {link} up; \
             ip -6 addr replace {ROUTER_LL}/64 dev {link} nodad"
        ))?;
        self.sync_routes()
    }

    /// Packets the router received on `link` (i.e. the hypervisor sent on that uplink).
    pub fn rx_packets(&self, link: &str) -> Result<u64, String> {
        let j = self
            .ns
            .output(&["ip", "-j", "-s", "link", "show", "dev", link])?;
        let v: serde_json::Value =
            serde_json::from_str(&j).map_err(|e| format!("ip -j -s link: {e}: {j}"))?;
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .ok_or_else(|| format!("no rx packet count in {j}"))
    }

    /// `ping -6` from the router (source `fc00::ffff`); `Ok` iff replies came back.
    pub fn ping(&self, dst: &str) -> Result<Out, String> {
        run(
            &mut self.ns.command(&[
                "ping",
                "-6",
                "-n",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "1",
                "-w",
                "3",
                "-I",
                ROUTER_ADDR,
                dst,
            ]),
            Duration::from_secs(8),
        )
    }

    /// Routes, nexthops, neighbours, addresses and counters, for failure messages.
    pub fn report(&self) -> String {
        let mut s = format!("=== router (netns {}):\n", self.ns.name);
        for args in [
            &["ip", "-6", "addr"][..],
            &["ip", "-6", "route"],
            &["ip", "nexthop"],
            &["ip", "-6", "neigh"],
            &["ip", "-s", "link"],
        ] {
            match self.ns.exec(args) {
                Ok(o) => s.push_str(&format!("$ {}\n{}{}", args.join(" "), o.stdout, o.stderr)),
                Err(e) => s.push_str(&format!("$ {}: {e}\n", args.join(" "))),
            }
        }
        s
    }
}
