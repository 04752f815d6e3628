//! The dirty-page log of live migration (vhost-user's `VHOST_F_LOG_ALL` with the protocol
//! feature `LOG_SHMFD`).
//!
//! While QEMU migrates a guest it copies guest memory to the destination in passes and copies
//! again what changed in between. Pages the guest's vCPUs write it tracks itself; pages the
//! backend writes (frames into receive buffers, used-ring entries) it learns from this log: a
//! bitmap in memory shared with QEMU (SET_LOG_BASE), one bit per 4 KiB page of guest physical
//! memory, set by the backend after it wrote there. QEMU takes the bits with atomic exchanges,
//! so setting them must be atomic as well.
//!
//! The log only exists between SET_LOG_BASE and the end of the migration; the worker writes it
//! only while the frontend acked `VHOST_F_LOG_ALL` (the device publishes it in the snapshot
//! then, and not otherwise): outside a migration marking costs one `None` test per write.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

/// The log's page size (`VHOST_LOG_PAGE`).
pub const LOG_PAGE: u64 = 4096;

/// A mapped dirty-page bitmap.
#[derive(Debug)]
pub struct DirtyLog {
    /// The mapping (from an offset rounded down to a page) and its length.
    map: NonNull<u8>,
    map_len: usize,
    /// Where the bitmap starts in the mapping, and its length in bytes.
    start: usize,
    len: usize,
}

// SAFETY: the mapping is shared memory that is only accessed through atomic byte operations
// (`mark`), never through references to plain bytes; it lives until `drop`.
unsafe impl Send for DirtyLog {}
// SAFETY: as above: concurrent `mark`s are atomic ORs.
unsafe impl Sync for DirtyLog {}

impl DirtyLog {
    /// Maps `size` bytes of `file` from `offset` (SET_LOG_BASE's `mmap_size`/`mmap_offset`).
    pub fn map(file: &File, size: u64, offset: u64) -> io::Result<DirtyLog> {
        // SAFETY: sysconf has no memory preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as u64,
            _ => 4096,
        };
        let aligned = offset - offset % page;
        let start = (offset - aligned) as usize;
        let len = usize::try_from(size).map_err(|_| io::ErrorKind::InvalidInput)?;
        let map_len = start
            .checked_add(len)
            .filter(|&l| l > 0)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let file_offset =
            libc::off_t::try_from(aligned).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared mapping of the frontend's file; the result is checked, and
        // the kernel refuses a range the file does not have (SIGBUS aside, which a frontend
        // that shrinks its own log file could cause only to itself while we are mapped: QEMU
        // never does).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(p.cast::<u8>()).ok_or(io::ErrorKind::InvalidInput)?;
        Ok(DirtyLog {
            map,
            map_len,
            start,
            len,
        })
    }

    /// Pages the log covers (guest physical memory up to `pages() * LOG_PAGE`).
    pub fn pages(&self) -> u64 {
        self.len as u64 * 8
    }

    /// Marks the pages of guest physical memory `[addr, addr + len)` dirty. Pages past the end
    /// of the log are ignored (the frontend sized it for all of guest memory).
    #[inline]
    pub fn mark(&self, addr: u64, len: usize) {
        if len == 0 {
            return;
        }
        let first = addr / LOG_PAGE;
        let last = addr.saturating_add(len as u64 - 1) / LOG_PAGE;
        for page in first..=last.min(self.pages().saturating_sub(1)) {
            let byte = (page / 8) as usize;
            // SAFETY: `byte < self.len` (page < pages()), so the byte is inside the mapping,
            // which lives as long as `self`; it is only ever accessed atomically.
            let cell = unsafe { &*self.map.as_ptr().add(self.start + byte).cast::<AtomicU8>() };
            cell.fetch_or(1 << (page % 8), Ordering::Relaxed);
        }
    }

    /// Whether page `page` is marked (tests).
    pub fn is_marked(&self, page: u64) -> bool {
        if page >= self.pages() {
            return false;
        }
        // SAFETY: as in `mark`.
        let cell = unsafe {
            &*self
                .map
                .as_ptr()
                .add(self.start + (page / 8) as usize)
                .cast::<AtomicU8>()
        };
        cell.load(Ordering::Relaxed) & (1 << (page % 8)) != 0
    }
}

impl Drop for DirtyLog {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, which nothing uses any more.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An anonymous memory file of `len` bytes (a log, or guest memory, in tests).
    pub(crate) fn memfd(len: u64) -> File {
        // SAFETY: memfd_create with a static name; the result is checked.
        let fd = unsafe { libc::memfd_create(c"dirty-log-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor we own.
        let f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        f.set_len(len).unwrap();
        f
    }

    #[test]
    fn marks_every_page_a_write_touches_and_nothing_past_the_log() {
        let f = memfd(8192);
        // A log of 16 bytes (128 pages) at offset 4100 (not page aligned).
        let log = DirtyLog::map(&f, 16, 4100).unwrap();
        assert_eq!(log.pages(), 128);
        log.mark(LOG_PAGE * 3 + 4000, 200); // pages 3 and 4
        log.mark(LOG_PAGE * 10, 1);
        log.mark(LOG_PAGE * 127, 3 * LOG_PAGE as usize); // 127, then past the end
        log.mark(0, 0);
        let marked: Vec<u64> = (0..130).filter(|&p| log.is_marked(p)).collect();
        assert_eq!(marked, vec![3, 4, 10, 127]);
        // What QEMU sees in the file: byte 0 holds pages 3 and 4, byte 1 page 10.
        let mut bytes = [0u8; 16];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut bytes, 4100).unwrap();
        assert_eq!(bytes[0], 0b0001_1000);
        assert_eq!(bytes[1], 0b0000_0100);
        assert_eq!(bytes[15], 0b1000_0000);
    }
}
