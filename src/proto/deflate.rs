//! permessage-deflate (RFC 7692): negotiation and the per-message codec.
//!
//! Negotiation ([`negotiate`]) parses every offer in `Sec-WebSocket-Extensions`
//! and accepts the first acceptable one. The server's policy
//! ([`DeflateConfig::mode`]) decides what it answers:
//!
//! - `NoContextTakeover` (default): we answer with both
//!   `server_no_context_takeover` and `client_no_context_takeover`, so every
//!   message on both sides is a self-contained deflate stream and **no
//!   connection keeps zlib state between messages**. A compressed message is
//!   inflated once — to check its size against the message limit as it
//!   inflates (zip bombs close with 1009) and to validate text as UTF-8 — and,
//!   when the client's window fits inside ours, echoed with its original
//!   compressed bytes (no re-compression at all). Inflaters are borrowed from a
//!   reactor-wide [`CodecPool`] for the length of one message.
//! - `ContextTakeover`: we honour what the client asks and otherwise keep
//!   context, so each such connection owns an inflater (~43 KiB) and a
//!   deflater (~260 KiB at window 15) for its whole life: better ratios, much
//!   more memory.
//!
//! zlib's window-bits-8 quirk: zlib (and zlib-rs) cannot *compress* with an
//! 8-bit window (it silently uses 9, which a peer holding us to 8 may fail to
//! inflate). When `server_max_window_bits=8` is agreed we therefore emit
//! stored (level 0) blocks, which have no back-references and are valid for
//! any window. Inflating always uses at least 9 bits: a larger window accepts
//! every stream made for a smaller one.

use super::error::{HandshakeError, ProtocolError};
use super::utf8::Utf8Validator;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block a sender strips from the end of each message
/// (RFC 7692 §7.2.1) and the receiver appends before inflating (§7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Server compression policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionMode {
    /// Ignore offers: never compress.
    Off,
    /// Accept offers, forcing no context takeover in both directions.
    NoContextTakeover,
    /// Accept offers, keeping context unless the client asks otherwise.
    ContextTakeover,
}

/// Compression settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Policy. Default `NoContextTakeover` (see the module docs and README
    /// for the memory figures).
    pub mode: CompressionMode,
    /// Largest LZ77 window we compress with, 8..=15. Default 15.
    pub server_max_window_bits: u8,
    /// Largest window we ask the client to compress with (when it offered
    /// `client_max_window_bits`), 8..=15. Default 15.
    pub client_max_window_bits: u8,
    /// zlib compression level, 0..=9. Default 1 (fast: echo traffic is
    /// usually small and the CPU is better spent elsewhere).
    pub level: u32,
    /// Messages we re-compress whose inflated size is below this many bytes
    /// are sent uncompressed instead (RFC 7692 lets a sender choose per
    /// message). Default 0: a compressed message is always echoed compressed.
    pub min_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            mode: CompressionMode::NoContextTakeover,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 1,
            min_size: 0,
        }
    }
}

/// The agreed parameters of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// We reset our compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Our compression window, 8..=15.
    pub server_max_window_bits: u8,
    /// The client's compression window, 8..=15.
    pub client_max_window_bits: u8,
}

const MALFORMED: HandshakeError = HandshakeError { status: 400, reason: "malformed Sec-WebSocket-Extensions header" };

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// One parsed extension offer: name and parameters (value unquoted).
type Offer = (String, Vec<(String, Option<String>)>);

