//! `dpservice-dump`: attaches to a running dpservice-rs daemon through its dump socket
//! (`--dump-socket`) and shows what the graph does to packets — frames in and out, node
//! verdicts, drops with their reason — as one line per packet or as a pcapng file; and lists the
//! workers' flows (conntrack) and NAT port use. The socket's protocol: docs/architecture.md,
//! "Packet dump".

pub mod client;
pub mod pcapng;
pub mod summary;

use dp_pipeline::NodeId;

/// The nodes whose name `pattern` matches, as the mask the daemon takes (bit
/// [`NodeId::index`]); an empty pattern matches every node.
pub fn node_mask(pattern: &str) -> Result<u64, regex::Error> {
    let re = regex::Regex::new(pattern)?;
    Ok(NodeId::ORDER
        .iter()
        .filter(|n| re.is_match(n.name()))
        .fold(0, |mask, n| mask | 1 << n.index()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_patterns_select_by_name() {
        use dp_pipeline::NodeId;
        let all = super::node_mask("").unwrap();
        assert_eq!(all.count_ones() as usize, NodeId::ORDER.len());
        let ip = super::node_mask("^ipip_").unwrap();
        assert_eq!(
            ip,
            1 << NodeId::IpipDecap.index() | 1 << NodeId::IpipEncap.index()
        );
        assert_eq!(super::node_mask("^nothing$").unwrap(), 0);
        assert!(super::node_mask("(").is_err());
    }
}
