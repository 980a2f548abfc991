//! The control socket's framing, written once for both ends: a frame is a
//! 4-byte big-endian length, then that many bytes (a JSON document), each
//! direction with its own bound. [`frame_head`] and [`frame_length`] are the
//! whole codec (pure); [`write_frame`] and [`read_frame`] are the blocking
//! client's wrappers, and the server (`mtlsca-net`'s `control`) wraps the same
//! two functions around its async socket.

use std::io::{Read, Write};

/// Bytes of a frame's length.
pub const HEAD: usize = 4;
/// Largest request (a batch manifest is at most 64 MiB).
pub const MAX_REQUEST: u32 = 80 * 1024 * 1024;
/// Largest response (a part of a long read, a batch's report).
pub const MAX_RESPONSE: u32 = 1024 * 1024 * 1024;

/// A frame longer than its direction allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// Its length (announced, or of the body to send).
    pub len: u64,
    /// The bound.
    pub max: u32,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a message of {} bytes (at most {})", self.len, self.max)
    }
}

impl std::error::Error for TooLarge {}

/// The length bytes that go before a body of `len` bytes, at most `max`.
pub fn frame_head(len: usize, max: u32) -> Result<[u8; HEAD], TooLarge> {
    u32::try_from(len)
        .ok()
        .filter(|l| *l <= max)
        .map(u32::to_be_bytes)
        .ok_or(TooLarge {
            len: len as u64,
            max,
        })
}

/// The body length that `head` announces, at most `max`.
pub fn frame_length(head: [u8; HEAD], max: u32) -> Result<usize, TooLarge> {
    let len = u32::from_be_bytes(head);
    if len > max {
        return Err(TooLarge {
            len: u64::from(len),
            max,
        });
    }
    usize::try_from(len).map_err(|_| TooLarge {
        len: u64::from(len),
        max,
    })
}

/// Write one frame (blocking).
pub fn write_frame(w: &mut impl Write, body: &[u8], max: u32) -> std::io::Result<()> {
    let head = frame_head(body.len(), max).map_err(std::io::Error::other)?;
    w.write_all(&head)?;
    w.write_all(body)?;
    w.flush()
}

/// Read one frame of at most `max` bytes (blocking); a frame cut short is
/// `UnexpectedEof`.
pub fn read_frame(r: &mut impl Read, max: u32) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; HEAD];
    r.read_exact(&mut head)?;
    let len = frame_length(head, max).map_err(std::io::Error::other)?;
    let mut body = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_lengths_are_inverse_and_bounded() {
        assert_eq!(frame_head(5, 100).unwrap(), [0, 0, 0, 5]);
        assert_eq!(frame_length([0, 0, 0, 5], 100).unwrap(), 5);
        assert_eq!(frame_length([0, 0, 1, 0], 256).unwrap(), 256);
        let over = frame_length([0, 0, 1, 1], 256).unwrap_err();
        assert_eq!(over, TooLarge { len: 257, max: 256 });
        assert_eq!(over.to_string(), "a message of 257 bytes (at most 256)");
        assert!(frame_length(u32::MAX.to_be_bytes(), MAX_RESPONSE).is_err());
        assert!(frame_head(101, 100).is_err());
        assert!(frame_head(usize::MAX, u32::MAX).is_err());
    }

    #[test]
    fn frames_are_bounded() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"\"hello\"", 100).unwrap();
        assert_eq!(read_frame(&mut &buf[..], 100).unwrap(), b"\"hello\"");
        assert!(read_frame(&mut &buf[..], 3).is_err());
        assert!(write_frame(&mut Vec::new(), b"hello", 3).is_err());
        // A length announcing more than is sent.
        let cut = read_frame(&mut &[0, 0, 0, 9, b'x'][..], 100).unwrap_err();
        assert_eq!(cut.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
