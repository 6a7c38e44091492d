//! Frames: `COBS(version ‖ postcard(message) ‖ CRC32-LE) ‖ 0x00`, and the streaming decoder.

use crate::message::Message;

/// The protocol version carried in the first byte of every frame and in `Hello`.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest decoded frame body: version byte + the largest message payload (`Hello` with a
/// 5-byte session and a 3-byte watchdog_ms: 114 bytes) + CRC. SPEC.md §2.
pub const MAX_BODY: usize = 1 + 114 + 4;

/// Largest frame on the wire including its 0x00 delimiter: one COBS code byte per 254 body
/// bytes (one for `MAX_BODY`), plus the delimiter.
pub const MAX_FRAME: usize = MAX_BODY + 2;

/// Smallest body that can hold a frame: version, message tag, CRC.
const MIN_BODY: usize = 1 + 1 + 4;

/// Why a frame could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is shorter than the frame; [`MAX_FRAME`] always suffices.
    BufferTooSmall,
}

/// Why a received frame was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// More than the decoder's buffer (2 × [`MAX_FRAME`] bytes) arrived without a delimiter;
    /// the oldest were dropped.
    Overflow,
    /// The bytes before the delimiter are not valid COBS.
    Cobs,
    /// The body is shorter than version + tag + CRC.
    TooShort,
    /// The CRC32 does not match the body.
    Crc,
    /// The frame carries another protocol version.
    Version(u8),
    /// The CRC matched but the message does not decode (unknown tag, bad value, trailing bytes).
    Message,
}

/// CRC-32/ISO-HDLC (the zlib/Ethernet CRC): reflected polynomial 0xEDB88320, initial value and
/// final XOR 0xFFFFFFFF. The `crc` crate's byte-wise table (1 KiB, built at compile time).
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

static CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// COBS-encodes `src` into `dst` (no delimiter), as SPEC.md §2 states it. Returns the encoded
/// length.
///
/// The `cobs` crate does the encoding. Two inputs it encodes one byte shorter than SPEC.md §2
/// (still decodable, but not the same bytes): the empty input (no bytes; §2: `01`) and an input
/// whose last zero-free run is a whole number of 254-byte blocks (no final empty block; §2:
/// a final `01`). Neither is ever a frame body (bodies are 6 to 119 bytes), but `cobs_encode`
/// is public and matches §2 for every input, so those two get their final `01` here.
pub fn cobs_encode(src: &[u8], dst: &mut [u8]) -> Result<usize, EncodeError> {
    let mut n = cobs::try_encode(src, dst).map_err(|_| EncodeError::BufferTooSmall)?;
    // cobs 0.3 reports success without writing the last code byte when only that byte misses
    // the buffer (a zero as the last input byte): the length is then past the end.
    if n > dst.len() {
        return Err(EncodeError::BufferTooSmall);
    }
    let last_run = src.iter().rev().take_while(|&&b| b != 0).count();
    if src.is_empty() || (last_run > 0 && last_run % 254 == 0) {
        *dst.get_mut(n).ok_or(EncodeError::BufferTooSmall)? = 0x01;
        n += 1;
    }
    Ok(n)
}

/// COBS-decodes `src` (no delimiter, no zero byte) into `dst`. Returns the decoded length, or
/// `None` if `src` is not valid COBS or `dst` is too short.
///
/// The `cobs` crate does the decoding. It reads a zero byte as the delimiter and would accept
/// the bytes before it, and it rejects an empty input; here a zero anywhere makes `src`
/// invalid and the empty input decodes to nothing, as SPEC.md §2 reads.
pub fn cobs_decode(src: &[u8], dst: &mut [u8]) -> Option<usize> {
    if src.is_empty() {
        return Some(0);
    }
    if src.contains(&0) {
        return None;
    }
    cobs::decode(src, dst).ok()
}

/// Whether the COBS code chain starting at `src[0]` ends exactly at `src.len()`: a cheap
/// necessary condition for `src` to be a whole frame.
///
/// Hand-written on purpose: the `cobs` crate has no such check, and resynchronisation tries up
/// to 120 suffixes of a bad run. Decoding each suffix instead made `benches/codec.rs`'s
/// garbage+Action case about 6× slower (~2.5 µs → ~16 µs per recovered frame, x86_64).
fn cobs_chain_fits(src: &[u8]) -> bool {
    let mut i = 0usize;
    while i < src.len() {
        let code = src[i] as usize;
        if code == 0 {
            return false;
        }
        i += code;
    }
    i == src.len()
}

/// Writes `message` as one complete frame (delimiter included) into `out`; returns its length.
pub fn encode(message: &Message, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut body = [0u8; MAX_BODY];
    body[0] = PROTOCOL_VERSION;
    let n = postcard::to_slice(message, &mut body[1..MAX_BODY - 4])
        .map_err(|_| EncodeError::BufferTooSmall)?
        .len();
    let crc = crc32(&body[..1 + n]);
    body[1 + n..1 + n + 4].copy_from_slice(&crc.to_le_bytes());
    let len = cobs_encode(&body[..1 + n + 4], out)?;
    if len >= out.len() {
        return Err(EncodeError::BufferTooSmall);
    }
    out[len] = 0;
    Ok(len + 1)
}

