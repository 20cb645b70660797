//! Raft RPCs between replicas as length-prefixed JSON frames on a kept-open mutual-TLS
//! connection, chosen by ALPN ([`ALPN`]) on the peer port, beside the peer HTTP router.
//!
//! Why not the HTTP/2 router for these: at one client every write waits for an AppendEntries
//! round trip, and over HTTP/2 each one crosses four extra task hand-offs (the client's
//! connection task and back, the server's per-stream task and back) on top of the caller's own.
//! Here the replication task that sends an RPC writes the frame and reads the answer itself, and
//! the server answers inside the connection's task. Requests on one connection are answered in
//! order, one at a time, which is how openraft calls a peer (`RaftNetwork` takes `&mut self`).
//!
//! A frame is a 4-byte big-endian length, then that many bytes: one byte of kind and a JSON body.
//! Requests: [`APPEND`], [`VOTE`], [`SNAPSHOT`], and [`WRITE`] (a write forwarded by a follower,
//! on connections of its own kept in a small pool); answers: [`OK`] with the JSON of openraft's
//! `Result`, or [`FAILED`] with a message (the request could not be decoded). A frame over
//! [`MAX_FRAME`] or of an unknown kind closes the connection; nothing else is done with it.
//! Hand-written because it is a few dozen lines over tokio's I/O traits; a general RPC crate
//! (tonic, tarpc) would bring its own codegen or runtime model for three calls.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::FutureExt as _;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::types::Command;
use super::Store;

/// The ALPN protocol name a replica asks for when it opens a Raft connection to a peer.
pub const ALPN: &[u8] = b"flotilla-raft/1";

pub(crate) const APPEND: u8 = 1;
pub(crate) const VOTE: u8 = 2;
pub(crate) const SNAPSHOT: u8 = 3;
/// a write a follower forwards to the leader (answered with the store's `PeerReply`)
pub(crate) const WRITE: u8 = 4;
pub(crate) const OK: u8 = 0;
pub(crate) const FAILED: u8 = 255;

/// The largest frame either side accepts: Raft batches and snapshot chunks (1 MiB) fit well.
pub(crate) const MAX_FRAME: usize = 256 << 20;

/// Encodes `kind` and the JSON of `body` as one frame, in one buffer (one TLS record burst).
pub(crate) fn encode<T: Serialize + ?Sized>(kind: u8, body: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(&[0, 0, 0, 0, kind]);
    serde_json::to_writer(&mut buf, body)?;
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Writes an encoded frame and flushes it.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

/// Reads one frame: its kind and body.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (the limit is {MAX_FRAME})"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    let kind = buf[0];
    buf.remove(0);
    Ok((kind, buf))
}

/// Sends an encoded request frame on `conn` and reads the answer frame.
pub(crate) async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut S, frame: &[u8]) -> io::Result<(u8, Vec<u8>)> {
    write_frame(conn, frame).await?;
    read_frame(conn).await
}

/// Why an answer frame gives no answer.
pub(crate) enum AnswerError {
    /// a [`FAILED`] frame: the peer could not use the request, with its reason
    Refused(String),
    /// an [`OK`] frame whose body is not the expected JSON
    Undecodable(serde_json::Error),
}

/// Decodes an answer frame: the JSON of `T` under [`OK`], or the peer's refusal.
pub(crate) fn decode_answer<T: DeserializeOwned>(kind: u8, body: &[u8]) -> Result<T, AnswerError> {
    if kind != OK {
        let reason = serde_json::from_slice(body).unwrap_or_else(|_| "an undecodable refusal".to_string());
        return Err(AnswerError::Refused(reason));
    }
    serde_json::from_slice(body).map_err(AnswerError::Undecodable)
}

