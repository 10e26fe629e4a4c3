//! Just enough of the protobuf wire format to read TensorFlow's
//! `BundleHeaderProto` and `BundleEntryProto`: varints and a field iterator.

use anyhow::{bail, ensure, Result};

/// Reads a base-128 varint from the front of `buf`, advancing it.
pub(crate) fn varint(buf: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&byte, rest)) = buf.split_first() else {
            bail!("a varint runs past the end of its data");
        };
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            ensure!(i < 9 || byte <= 1, "a varint overflows 64 bits");
            return Ok(value);
        }
    }
    bail!("a varint is longer than 10 bytes")
}

/// One field's payload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    /// The payload of an integer field (varint or fixed width).
    pub(crate) fn as_u64(&self) -> Result<u64> {
        match *self {
            Value::Varint(v) | Value::Fixed64(v) => Ok(v),
            Value::Fixed32(v) => Ok(v.into()),
            Value::Bytes(_) => bail!("an integer field holds bytes"),
        }
    }

    /// The payload of a message or bytes field.
    pub(crate) fn as_bytes(&self) -> Result<&[u8]> {
        match *self {
            Value::Bytes(b) => Ok(b),
            _ => bail!("a message field holds a number"),
        }
    }
}

/// Calls `f(field_number, value)` for each field of an encoded message.
pub(crate) fn for_each_field<'a>(mut buf: &'a [u8], mut f: impl FnMut(u64, Value<'a>) -> Result<()>) -> Result<()> {
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut buf)?),
            1 => Value::Fixed64(u64::from_le_bytes(take(&mut buf, 8)?.try_into().expect("8 bytes"))),
            2 => {
                let len = varint(&mut buf)?;
                Value::Bytes(take(&mut buf, usize::try_from(len).unwrap_or(usize::MAX))?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(take(&mut buf, 4)?.try_into().expect("4 bytes"))),
            t => bail!("unsupported protobuf wire type {t}"),
        };
        f(key >> 3, value)?;
    }
    Ok(())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    ensure!(n <= buf.len(), "a field of {n} bytes runs past the end of its message");
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_and_bad_ones_are_errors() {
        let mut b: &[u8] = &[0xac, 0x02, 0x01];
        assert_eq!(varint(&mut b).unwrap(), 300);
        assert_eq!(b, [0x01]);
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&mut &max[..]).unwrap(), u64::MAX);
        assert!(varint(&mut &[0xff, 0xff][..]).is_err());
        assert!(varint(&mut &[0xff; 11][..]).is_err());
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(varint(&mut &overflow[..]).is_err());
    }

    #[test]
    fn fields_of_each_wire_type() {
        // field 1 varint 150, field 2 bytes "hi", field 6 fixed32, field 7 fixed64.
        let msg = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x35, 1, 0, 0, 0, 0x39, 2, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut seen = vec![];
        for_each_field(&msg, |n, v| {
            seen.push((n, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (1, Value::Varint(150)),
                (2, Value::Bytes(b"hi")),
                (6, Value::Fixed32(1)),
                (7, Value::Fixed64(2))
            ]
        );
        assert!(for_each_field(&[0x12, 0x05, b'h'], |_, _| Ok(())).is_err());
        assert!(for_each_field(&[0x0b], |_, _| Ok(())).is_err());
    }
}
