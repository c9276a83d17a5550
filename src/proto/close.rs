//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use super::error::ProtocolError;
use super::utf8;

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: abnormal closure (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with the message type (bad UTF-8).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: unexpected condition on the server.
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1013: try again later (IANA registry; a temporary server condition).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether a peer may send this code in a Close frame.
    ///
    /// RFC 6455 §7.4.1/§7.4.2: 1000–1003 and 1007–1011 are defined; 1012–1014
    /// were registered later with IANA; 3000–4999 are for libraries and
    /// applications. 1004 is reserved, 1005/1006/1015 "MUST NOT be set as a
    /// status code in a Close control frame", and everything else below 3000
    /// is unassigned.
    pub fn is_receivable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// A short lower-case name for logs, after the IANA "WebSocket Close Code
    /// Number Registry" (RFC 6455 §11.7): `1009` is `"message too big"`.
    /// Empty for codes with no name there (unassigned codes, and the
    /// 3000–4999 ranges whose meaning the application defines).
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1004 => "reserved",
            1005 => "no status received",
            1006 => "abnormal closure",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "TLS handshake failed",
            _ => "",
        }
    }
}

/// Parse a received close payload.
///
/// Returns the code (None for an empty payload) and the byte range of the
/// reason. RFC 6455 §5.5.1: "If there is a body, the first two bytes of the
/// body MUST be a 2-byte unsigned integer"; the rest "is not guaranteed to be
/// human readable" but, being text, must be UTF-8 (§8.1).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(CloseCode, &[u8])>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::CloseTooShort),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_receivable() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = &payload[2..];
            if !utf8::is_valid(reason) {
                return Err(ProtocolError::InvalidUtf8);
            }
            Ok(Some((code, reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivable_code_classes() {
        for c in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999] {
            assert!(CloseCode(c).is_receivable(), "{c}");
        }
        for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(c).is_receivable(), "{c}");
        }
    }

    #[test]
    fn every_code_from_1000_to_1015_has_a_name_and_others_none() {
        assert_eq!(CloseCode::NORMAL.name(), "normal closure");
        assert_eq!(CloseCode::TOO_BIG.name(), "message too big");
        assert_eq!(CloseCode::ABNORMAL.name(), "abnormal closure");
        for c in 1000..=1015 {
            assert!(!CloseCode(c).name().is_empty(), "{c}");
        }
        let names: std::collections::HashSet<_> = (1000..=1015).map(|c| CloseCode(c).name()).collect();
        assert_eq!(names.len(), 16, "two codes share a name");
        for c in [0, 999, 1016, 2999, 3000, 4000, 4999, 65535] {
            assert_eq!(CloseCode(c).name(), "", "{c}");
        }
    }

    #[test]
    fn close_payload_rules() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(parse_close_payload(&[3]), Err(ProtocolError::CloseTooShort));
        assert_eq!(parse_close_payload(&[0x03, 0xEC]), Err(ProtocolError::InvalidCloseCode(1004)));
        assert_eq!(parse_close_payload(&[0x03, 0xED]), Err(ProtocolError::InvalidCloseCode(1005)));
        assert_eq!(parse_close_payload(&[0x03, 0xE8, 0xFF]), Err(ProtocolError::InvalidUtf8));
        let (code, reason) = parse_close_payload(b"\x03\xe8bye").unwrap().unwrap();
        assert_eq!((code, reason), (CloseCode::NORMAL, &b"bye"[..]));
    }
}