/// Parse a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1 grammar, with
/// quoted-string values): `ext (, ext)*`, `ext = token (; param)*`,
/// `param = token [= (token | quoted-string)]`.
pub fn parse_extensions(header: &str) -> Result<Vec<Offer>, HandshakeError> {
    let b = header.as_bytes();
    let mut i = 0;
    let mut offers = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> Result<String, HandshakeError> {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        if start == *i {
            return Err(MALFORMED);
        }
        Ok(header[start..*i].to_string())
    };
    loop {
        skip_ws(&mut i);
        if i == b.len() {
            break;
        }
        if b[i] == b',' {
            // Empty list elements are allowed by the #rule.
            i += 1;
            continue;
        }
        let name = token(&mut i)?;
        let mut params = Vec::new();
        loop {
            skip_ws(&mut i);
            if i == b.len() || b[i] == b',' {
                break;
            }
            if b[i] != b';' {
                return Err(MALFORMED);
            }
            i += 1;
            skip_ws(&mut i);
            let pname = token(&mut i)?;
            skip_ws(&mut i);
            let mut value = None;
            if i < b.len() && b[i] == b'=' {
                i += 1;
                skip_ws(&mut i);
                if i < b.len() && b[i] == b'"' {
                    i += 1;
                    let mut v = String::new();
                    loop {
                        match b.get(i) {
                            None => return Err(MALFORMED),
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(b'\\') => {
                                let c = *b.get(i + 1).ok_or(MALFORMED)?;
                                v.push(c as char);
                                i += 2;
                            }
                            Some(&c) => {
                                v.push(c as char);
                                i += 1;
                            }
                        }
                    }
                    value = Some(v);
                } else {
                    value = Some(token(&mut i)?);
                }
            }
            params.push((pname, value));
        }
        offers.push((name, params));
    }
    Ok(offers)
}

fn window_bits(v: &str) -> Option<u8> {
    // RFC 7692 §7.1.2: "a decimal integer value in the range 8 to 15 ...
    // without leading zeros".
    if v.len() > 2 || v.starts_with('0') {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Decide on the client's offers; returns the agreement and the
/// `Sec-WebSocket-Extensions` response value, `Ok(None)` if no offer is
/// acceptable (or compression is off), or 400 for a malformed header.
pub fn negotiate(header: &str, cfg: &DeflateConfig) -> Result<Option<(Agreed, String)>, HandshakeError> {
    let offers = parse_extensions(header)?;
    if cfg.mode == CompressionMode::Off {
        return Ok(None);
    }
    'offers: for (name, params) in offers {
        if name != "permessage-deflate" {
            continue;
        }
        let (mut snct, mut cnct) = (false, false);
        let mut smwb: Option<u8> = None;
        let mut cmwb: Option<Option<u8>> = None;
        let mut seen: Vec<&str> = Vec::new();
        for (p, v) in &params {
            // RFC 7692 §7: an offer with a duplicate parameter, an unknown
            // parameter or an invalid value is declined.
            if seen.contains(&p.as_str()) {
                continue 'offers;
            }
            seen.push(p);
            match (p.as_str(), v) {
                ("server_no_context_takeover", None) => snct = true,
                ("client_no_context_takeover", None) => cnct = true,
                ("server_max_window_bits", Some(v)) => match window_bits(v) {
                    Some(b) => smwb = Some(b),
                    None => continue 'offers,
                },
                ("client_max_window_bits", None) => cmwb = Some(None),
                ("client_max_window_bits", Some(v)) => match window_bits(v) {
                    Some(b) => cmwb = Some(Some(b)),
                    None => continue 'offers,
                },
                _ => continue 'offers,
            }
        }
        let force = cfg.mode == CompressionMode::NoContextTakeover;
        let server_bits = smwb.unwrap_or(15).min(cfg.server_max_window_bits.clamp(8, 15));
        // We may only limit the client's window if it said it can be limited.
        let client_bits = match cmwb {
            None => 15,
            Some(v) => v.unwrap_or(15).min(cfg.client_max_window_bits.clamp(8, 15)),
        };
        let agreed = Agreed {
            server_no_context_takeover: snct || force,
            client_no_context_takeover: cnct || force,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        };
        let mut resp = String::from("permessage-deflate");
        if agreed.server_no_context_takeover {
            resp.push_str("; server_no_context_takeover");
        }
        if agreed.client_no_context_takeover {
            resp.push_str("; client_no_context_takeover");
        }
        if smwb.is_some() || server_bits < 15 {
            resp.push_str(&format!("; server_max_window_bits={server_bits}"));
        }
        if cmwb.is_some() && client_bits < 15 {
            resp.push_str(&format!("; client_max_window_bits={client_bits}"));
        }
        return Ok(Some((agreed, resp)));
    }
    Ok(None)
}

/// A client's offer for `--compress`: permessage-deflate with context
/// takeover, and the fallback-free parameters the server may lower.
pub fn client_offer() -> &'static str {
    "permessage-deflate; client_max_window_bits"
}

