//! The wire watch event and the decoding of a watch stream: one JSON object per line,
//! `{"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR","object":{...}}`.
//!
//! The line splitting is hand-written (a few lines over a byte buffer) because chunks from the
//! network split lines anywhere and a codec crate would add a dependency for no gain.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ClientError;
use crate::meta::Status;

/// A stream of watch events; ERROR events arrive as `Err` ([`ClientError::Gone`] for code 410).
pub type WatchStream<K> = BoxStream<'static, Result<WatchEvent<K>, ClientError>>;

/// One event of a watch, exactly as it travels on the wire (the apiserver can use this type to
/// write events too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "object", rename_all = "UPPERCASE")]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// Only the resource version is meaningful: the watch has seen everything up to it.
    Bookmark(Bookmark),
    Error(Box<Status>),
}

/// The object of a BOOKMARK event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bookmark {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: BookmarkMeta,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookmarkMeta {
    #[serde(rename = "resourceVersion")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Decodes one line of a watch stream.
pub fn decode_line<K: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<K>, ClientError> {
    serde_json::from_slice(line).map_err(|error| ClientError::WatchDecode {
        line: super::error::truncate(&String::from_utf8_lossy(line), 200),
        error,
    })
}

/// Turns an ERROR event into the error it stands for; passes other events through.
pub fn into_result<K>(event: WatchEvent<K>) -> Result<WatchEvent<K>, ClientError> {
    match event {
        WatchEvent::Error(status) if status.code == Some(410) => Err(ClientError::Gone),
        WatchEvent::Error(status) => Err(ClientError::Api(status)),
        other => Ok(other),
    }
}

/// Splits a byte stream into lines, keeping a partial last line until the rest arrives.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds a chunk and returns the complete, non-blank lines it finished (without `\n`).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &byte in chunk {
            if byte == b'\n' {
                let line = std::mem::take(&mut self.pending);
                if !line.iter().all(u8::is_ascii_whitespace) {
                    lines.push(line);
                }
            } else {
                self.pending.push(byte);
            }
        }
        lines
    }

    /// What is left when the stream ends: a last line without `\n`, if it is not blank.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.pending.iter().all(u8::is_ascii_whitespace)).then_some(self.pending)
    }
}

