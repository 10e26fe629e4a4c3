//! A reader for the sorted-string table (LevelDB's format) that TensorFlow
//! writes as a checkpoint's `.index` file.
//!
//! The file is a series of blocks, then a 48-byte footer: the metaindex and
//! index block handles (varint offset + size each), zero padding, and an
//! 8-byte magic number. The index block maps a key to the handle of the data
//! block holding it. Each block is followed by a trailer: a compression type
//! byte and the masked CRC-32C of the contents and that byte. Inside a block,
//! each entry is `shared, non_shared, value_len` (varints), the key's
//! non-shared suffix (its prefix is shared with the previous key) and the
//! value; a restart array (u32s) and its length (u32) end the block.

use super::proto::varint;
use anyhow::{bail, ensure, Context, Result};

const FOOTER_LEN: usize = 48;
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const TRAILER_LEN: usize = 5;

/// Every `(key, value)` of a table, in file order.
pub(crate) fn read_table(file: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    ensure!(
        file.len() >= FOOTER_LEN,
        "the file is {} bytes, too short to be a table (truncated?)",
        file.len()
    );
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(footer[40..].try_into().expect("8 bytes"));
    ensure!(
        magic == MAGIC,
        "the file does not end with the table magic number: it is truncated or not a TensorFlow index"
    );
    let mut handles = &footer[..40];
    let metaindex = handle(&mut handles)?;
    let index = handle(&mut handles)?;
    let blocks = &file[..file.len() - FOOTER_LEN];
    // The metaindex (filters, properties) is of no use here; only check its bytes.
    block(blocks, metaindex).context("reading the metaindex block")?;
    let mut entries = Vec::new();
    for (_, data_handle) in block_entries(block(blocks, index).context("reading the index block")?)? {
        let data = block(blocks, handle(&mut data_handle.as_slice())?).context("reading a data block")?;
        entries.extend(block_entries(data)?);
    }
    Ok(entries)
}

/// A block handle: offset and size of a block's contents.
#[derive(Clone, Copy, Debug)]
struct Handle {
    offset: u64,
    size: u64,
}

fn handle(buf: &mut &[u8]) -> Result<Handle> {
    Ok(Handle {
        offset: varint(buf)?,
        size: varint(buf)?,
    })
}

/// The contents of the block at `h`, after checking its trailer.
fn block(file: &[u8], h: Handle) -> Result<&[u8]> {
    let start = usize::try_from(h.offset).ok();
    let size = usize::try_from(h.size).ok();
    let end = start.zip(size).and_then(|(s, n)| s.checked_add(n));
    let Some((start, end)) = start
        .zip(end)
        .filter(|&(_, e)| e.checked_add(TRAILER_LEN) <= Some(file.len()))
    else {
        bail!(
            "a block at offset {} of {} bytes runs past the end of the file (truncated?)",
            h.offset,
            h.size
        );
    };
    let (contents, trailer) = (&file[start..end], &file[end..end + TRAILER_LEN]);
    let stored = u32::from_le_bytes(trailer[1..].try_into().expect("4 bytes"));
    let actual = crc32c::crc32c_append(crc32c::crc32c(contents), &trailer[..1]);
    ensure!(
        unmask(stored) == actual,
        "a block's checksum does not match its contents: the file is corrupt"
    );
    match trailer[0] {
        0 => Ok(contents),
        1 => bail!(
            "the table's blocks are Snappy-compressed, which is not supported (TensorFlow writes them uncompressed)"
        ),
        t => bail!("unknown block compression type {t}: the file is corrupt"),
    }
}

/// Undoes LevelDB's CRC masking (a rotation plus a constant).
pub(crate) fn unmask(masked: u32) -> u32 {
    let rot = masked.wrapping_sub(0xa282_ead8);
    rot.rotate_left(15)
}