/// Opens a TLS connection to the peer at `addr` (HOST:PORT) and checks that it speaks [`ALPN`].
pub(crate) async fn connect(
    connector: &tokio_rustls::TlsConnector,
    addr: &str,
    timeout: Duration,
) -> io::Result<TlsStream<TcpStream>> {
    let host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("peer address {addr}: {e}")))?;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out")))??;
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("TLS handshake with {addr} timed out")))??;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
        return Err(io::Error::other(format!(
            "peer {addr} does not speak {} (an older apiserver?)",
            String::from_utf8_lossy(ALPN)
        )));
    }
    Ok(tls)
}

/// Whether a kept-open connection still looks usable: the peer has not closed it and sent
/// nothing unasked. Checked before a non-repeatable request (a forwarded write) is sent on it.
pub(crate) fn looks_open(conn: &mut TlsStream<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    // polled once: Pending means nothing to read, which is what an idle open connection shows
    conn.read(&mut byte).now_or_never().is_none()
}

/// Serves Raft RPCs on one accepted connection until the peer closes it, sends a bad frame, or
/// `stop` turns true (checked between requests).
pub(crate) async fn serve_connection<S>(
    store: Store,
    mut stream: S,
    peer: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut stream) => frame,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (kind, body) = match frame {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "closing a raft connection");
                return;
            }
        };
        let raft = &store.inner.raft;
        let answer = match kind {
            APPEND => answer(&body, |req| raft.append_entries(req)).await,
            VOTE => answer(&body, |req| raft.vote(req)).await,
            SNAPSHOT => answer(&body, |req| raft.install_snapshot(req)).await,
            WRITE => answer(&body, |cmd: Command| store.write_local(cmd)).await,
            other => {
                tracing::debug!(%peer, kind = other, "closing a raft connection: unknown request kind");
                return;
            }
        };
        let frame = match answer {
            Ok(frame) => frame,
            Err(msg) => match encode(FAILED, &msg) {
                Ok(frame) => frame,
                Err(_) => return,
            },
        };
        if let Err(e) = write_frame(&mut stream, &frame).await {
            tracing::debug!(%peer, error = %e, "closing a raft connection");
            return;
        }
    }
}

/// Decodes a request, runs it, and encodes openraft's answer as an [`OK`] frame.
async fn answer<Req, Resp, F, Fut>(body: &[u8], call: F) -> Result<Vec<u8>, String>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let req: Req = serde_json::from_slice(body).map_err(|e| format!("decode the request: {e}"))?;
    let resp = call(req).await;
    encode(OK, &resp).map_err(|e| format!("encode the answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_reads_back_and_oversized_or_empty_ones_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let frame = encode(VOTE, &serde_json::json!({"term": 3})).expect("encode");
        write_frame(&mut a, &frame).await.expect("write");
        let (kind, body) = read_frame(&mut b).await.expect("read");
        assert_eq!(kind, VOTE);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).expect("json"), serde_json::json!({"term": 3}));

        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        a.write_all(&huge).await.expect("write");
        let err = read_frame(&mut b).await.expect_err("over the limit");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 0]).await.expect("write");
        assert_eq!(read_frame(&mut b).await.expect_err("empty").kind(), io::ErrorKind::InvalidData);
        // a peer that goes away mid-frame is an EOF, not a frame
        a.write_all(&[0, 0, 0, 9, APPEND, b'{']).await.expect("write");
        drop(a);
        assert_eq!(read_frame(&mut b).await.expect_err("cut").kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn an_undecodable_request_is_answered_with_a_refusal_and_not_run() {
        use openraft::raft::VoteRequest;
        let ran = std::sync::atomic::AtomicBool::new(false);
        let refused = answer(b"{\"vote\": 7}", |_: VoteRequest<u64>| async {
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
        })
        .await
        .expect_err("a malformed vote request");
        assert!(refused.starts_with("decode the request"), "{refused}");
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));

        let good = serde_json::to_vec(&VoteRequest::<u64>::new(openraft::Vote::new(2, 1), None)).expect("encode");
        let frame = answer(&good, |req: VoteRequest<u64>| async move { req.vote.leader_id.term }).await.expect("answered");
        assert_eq!(frame[4], OK);
        assert_eq!(&frame[5..], b"2");
    }
}