/// Decodes a watch response body into events. A last line without a newline is decoded too (a
/// server may close right after it); if it is not a whole event the stream yields the error.
pub(crate) fn event_stream<K>(
    body: BoxStream<'static, Result<Bytes, ClientError>>,
) -> WatchStream<K>
where
    K: DeserializeOwned + Send + 'static,
{
    struct State<K> {
        body: BoxStream<'static, Result<Bytes, ClientError>>,
        lines: Option<LineBuffer>,
        ready: VecDeque<Result<WatchEvent<K>, ClientError>>,
    }
    let state = State {
        body,
        lines: Some(LineBuffer::default()),
        ready: VecDeque::new(),
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((item, state));
            }
            let lines = state.lines.as_mut()?;
            match state.body.next().await {
                Some(Ok(chunk)) => {
                    for line in lines.push(&chunk) {
                        state
                            .ready
                            .push_back(decode_line(&line).and_then(into_result));
                    }
                }
                Some(Err(error)) => {
                    state.lines = None;
                    state.ready.push_back(Err(error));
                }
                None => {
                    if let Some(rest) = state.lines.take().and_then(LineBuffer::finish) {
                        state
                            .ready
                            .push_back(decode_line(&rest).and_then(into_result));
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ConfigMap;

    fn events(chunks: &[&str]) -> Vec<Result<WatchEvent<ConfigMap>, ClientError>> {
        let chunks: Vec<Result<Bytes, ClientError>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c.as_bytes())))
            .collect();
        let stream = event_stream::<ConfigMap>(futures::stream::iter(chunks).boxed());
        futures::executor::block_on(stream.collect())
    }

    fn name(event: &Result<WatchEvent<ConfigMap>, ClientError>) -> String {
        match event {
            Ok(WatchEvent::Added(cm)) => {
                format!("ADDED {}", cm.metadata.name.as_deref().unwrap_or(""))
            }
            Ok(WatchEvent::Modified(cm)) => {
                format!("MODIFIED {}", cm.metadata.name.as_deref().unwrap_or(""))
            }
            Ok(WatchEvent::Deleted(cm)) => {
                format!("DELETED {}", cm.metadata.name.as_deref().unwrap_or(""))
            }
            Ok(WatchEvent::Bookmark(b)) => format!("BOOKMARK {}", b.metadata.resource_version),
            Ok(WatchEvent::Error(s)) => format!("ERROR {:?}", s.code),
            Err(ClientError::Gone) => "GONE".to_string(),
            Err(ClientError::Api(s)) => format!("API {:?}", s.code),
            Err(ClientError::WatchDecode { .. }) => "BAD".to_string(),
            Err(e) => format!("OTHER {e}"),
        }
    }

    const A: &str = r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"5"}}}"#;
    const M: &str =
        r#"{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"6"}}}"#;
    const D: &str =
        r#"{"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"7"}}}"#;
    const B: &str = r#"{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"9"}}}"#;
    const GONE: &str = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","message":"too old resource version","code":410}}"#;
    const ERR: &str = r#"{"type":"ERROR","object":{"kind":"Status","code":500,"message":"boom"}}"#;

    #[test]
    fn decodes_streams_split_anywhere() {
        let all = format!("{A}\n{M}\n\n{D}\n{B}\n");
        let expected = ["ADDED a", "MODIFIED a", "DELETED a", "BOOKMARK 9"];
        // Whole, byte by byte, and cut in the middle of lines.
        let bytes: Vec<String> = all.chars().map(String::from).collect();
        let byte_refs: Vec<&str> = bytes.iter().map(String::as_str).collect();
        let (left, right) = all.split_at(A.len() + 10);
        for chunks in [vec![all.as_str()], byte_refs, vec![left, right]] {
            let names: Vec<String> = events(&chunks).iter().map(name).collect();
            assert_eq!(names, expected);
        }
    }

    #[test]
    fn decodes_errors_bad_lines_and_partial_endings() {
        let cases: &[(&[&str], &[&str])] = &[
            (&[GONE, "\n"], &["GONE"]),
            (&[ERR, "\n"], &["API Some(500)"]),
            (&["{not json}\n", A, "\n"], &["BAD", "ADDED a"]),
            (&[r#"{"type":"UPSERTED","object":{}}"#, "\n"], &["BAD"]),
            // A last event without a newline still counts; half an event is an error.
            (&[A], &["ADDED a"]),
            (&[A, "\n", &M[..20]], &["ADDED a", "BAD"]),
            (&["  \n\n"], &[]),
        ];
        for (chunks, expected) in cases {
            let names: Vec<String> = events(chunks).iter().map(name).collect();
            assert_eq!(&names, expected, "{chunks:?}");
        }
    }

    #[test]
    fn a_read_error_ends_the_stream() {
        let chunks: Vec<Result<Bytes, ClientError>> = vec![
            Ok(Bytes::from(format!("{A}\n"))),
            Err(ClientError::Read {
                server: "s".into(),
                error: "connection reset by peer".into(),
            }),
            Ok(Bytes::from(format!("{M}\n"))),
        ];
        let stream = event_stream::<ConfigMap>(futures::stream::iter(chunks).boxed());
        let got: Vec<_> = futures::executor::block_on(stream.collect());
        let names: Vec<String> = got.iter().map(name).collect();
        assert_eq!(
            names,
            [
                "ADDED a",
                "OTHER reading the response from s failed: connection reset by peer"
            ]
        );
    }

    #[test]
    fn events_serialize_as_the_wire_format() {
        let event: WatchEvent<serde_json::Value> =
            WatchEvent::Added(serde_json::json!({"metadata": {"name": "a"}}));
        assert_eq!(
            serde_json::to_string(&event).unwrap_or_default(),
            r#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#
        );
    }
}
