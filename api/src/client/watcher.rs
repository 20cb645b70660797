//! The watcher every reconcile loop is fed by: list, then watch from the list's resource
//! version, resume from the last seen version when the watch ends, and list again when the
//! server says that version is too old (410).
//!
//! The decisions live in the pure [`step`] function over a small [`State`], so they are tested
//! with tables and no server; [`watcher`] only performs the I/O that [`State::next_action`] asks
//! for and feeds the results back into [`step`].

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::watch::WatchStream;
use super::{Api, ClientError, ListParams, WatchEvent};
use crate::meta::ObjectMeta;

/// What the watcher tells its consumer.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    /// A complete list: the consumer's view should become exactly these objects.
    Restarted(Vec<K>),
    /// An object was added or changed.
    Applied(K),
    /// An object was deleted (its last state).
    Deleted(K),
}

/// Where the watcher is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing known: list next.
    Empty,
    /// Listed (or a watch ended) at this version: start a watch from it next.
    Listed { resource_version: String },
    /// A watch is open and has seen everything up to this version: read its next event.
    Watching { resource_version: String },
}

/// What the driver must do next for a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    List,
    Watch { resource_version: String },
    ReadEvent,
}

/// The outcome of the driver's last action.
#[derive(Debug)]
pub enum Input<K> {
    Listed {
        items: Vec<K>,
        resource_version: String,
    },
    WatchStarted,
    Event(WatchEvent<K>),
    StreamEnded,
    Failed(ClientError),
}

impl State {
    pub fn next_action(&self) -> Action {
        match self {
            State::Empty => Action::List,
            State::Listed { resource_version } => Action::Watch {
                resource_version: resource_version.clone(),
            },
            State::Watching { .. } => Action::ReadEvent,
        }
    }
}

/// The watcher's transition function: the new state and what, if anything, to tell the
/// consumer. A 410 is handled here (re-list) and never reaches the consumer; other errors do,
/// and the watcher then retries from where it was.
pub fn step<K>(state: State, input: Input<K>) -> (State, Option<Result<Event<K>, ClientError>>)
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta>,
{
    let known_version = match &state {
        State::Empty => None,
        State::Listed { resource_version } | State::Watching { resource_version } => {
            Some(resource_version.clone())
        }
    };
    match (input, known_version) {
        (
            Input::Listed {
                items,
                resource_version,
            },
            _,
        ) => (
            State::Listed { resource_version },
            Some(Ok(Event::Restarted(items))),
        ),
        (Input::Failed(ClientError::Gone), _) | (Input::Event(WatchEvent::Error(_)), None) => {
            (State::Empty, None)
        }
        (Input::Failed(error), None) => (State::Empty, Some(Err(error))),
        (Input::Failed(error), Some(resource_version)) => {
            (State::Listed { resource_version }, Some(Err(error)))
        }
        // Without a known version there is nothing to watch from: list first.
        (_, None) => (State::Empty, None),
        (Input::WatchStarted, Some(resource_version)) => {
            (State::Watching { resource_version }, None)
        }
        (Input::StreamEnded, Some(resource_version)) => (State::Listed { resource_version }, None),
        (Input::Event(event), Some(resource_version)) => match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                let resource_version = version_of(&object).unwrap_or(resource_version);
                (
                    State::Watching { resource_version },
                    Some(Ok(Event::Applied(object))),
                )
            }
            WatchEvent::Deleted(object) => {
                let resource_version = version_of(&object).unwrap_or(resource_version);
                (
                    State::Watching { resource_version },
                    Some(Ok(Event::Deleted(object))),
                )
            }
            WatchEvent::Bookmark(bookmark) => {
                let version = bookmark.metadata.resource_version;
                let resource_version = if version.is_empty() {
                    resource_version
                } else {
                    version
                };
                (State::Watching { resource_version }, None)
            }
            WatchEvent::Error(status) if status.code == Some(410) => (State::Empty, None),
            WatchEvent::Error(status) => (
                State::Listed { resource_version },
                Some(Err(ClientError::Api(status))),
            ),
        },
    }
}

/// Lists, then watches, forever; see the module documentation. After an error the next attempt
/// waits, from 1 s doubling up to 30 s, so a consumer that keeps polling does not spin.
pub fn watcher<K>(
    api: Api<K>,
    params: ListParams,
) -> BoxStream<'static, Result<Event<K>, ClientError>>
where
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + 'static,
{
    let driver = Driver {
        api,
        params,
        state: State::Empty,
        stream: None,
        delay: None,
        backoff: MIN_BACKOFF,
        quiet: true,
    };
    futures::stream::unfold(driver, |mut driver| async move {
        let item = driver.next().await;
        Some((item, driver))
    })
    .boxed()
}

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Page size of the watcher's lists, so one answer never holds a whole large cluster.
const LIST_PAGE: u32 = 500;

