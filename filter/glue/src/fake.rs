//! A fake host that records everything the worker logic asks of Envoy, and the worker logic
//! driven through it: header edits, local replies, filter state, the Flatpak index's
//! buffering and the fetcher's calls, without Envoy.

use std::collections::BTreeMap;
use std::time::Duration;

use registry_gate_core::config::{FetcherConfig, Settings};
use registry_gate_core::fetch::Announcement;
use registry_gate_core::gate::Gate;
use registry_gate_core::reply::Reply;
use registry_gate_core::snapshot::{build_index, Content, Repository, Stamp};
use serde_json::{json, Value};

use crate::budget::Budget;
use crate::exchange::Exchange;
use crate::fetcher::{FetchHost, Fetcher};
use crate::host::{Action, Env, Host, HostError, Level};
use crate::tally::Tally;
use crate::worker::Worker;

const NOW: u64 = 1_700_000_000;

/// Room for every Flatpak index these tests buffer, unless a test says otherwise.
const BUDGET: usize = 1 << 20;

/// One edit the worker made through the host, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    SetRequest(String, Vec<u8>),
    RemoveRequest(String),
    RemoveResponse(String),
    Reply(u16, String),
    FilterState(String, Vec<u8>),
}

#[derive(Debug, Default)]
struct Fake {
    now_ms: u64,
    edits: Vec<Edit>,
    logs: Vec<(Level, String)>,
    response_headers: BTreeMap<String, Vec<u8>>,
    /// Response body chunks Envoy holds, taken by `take_response_body`.
    body: Vec<u8>,
    peer_certificate: Option<Vec<u8>>,
    /// Host calls that fail, by name.
    failing: Vec<&'static str>,
    // Fetcher side.
    calls: Vec<Vec<(String, String)>>,
    answer: Option<(Option<&'static [u8]>, Vec<u8>)>,
    published: Vec<Announcement>,
    /// The bodies published, and where their bytes were (to see they were not copied).
    published_bodies: Vec<(Vec<u8>, *const u8)>,
    /// Where the body `response_body` handed over was.
    handed_over: Option<*const u8>,
    confirmed: Vec<Announcement>,
    counters: BTreeMap<String, u64>,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            now_ms: NOW * 1000,
            ..Fake::default()
        }
    }

    fn check(&self, call: &'static str) -> Result<(), HostError> {
        if self.failing.contains(&call) {
            Err(HostError { call, status: 2 })
        } else {
            Ok(())
        }
    }

    fn replies(&self) -> Vec<(u16, String)> {
        self.edits
            .iter()
            .filter_map(|edit| match edit {
                Edit::Reply(status, body) => Some((*status, body.clone())),
                _ => None,
            })
            .collect()
    }
}

impl Env for Fake {
    fn now_secs(&mut self) -> u64 {
        self.now_ms / 1000
    }

    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_owned()));
    }
}

impl Host for Fake {
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.check("set_request_header")?;
        self.edits
            .push(Edit::SetRequest(name.to_owned(), value.to_vec()));
        Ok(())
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.check("remove_request_header")?;
        self.edits.push(Edit::RemoveRequest(name.to_owned()));
        Ok(())
    }

    fn response_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.check("response_header")?;
        Ok(self.response_headers.get(name).cloned())
    }

    fn remove_response_header(&mut self, name: &str) -> Result<(), HostError> {
        self.check("remove_response_header")?;
        self.edits.push(Edit::RemoveResponse(name.to_owned()));
        Ok(())
    }

    fn take_response_body(
        &mut self,
        size: usize,
        held: &mut Vec<u8>,
        _end_of_stream: bool,
    ) -> Result<(), HostError> {
        self.check("take_response_body")?;
        let size = size.min(self.body.len());
        held.extend(self.body.drain(..size));
        Ok(())
    }

    fn send_reply(&mut self, reply: &Reply) -> Result<(), HostError> {
        self.check("send_reply")?;
        self.edits
            .push(Edit::Reply(reply.status, reply.body.clone()));
        Ok(())
    }

    fn set_filter_state(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.check("set_filter_state")?;
        self.edits
            .push(Edit::FilterState(name.to_owned(), value.to_vec()));
        Ok(())
    }

    fn peer_certificate(&mut self) -> Option<Vec<u8>> {
        self.peer_certificate.clone()
    }
}

impl FetchHost for Fake {
    fn random(&mut self) -> Option<u64> {
        Some(7)
    }