/// The `(key, value)` entries of one block's contents.
fn block_entries(contents: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let corrupt = || anyhow::anyhow!("a table block is corrupt (its restart array does not fit)");
    let n = contents.len().checked_sub(4).ok_or_else(corrupt)?;
    let restarts = u32::from_le_bytes(contents[n..].try_into().expect("4 bytes")) as usize;
    let data_len = restarts
        .checked_mul(4)
        .and_then(|r| n.checked_sub(r))
        .ok_or_else(corrupt)?;
    let mut buf = &contents[..data_len];
    let mut key: Vec<u8> = Vec::new();
    let mut entries = Vec::new();
    while !buf.is_empty() {
        let shared = varint(&mut buf)?;
        let non_shared = varint(&mut buf)?;
        let value_len = varint(&mut buf)?;
        ensure!(
            shared <= key.len() as u64,
            "a table entry shares more key bytes than the previous key has: the file is corrupt"
        );
        let take = |buf: &mut &[u8], n: u64| -> Result<Vec<u8>> {
            ensure!(
                n <= buf.len() as u64,
                "a table entry runs past the end of its block: the file is corrupt"
            );
            let (head, rest) = buf.split_at(n as usize);
            *buf = rest;
            Ok(head.to_vec())
        };
        key.truncate(shared as usize);
        key.extend(take(&mut buf, non_shared)?);
        let value = take(&mut buf, value_len)?;
        entries.push((key.clone(), value));
    }
    Ok(entries)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A block of `entries` with prefix-compressed keys and one restart point.
    fn block_bytes(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev: &[u8] = &[];
        for (k, v) in entries {
            let shared = prev.iter().zip(k.iter()).take_while(|(a, b)| a == b).count();
            put_varint(&mut out, shared as u64);
            put_varint(&mut out, (k.len() - shared) as u64);
            put_varint(&mut out, v.len() as u64);
            out.extend(&k[shared..]);
            out.extend(*v);
            prev = k;
        }
        out.extend(0u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out
    }

    fn mask(crc: u32) -> u32 {
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    }

    /// Appends a block and its trailer to `file`, returning its encoded handle.
    fn push_block(file: &mut Vec<u8>, contents: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        put_varint(&mut h, file.len() as u64);
        put_varint(&mut h, contents.len() as u64);
        file.extend(contents);
        file.push(0);
        file.extend(mask(crc32c::crc32c_append(crc32c::crc32c(contents), &[0])).to_le_bytes());
        h
    }

    /// A table holding `entries` (sorted) in one data block.
    pub(crate) fn table_bytes(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut file = Vec::new();
        let data = push_block(&mut file, &block_bytes(entries));
        let meta = push_block(&mut file, &block_bytes(&[]));
        let last = entries.last().map_or(&b""[..], |e| e.0);
        let index = push_block(&mut file, &block_bytes(&[(last, &data)]));
        let mut footer = [meta, index].concat();
        footer.resize(40, 0);
        footer.extend(MAGIC.to_le_bytes());
        file.extend(footer);
        file
    }

    #[test]
    fn reads_back_prefix_compressed_entries() {
        let entries: [(&[u8], &[u8]); 3] = [(b"", b"header"), (b"model/h0/w", b"x"), (b"model/h0/wb", b"yz")];
        let got = read_table(&table_bytes(&entries)).unwrap();
        let want: Vec<_> = entries.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn damaged_tables_are_errors_not_panics() {
        let file = table_bytes(&[(b"a", b"1"), (b"ab", b"2")]);
        for cut in 0..file.len() {
            assert!(read_table(&file[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..file.len() {
            for bit in [0x01, 0x80] {
                let mut bad = file.clone();
                bad[i] ^= bit;
                // No flip may panic (one in the footer's padding is even harmless).
                let _ = read_table(&bad);
            }
        }
        let mut bad = file.clone();
        bad[5] ^= 0x10; // inside the data block: the checksum catches it
        assert!(format!("{:#}", read_table(&bad).unwrap_err()).contains("checksum"));
        assert_eq!(unmask(mask(0x1234_5678)), 0x1234_5678);
    }
}