struct Driver<K> {
    api: Api<K>,
    params: ListParams,
    state: State,
    stream: Option<WatchStream<K>>,
    /// A pause to take before the next request.
    delay: Option<Duration>,
    backoff: Duration,
    /// No event since the current watch started: a watch that ends this way is treated like an
    /// error for pacing, so a server that closes watches at once is not hammered.
    quiet: bool,
}

impl<K> Driver<K>
where
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + 'static,
{
    async fn next(&mut self) -> Result<Event<K>, ClientError> {
        loop {
            if let Some(delay) = self.delay.take() {
                tokio::time::sleep(delay).await;
            }
            let input = match self.state.next_action() {
                Action::List => match list_all(&self.api, &self.params).await {
                    Ok((items, resource_version)) => Input::Listed {
                        items,
                        resource_version,
                    },
                    Err(error) => Input::Failed(error),
                },
                Action::Watch { resource_version } => {
                    match self.api.watch(&self.params, &resource_version).await {
                        Ok(stream) => {
                            self.stream = Some(stream);
                            self.quiet = true;
                            Input::WatchStarted
                        }
                        Err(error) => Input::Failed(error),
                    }
                }
                Action::ReadEvent => match self.stream.as_mut() {
                    Some(stream) => match stream.next().await {
                        Some(Ok(event)) => {
                            self.quiet = false;
                            Input::Event(event)
                        }
                        Some(Err(error)) => Input::Failed(error),
                        None => Input::StreamEnded,
                    },
                    None => Input::StreamEnded,
                },
            };
            let quiet_end = matches!(input, Input::StreamEnded) && self.quiet;
            let state = std::mem::replace(&mut self.state, State::Empty);
            let (state, output) = step(state, input);
            if !matches!(state, State::Watching { .. }) {
                self.stream = None;
            }
            self.state = state;
            match output {
                Some(Err(error)) => {
                    tracing::debug!(%error, "watcher will retry");
                    self.pause();
                    return Err(error);
                }
                Some(Ok(event)) => {
                    self.backoff = MIN_BACKOFF;
                    return Ok(event);
                }
                None if quiet_end => self.pause(),
                None => {}
            }
        }
    }

    fn pause(&mut self) {
        self.delay = Some(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// Lists every page; the version to watch from is the last page's.
async fn list_all<K>(api: &Api<K>, params: &ListParams) -> Result<(Vec<K>, String), ClientError>
where
    K: k8s_openapi::Resource + Serialize + DeserializeOwned + Send + 'static,
{
    let mut page_params = ListParams {
        label_selector: params.label_selector.clone(),
        field_selector: params.field_selector.clone(),
        limit: Some(LIST_PAGE),
        ..ListParams::default()
    };
    let mut items = Vec::new();
    loop {
        let page = api.list(&page_params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => page_params.continue_token = Some(token),
            None => return Ok((items, page.metadata.resource_version.unwrap_or_default())),
        }
    }
}

fn version_of<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(object: &K) -> Option<String> {
    object
        .metadata()
        .resource_version
        .clone()
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::super::watch::{Bookmark, BookmarkMeta};
    use super::*;
    use crate::core::ConfigMap;
    use crate::meta::Status;

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                resource_version: (!rv.is_empty()).then(|| rv.to_string()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn listed(rv: &str) -> State {
        State::Listed {
            resource_version: rv.to_string(),
        }
    }

    fn watching(rv: &str) -> State {
        State::Watching {
            resource_version: rv.to_string(),
        }
    }

    fn status(code: i32) -> Status {
        Status {
            code: Some(code),
            message: Some("m".into()),
            ..Status::default()
        }
    }

    fn bookmark(rv: &str) -> WatchEvent<ConfigMap> {
        WatchEvent::Bookmark(Bookmark {
            metadata: BookmarkMeta {
                resource_version: rv.to_string(),
                ..BookmarkMeta::default()
            },
            ..Bookmark::default()
        })
    }

    /// What the consumer sees, in short.
    fn brief(output: &Option<Result<Event<ConfigMap>, ClientError>>) -> String {
        let name = |c: &ConfigMap| c.metadata.name.clone().unwrap_or_default();
        match output {
            None => "-".to_string(),
            Some(Ok(Event::Restarted(items))) => {
                format!(
                    "restarted [{}]",
                    items.iter().map(name).collect::<Vec<_>>().join(",")
                )
            }
            Some(Ok(Event::Applied(c))) => format!("applied {}", name(c)),
            Some(Ok(Event::Deleted(c))) => format!("deleted {}", name(c)),
            Some(Err(e)) => format!(
                "error {}",
                e.status_code()
                    .map_or("other".to_string(), |c| c.to_string())
            ),
        }
    }

    fn check(state: State, input: Input<ConfigMap>, expected_state: State, expected_output: &str) {
        let description = format!("{state:?} + {input:?}");
        let (got_state, output) = step(state, input);
        assert_eq!(got_state, expected_state, "{description}");
        assert_eq!(brief(&output), expected_output, "{description}");
    }

    #[test]
    fn list_then_watch_then_events() {
        let listed_input = || Input::Listed {
            items: vec![cm("a", "3"), cm("b", "4")],
            resource_version: "10".into(),
        };
        check(
            State::Empty,
            listed_input(),
            listed("10"),
            "restarted [a,b]",
        );
        // A list always restarts, whatever the state.
        check(
            watching("12"),
            listed_input(),
            listed("10"),
            "restarted [a,b]",
        );
        check(listed("10"), Input::WatchStarted, watching("10"), "-");
        check(
            watching("10"),
            Input::Event(WatchEvent::Added(cm("c", "11"))),
            watching("11"),
            "applied c",
        );
        check(
            watching("11"),
            Input::Event(WatchEvent::Modified(cm("a", "12"))),
            watching("12"),
            "applied a",
        );
        check(
            watching("12"),
            Input::Event(WatchEvent::Deleted(cm("b", "13"))),
            watching("13"),
            "deleted b",
        );
        check(
            watching("13"),
            Input::Event(bookmark("20")),
            watching("20"),
            "-",
        );
        // An event without a version keeps the last one.
        check(
            watching("20"),
            Input::Event(WatchEvent::Modified(cm("a", ""))),
            watching("20"),
            "applied a",
        );
        check(
            watching("20"),
            Input::Event(bookmark("")),
            watching("20"),
            "-",
        );
    }

    #[test]
    fn stream_ends_resume_and_410_relists() {
        check(watching("20"), Input::StreamEnded, listed("20"), "-");
        check(
            watching("20"),
            Input::Failed(ClientError::Gone),
            State::Empty,
            "-",
        );
        check(
            listed("20"),
            Input::Failed(ClientError::Gone),
            State::Empty,
            "-",
        );
        check(
            watching("20"),
            Input::Event(WatchEvent::Error(Box::new(status(410)))),
            State::Empty,
            "-",
        );
        check(
            watching("20"),
            Input::Event(WatchEvent::Error(Box::new(status(500)))),
            listed("20"),
            "error 500",
        );
    }

    #[test]
    fn other_errors_reach_the_consumer_and_retry_from_where_they_were() {
        let refused = || ClientError::Connect { attempts: vec![] };
        check(
            State::Empty,
            Input::Failed(refused()),
            State::Empty,
            "error other",
        );
        check(
            listed("5"),
            Input::Failed(refused()),
            listed("5"),
            "error other",
        );
        check(
            watching("7"),
            Input::Failed(refused()),
            listed("7"),
            "error other",
        );
        check(
            watching("7"),
            Input::Failed(ClientError::Api(Box::new(status(403)))),
            listed("7"),
            "error 403",
        );
    }

    #[test]
    fn inputs_that_cannot_happen_in_empty_lead_to_a_list() {
        check(State::Empty, Input::WatchStarted, State::Empty, "-");
        check(State::Empty, Input::StreamEnded, State::Empty, "-");
        check(
            State::Empty,
            Input::Event(WatchEvent::Added(cm("a", "1"))),
            State::Empty,
            "-",
        );
    }

    #[tokio::test]
    async fn watcher_lists_watches_and_relists_after_410() {
        use super::super::testserver::{serve, Canned};
        use super::super::{Client, Config};

        let server = serve(vec![
            Canned::json(200, r#"{"kind":"ConfigMapList","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"a","resourceVersion":"3"}}]}"#),
            Canned::pieces(200, &[
                r#"{"type":"ADDED","object":{"metadata":{"name":"b","resourceVersion":"11"}}}"#,
                "\n",
                r#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#,
                "\n",
            ]),
            Canned::json(200, r#"{"kind":"ConfigMapList","metadata":{"resourceVersion":"12"},"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#),
        ])
        .await;
        let client = match Client::new(Config::new(vec![server.url.clone()])) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let api: Api<ConfigMap> = Api::namespaced(client, "prod");
        let events: Vec<String> = watcher(api, ListParams::default().labels("app=web"))
            .take(3)
            .map(|event| brief(&Some(event)))
            .collect()
            .await;
        assert_eq!(events, ["restarted [a]", "applied b", "restarted [a,b]"]);
        let requests = server.requests();
        assert!(
            requests[0].starts_with(
                "GET /api/v1/namespaces/prod/configmaps?labelSelector=app%3Dweb&limit=500 "
            ),
            "{}",
            requests[0]
        );
        assert!(
            requests[1].starts_with("GET /api/v1/namespaces/prod/configmaps?watch=true&allowWatchBookmarks=true&resourceVersion=10&labelSelector=app%3Dweb&timeoutSeconds=290 "),
            "{}",
            requests[1]
        );
        assert!(
            requests[2].starts_with(
                "GET /api/v1/namespaces/prod/configmaps?labelSelector=app%3Dweb&limit=500 "
            ),
            "{}",
            requests[2]
        );
    }

    #[test]
    fn actions_follow_the_state() {
        assert_eq!(State::Empty.next_action(), Action::List);
        assert_eq!(
            listed("4").next_action(),
            Action::Watch {
                resource_version: "4".into()
            }
        );
        assert_eq!(watching("4").next_action(), Action::ReadEvent);
    }
}