    fn dispatch(
        &mut self,
        _cluster: &str,
        headers: &[(&str, &str)],
        _timeout: Duration,
    ) -> Result<u64, HostError> {
        self.check("dispatch")?;
        self.calls.push(
            headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        );
        Ok(self.calls.len() as u64)
    }

    fn response_header(&mut self, name: &str) -> Option<Vec<u8>> {
        let (status, _) = self.answer.as_ref()?;
        match name {
            ":status" => status.map(<[u8]>::to_vec),
            _ => None,
        }
    }

    fn response_body(&mut self, size: usize) -> Result<Vec<u8>, HostError> {
        let mut body = self
            .answer
            .as_mut()
            .map(|(_, body)| std::mem::take(body))
            .unwrap_or_default();
        body.truncate(size);
        self.handed_over = Some(body.as_ptr());
        Ok(body)
    }

    fn publish(&mut self, body: Vec<u8>, announcement: &Announcement) -> Result<(), HostError> {
        self.check("publish")?;
        self.published.push(announcement.clone());
        let at = body.as_ptr();
        self.published_bodies.push((body, at));
        Ok(())
    }

    fn confirm(&mut self, announcement: &Announcement) -> Result<(), HostError> {
        self.confirmed.push(announcement.clone());
        Ok(())
    }

    fn published(&mut self) -> Option<Vec<u8>> {
        None
    }

    fn counter(&mut self, name: &str, by: u64) {
        *self.counters.entry(name.to_owned()).or_default() += by;
    }
}

fn settings(extra: Value) -> Settings {
    let mut config = json!({
        "issuer": "registry-gate", "service": "svc", "realm": "https://gw.test/v2/token",
        "max_staleness_secs": 600, "retry_after_secs": 7, "access_log_state": true,
    });
    for (name, value) in extra.as_object().unwrap() {
        config[name] = value.clone();
    }
    Settings::from_json(config.to_string().as_bytes()).unwrap()
}

fn index(generation: u64) -> Vec<u8> {
    let content = Content {
        repositories: vec![
            Repository {
                name: "library/public".into(),
                auth_required: false,
            },
            Repository {
                name: "team/private".into(),
                auth_required: true,
            },
        ],
        ..Content::default()
    };
    let stamp = Stamp {
        epoch: "e1".into(),
        generation,
        published_at: NOW,
        producer: "test".into(),
        allow_empty: false,
    };
    build_index(&content, &stamp).unwrap()
}

fn announcement(generation: u64) -> Announcement {
    Announcement {
        epoch: "e1".into(),
        generation,
        confirmed_at: NOW,
        checksum: None,
    }
}

/// A worker with generation 1 taken in.
fn ready(host: &mut Fake, extra: Value) -> Worker {
    ready_within(host, extra, Budget::new(BUDGET))
}

/// A worker with generation 1 taken in, holding Flatpak index answers within `budget`.
fn ready_within(host: &mut Fake, extra: Value, budget: Budget) -> Worker {
    let mut worker = Worker::new(Gate::new(settings(extra)), Some("w1".into()), budget);
    let installed = worker.take_in(host, &announcement(1), || Some(index(1)));
    assert_eq!(installed.map(|i| i.generation.number), Some(1));
    worker
}

fn request<'a>(
    method: &'a str,
    path: &'a str,
    extra: &[(&'a str, &'a [u8])],
) -> Vec<(&'a [u8], &'a [u8])> {
    let mut pairs: Vec<(&[u8], &[u8])> = vec![
        (b":method".as_slice(), method.as_bytes()),
        (b":path".as_slice(), path.as_bytes()),
    ];
    pairs.extend(extra.iter().map(|(n, v)| (n.as_bytes(), *v)));
    pairs
}

#[test]
fn taking_in_a_snapshot_logs_the_line_the_harness_parses() {
    let mut host = Fake::new();
    let mut worker = ready(&mut host, json!({}));
    let (level, line) = host.logs.last().unwrap().clone();
    assert_eq!(level, Level::Info);
    assert!(
        line.starts_with("installed snapshot generation e1.1 (") && line.ends_with(" ms"),
        "{line}"
    );
    // The same generation again is not read at all.
    let again = worker.take_in(&mut host, &announcement(1), || panic!("read again"));
    assert_eq!(again, None);
    // Bad bytes are refused and logged; generation 1 keeps deciding.
    let refused = worker.take_in(&mut host, &announcement(2), || Some(b"junk".to_vec()));
    assert_eq!(refused, None);
    assert!(host
        .logs
        .last()
        .unwrap()
        .1
        .starts_with("snapshot refused: "));
    assert_eq!(worker.gate().generation().map(|g| g.number), Some(1));
}