/// Parse the server's answer to [`client_offer`] into the agreement, seen from
/// the client. `None` if it is not a permessage-deflate agreement we can use.
pub fn client_agreed(response: &str) -> Option<Agreed> {
    let offers = parse_extensions(response).ok()?;
    let (name, params) = offers.into_iter().next()?;
    if name != "permessage-deflate" {
        return None;
    }
    let mut a = Agreed {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    for (p, v) in params {
        match (p.as_str(), v.as_deref()) {
            ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => a.server_max_window_bits = window_bits(v)?,
            ("client_max_window_bits", Some(v)) => a.client_max_window_bits = window_bits(v)?,
            _ => return None,
        }
    }
    Some(a)
}

/// Compress `plain` into `out` as part of the message `c` is writing.
pub fn compress_into(c: &mut Compress, plain: &[u8], out: &mut Vec<u8>) {
    let mut input = plain;
    while !input.is_empty() {
        out.reserve(input.len() / 2 + 64);
        let before = c.total_in();
        c.compress_vec(input, out, FlushCompress::None).expect("deflate cannot fail on valid state");
        input = &input[(c.total_in() - before) as usize..];
    }
}

/// End the message `c` is writing into `out`: sync-flush, strip the 4-byte
/// tail (RFC 7692 §7.2.1), and write an empty message as the lone 0x00.
pub fn end_message(c: &mut Compress, out: &mut Vec<u8>) {
    loop {
        out.reserve(64);
        let before = out.len();
        c.compress_vec(&[], out, FlushCompress::Sync).expect("deflate flush");
        // Done once a call leaves spare room (the flush fit) or makes no
        // progress (nothing was pending: zlib emits no second empty block).
        if out.len() == before || out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    if out.is_empty() {
        // An empty message compresses to a single 0x00 (RFC 7692 §7.2.3.6).
        out.push(0x00);
    }
}

/// Spare inflaters and deflaters shared by the connections of one reactor
/// (no-context-takeover mode borrows one for the length of a message).
#[derive(Debug)]
pub struct CodecPool {
    inflaters: Vec<Decompress>,
    /// Inflaters lent to connections right now (a compressed message in
    /// progress, or kept for context takeover).
    lent: usize,
    /// Most inflaters lent at once (each ~43 KiB): bounds what unfinished
    /// compressed messages can hold across a reactor.
    max_lent: usize,
    deflaters: Vec<(u8, Compress)>,
    level: u32,
    /// Most spares of each kind kept.
    max_spare: usize,
}

impl CodecPool {
    /// An empty pool; deflaters use `level`.
    pub fn new(level: u32, max_spare: usize) -> Self {
        CodecPool {
            inflaters: Vec::new(),
            lent: 0,
            max_lent: usize::MAX,
            deflaters: Vec::new(),
            level: level.min(9),
            max_spare,
        }
    }

    /// Cap the inflaters lent at once; past it a new compressed message
    /// fails with [`ProtocolError::InflatersBusy`]. Default: no cap.
    pub fn set_max_inflaters(&mut self, max: usize) {
        self.max_lent = max;
    }

    /// Inflaters lent to connections right now.
    pub fn inflaters_in_use(&self) -> usize {
        self.lent
    }

    fn take_inflater(&mut self) -> Result<Decompress, ProtocolError> {
        if self.lent >= self.max_lent {
            return Err(ProtocolError::InflatersBusy);
        }
        self.lent += 1;
        // Inflating with the largest window accepts any client window.
        Ok(self.inflaters.pop().unwrap_or_else(|| Decompress::new_with_window_bits(false, 15)))
    }

    /// A connection holding an inflater went away.
    pub fn release_inflater(&mut self) {
        self.lent = self.lent.saturating_sub(1);
    }

    fn put_inflater(&mut self, mut d: Decompress) {
        self.lent = self.lent.saturating_sub(1);
        if self.inflaters.len() < self.max_spare {
            d.reset(false);
            self.inflaters.push(d);
        }
    }

    fn new_deflater(level: u32, bits: u8) -> Compress {
        if bits <= 8 {
            // See the module docs: stored blocks are valid for any window.
            Compress::new_with_window_bits(Compression::none(), false, 9)
        } else {
            Compress::new_with_window_bits(Compression::new(level), false, bits)
        }
    }

    fn take_deflater(&mut self, bits: u8) -> Compress {
        match self.deflaters.iter().position(|(b, _)| *b == bits) {
            Some(i) => self.deflaters.swap_remove(i).1,
            None => CodecPool::new_deflater(self.level, bits),
        }
    }

    fn put_deflater(&mut self, bits: u8, mut c: Compress) {
        if self.deflaters.len() < self.max_spare {
            c.reset();
            self.deflaters.push((bits, c));
        }
    }
}

/// How much inflated output to produce per step: the unit of UTF-8
/// validation and limit checking.
const STEP: usize = 32 * 1024;

/// A connection's permessage-deflate state. Without context takeover it is
/// just the agreement (a few bytes) between messages.
#[derive(Debug)]
pub struct PmdCodec {
    agreed: Agreed,
    /// Inflater: kept across messages only with client context takeover.
    inflater: Option<Box<Decompress>>,
    /// Deflater: kept across messages only with server context takeover.
    deflater: Option<Box<Compress>>,
    /// Inflated bytes of the message in progress.
    inflated: u64,
    /// The message in progress is text.
    text: bool,
    /// UTF-8 state of the inflated text.
    utf8: Utf8Validator,
    /// Echo the received compressed bytes unchanged (both sides reset per
    /// message and the client's window fits in ours).
    passthrough: bool,
    /// Scratch for inflated bytes being re-compressed.
    plain: Vec<u8>,
    /// The message in progress ended its deflate stream with a BFINAL block.
    stream_ended: bool,
}

impl PmdCodec {
    /// State for a connection that agreed on `agreed`.
    pub fn new(agreed: Agreed) -> Self {
        let passthrough = agreed.server_no_context_takeover
            && agreed.client_no_context_takeover
            && agreed.client_max_window_bits <= agreed.server_max_window_bits
            && agreed.server_max_window_bits > 8;
        PmdCodec {
            agreed,
            inflater: None,
            deflater: None,
            inflated: 0,
            text: false,
            utf8: Utf8Validator::new(),
            passthrough,
            plain: Vec::new(),
            stream_ended: false,
        }
    }

    /// The agreement.
    pub fn agreed(&self) -> &Agreed {
        &self.agreed
    }

    /// Bytes inflated so far of the compressed message in progress (or of the
    /// last one, once it ended).
    pub fn inflated(&self) -> u64 {
        self.inflated
    }

    /// Whether this connection holds an inflater lent by a [`CodecPool`]
    /// (give it back with [`CodecPool::release_inflater`] when dropping it).
    pub fn holds_inflater(&self) -> bool {
        self.inflater.is_some()
    }

    /// Whether echoes reuse the received compressed bytes.
    pub fn passthrough(&self) -> bool {
        self.passthrough
    }

    /// Inflate one frame of a compressed message (`first`: it carried RSV1;
    /// `fin`: it ends the message), checking the inflated size against
    /// `max_message` as it grows and validating text. If `recompress` is
    /// given, the frame's re-compressed payload is written there (for
    /// echoing); otherwise the inflated bytes are only checked (passthrough),
    /// or collected into `plain_out` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn on_frame(
        &mut self,
        pool: &mut CodecPool,
        payload: &[u8],
        first: bool,
        text: bool,
        fin: bool,
        max_message: u64,
        mut recompress: Option<&mut Vec<u8>>,
        mut plain_out: Option<&mut Vec<u8>>,
    ) -> Result<(), ProtocolError> {
        if first {
            self.stream_ended = false;
            self.inflated = 0;
            self.text = text;
            self.utf8 = Utf8Validator::new();
        }
        let mut inflater = match self.inflater.take() {
            Some(d) => d,
            None => Box::new(pool.take_inflater()?),
        };
        let result = self.inflate_all(&mut inflater, payload, fin, max_message, &mut recompress, &mut plain_out, pool);
        let keep_inflater = !self.agreed.client_no_context_takeover;
        if fin || result.is_err() {
            if keep_inflater && result.is_ok() {
                self.inflater = Some(inflater);
            } else {
                pool.put_inflater(*inflater);
            }
        } else {
            self.inflater = Some(inflater);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn inflate_all(
        &mut self,
        d: &mut Decompress,
        payload: &[u8],
        fin: bool,
        max_message: u64,
        recompress: &mut Option<&mut Vec<u8>>,
        plain_out: &mut Option<&mut Vec<u8>>,
        pool: &mut CodecPool,
    ) -> Result<(), ProtocolError> {
        if self.stream_ended && !payload.is_empty() {
            // RFC 7692 §7.2.3.4 lets a message end its data with a BFINAL
            // block; nothing of that message may follow it.
            return Err(ProtocolError::BadCompressedData);
        }
        let inputs: [&[u8]; 2] = [payload, if fin { &TAIL } else { &[] }];
        let mut plain = std::mem::take(&mut self.plain);
        for (idx, mut input) in inputs.into_iter().enumerate() {
            while !input.is_empty() && !self.stream_ended {
                plain.clear();
                plain.reserve(STEP);
                let before = d.total_in();
                let status = match d.decompress_vec(input, &mut plain, FlushDecompress::Sync) {
                    Ok(st) => st,
                    Err(_) => {
                        self.plain = plain;
                        return Err(ProtocolError::BadCompressedData);
                    }
                };
                let used = (d.total_in() - before) as usize;
                input = &input[used..];
                if let Err(e) = self.take_inflated(&plain, max_message, recompress, plain_out, pool) {
                    self.plain = plain;
                    return Err(e);
                }
                if status == Status::StreamEnd {
                    // A BFINAL block ended the deflate stream. Payload bytes
                    // after it are an error; the appended tail is not.
                    if idx == 0 && !input.is_empty() {
                        self.plain = plain;
                        return Err(ProtocolError::BadCompressedData);
                    }
                    self.stream_ended = true;
                    break;
                }
                if used == 0 && plain.is_empty() {
                    // No progress on non-empty input: the stream is stuck.
                    self.plain = plain;
                    return Err(ProtocolError::BadCompressedData);
                }
            }
        }
        if self.stream_ended {
            // The stream is over: the next message starts a fresh one (with
            // an empty window), whatever the context-takeover agreement.
            d.reset(false);
            if fin {
                self.stream_ended = false;
                if self.text && self.utf8.finish().is_err() {
                    self.plain = plain;
                    return Err(ProtocolError::InvalidUtf8);
                }
                if let Some(out) = recompress.as_deref_mut() {
                    self.finish_message(pool, out);
                }
            }
            plain.clear();
            if plain.capacity() <= STEP && !fin {
                self.plain = plain;
            }
            return Ok(());
        }
        // Drain output still buffered inside the inflater.
        loop {
            plain.clear();
            plain.reserve(STEP);
            d.decompress_vec(&[], &mut plain, FlushDecompress::Sync).map_err(|_| ProtocolError::BadCompressedData)?;
            if plain.is_empty() {
                break;
            }
            if let Err(e) = self.take_inflated(&plain, max_message, recompress, plain_out, pool) {
                self.plain = plain;
                return Err(e);
            }
        }
        if fin && self.text && self.utf8.finish().is_err() {
            self.plain = plain;
            return Err(ProtocolError::InvalidUtf8);
        }
        if fin {
            if let Some(out) = recompress.as_deref_mut() {
                self.finish_message(pool, out);
            }
        }
        // Keep the scratch only if small: idle connections hold nothing big.
        plain.clear();
        if plain.capacity() <= STEP && !fin {
            self.plain = plain;
        }
        Ok(())
    }

    /// Account for one step of inflated output — the message limit, then
    /// UTF-8 — and hand it on to the re-compressor and/or the caller.
    fn take_inflated(
        &mut self,
        plain: &[u8],
        max_message: u64,
        recompress: &mut Option<&mut Vec<u8>>,
        plain_out: &mut Option<&mut Vec<u8>>,
        pool: &mut CodecPool,
    ) -> Result<(), ProtocolError> {
        self.inflated += plain.len() as u64;
        if self.inflated > max_message {
            return Err(ProtocolError::MessageTooBig);
        }
        if self.text && self.utf8.push(plain).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        if let Some(out) = recompress.as_deref_mut() {
            self.deflate_into(pool, plain, out);
        }
        if let Some(out) = plain_out.as_deref_mut() {
            out.extend_from_slice(plain);
        }
        Ok(())
    }

    /// Compress `plain` as part of the current outgoing message.
    pub fn deflate_into(&mut self, pool: &mut CodecPool, plain: &[u8], out: &mut Vec<u8>) {
        let bits = self.agreed.server_max_window_bits;
        let c = self.deflater.get_or_insert_with(|| Box::new(pool.take_deflater(bits)));
        compress_into(c, plain, out);
    }

    /// End the outgoing message: sync-flush and strip the 4-byte tail
    /// (RFC 7692 §7.2.1), then reset or keep the deflater per the agreement.
    pub fn finish_message(&mut self, pool: &mut CodecPool, out: &mut Vec<u8>) {
        let bits = self.agreed.server_max_window_bits;
        let c = self.deflater.get_or_insert_with(|| Box::new(pool.take_deflater(bits)));
        end_message(c, out);
        if self.agreed.server_no_context_takeover {
            if let Some(c) = self.deflater.take() {
                pool.put_deflater(bits, *c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: CompressionMode) -> DeflateConfig {
        DeflateConfig { mode, ..DeflateConfig::default() }
    }

    #[test]
    fn negotiation_matrix() {
        let nct = cfg(CompressionMode::NoContextTakeover);
        let ct = cfg(CompressionMode::ContextTakeover);
        let resp = |h: &str, c: &DeflateConfig| negotiate(h, c).unwrap().map(|x| x.1);
        assert_eq!(
            resp("permessage-deflate", &nct).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(resp("permessage-deflate", &ct).as_deref(), Some("permessage-deflate"));
        assert_eq!(resp("permessage-deflate; client_max_window_bits", &ct).as_deref(), Some("permessage-deflate"));
        assert_eq!(
            resp("permessage-deflate; server_max_window_bits=10", &ct).as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        assert_eq!(
            resp("permessage-deflate; client_max_window_bits=9; server_no_context_takeover", &ct).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=9")
        );
        // Quoted values are values.
        assert_eq!(
            resp("permessage-deflate; server_max_window_bits=\"12\"", &ct).as_deref(),
            Some("permessage-deflate; server_max_window_bits=12")
        );
        // Bad values, duplicates and unknown parameters decline that offer
        // only; the next acceptable one wins.
        for bad in [
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover=1",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(resp(bad, &ct), None, "{bad}");
            let with_fallback = format!("{bad}, permessage-deflate; client_max_window_bits");
            assert_eq!(resp(&with_fallback, &ct).as_deref(), Some("permessage-deflate"), "{bad}");
        }
        // Off declines everything; malformed headers are 400.
        assert_eq!(resp("permessage-deflate", &cfg(CompressionMode::Off)), None);
        for malformed in ["permessage-deflate;", "permessage-deflate; a=\"x", "; x", "permessage-deflate x"] {
            assert_eq!(negotiate(malformed, &ct).unwrap_err().status, 400, "{malformed}");
        }
        // Our own window limit applies.
        let small = DeflateConfig { server_max_window_bits: 10, ..ct };
        assert_eq!(
            resp("permessage-deflate", &small).as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
    }

    fn compress_message(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        while !out.ends_with(&TAIL) {
            out.reserve(64);
            let before = out.len();
            c.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
            if out.len() == before {
                // Nothing was pending (an empty message after a flush): the
                // empty message is the lone block header 0x00 (§7.2.3.6).
                return vec![0x00];
            }
        }
        out.truncate(out.len() - 4);
        out
    }

    fn agreed(nct: bool) -> Agreed {
        Agreed {
            server_no_context_takeover: nct,
            client_no_context_takeover: nct,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    #[test]
    fn round_trip_with_and_without_takeover_across_fragments() {
        for nct in [true, false] {
            let mut pool = CodecPool::new(1, 4);
            let mut server = PmdCodec::new(agreed(nct));
            let mut client_c = Compress::new_with_window_bits(Compression::default(), false, 15);
            let mut client_d = Decompress::new_with_window_bits(false, 15);
            for round in 0..3 {
                // Round 1 is an empty message (a second sync flush with
                // nothing pending emits nothing: it must still end).
                let msg = if round == 1 {
                    String::new()
                } else {
                    format!("{{\"round\":{round},\"data\":\"{}\"}}", "héllo wörld ".repeat(200))
                };
                if nct {
                    client_c.reset();
                }
                let wire = compress_message(&mut client_c, msg.as_bytes());
                // Split the compressed payload into 3 fragments.
                let cuts = [0, wire.len() / 3, 2 * wire.len() / 3, wire.len()];
                let mut echoed = Vec::new();
                for f in 0..3 {
                    server
                        .on_frame(
                            &mut pool,
                            &wire[cuts[f]..cuts[f + 1]],
                            f == 0,
                            true,
                            f == 2,
                            1 << 24,
                            Some(&mut echoed),
                            None,
                        )
                        .unwrap();
                }
                // The client inflates our echo: exactly what it sent.
                if nct {
                    client_d.reset(false);
                }
                let mut input = echoed.clone();
                input.extend_from_slice(&TAIL);
                let mut plain = Vec::with_capacity(msg.len() + 1024);
                client_d.decompress_vec(&input, &mut plain, FlushDecompress::Sync).unwrap();
                assert_eq!(String::from_utf8(plain).unwrap(), msg, "nct={nct} round {round}");
            }
            if nct {
                assert!(server.inflater.is_none() && server.deflater.is_none(), "no state between messages");
            } else {
                assert!(server.inflater.is_some() && server.deflater.is_some());
            }
        }
    }

    #[test]
    fn zip_bomb_is_refused_with_bounded_output() {
        // 16 MiB of zeros compress to ~16 KiB; the limit is 1 MiB.
        let mut c = Compress::new_with_window_bits(Compression::best(), false, 15);
        let zeros = vec![0u8; 16 << 20];
        let wire = compress_message(&mut c, &zeros);
        assert!(wire.len() < 128 * 1024);
        let mut pool = CodecPool::new(1, 4);
        let mut server = PmdCodec::new(agreed(true));
        let err = server.on_frame(&mut pool, &wire, true, false, true, 1 << 20, None, None).unwrap_err();
        assert_eq!(err, ProtocolError::MessageTooBig);
        assert!(server.plain.capacity() <= 2 * STEP, "scratch stayed small");
    }

    #[test]
    fn bfinal_block_ends_the_message_and_the_next_one_still_inflates() {
        // Raw deflate of "Hello" in one BFINAL=1 fixed-Huffman block, as
        // RFC 7692 §7.2.3.4 allows; found by fuzzing (helper report).
        let msg1 = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        for nct in [false, true] {
            let mut pool = CodecPool::new(1, 4);
            let mut server = PmdCodec::new(agreed(nct));
            for _ in 0..3 {
                let mut plain = Vec::new();
                server.on_frame(&mut pool, &msg1, true, true, true, 1 << 20, None, Some(&mut plain)).unwrap();
                assert_eq!(plain, b"Hello", "nct={nct}");
            }
            let mut trailing = msg1.to_vec();
            trailing.extend_from_slice(&[0xde, 0xad]);
            let err = server.on_frame(&mut pool, &trailing, true, true, true, 1 << 20, None, None).unwrap_err();
            assert_eq!(err, ProtocolError::BadCompressedData);
        }
    }

    #[test]
    fn invalid_utf8_after_inflation_is_1007() {
        let mut c = Compress::new_with_window_bits(Compression::default(), false, 15);
        let wire = compress_message(&mut c, &[b'a', 0xFF, b'b']);
        let mut pool = CodecPool::new(1, 4);
        let mut server = PmdCodec::new(agreed(true));
        let err = server.on_frame(&mut pool, &wire, true, true, true, 1 << 20, None, None).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidUtf8);
    }

    #[test]
    fn window_bits_8_output_inflates_with_an_8_bit_window() {
        let mut pool = CodecPool::new(9, 4);
        let mut a = agreed(true);
        a.server_max_window_bits = 8;
        let mut server = PmdCodec::new(a);
        let data = "abcabcabc".repeat(100);
        let mut out = Vec::new();
        server.deflate_into(&mut pool, data.as_bytes(), &mut out);
        server.finish_message(&mut pool, &mut out);
        // zlib-rs/flate2 refuse an 8-bit inflate window too; check there are
        // no back-references at all (stored blocks only) instead: BTYPE=00.
        assert_eq!(out[0] & 0b110, 0, "first block is stored");
        let mut d = Decompress::new_with_window_bits(false, 9);
        let mut input = out.clone();
        input.extend_from_slice(&TAIL);
        let mut plain = Vec::with_capacity(2000);
        d.decompress_vec(&input, &mut plain, FlushDecompress::Sync).unwrap();
        assert_eq!(plain, data.as_bytes());
    }
}
