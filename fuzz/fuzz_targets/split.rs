//! Input framing shared by the targets that take several files at once.

/// The next length-prefixed part of `data` (a little-endian u16 length, cut
/// at the end of the input), or `None` when not even the length is left.
pub fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let (head, tail) = rest.split_at(usize::from(u16::from_le_bytes(*len)).min(rest.len()));
    *data = tail;
    Some(head)
}
