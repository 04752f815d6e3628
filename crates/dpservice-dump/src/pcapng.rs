//! `--pcap FILE`: a pcapng file (Ethernet, one interface) whose packets carry, as their comment,
//! the place in the graph and the drop reason — what `tshark -r` and `tcpdump -r` read.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufWriter;
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use dp_pipeline::trace::SNAP_LEN;

pub struct PcapNg {
    writer: PcapNgWriter<BufWriter<File>>,
}

impl PcapNg {
    pub fn create(path: &std::path::Path) -> Result<PcapNg, String> {
        let file =
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let mut writer = PcapNgWriter::new(BufWriter::new(file)).map_err(|e| e.to_string())?;
        let interface = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAP_LEN as u32,
            options: vec![],
        };
        writer
            .write_pcapng_block(interface)
            .map_err(|e| e.to_string())?;
        Ok(PcapNg { writer })
    }

    /// One packet taken at `ts_ns` (ns since 1970), `orig_len` long on the wire.
    pub fn write(
        &mut self,
        ts_ns: u64,
        orig_len: u32,
        data: &[u8],
        comment: String,
    ) -> Result<(), String> {
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(ts_ns),
            original_len: orig_len,
            data: Cow::Borrowed(data),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
        };
        self.writer
            .write_pcapng_block(block)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn finish(self) -> Result<(), String> {
        let mut inner = self.writer.into_inner();
        std::io::Write::flush(&mut inner).map_err(|e| e.to_string())
    }
}
