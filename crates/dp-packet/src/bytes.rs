//! Bounds-checked big-endian loads and stores.
//!
//! Views built with `new_unchecked` may sit on buffers shorter than their header; these helpers make that
//! harmless: loads outside the buffer read as zero, stores outside it are dropped. Views built with
//! `new_checked` never hit either case.

use core::ops::Range;

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
