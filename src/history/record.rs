//! The record codec: the on-disk grammar of a segment, the byte layout of a record written
//! down once (`layout`, with compile-time checks that it adds up), `parse_record` (which
//! checks every field read from disk against its bounds) and `encode_fixed` for the writer.
//!
//! Little-endian everywhere; `%x00` is a zero byte.
//!
//! ```text
//! directory  = epoch-file segment-file+          ; other files are left alone
//! epoch-file = "EPOCH" containing 8 * ("a".."z")   ; replaced via "EPOCH.tmp" + rename
//! segment-file = 20 * DIGIT ".seg"                 ; the zero-padded base_seq
//! segment    = header *record end                  ; fixed file size, sparse until written
//! header     = "RCHLOG01" version:u32 partition:u32 base_seq:u64 created_ms:u64 32 * %x00
//!                                                  ; 64 bytes, version = 1
//! record     = len:u32 crc:u32 body pad            ; starts 8-aligned, len = body length > 0
//!                                                  ; crc = crc32c(body)
//! pad        = 0*7 %x00                            ; up to the next multiple of 8
//! body       = seq:u64 kind:u8 reserved:u8 channel_len:u16 offset:u64 time_ms:u64
//!              data_len:u32 info_len:u32 tags_len:u32 channel data info tags
//!                                                  ; reserved = 0, channel_len > 0 but
//!                                                  ; for a floor, len = 40 + the four lengths
//! kind       = %x01  ; publication: data, info, tags are raw JSON; info/tags length 0 = absent
//!            / %x02  ; position: the channel is at `offset` and holds no history up to
//!                    ; there; data, info and tags are empty
//!            / %x03  ; floor: every channel whose position the log dropped was at or below
//!                    ; `offset`; no channel, data, info or tags (ringcast before the floor
//!                    ; record reads it as a defect)
//! end        = 8 %x00 *%x00 / <fewer than 8 bytes left in the file>
//! ```
//!
//! `seq` numbers the partition's records: a segment's first record has its `base_seq`, every
//! other record its predecessor's + 1, across segment files too. That is what rejects stale
//! bytes a truncation left behind. A record that does not fit in the rest of a segment starts
//! the next one; the rest stays zero.

use std::ops::Range;

use crate::limits::{HISTORY_SEQ_MAX, STREAM_OFFSET_MAX};

/// Byte ranges of the segment header.
pub mod header {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..8;
    pub const VERSION: Range<usize> = 8..12;
    pub const PARTITION: Range<usize> = 12..16;
    pub const BASE_SEQ: Range<usize> = 16..24;
    pub const CREATED_MS: Range<usize> = 24..32;
    /// The header's length: the fields, then zeros.
    pub const LEN: usize = 64;
    pub const MAGIC_BYTES: &[u8; 8] = b"RCHLOG01";
    pub const FORMAT_VERSION: u32 = 1;
}

/// Byte ranges of a record: the framing, then the fixed part of the body (relative to the
/// body's start).
pub mod layout {
    use std::ops::Range;
    /// Framing: `len` and `crc`, before the body.
    pub const LEN: Range<usize> = 0..4;
    pub const CRC: Range<usize> = 4..8;
    pub const FRAMING_LEN: usize = 8;
    /// Body, fixed part.
    pub const SEQ: Range<usize> = 0..8;
    pub const KIND: usize = 8;
    pub const RESERVED: usize = 9;
    pub const CHANNEL_LEN: Range<usize> = 10..12;
    pub const OFFSET: Range<usize> = 12..20;
    pub const TIME_MS: Range<usize> = 20..28;
    pub const DATA_LEN: Range<usize> = 28..32;
    pub const INFO_LEN: Range<usize> = 32..36;
    pub const TAGS_LEN: Range<usize> = 36..40;
    /// The fixed part's length; the channel name and payloads follow it.
    pub const BODY_FIXED_LEN: usize = 40;
}

