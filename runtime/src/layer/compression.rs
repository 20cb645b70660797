//! Layer blob decompression, chosen by sniffing the blob's first bytes rather than trusting the
//! media type: docker-archive tarballs carry no media types at all, and registries have been
//! seen serving gzip blobs under "uncompressed" types.
//!
//! zstd is decoded with `ruzstd`, whose streaming decoder reads a single frame; the small
//! multi-frame reader here adds what the zstd format allows beyond that (several frames in a
//! row, as `pzstd` writes, and skippable frames).

use std::io::{self, BufRead, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// Recognises the compression from the first bytes of a blob (at least four are needed to
    /// recognise zstd; fewer bytes are taken as uncompressed).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `reader` in the decompressor its first bytes call for; the result yields the
/// uncompressed tar stream.
pub fn decompress<'a, R: BufRead + 'a>(
    mut reader: R,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let head = fill_at_least(&mut reader, ZSTD_MAGIC.len())?;
    let compression = Compression::sniff(&head);
    let out: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(Prefixed {
            head,
            pos: 0,
            inner: reader,
        }),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(io::BufReader::new(
            Prefixed {
                head,
                pos: 0,
                inner: reader,
            },
        ))),
        Compression::Zstd => Box::new(ZstdReader::new(io::BufReader::new(Prefixed {
            head,
            pos: 0,
            inner: reader,
        }))),
    };
    Ok((compression, out))
}

/// Reads up to `n` bytes from the start of the stream (fewer only at end of stream). They are
/// handed back and re-served by [`Prefixed`], because a `BufRead` may hold fewer than `n` bytes
/// in its buffer at once.
fn fill_at_least(reader: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    reader.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// A reader that serves `head` before the rest of `inner`.
struct Prefixed<R> {
    head: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Decodes a stream of zstd frames, one after another, skipping skippable frames.
struct ZstdReader<R> {
    source: R,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdReader<R> {
    fn new(source: R) -> ZstdReader<R> {
        ZstdReader {
            source,
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                if self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                    self.decoder
                        .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    continue;
                }
                let n = self.decoder.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                    self.in_frame = false;
                }
                continue;
            }
            if self.source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.decoder.reset(&mut self.source) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut (&mut self.source).take(u64::from(length)),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd stream ends inside a skippable frame",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"usr/"), Compression::None);
        assert_eq!(Compression::sniff(&[0x28, 0xb5]), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    #[test]
    fn plain_stream_passes_through_even_when_short() {
        for input in [&b""[..], b"ab", b"a longer plain stream"] {
            let (kind, mut r) = decompress(input).expect("decompress plain");
            assert_eq!(kind, Compression::None);
            let mut out = Vec::new();
            r.read_to_end(&mut out).expect("read plain");
            assert_eq!(out, input);
        }
    }

    #[test]
    fn gzip_members_are_concatenated() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut blob = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).expect("gzip write");
            blob.extend(enc.finish().expect("gzip finish"));
        }
        let (kind, mut r) = decompress(&blob[..]).expect("decompress gzip");
        assert_eq!(kind, Compression::Gzip);
        let mut out = String::new();
        r.read_to_string(&mut out).expect("read gzip");
        assert_eq!(out, "first second");
    }

    #[test]
    fn zstd_frames_in_a_row_and_skippable_frames() {
        // Two frames made with ruzstd's own encoder, with a skippable frame between them.
        let a = ruzstd::encoding::compress_to_vec(
            &b"hello "[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let b = ruzstd::encoding::compress_to_vec(
            &b"world"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut blob = a;
        blob.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
        blob.extend(b);
        let (kind, mut r) = decompress(&blob[..]).expect("decompress zstd");
        assert_eq!(kind, Compression::Zstd);
        let mut out = String::new();
        r.read_to_string(&mut out).expect("read zstd");
        assert_eq!(out, "hello world");
    }

    #[test]
    fn corrupt_zstd_is_an_error() {
        let blob = [0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff];
        let (_, mut r) = decompress(&blob[..]).expect("sniff");
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
    }
}