#[test]
fn a_forwarded_request_gets_the_identity_and_loses_what_the_upstream_must_not_see() {
    let mut host = Fake::new();
    let mut worker = ready(&mut host, json!({}));
    let mut exchange = Exchange::default();
    let pairs = request(
        "GET",
        "/v2/library/public/manifests/latest",
        &[("x-registry-gate-identity", b"user:admin")],
    );
    let action = exchange.on_request_headers(&mut worker, &mut host, pairs);
    assert_eq!(action, Action::Continue);
    assert_eq!(exchange.on_request_rest(), Action::Continue);
    assert!(!exchange.wants_response());
    assert_eq!(
        host.edits,
        vec![
            Edit::RemoveRequest("x-registry-gate-identity".into()),
            Edit::SetRequest("x-registry-gate-identity".into(), b"anonymous".to_vec()),
            Edit::RemoveRequest("authorization".into()),
            Edit::FilterState("registry_gate.identity".into(), b"anonymous".to_vec()),
            Edit::FilterState("registry_gate.decision".into(), b"allowed".to_vec()),
            Edit::FilterState("registry_gate.worker".into(), b"w1.1".to_vec()),
            Edit::FilterState("registry_gate.generation".into(), b"e1.1".to_vec()),
        ]
    );
}

#[test]
fn a_refused_request_is_answered_and_stays_stopped() {
    let mut host = Fake::new();
    let mut worker = ready(&mut host, json!({"access_log_state": false}));
    let mut exchange = Exchange::default();
    let pairs = request("GET", "/v2/team/private/manifests/latest", &[]);
    assert_eq!(
        exchange.on_request_headers(&mut worker, &mut host, pairs),
        Action::Stop
    );
    assert_eq!(
        exchange.on_request_rest(),
        Action::Stop,
        "the body must not release it"
    );
    let replies = host.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, 401);
    assert!(!host.edits.iter().any(|e| matches!(e, Edit::SetRequest(..))));
}

#[test]
fn without_a_snapshot_every_request_gets_503() {
    let mut host = Fake::new();
    let mut worker = Worker::new(Gate::new(settings(json!({}))), None, Budget::new(BUDGET));
    let mut exchange = Exchange::default();
    let pairs = request("GET", "/v2/library/public/manifests/latest", &[]);
    assert_eq!(
        exchange.on_request_headers(&mut worker, &mut host, pairs),
        Action::Stop
    );
    assert_eq!(host.replies()[0].0, 503);
}

#[test]
fn a_failing_host_call_fails_closed_with_500() {
    let mut host = Fake::new();
    let mut worker = ready(&mut host, json!({}));
    host.failing.push("set_request_header");
    let mut exchange = Exchange::default();
    let pairs = request("GET", "/v2/library/public/manifests/latest", &[]);
    assert_eq!(
        exchange.on_request_headers(&mut worker, &mut host, pairs),
        Action::Stop
    );
    assert_eq!(host.replies()[0].0, 500);
    let grown: BTreeMap<String, u64> = Tally::default()
        .growth(worker.gate().counts())
        .into_iter()
        .collect();
    assert_eq!(grown.get("decisions.internal"), Some(&1), "{grown:?}");
}