/// Decodes one frame given without its delimiter.
pub fn decode_frame(frame: &[u8]) -> Result<Message, FrameError> {
    let mut body = [0u8; MAX_BODY];
    let n = cobs_decode(frame, &mut body).ok_or(FrameError::Cobs)?;
    decode_body(&body[..n])
}

fn decode_body(body: &[u8]) -> Result<Message, FrameError> {
    if body.len() < MIN_BODY {
        return Err(FrameError::TooShort);
    }
    let (payload, crc_bytes) = body.split_at(body.len() - 4);
    let crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32(payload) != crc {
        return Err(FrameError::Crc);
    }
    if payload[0] != PROTOCOL_VERSION {
        return Err(FrameError::Version(payload[0]));
    }
    match postcard::take_from_bytes::<Message>(&payload[1..]) {
        Ok((message, [])) => Ok(message),
        _ => Err(FrameError::Message),
    }
}

/// What the decoder has seen since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderCounters {
    /// Messages decoded.
    pub frames: u32,
    /// Delimited runs of bytes that did not decode (each counted once, whatever the cause).
    pub bad_frames: u32,
    pub cobs_errors: u32,
    pub crc_errors: u32,
    pub version_errors: u32,
    pub message_errors: u32,
    /// Runs longer than the decoder's buffer (2 × [`MAX_FRAME`] bytes) before a delimiter.
    pub overflows: u32,
    /// Good frames found at the end of a run that began with garbage.
    pub recovered: u32,
}

impl DecoderCounters {
    fn count(&mut self, e: FrameError) {
        self.bad_frames = self.bad_frames.wrapping_add(1);
        let c = match e {
            FrameError::Overflow => &mut self.overflows,
            FrameError::Cobs | FrameError::TooShort => &mut self.cobs_errors,
            FrameError::Crc => &mut self.crc_errors,
            FrameError::Version(_) => &mut self.version_errors,
            FrameError::Message => &mut self.message_errors,
        };
        *c = c.wrapping_add(1);
    }
}

/// Streaming frame decoder with a fixed buffer: feed it bytes in any chunking.
///
/// Garbage or a corrupted frame ends at the next 0x00 and is reported once. When garbage
/// without a 0x00 runs into the next frame, the decoder finds that frame at the end of the
/// run (a suffix whose COBS chain, CRC and message all check), so the frame after garbage is
/// not lost.
pub struct Decoder {
    raw: [u8; 2 * MAX_FRAME],
    len: usize,
    overflowed: bool,
    counters: DecoderCounters,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub const fn new() -> Self {
        Self {
            raw: [0; 2 * MAX_FRAME],
            len: 0,
            overflowed: false,
            counters: DecoderCounters {
                frames: 0,
                bad_frames: 0,
                cobs_errors: 0,
                crc_errors: 0,
                version_errors: 0,
                message_errors: 0,
                overflows: 0,
                recovered: 0,
            },
        }
    }

    pub fn counters(&self) -> DecoderCounters {
        self.counters
    }

    /// Forgets a partly received frame (after a reconnect, say).
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }

    /// Feeds one byte. Returns a result when the byte completes a frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Message, FrameError>> {
        if byte != 0 {
            if self.len == self.raw.len() {
                // Keep the newest bytes: the start of the next frame may be among them.
                let keep = MAX_FRAME - 1;
                self.raw.copy_within(self.len - keep..self.len, 0);
                self.len = keep;
                self.overflowed = true;
            }
            self.raw[self.len] = byte;
            self.len += 1;
            return None;
        }
        if self.len == 0 {
            return None;
        }
        let run_len = self.len;
        let overflowed = self.overflowed;
        self.len = 0;
        self.overflowed = false;
        let run = &self.raw[..run_len];
        let first = if overflowed {
            Err(FrameError::Overflow)
        } else {
            decode_frame(run)
        };
        match first {
            Ok(m) => {
                self.counters.frames = self.counters.frames.wrapping_add(1);
                Some(Ok(m))
            }
            Err(e) => {
                let shortest_skip = if overflowed { 0 } else { 1 };
                let lowest = run_len.saturating_sub(MAX_FRAME - 1).max(shortest_skip);
                let highest = run_len.saturating_sub(MIN_BODY + 1);
                let mut found = None;
                let mut start = lowest;
                while start <= highest {
                    let suffix = &run[start..];
                    if cobs_chain_fits(suffix) {
                        if let Ok(m) = decode_frame(suffix) {
                            found = Some(m);
                            break;
                        }
                    }
                    start += 1;
                }
                self.counters.count(e);
                match found {
                    Some(m) => {
                        self.counters.frames = self.counters.frames.wrapping_add(1);
                        self.counters.recovered = self.counters.recovered.wrapping_add(1);
                        Some(Ok(m))
                    }
                    None => Some(Err(e)),
                }
            }
        }
    }

    /// Feeds a chunk, calling `on_frame` for each frame it completes.
    pub fn feed(&mut self, chunk: &[u8], mut on_frame: impl FnMut(Result<Message, FrameError>)) {
        for &b in chunk {
            if let Some(r) = self.push(b) {
                on_frame(r);
            }
        }
    }
}
