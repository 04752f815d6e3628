//! Bounds-checked big-endian loads and stores.
//!
//! The public helpers read and write a field at a byte offset, for code that walks raw frames
//! without building views: a load outside the buffer is `None`, a store outside it does nothing.
//!
//! ```
//! use dp_packet::bytes::{read_u16_be, write_u16_be};
//!
//! let mut frame = [0u8; 14];
//! write_u16_be(&mut frame, 12, 0x86dd);
//! assert_eq!(read_u16_be(&frame, 12), Some(0x86dd));
//! assert_eq!(read_u16_be(&frame, 13), None);
//! write_u16_be(&mut frame, 13, 0xffff); // out of range: ignored
//! assert_eq!(frame[13], 0xdd);
//! ```
//!
//! Inside the crate, views built with `new_unchecked` may sit on buffers shorter than their header;
//! the crate's own helpers make that harmless: loads outside the buffer read as zero, stores outside
//! it are dropped. Views built with `new_checked` never hit either case.

use core::ops::Range;

/// The big-endian u16 at `at`, or `None` if the buffer ends before `at + 2`.
#[inline]
pub fn read_u16_be(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// The big-endian u32 at `at`, or `None` if the buffer ends before `at + 4`.
#[inline]
pub fn read_u32_be(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_be_bytes(<[u8; 4]>::try_from(b).ok()?))
}

/// The big-endian u64 at `at`, or `None` if the buffer ends before `at + 8`.
#[inline]
pub fn read_u64_be(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at + 8)?;
    Some(u64::from_be_bytes(<[u8; 8]>::try_from(b).ok()?))
}

/// Stores `value` big-endian at `at`; does nothing if the buffer ends before `at + 2`.
#[inline]
pub fn write_u16_be(buf: &mut [u8], at: usize, value: u16) {
    if let Some(dst) = buf.get_mut(at..at + 2) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

/// Stores `value` big-endian at `at`; does nothing if the buffer ends before `at + 4`.
#[inline]
pub fn write_u32_be(buf: &mut [u8], at: usize, value: u32) {
    if let Some(dst) = buf.get_mut(at..at + 4) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

#[inline]
pub(crate) fn u8_at(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

#[inline]
pub(crate) fn array<const N: usize>(buf: &[u8], range: Range<usize>) -> [u8; N] {
    buf.get(range)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

#[inline]
pub(crate) fn u16_at(buf: &[u8], range: Range<usize>) -> u16 {
    u16::from_be_bytes(array(buf, range))
}

#[inline]
pub(crate) fn u32_at(buf: &[u8], range: Range<usize>) -> u32 {
    u32::from_be_bytes(array(buf, range))
}

#[inline]
pub(crate) fn set_u8(buf: &mut [u8], at: usize, value: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = value;
    }
}

#[inline]
pub(crate) fn set_bytes(buf: &mut [u8], range: Range<usize>, value: &[u8]) {
    if let Some(dst) = buf.get_mut(range) {
        if dst.len() == value.len() {
            dst.copy_from_slice(value);
        }
    }
}

#[inline]
pub(crate) fn set_u16(buf: &mut [u8], range: Range<usize>, value: u16) {
    set_bytes(buf, range, &value.to_be_bytes());
}

#[inline]
pub(crate) fn set_u32(buf: &mut [u8], range: Range<usize>, value: u32) {
    set_bytes(buf, range, &value.to_be_bytes());
}

/// `buf[from..to]`, or empty when out of range.
#[inline]
pub(crate) fn slice(buf: &[u8], range: Range<usize>) -> &[u8] {
    buf.get(range).unwrap_or(&[])
}

/// `buf[from..]`, or empty when out of range.
#[inline]
pub(crate) fn slice_from(buf: &[u8], from: usize) -> &[u8] {
    buf.get(from..).unwrap_or(&[])
}

#[inline]
pub(crate) fn slice_mut(buf: &mut [u8], range: Range<usize>) -> &mut [u8] {
    buf.get_mut(range).unwrap_or(&mut [])
}

#[inline]
pub(crate) fn slice_from_mut(buf: &mut [u8], from: usize) -> &mut [u8] {
    buf.get_mut(from..).unwrap_or(&mut [])
}

/// Copies `src` to the start of `dst`; `Truncated` when it does not fit.
#[inline]
pub(crate) fn copy_to(dst: &mut [u8], src: &[u8]) -> crate::Result<()> {
    dst.get_mut(..src.len())
        .ok_or(crate::Error::Truncated)?
        .copy_from_slice(src);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_helpers_are_bounds_checked() {
        let mut buf = [0u8; 6];
        write_u16_be(&mut buf, 0, 0x1234);
        write_u32_be(&mut buf, 2, 0x5678_9abc);
        assert_eq!(buf, [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
        assert_eq!(read_u16_be(&buf, 0), Some(0x1234));
        assert_eq!(read_u16_be(&buf, 4), Some(0x9abc));
        assert_eq!(read_u32_be(&buf, 2), Some(0x5678_9abc));
        assert_eq!(read_u16_be(&buf, 5), None);
        assert_eq!(read_u16_be(&buf, 6), None);
        assert_eq!(read_u16_be(&buf, 100), None);
        assert_eq!(read_u32_be(&buf, 3), None);
        let long = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(read_u64_be(&long, 1), Some(0x0203_0405_0607_0809));
        assert_eq!(read_u64_be(&long, 2), None);
        write_u16_be(&mut buf, 5, 0xffff);
        write_u32_be(&mut buf, 3, 0xffff_ffff);
        write_u16_be(&mut buf, 100, 0xffff);
        assert_eq!(buf, [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
    }
}