// The tables add up: each field starts where the previous ends, and the header fits.
const _: () = assert!(header::MAGIC.end == header::VERSION.start);
const _: () = assert!(header::VERSION.end == header::PARTITION.start);
const _: () = assert!(header::PARTITION.end == header::BASE_SEQ.start);
const _: () = assert!(header::BASE_SEQ.end == header::CREATED_MS.start);
const _: () = assert!(header::CREATED_MS.end <= header::LEN);
const _: () = assert!(
    header::LEN.is_multiple_of(8),
    "records start 8-aligned after the header"
);
const _: () = assert!(layout::LEN.end == layout::CRC.start);
const _: () = assert!(layout::CRC.end == layout::FRAMING_LEN);
const _: () = assert!(layout::SEQ.end == layout::KIND);
const _: () = assert!(layout::KIND + 1 == layout::RESERVED);
const _: () = assert!(layout::RESERVED + 1 == layout::CHANNEL_LEN.start);
const _: () = assert!(layout::CHANNEL_LEN.end == layout::OFFSET.start);
const _: () = assert!(layout::OFFSET.end == layout::TIME_MS.start);
const _: () = assert!(layout::TIME_MS.end == layout::DATA_LEN.start);
const _: () = assert!(layout::DATA_LEN.end == layout::INFO_LEN.start);
const _: () = assert!(layout::INFO_LEN.end == layout::TAGS_LEN.start);
const _: () = assert!(layout::TAGS_LEN.end == layout::BODY_FIXED_LEN);

pub const KIND_PUBLICATION: u8 = 1;
pub const KIND_POSITION: u8 = 2;
pub const KIND_FLOOR: u8 = 3;

pub fn pad8(len: usize) -> usize {
    (len + 7) & !7
}

pub fn get_u16(b: &[u8], at: Range<usize>) -> u16 {
    let mut v = [0u8; 2];
    v.copy_from_slice(&b[at]);
    u16::from_le_bytes(v)
}

pub fn get_u32(b: &[u8], at: Range<usize>) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at]);
    u32::from_le_bytes(v)
}

pub fn get_u64(b: &[u8], at: Range<usize>) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at]);
    u64::from_le_bytes(v)
}

/// A record parsed in place.
pub struct RecordView<'a> {
    pub seq: u64,
    pub kind: u8,
    pub channel: &'a str,
    pub offset: u64,
    pub time_ms: u64,
    pub data_len: usize,
    pub info_len: usize,
    /// data, info and tags, contiguous.
    pub payload: &'a [u8],
    /// Bytes the record takes (framing and padding included).
    pub total: usize,
}

/// Parses the record at `pos` of a segment's bytes: `Ok(None)` at the end of the data,
/// `Err(reason)` for anything that is not a well-formed record. `verify` checks CRC and padding
/// (the scan does; index reads trust what the scan or the writer already checked). Every value
/// is checked against its bounds, so a checksum-valid record cannot carry a number the code
/// would overflow on (an offset or seq at its type's maximum).
pub fn parse_record(
    bytes: &[u8],
    pos: usize,
    verify: bool,
) -> Result<Option<RecordView<'_>>, String> {
    let Some(framing) = bytes.get(pos..pos + layout::FRAMING_LEN) else {
        return Ok(None);
    };
    let len = get_u32(framing, layout::LEN) as usize;
    let crc = get_u32(framing, layout::CRC);
    if len == 0 {
        // The end is 8 zero bytes; a zero length with a crc is a damaged length field.
        return if crc == 0 {
            Ok(None)
        } else {
            Err(format!("bad length: 0 with crc {crc:#010x}"))
        };
    }
    let left = bytes.len() - pos;
    let total = layout::FRAMING_LEN + pad8(len);
    if len < layout::BODY_FIXED_LEN || total > left {
        return Err(format!("bad length {len} ({left} bytes left in the file)"));
    }
    let body_start = pos + layout::FRAMING_LEN;
    let body = &bytes[body_start..body_start + len];
    if verify {
        let actual = crc32c::crc32c(body);
        if actual != crc {
            return Err(format!(
                "bad crc (stored {crc:#010x}, computed {actual:#010x}): torn or corrupt"
            ));
        }
        if bytes[body_start + len..pos + total].iter().any(|&b| b != 0) {
            return Err("non-zero padding".into());
        }
    }
    let seq = get_u64(body, layout::SEQ);
    let kind = body[layout::KIND];
    let reserved = body[layout::RESERVED];
    let channel_len = usize::from(get_u16(body, layout::CHANNEL_LEN));
    let offset = get_u64(body, layout::OFFSET);
    let time_ms = get_u64(body, layout::TIME_MS);
    let data_len = get_u32(body, layout::DATA_LEN) as usize;
    let info_len = get_u32(body, layout::INFO_LEN) as usize;
    let tags_len = get_u32(body, layout::TAGS_LEN) as usize;
    if reserved != 0 {
        return Err(format!("reserved byte is {reserved}"));
    }
    if !matches!(kind, KIND_PUBLICATION | KIND_POSITION | KIND_FLOOR) {
        return Err(format!("unknown kind {kind}"));
    }
    if seq == 0 || seq > HISTORY_SEQ_MAX {
        return Err(format!("seq {seq} is outside 1..={HISTORY_SEQ_MAX}"));
    }
    if offset == 0 || offset > STREAM_OFFSET_MAX {
        return Err(format!(
            "offset {offset} is outside 1..={STREAM_OFFSET_MAX}"
        ));
    }
    let sum = (layout::BODY_FIXED_LEN + channel_len) as u64
        + data_len as u64
        + info_len as u64
        + tags_len as u64;
    if sum != len as u64 {
        return Err(format!(
            "field lengths add up to {sum}, record length is {len}"
        ));
    }
    if (channel_len == 0) != (kind == KIND_FLOOR) {
        return Err(match kind {
            KIND_FLOOR => "floor record with a channel name".into(),
            _ => "empty channel name".into(),
        });
    }
    if kind != KIND_PUBLICATION && sum != (layout::BODY_FIXED_LEN + channel_len) as u64 {
        return Err(format!("kind {kind} record with a payload"));
    }
    let names = layout::BODY_FIXED_LEN..layout::BODY_FIXED_LEN + channel_len;
    let channel =
        std::str::from_utf8(&body[names]).map_err(|_| "channel name is not UTF-8".to_string())?;
    Ok(Some(RecordView {
        seq,
        kind,
        channel,
        offset,
        time_ms,
        data_len,
        info_len,
        payload: &body[layout::BODY_FIXED_LEN + channel_len..],
        total,
    }))
}

