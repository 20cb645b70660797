//! The pieces of fail-over that need no network: the order in which server addresses are tried,
//! and short, kubectl-like descriptions of why one failed ("connection refused", "timed out").

use std::error::Error as StdError;

use crate::meta::Status;

/// Indices `0..len` starting at `start` (the last server that answered) and wrapping around.
pub(crate) fn attempt_order(start: usize, len: usize) -> impl Iterator<Item = usize> {
    let start = if len == 0 { 0 } else { start % len };
    (0..len).map(move |offset| (start + offset) % len)
}

/// Why a request failed, in a few words: the innermost I/O or TLS cause rather than reqwest's
/// "error sending request for url (...)" wrapper, which would repeat the address.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_string();
    }
    let mut innermost: &(dyn StdError + 'static) = error;
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return format!("tls: {tls}");
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return format!("tls: {tls}");
            }
            if let Some(text) = describe_io(io.kind()) {
                return text.to_string();
            }
        }
        innermost = err;
        current = err.source();
    }
    innermost.to_string()
}

/// The cause recorded for a 503 answer: the `Status` message when there is one.
pub(crate) fn describe_unavailable(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Status>(body)
        .ok()
        .and_then(|s| s.message)
        .filter(|m| !m.is_empty())
        .or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_string();
            (!text.is_empty()).then(|| super::error::truncate(&text, 200))
        });
    match message {
        Some(message) => format!("503 service unavailable: {message}"),
        None => "503 service unavailable".to_string(),
    }
}

fn describe_io(kind: std::io::ErrorKind) -> Option<&'static str> {
    use std::io::ErrorKind::*;
    Some(match kind {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "connection aborted",
        TimedOut => "timed out",
        HostUnreachable => "no route to host",
        NetworkUnreachable => "network is unreachable",
        AddrNotAvailable => "address not available",
        UnexpectedEof => "the server closed the connection",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_every_server_once_starting_with_the_last_good_one() {
        let cases: &[(usize, usize, &[usize])] = &[
            (0, 3, &[0, 1, 2]),
            (1, 3, &[1, 2, 0]),
            (2, 3, &[2, 0, 1]),
            (5, 3, &[2, 0, 1]),
            (0, 1, &[0]),
            (0, 0, &[]),
        ];
        for (start, len, expected) in cases {
            let order: Vec<usize> = attempt_order(*start, *len).collect();
            assert_eq!(&order, expected, "start {start}, len {len}");
        }
    }

    #[test]
    fn describes_503_bodies() {
        assert_eq!(
            describe_unavailable(br#"{"message":"no leader"}"#),
            "503 service unavailable: no leader"
        );
        assert_eq!(
            describe_unavailable(b"busy\n"),
            "503 service unavailable: busy"
        );
        assert_eq!(describe_unavailable(b""), "503 service unavailable");
    }
}
