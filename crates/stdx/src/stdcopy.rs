//! Docker's stdcopy framing: how a non-TTY container's stdout and stderr share one stream
//! (attach, logs, exec, and barge's monitor sockets). Each frame is an 8-byte header
//! `[stream: u8][0, 0, 0][payload length: u32 big-endian]` followed by the payload; stream is
//! [`STDIN`] 0, [`STDOUT`] 1 or [`STDERR`] 2.
//!
//! Source: the Engine API's "Stream format" (`ContainerAttach` in moby's `api/swagger.yaml`),
//! moby `pkg/stdcopy`.

/// Stream number of standard input.
pub const STDIN: u8 = 0;
/// Stream number of standard output.
pub const STDOUT: u8 = 1;
/// Stream number of standard error.
pub const STDERR: u8 = 2;
/// Length of a frame header.
pub const HEADER_LEN: usize = 8;

/// One frame: the header for `payload` on `stream`, then `payload`.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(stream, payload.len()));
    out.extend_from_slice(payload);
    out
}

/// The header of a frame of `len` payload bytes on `stream`. Panics if `len` does not fit the
/// header's 32 bits (callers send at most a few KiB per frame).
pub fn header(stream: u8, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("stdcopy frame payload over 4 GiB");
    let l = len.to_be_bytes();
    [stream, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// The payload length a header announces.
pub fn payload_len(header: &[u8; HEADER_LEN]) -> usize {
    u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize
}

/// Incremental decoder: feed it the stream's bytes in chunks of any size; it calls back once
/// per complete frame and keeps an incomplete one for the next chunk.
#[derive(Debug, Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// Feeds bytes; calls `out(stream, payload)` for each complete frame.
    pub fn feed(&mut self, data: &[u8], mut out: impl FnMut(u8, &[u8])) {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        while self.buf.len() - pos >= HEADER_LEN {
            let h: &[u8; HEADER_LEN] = self.buf[pos..pos + HEADER_LEN].try_into().expect("8");
            let size = payload_len(h);
            if self.buf.len() - pos - HEADER_LEN < size {
                break;
            }
            let stream = h[0];
            out(stream, &self.buf[pos + HEADER_LEN..pos + HEADER_LEN + size]);
            pos += HEADER_LEN + size;
        }
        self.buf.drain(..pos);
    }

    /// Bytes of an incomplete frame left over.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_split_anywhere() {
        let mut stream = frame(STDOUT, b"hello ");
        stream.extend(frame(STDERR, b"oops"));
        stream.extend(frame(STDOUT, b""));
        stream.extend(frame(STDOUT, b"world"));
        assert_eq!(&stream[..8], &[1, 0, 0, 0, 0, 0, 0, 6]);
        for cut in 0..stream.len() {
            let mut d = Demux::default();
            let mut got = Vec::new();
            d.feed(&stream[..cut], |s, p| got.push((s, p.to_vec())));
            d.feed(&stream[cut..], |s, p| got.push((s, p.to_vec())));
            assert_eq!(
                got,
                vec![
                    (1, b"hello ".to_vec()),
                    (2, b"oops".to_vec()),
                    (1, Vec::new()),
                    (1, b"world".to_vec())
                ]
            );
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn keeps_a_partial_frame() {
        let f = frame(STDERR, b"abc");
        let mut d = Demux::default();
        d.feed(&f[..9], |_, _| panic!("incomplete"));
        assert_eq!(d.pending(), 9);
    }
}