#[test]
fn the_flatpak_index_is_buffered_out_of_envoy_and_answered_filtered() {
    let mut host = Fake::new();
    let mut worker = ready(&mut host, json!({}));
    let mut exchange = Exchange::default();
    let pairs = request("GET", "/index/static?label:org.flatpak.ref:exists=1", &[]);
    assert_eq!(
        exchange.on_request_headers(&mut worker, &mut host, pairs),
        Action::Continue
    );
    assert!(exchange.wants_response());
    for header in ["accept-encoding", "if-none-match", "range"] {
        assert!(
            host.edits.contains(&Edit::RemoveRequest(header.into())),
            "{header}"
        );
    }
    host.edits.clear();
    host.response_headers
        .insert(":status".into(), b"200".to_vec());
    host.response_headers
        .insert("content-type".into(), b"application/json".to_vec());
    let entry = |name: &str| json!({"Name": name, "Images": [], "Lists": []});
    let body = serde_json::to_vec(&json!({
        "Registry": "https://pulp.test/",
        "Results": [entry("library/public"), entry("team/private")]
    }))
    .unwrap();
    let (first, second) = body.split_at(body.len() / 2);
    assert_eq!(
        exchange.on_response_headers(&mut worker, &mut host, false),
        Action::Stop
    );
    host.body = first.to_vec();
    assert_eq!(
        exchange.on_response_body(&mut worker, &mut host, first.len(), false),
        Action::Stop
    );
    assert!(host.body.is_empty(), "the chunk left Envoy");
    assert!(host.replies().is_empty());
    host.body = second.to_vec();
    assert_eq!(
        exchange.on_response_body(&mut worker, &mut host, second.len(), true),
        Action::Stop
    );
    let replies = host.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0, 200);
    assert!(replies[0].1.contains("library/public"), "{}", replies[0].1);
    assert!(!replies[0].1.contains("team/private"), "{}", replies[0].1);
    // Anything after the answer passes untouched.
    assert_eq!(
        exchange.on_response_body(&mut worker, &mut host, 0, true),
        Action::Continue
    );
}

/// A Flatpak index request whose upstream answered 200 with `length` (if any) declared.
fn flatpak_answer(
    worker: &mut Worker,
    host: &mut Fake,
    length: Option<usize>,
) -> (Exchange, Action) {
    let mut exchange = Exchange::default();
    let pairs = request("GET", "/index/static?label:org.flatpak.ref:exists=1", &[]);
    exchange.on_request_headers(worker, host, pairs);
    host.edits.clear();
    host.response_headers
        .insert(":status".into(), b"200".to_vec());
    match length {
        Some(length) => host
            .response_headers
            .insert("content-length".into(), length.to_string().into_bytes()),
        None => host.response_headers.remove("content-length"),
    };
    let action = exchange.on_response_headers(worker, host, false);
    (exchange, action)
}

fn over_budget(host: &Fake) -> bool {
    matches!(host.replies().as_slice(), [(503, body)] if body.contains("UNAVAILABLE"))
}

#[test]
fn flatpak_answers_past_the_budget_get_503_before_they_are_buffered() {
    let mut host = Fake::new();
    let budget = Budget::new(1000);
    let mut worker = ready_within(&mut host, json!({}), budget.clone());

    // A declared length is reserved whole at the head.
    let (first, action) = flatpak_answer(&mut worker, &mut host, Some(600));
    assert_eq!(action, Action::Stop, "buffering");
    assert!(host.replies().is_empty());
    assert_eq!(budget.held(), 600);
    let (_, action) = flatpak_answer(&mut worker, &mut host, Some(600));
    assert_eq!(action, Action::Stop);
    assert!(over_budget(&host), "{:?}", host.edits);
    assert_eq!(budget.held(), 600, "the refused answer holds nothing");

    // Without a length, chunk by chunk: the chunk that would pass stays in Envoy.
    let (mut chunked, action) = flatpak_answer(&mut worker, &mut host, None);
    assert_eq!(action, Action::Stop);
    host.body = vec![b' '; 300];
    assert_eq!(
        chunked.on_response_body(&mut worker, &mut host, 300, false),
        Action::Stop
    );
    assert_eq!(budget.held(), 900);
    host.body = vec![b' '; 200];
    assert_eq!(
        chunked.on_response_body(&mut worker, &mut host, 200, false),
        Action::Stop
    );
    assert!(over_budget(&host), "{:?}", host.edits);
    assert_eq!(host.body.len(), 200, "not moved out of Envoy");
    assert_eq!(budget.held(), 600, "the refused answer gave its bytes back");

    // A stream that ends mid-body (reset, destroyed) gives back what it held.
    drop(first);
    assert_eq!(budget.held(), 0);
    let (mut last, action) = flatpak_answer(&mut worker, &mut host, Some(600));
    assert_eq!(action, Action::Stop);
    assert!(host.replies().is_empty());
    host.body = serde_json::to_vec(&json!({"Results": []})).unwrap();
    let size = host.body.len();
    last.on_response_body(&mut worker, &mut host, size, true);
    assert!(matches!(host.replies().as_slice(), [(200, _)]));
    assert_eq!(budget.held(), 0, "an answered index holds nothing");
    assert_eq!(
        worker
            .gate()
            .counts()
            .flatpak_index
            .iter()
            .find(|(reason, _)| *reason == "over_budget"),
        Some(&("over_budget", 2))
    );
}

