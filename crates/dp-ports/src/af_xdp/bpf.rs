//! The eBPF side of an AF_XDP port, without libbpf: an XSKMAP, a hand-assembled XDP program
//! that redirects every frame of a queue to the socket in the map, and its attachment through a
//! BPF link (`BPF_LINK_CREATE`), all with the raw `bpf(2)` system call.
//!
//! The program, in eBPF assembly:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; ctx->rx_queue_index (struct xdp_md)
//! r1 = map_fd ll                ; ld_imm64, src = BPF_PSEUDO_MAP_FD: the loader puts the map here
//! r3 = 2                        ; XDP_PASS when the map has no socket for this queue
//! call bpf_redirect_map         ; helper 51; its result is the program's verdict
//! exit
//! ```

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// linux/bpf.h: commands.
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
// Types and helpers.
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

// Instruction classes and modes (linux/bpf_common.h, linux/bpf.h).
const BPF_LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
const BPF_LD_IMM_DW: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
const BPF_ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const BPF_JMP_CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const BPF_JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `struct bpf_insn`: opcode, dst_reg:4 | src_reg:4, off, imm. As one little-endian or
/// big-endian u64 word, in memory order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // The register nibbles follow the bitfield order of the target.
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0x0f);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0x0f);
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
}

/// The redirect program for the XSKMAP `map_fd`; see the module docs.
pub(crate) fn redirect_program(map_fd: i32) -> [Insn; 6] {
    [
        Insn::new(BPF_LDX_MEM_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        Insn::new(BPF_LD_IMM_DW, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        Insn::new(0, 0, 0, 0, 0), // the upper half of the 64-bit immediate
        Insn::new(BPF_ALU64_MOV_K, 3, 0, 0, XDP_PASS),
        Insn::new(BPF_JMP_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        Insn::new(BPF_JMP_EXIT, 0, 0, 0, 0),
    ]
}

/// `union bpf_attr` for `BPF_MAP_CREATE` (the fields used).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_MAP_UPDATE_ELEM`.
#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for `BPF_PROG_LOAD` (the fields used).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` (the XDP fields).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// One `bpf(2)` call; a non-negative result is returned (for the commands that make one, a
/// descriptor the caller owns).
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: `attr` is a live, initialised `bpf_attr` prefix of the stated size; the kernel
    // zero-extends it and reads (or, for some commands, writes) only within that size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as libc::c_int)
    }
}

/// Takes ownership of a descriptor returned by `bpf(2)`.
fn owned(fd: libc::c_int) -> OwnedFd {
    // SAFETY: the kernel just returned this fresh descriptor, which nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (dst, src) in out.iter_mut().take(15).zip(name.bytes()) {
        *dst = src;
    }
    out
}

/// An XSKMAP with room for queues `0..entries`.
pub(crate) fn create_xskmap(entries: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries.max(1),
        map_name: name16("dp_xsks"),
        ..MapCreateAttr::default()
    };
    bpf(BPF_MAP_CREATE, &mut attr).map(owned)
}

/// Puts the socket `xsk_fd` in the map at `queue`.
pub(crate) fn set_xskmap(map: &OwnedFd, queue: u32, xsk_fd: &OwnedFd) -> io::Result<()> {
    let key = queue;
    let value = xsk_fd.as_raw_fd() as u32;
    let mut attr = MapUpdateAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0, // BPF_ANY
        ..MapUpdateAttr::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// How much of the verifier log goes into an error.
const LOG_TAIL: usize = 4000;

/// Loads the redirect program for `map`. On failure, loads again with the verifier log on and
/// returns the error with the log's end in its message.
pub(crate) fn load_redirect_program(map: &OwnedFd) -> io::Result<OwnedFd> {
    load_xdp_program(&redirect_program(map.as_raw_fd()))
}

/// Loads `insns` as an XDP program; see [`load_redirect_program`].
fn load_xdp_program(insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"Dual MIT/GPL";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name16("dp_xsk_redirect"),
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    let err = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(owned(fd)),
        Err(e) => e,
    };
    if err.raw_os_error() == Some(libc::EPERM) {
        // Not allowed to load programs at all: the log would say nothing more.
        return Err(err);
    }
    let mut log = vec![0u8; 64 * 1024];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // Loading with the log on should not change the outcome; take it if it does.
        Ok(fd) => Ok(owned(fd)),
        Err(again) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(log.get(..end).unwrap_or(&[]));
            let text = text.trim();
            let tail = text
                .char_indices()
                .rev()
                .nth(LOG_TAIL)
                .map_or(text, |(i, _)| text.get(i..).unwrap_or(text));
            Err(io::Error::new(
                again.kind(),
                format!("{again}; verifier log: {tail}"),
            ))
        }
    }
}

/// Attaches `prog` to the interface as a BPF link in the mode given by `xdp_flags`
/// (`XDP_FLAGS_DRV_MODE` or `XDP_FLAGS_SKB_MODE`). The program stays attached as long as the
/// link's descriptor is open: closing it, or the process dying, detaches it.
pub(crate) fn attach_link(prog: &OwnedFd, ifindex: i32, xdp_flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex as u32,
        attach_type: BPF_XDP,
        flags: xdp_flags,
    };
    bpf(BPF_LINK_CREATE, &mut attr).map(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding() {
        let p = redirect_program(7);
        let words: Vec<u64> = p
            .iter()
            .map(|i| {
                // SAFETY: Insn is 8 bytes of plain data.
                unsafe { std::mem::transmute::<Insn, u64>(*i) }
            })
            .collect();
        if cfg!(target_endian = "little") {
            // As `llvm-objdump` prints them for the same C program.
            assert_eq!(
                words,
                vec![
                    0x0000_0000_0010_1261, // r2 = *(u32 *)(r1 + 0x10)
                    0x0000_0007_0000_1118, // r1 = map fd 7 ll
                    0,
                    0x0000_0002_0000_03b7, // r3 = 2
                    0x0000_0033_0000_0085, // call 51
                    0x0000_0000_0000_0095, // exit
                ]
            );
        }
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<MapUpdateAttr>(), 32);
    }

    #[test]
    fn refused_program_carries_the_verifier_log() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping refused_program_carries_the_verifier_log: needs root");
            return;
        }
        // `exit` without setting r0: the verifier refuses to return an unread register.
        let err = load_xdp_program(&[Insn::new(BPF_JMP_EXIT, 0, 0, 0, 0)]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("verifier log") && msg.contains("R0"), "{msg}");

        // And the real program loads, with a real map.
        let map = create_xskmap(1).unwrap();
        load_redirect_program(&map).unwrap();
    }
}
