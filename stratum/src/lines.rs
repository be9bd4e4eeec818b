//! Newline-delimited request lines, read as bytes: an over-long line or one that is not UTF-8 is
//! an item of its own (answered with an error), never the end of the connection.

use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

/// One line from a miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line (without its newline).
    Text(String),
    /// A line longer than the limit was skipped.
    TooLong,
    /// A line that is not UTF-8 was skipped.
    NotUtf8,
}

/// The decoder: lines of at most `max` bytes; longer ones are skipped up to their newline.
#[derive(Debug)]
pub(crate) struct Lines {
    max: usize,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    /// Bytes of the buffer already searched for a newline.
    searched: usize,
}

impl Lines {
    pub(crate) fn new(max: usize) -> Self {
        Self { max: max.max(1), discarding: false, searched: 0 }
    }
}

impl Decoder for Lines {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        loop {
            let newline = src[self.searched..].iter().position(|b| *b == b'\n').map(|i| i + self.searched);
            match (self.discarding, newline) {
                (true, Some(i)) => {
                    src.advance(i + 1);
                    self.discarding = false;
                    self.searched = 0;
                    return Ok(Some(Line::TooLong));
                }
                (true, None) => {
                    src.clear();
                    self.searched = 0;
                    return Ok(None);
                }
                (false, Some(i)) if i > self.max => {
                    src.advance(i + 1);
                    self.searched = 0;
                    return Ok(Some(Line::TooLong));
                }
                (false, Some(i)) => {
                    let line = src.split_to(i + 1);
                    self.searched = 0;
                    let body = line.strip_suffix(b"\n").unwrap_or(&line);
                    let body = body.strip_suffix(b"\r").unwrap_or(body);
                    return Ok(Some(match std::str::from_utf8(body) {
                        Ok(s) => Line::Text(s.to_owned()),
                        Err(_) => Line::NotUtf8,
                    }));
                }
                (false, None) if src.len() > self.max => {
                    self.discarding = true;
                    src.clear();
                    self.searched = 0;
                    continue;
                }
                (false, None) => {
                    self.searched = src.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        if let Some(line) = self.decode(src)? {
            return Ok(Some(line));
        }
        // a last line without its newline is dropped, as a partial request
        src.clear();
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut d = Lines::new(max);
        let mut buf = BytesMut::new();
        let mut out = vec![];
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(l) = d.decode(&mut buf).unwrap() {
                out.push(l);
            }
        }
        out
    }

    #[test]
    fn lines_split_across_reads_and_bad_ones_are_items() {
        let t = |s: &str| Line::Text(s.into());
        assert_eq!(all(16, &[b"ab", b"c\r\nde\n"]), vec![t("abc"), t("de")]);
        assert_eq!(all(16, &[b"\xff\xfe\nok\n"]), vec![Line::NotUtf8, t("ok")]);
        // an over-long line, in one read and across several, then the stream goes on
        assert_eq!(all(4, &[b"0123456789\nok\n"]), vec![Line::TooLong, t("ok")]);
        assert_eq!(all(4, &[b"01234", b"56789", b"9\nok\n"]), vec![Line::TooLong, t("ok")]);
        assert_eq!(all(4, &[b"0123\n"]), vec![t("0123")]);
    }
}