#[test]
fn a_flatpak_index_without_a_body_loses_what_describes_the_unfiltered_one() {
    let mut host = Fake::new();
    let mut worker = ready(&mut host, json!({}));
    let mut exchange = Exchange::default();
    let pairs = request("HEAD", "/index/static?label:org.flatpak.ref:exists=1", &[]);
    exchange.on_request_headers(&mut worker, &mut host, pairs);
    host.edits.clear();
    host.response_headers
        .insert(":status".into(), b"200".to_vec());
    assert_eq!(
        exchange.on_response_headers(&mut worker, &mut host, true),
        Action::Continue
    );
    assert_eq!(
        host.edits,
        ["content-length", "etag", "last-modified", "content-md5"]
            .map(|h| Edit::RemoveResponse(h.into()))
            .to_vec()
    );
}

fn fetcher(host: &mut Fake) -> Fetcher {
    fetcher_trusting(host, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
}

fn fetcher_trusting(host: &mut Fake, publisher: &str) -> Fetcher {
    let config = json!({"cluster": "sidecar", "authority": "registry-gate-sidecar",
        "authorization": "secret", "retry_ms": 100, "publisher_keys": [publisher]});
    let settings = FetcherConfig::from_json(config.to_string().as_bytes()).unwrap();
    Fetcher::new(host, settings)
}

#[test]
fn the_fetcher_long_polls_and_backs_off_after_a_failure() {
    let mut host = Fake::new();
    let mut fetcher = fetcher(&mut host);
    fetcher.on_tick(&mut host);
    assert!(
        host.calls.is_empty(),
        "the first fetch waits a random part of retry_ms"
    );
    host.now_ms += 100;
    fetcher.on_tick(&mut host);
    assert_eq!(host.calls.len(), 1);
    let call: BTreeMap<_, _> = host.calls[0].iter().cloned().collect();
    assert_eq!(call[":path"], "/v1/snapshot?wait=20&schema=2.0");
    assert_eq!(call["authorization"], "Bearer secret");
    assert!(!call.contains_key("if-none-match"));
    // The sidecar is down: counted, and no new call before the pause.
    host.answer = Some((Some(b"503"), Vec::new()));
    fetcher.on_response(&mut host, 1, 0);
    assert_eq!(host.counters.get("snapshot.fetch_failures"), Some(&1));
    assert!(host
        .logs
        .iter()
        .any(|(_, l)| l == "snapshot fetch failed: status 503"));
    fetcher.on_tick(&mut host);
    assert_eq!(host.calls.len(), 1);
    // An answer to a call not in flight is ignored.
    host.now_ms += 10_000;
    fetcher.on_tick(&mut host);
    assert_eq!(host.calls.len(), 2);
    fetcher.on_response(&mut host, 1, 0);
    assert_eq!(host.counters.get("snapshot.fetch_failures"), Some(&1));
    // An unsigned index is refused (the fetcher trusts only its publisher keys).
    let body = index(1);
    host.answer = Some((Some(b"200"), body.clone()));
    fetcher.on_response(&mut host, 2, body.len());
    assert!(host.published.is_empty());
    assert_eq!(
        host.counters.get("snapshot.rejected.unsigned"),
        Some(&1),
        "{:?}",
        host.counters
    );
}

#[test]
fn a_signed_index_is_published_as_the_very_bytes_received() {
    let signer = registry_gate_index::Signer::from_seed([5; 32]);
    let mut host = Fake::new();
    let mut fetcher = fetcher_trusting(&mut host, &signer.public().to_string());
    host.now_ms += 100;
    fetcher.on_tick(&mut host);
    assert_eq!(host.calls.len(), 1);
    let mut body = index(3);
    signer.sign(&mut body).unwrap();
    host.answer = Some((Some(b"200"), body.clone()));
    fetcher.on_response(&mut host, 1, body.len());
    assert_eq!(
        host.published
            .iter()
            .map(|published| published.generation)
            .collect::<Vec<_>>(),
        [3]
    );
    let (published, at) = &host.published_bodies[0];
    assert_eq!(published, &body);
    assert_eq!(
        Some(*at),
        host.handed_over,
        "the body handed over is published, not a copy of it"
    );
    // Published: the next call long-polls for what follows it.
    assert_eq!(host.calls.len(), 2);
    let call: BTreeMap<_, _> = host.calls[1].iter().cloned().collect();
    assert!(call.contains_key("if-none-match"), "{call:?}");
}
