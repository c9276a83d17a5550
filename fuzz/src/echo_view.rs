//! A message-level view of a server's echo, for comparing echoes whose
//! frames may have been cut differently: a frame larger than
//! `Limits::max_held_frame` is streamed, each piece echoed as a frame of its
//! own, so how the reads were cut changes the framing but never the
//! messages.
//!
//! Used by the `frames_chunked` and `reactor_driver` targets and, included by
//! path, by `tests/driver_in_memory.rs` and `tests/proptest_split.rs`; so it
//! depends on `std` only. The server-frame parser is this file's own, not the
//! crate's decoder.

/// A frame the server wrote.
#[derive(Debug)]
pub struct ServerFrame {
    /// FIN bit.
    pub fin: bool,
    /// RSV bits (0x70 mask).
    pub rsv: u8,
    /// Opcode (low four bits of byte 0).
    pub opcode: u8,
    /// Payload (servers do not mask).
    pub payload: Vec<u8>,
}

/// Parse server frames (independently of the crate's decoder), checking
/// what the server must never send. Returns the complete frames and the
/// bytes they span. `rsv_allowed`: RSV bits an extension gave meaning to.
pub fn parse_server_frames(bytes: &[u8], rsv_allowed: u8) -> (Vec<ServerFrame>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &bytes[pos..];
        if rest.len() < 2 {
            break;
        }
        let (b0, b1) = (rest[0], rest[1]);
        assert_eq!(b1 & 0x80, 0, "a masked server frame");
        assert_eq!(b0 & 0x70 & !rsv_allowed, 0, "RSV bits no extension defines");
        let (len, hlen) = match b1 & 0x7F {
            126 => {
                if rest.len() < 4 {
                    break;
                }
                let n = u16::from_be_bytes([rest[2], rest[3]]) as u64;
                assert!(n >= 126, "16-bit length {n} not minimal");
                (n, 4)
            }
            127 => {
                if rest.len() < 10 {
                    break;
                }
                let n = u64::from_be_bytes(rest[2..10].try_into().unwrap());
                assert!(n > 0xFFFF && n >> 63 == 0, "64-bit length {n} not minimal");
                (n, 10)
            }
            n => (n as u64, 2),
        };
        if ((rest.len() - hlen) as u64) < len {
            break;
        }
        let len = len as usize;
        let opcode = b0 & 0x0F;
        let fin = b0 & 0x80 != 0;
        assert!(matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10), "server sent opcode {opcode}");
        if opcode >= 8 {
            assert!(fin && len <= 125, "bad server control frame (fin {fin}, {len} bytes)");
        }
        frames.push(ServerFrame { fin, rsv: b0 & 0x70, opcode, payload: rest[hlen..hlen + len].to_vec() });
        pos += hlen + len;
    }
    (frames, pos)
}

/// A message-level view of an echo: data frames merged per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A message starts: its opcode (1 text, 2 binary) and RSV bits.
    Start(u8, u8),
    /// Payload bytes (adjacent data frames merged).
    Bytes(Vec<u8>),
    /// The message ended (FIN).
    End,
    /// A pong with this payload.
    Pong(Vec<u8>),
    /// A ping with this payload (decoded client streams only).
    Ping(Vec<u8>),
    /// A Close with this payload (decoded client streams only; an echo's
    /// Close is [`Echo::close`]).
    Close(Vec<u8>),
}

/// Add a data frame (or a streamed piece of one) to `items`: a message's
/// first frame starts it, payloads of one message run together, FIN ends it.
pub fn push_data(items: &mut Vec<Item>, opcode: u8, rsv: u8, fin: bool, payload: &[u8]) {
    if opcode != 0 {
        items.push(Item::Start(opcode, rsv));
    }
    if !payload.is_empty() {
        match items.last_mut() {
            Some(Item::Bytes(b)) => b.extend_from_slice(payload),
            _ => items.push(Item::Bytes(payload.to_vec())),
        }
    }
    if fin {
        items.push(Item::End);
    }
}

/// Whether `a` is a prefix of `b`, the last item of `a` possibly a partial
/// `Bytes`.
pub fn is_prefix(a: &[Item], b: &[Item]) -> bool {
    if a.len() > b.len() {
        return false;
    }
    let Some((last, init)) = a.split_last() else { return true };
    if init.iter().zip(b).any(|(x, y)| x != y) {
        return false;
    }
    match (last, &b[init.len()]) {
        (Item::Bytes(x), Item::Bytes(y)) => y.starts_with(x),
        (x, y) => x == y,
    }
}

/// A short rendering for assertion messages (byte counts, not bytes).
pub fn show(items: &[Item]) -> String {
    let mut s = String::new();
    for i in items {
        match i {
            Item::Start(op, rsv) => s.push_str(&format!("[{op}/{rsv:x} ")),
            Item::Bytes(b) => s.push_str(&format!("{}B ", b.len())),
            Item::End => s.push_str("] "),
            Item::Pong(p) => s.push_str(&format!("pong{} ", p.len())),
            Item::Ping(p) => s.push_str(&format!("ping{} ", p.len())),
            Item::Close(p) => s.push_str(&format!("close{} ", p.len())),
        }
    }
    s
}

/// The server's echo, normalised; checks frame sequencing and that a Close
/// comes last.
#[derive(Debug)]
pub struct Echo {
    /// Messages and pongs.
    pub items: Vec<Item>,
    /// The Close frame's code (Some(None): an empty Close).
    pub close: Option<Option<u16>>,
}

/// Normalise server frames. Checks that data frames are correctly sequenced
/// (continuations only inside a message, RSV only on its first frame), that
/// nothing follows a Close and that Pings (keepalive) are empty.
pub fn normalise_server(frames: &[ServerFrame]) -> Echo {
    let mut items = Vec::new();
    let mut close = None;
    let mut in_message = false;
    for f in frames {
        assert!(close.is_none(), "a frame after the server's Close");
        match f.opcode {
            0 => {
                assert!(in_message, "continuation outside a message");
                assert_eq!(f.rsv, 0, "RSV bits on a continuation frame");
                push_data(&mut items, 0, 0, f.fin, &f.payload);
                in_message = !f.fin;
            }
            1 | 2 => {
                assert!(!in_message, "a new message inside a fragmented one");
                push_data(&mut items, f.opcode, f.rsv, f.fin, &f.payload);
                in_message = !f.fin;
            }
            8..=10 if f.rsv != 0 => panic!("RSV bits on a control frame"),
            8 => {
                let code = match f.payload.len() {
                    0 => None,
                    1 => panic!("one-byte Close payload"),
                    _ => Some(u16::from_be_bytes([f.payload[0], f.payload[1]])),
                };
                close = Some(code);
            }
            9 => assert!(f.payload.is_empty(), "keepalive ping with a payload"),
            10 => items.push(Item::Pong(f.payload.clone())),
            _ => unreachable!(),
        }
    }
    Echo { items, close }
}