/// The fields of a record to write.
pub struct Fields<'a> {
    pub kind: u8,
    pub channel: &'a str,
    pub offset: u64,
    pub time_ms: u64,
    pub data: &'a [u8],
    pub info: &'a [u8],
    pub tags: &'a [u8],
}

impl Fields<'_> {
    /// The body's length.
    pub fn body_len(&self) -> usize {
        layout::BODY_FIXED_LEN
            + self.channel.len()
            + self.data.len()
            + self.info.len()
            + self.tags.len()
    }

    /// The record's bytes on disk: framing, body, padding.
    pub fn total(&self) -> usize {
        layout::FRAMING_LEN + pad8(self.body_len())
    }

    /// The fixed part of the body for sequence number `seq`. The caller checked that the
    /// record fits a segment, so every length fits its u32 and the name its u16.
    pub fn encode_fixed(&self, seq: u64) -> [u8; layout::BODY_FIXED_LEN] {
        debug_assert!(self.channel.len() <= usize::from(u16::MAX));
        let mut fixed = [0u8; layout::BODY_FIXED_LEN];
        fixed[layout::SEQ].copy_from_slice(&seq.to_le_bytes());
        fixed[layout::KIND] = self.kind;
        fixed[layout::CHANNEL_LEN].copy_from_slice(&(self.channel.len() as u16).to_le_bytes());
        fixed[layout::OFFSET].copy_from_slice(&self.offset.to_le_bytes());
        fixed[layout::TIME_MS].copy_from_slice(&self.time_ms.to_le_bytes());
        fixed[layout::DATA_LEN].copy_from_slice(&(self.data.len() as u32).to_le_bytes());
        fixed[layout::INFO_LEN].copy_from_slice(&(self.info.len() as u32).to_le_bytes());
        fixed[layout::TAGS_LEN].copy_from_slice(&(self.tags.len() as u32).to_le_bytes());
        fixed
    }

    /// The framing for a body with this `crc`.
    pub fn encode_framing(&self, crc: u32) -> [u8; layout::FRAMING_LEN] {
        let mut framing = [0u8; layout::FRAMING_LEN];
        framing[layout::LEN].copy_from_slice(&(self.body_len() as u32).to_le_bytes());
        framing[layout::CRC].copy_from_slice(&crc.to_le_bytes());
        framing
    }
}
