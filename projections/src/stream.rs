//! The realtime stream: every change the views apply, fanned out to
//! Server-Sent Events subscribers, each filtered by what its token may see.
//!
//! Changes get an id `<epoch>-<seq>`. The last [`Hub::capacity`] changes are
//! kept, so a client that reconnects with `Last-Event-ID` receives exactly the
//! changes it missed. A client whose id is no longer held (or comes from an
//! earlier run of this instance) gets a `resync` event and should reload.
//! Live delivery uses a bounded broadcast channel: a subscriber that falls
//! that far behind never holds the others back; it gets a `resync` event
//! saying how many changes it missed, and goes on from the oldest held.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use sessionfold_auth::Caller;
use sessionfold_views::rooms::Move;
use tokio::sync::broadcast;

/// Who may see a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// A change of this user's presence.
    Presence(String),
    /// A change of an import owned by `owner` (and, after a transfer, formerly by `previous`).
    Import {
        /// Owner after the change; `None` for a legacy or purged import.
        owner: Option<String>,
        /// Owner before the change, when it changed.
        previous: Option<String>,
    },
    /// A user joined, left or moved within a room: for the room's members
    /// (since they joined, and while the room rule lets them in), the user
    /// itself, and whoever sees all presence.
    Room {
        /// The room.
        room: String,
        /// The user who moved.
        user: String,
        /// What the move was.
        change: Move,
    },
}

/// Whether a user is in a room now; the rooms index answers it.
pub type Membership = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

impl Audience {
    /// True when `caller` may receive the change; `member` says who is in
    /// which room now and since which change (`Some(0)`: since before any
    /// change held, `None`: not in it).
    pub fn admits(
        &self,
        caller: &Caller,
        seq: u64,
        member: &dyn Fn(&str, &str) -> Option<u64>,
    ) -> bool {
        match self {
            Audience::Presence(user) => caller.sees_presence_of(user),
            Audience::Import { owner, previous } => {
                caller.sees_import_of(owner.as_deref())
                    || previous.as_deref() == Some(caller.user_id.as_str())
            }
            // A member sees the room from the moment it joined, never what
            // happened there before (a resume with an older id included).
            Audience::Room { room, user, .. } => {
                caller.sees_presence_of(user)
                    || (caller.may_enter_room(room)
                        && member(room, &caller.user_id).is_some_and(|since| seq >= since))
            }
        }
    }
}

/// One change, ready to send.
#[derive(Debug)]
pub struct Change {
    /// Sequence number within this instance's run.
    pub seq: u64,
    /// `presence` or `import`.
    pub event: &'static str,
    /// Who may see it.
    pub audience: Audience,
    /// The JSON payload.
    pub data: String,
}

struct Held {
    next_seq: u64,
    recent: VecDeque<Arc<Change>>,
    /// The change with which a user last joined a room, for joins still
    /// among the held changes: one who joined before the oldest held change
    /// has been in the room through all of them. Bounded by the buffer.
    joins: std::collections::HashMap<(String, String), u64>,
    /// The first sequence number still complete here: changes before it
    /// were evicted. Changes taken out for a deleted user leave gaps that do
    /// not count: what is missing there must not be resent.
    oldest: u64,
}

/// The fan-out point between the changelog follower and the subscribers.
pub struct Hub {
    epoch: String,
    capacity: usize,
    held: Mutex<Held>,
    tx: broadcast::Sender<Arc<Change>>,
    /// Set when the service stops: open streams end with a last event.
    closing: tokio::sync::watch::Sender<bool>,
    /// Who is in which room, for room changes.
    membership: std::sync::OnceLock<Membership>,
}

/// Where a new subscriber starts.
pub struct Subscription {
    /// Missed changes to send first.
    pub backlog: Vec<Arc<Change>>,
    /// True when the requested id is no longer held: the client should reload.
    pub resync: bool,
    /// Live changes after the backlog.
    pub live: broadcast::Receiver<Arc<Change>>,
}

impl Hub {
    /// A hub that keeps the last `capacity` changes; `epoch` names this run.
    pub fn new(epoch: String, capacity: usize) -> Hub {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Hub {
            epoch,
            capacity: capacity.max(1),
            held: Mutex::new(Held {
                next_seq: 1,
                oldest: 1,
                recent: VecDeque::new(),
                joins: std::collections::HashMap::new(),
            }),
            tx,
            closing: tokio::sync::watch::channel(false).0,
            membership: std::sync::OnceLock::new(),
        }
    }

    /// Tells the hub who is in which room; set once.
    pub fn set_membership(&self, m: Membership) {
        let _ = self.membership.set(m);
    }

    fn admits(&self, change: &Change, caller: &Caller) -> bool {
        let member = |room: &str, user: &str| {
            if !self.membership.get().is_some_and(|m| m(room, user)) {
                return None;
            }
            let key = (room.to_owned(), user.to_owned());
            Some(self.held().joins.get(&key).copied().unwrap_or(0))
        };
        change.audience.admits(caller, change.seq, &member)
    }

    /// Ends every open stream with a `closing` event; the service is stopping.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Changes kept for resuming, and how far a live subscriber may fall behind.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        sessionfold_edge::lock(&self.held)
    }

    /// Publishes a change to every subscriber; never waits for them.
    pub fn publish(&self, event: &'static str, audience: Audience, data: String) {
        let mut held = self.held();
        let change = Arc::new(Change {
            seq: held.next_seq,
            event,
            audience,
            data,
        });
        held.next_seq += 1;
        if let Audience::Room {
            room,
            user,
            change: m,
        } = &change.audience
        {
            let key = (room.clone(), user.clone());
            match m {
                Move::Join => {
                    held.joins.insert(key, change.seq);
                }
                Move::Leave => {
                    held.joins.remove(&key);
                }
                Move::Update => {}
            }
        }
        if held.recent.len() == self.capacity {
            if let Some(gone) = held.recent.pop_front() {
                held.oldest = gone.seq + 1;
                // A join no longer held: the member was in the room through
                // every change still held.
                if let Audience::Room {
                    room,
                    user,
                    change: Move::Join,
                } = &gone.audience
                {
                    let key = (room.clone(), user.clone());
                    if held.joins.get(&key) == Some(&gone.seq) {
                        held.joins.remove(&key);
                    }
                }
            }
        }
        held.recent.push_back(change.clone());
        // Sent under the lock, so that a subscriber's backlog and live feed
        // meet without a gap or an overlap. No receiver is not an error.
        let _ = self.tx.send(change);
    }

    /// Drops the held changes that carry a deleted user's presence or room
    /// moves, so that a resuming subscriber is not sent the state of a user
    /// who is gone (purged, or forgotten on request). The deletion itself is
    /// published after this and stays.
    pub fn forget_user(&self, user_id: &str) {
        let mut held = self.held();
        held.recent.retain(|c| match &c.audience {
            Audience::Presence(u) | Audience::Room { user: u, .. } => u != user_id,
            Audience::Import { .. } => true,
        });
    }

    /// The event id of a change.
    pub fn id(&self, change: &Change) -> String {
        format!("{}-{}", self.epoch, change.seq)
    }

    /// Subscribes, resuming after `last_event_id` when given.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let held = self.held();
        let live = self.tx.subscribe();
        let Some(last) = last_event_id else {
            return Subscription {
                backlog: Vec::new(),
                resync: false,
                live,
            };
        };
        let seq = last
            .strip_prefix(&self.epoch)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u64>().ok());
        let oldest = held.oldest;
        match seq {
            Some(s) if s + 1 >= oldest && s < held.next_seq => Subscription {
                backlog: held.recent.iter().filter(|c| c.seq > s).cloned().collect(),
                resync: false,
                live,
            },
            _ => Subscription {
                backlog: Vec::new(),
                resync: true,
                live,
            },
        }
    }
}

/// What a subscriber's stream does next.
enum Phase {
    Backlog(std::vec::IntoIter<Arc<Change>>),
    Live,
    Done,
}

fn event_of(hub: &Hub, c: &Change) -> Event {
    Event::default()
        .id(hub.id(c))
        .event(c.event)
        .data(c.data.clone())
}

/// Why a live stream ends before its subscriber leaves.
enum Ended {
    /// The subscriber's token expired.
    Expired,
    /// The service is stopping.
    Closing,
}

/// The live feed and the service's stop signal.
type Live = (
    broadcast::Receiver<Arc<Change>>,
    tokio::sync::watch::Receiver<bool>,
);

/// The next change, or why the stream ends first: its token expired
/// (`expires_at`, seconds since the epoch; a stream never outlives the token
/// that opened it) or the service is stopping.
async fn recv_until(
    (live, closing): &mut Live,
    expires_at: Option<u64>,
) -> Result<Result<Arc<Change>, broadcast::error::RecvError>, Ended> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let left = expires_at.map(|exp| Duration::from_secs(exp.saturating_sub(now)));
    let expiry = async {
        match left {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    if *closing.borrow() {
        return Err(Ended::Closing);
    }
    tokio::select! {
        r = live.recv() => Ok(r),
        () = expiry => Err(Ended::Expired),
        _ = closing.changed() => Err(Ended::Closing),
    }
}

/// The SSE stream of one subscriber.
pub fn events(
    hub: Arc<Hub>,
    caller: Caller,
    last_event_id: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let sub = hub.subscribe(last_event_id.as_deref());
    let closing = hub.closing.subscribe();
    let first = sub.resync.then(|| {
        Event::default().event("resync").data(
            r#"{"reason":"the changes after Last-Event-ID are no longer held; reload the views"}"#,
        )
    });
    let state = (
        hub,
        caller,
        Phase::Backlog(sub.backlog.into_iter()),
        (sub.live, closing),
        first,
    );
    futures::stream::unfold(
        state,
        |(hub, caller, mut phase, mut live, mut first)| async move {
            if let Some(e) = first.take() {
                return Some((Ok(e), (hub, caller, phase, live, None)));
            }
            loop {
                match &mut phase {
                    Phase::Done => return None,
                    Phase::Backlog(items) => match items.next() {
                        Some(c) if hub.admits(&c, &caller) => {
                            let e = event_of(&hub, &c);
                            return Some((Ok(e), (hub, caller, phase, live, None)));
                        }
                        Some(_) => {}
                        None => phase = Phase::Live,
                    },
                    Phase::Live => match recv_until(&mut live, caller.expires_at).await {
                        Err(Ended::Expired) => {
                            let e = Event::default().event("expired").data(
                                r#"{"reason":"the token expired; reconnect with a fresh token and Last-Event-ID"}"#,
                            );
                            return Some((Ok(e), (hub, caller, Phase::Done, live, None)));
                        }
                        Err(Ended::Closing) => {
                            let e = Event::default().event("closing").data(
                                r#"{"reason":"the server is stopping; reconnect with Last-Event-ID"}"#,
                            );
                            return Some((Ok(e), (hub, caller, Phase::Done, live, None)));
                        }
                        Ok(Ok(c)) if hub.admits(&c, &caller) => {
                            let e = event_of(&hub, &c);
                            return Some((Ok(e), (hub, caller, phase, live, None)));
                        }
                        Ok(Ok(_)) => {}
                        // A burst outran this subscriber: it is told to
                        // reload and goes on from the oldest change still
                        // held, rather than losing its stream.
                        Ok(Err(broadcast::error::RecvError::Lagged(missed))) => {
                            tracing::debug!(subscriber = %caller.user_id, missed, "stream subscriber fell behind; sent a resync");
                            let e = Event::default().event("resync").data(format!(
                                r#"{{"reason":"{missed} changes went by faster than this stream read them; reload the views","missed":{missed}}}"#
                            ));
                            return Some((Ok(e), (hub, caller, phase, live, None)));
                        }
                        Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    },
                }
            }
        },
    )
}

/// One open subscription, counted in a gauge for as long as it lives.
struct Subscribed(prometheus::IntGauge);

impl Subscribed {
    fn new(gauge: prometheus::IntGauge) -> Subscribed {
        gauge.inc();
        Subscribed(gauge)
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Server-Sent Events of every change the caller may see, as it is applied:
/// `presence`, `import` and `room` events, `freshness` on opening and every
/// 5 s, `resync` when a resumption is no longer possible or a burst
/// outran the subscriber, `closing` when the service stops.
#[utoipa::path(
    get, path = "/v1/stream", tag = "stream",
    params(("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, to resume")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An endless event stream", body = String, content_type = "text/event-stream"),
        (status = 401, description = "No valid token", body = crate::api::ErrorBody),
    )
)]
pub(crate) async fn handler(
    State(s): State<crate::AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Counted while the response streams; the count drops with the stream.
    let open = Subscribed::new(s.metrics.subscribers.clone());
    let stream = futures::StreamExt::map(
        with_freshness(events(s.hub.clone(), caller, last), s.fresh.clone()),
        move |e| {
            let _ = &open;
            e
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// How often a subscriber is told how fresh the views are.
const FRESHNESS_EVERY: Duration = Duration::from_secs(5);

/// `changes` with a `freshness` event (no id, so resumption is unchanged)
/// when the stream opens and every [`FRESHNESS_EVERY`]; ends with `changes`.
fn with_freshness(
    changes: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
    fresh: crate::freshness::Fresh,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let every = tokio::time::interval(FRESHNESS_EVERY);
    futures::stream::unfold(
        (Box::pin(changes), every, fresh),
        |(mut changes, mut every, fresh)| async move {
            let next = tokio::select! {
                biased;
                e = futures::StreamExt::next(&mut changes) => e?,
                _ = every.tick() => {
                    let data = crate::freshness::json(&fresh.report());
                    Ok(Event::default().event("freshness").data(data.to_string()))
                }
            };
            Some((next, (changes, every, fresh)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn caller(sub: &str, roles: &[&str]) -> Caller {
        Caller {
            user_id: sub.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: Vec::new(),
            ..Caller::default()
        }
    }

    fn presence(hub: &Hub, user: &str, n: usize) {
        hub.publish(
            "presence",
            Audience::Presence(user.into()),
            format!("{user}#{n}"),
        );
    }

    async fn take(s: impl Stream<Item = Result<Event, Infallible>>, n: usize) -> Vec<String> {
        let events: Vec<_> = s.take(n).collect().await;
        // The event text is opaque; its Debug form names id, event and data.
        events.into_iter().map(|e| format!("{e:?}")).collect()
    }

    #[tokio::test]
    async fn resume_sends_exactly_the_missed_changes_the_caller_may_see() {
        let hub = Arc::new(Hub::new("e1".into(), 100));
        for n in 1..=6 {
            presence(&hub, if n % 2 == 0 { "ada" } else { "bob" }, n);
        }
        // Ada saw up to e1-2; she missed ada#4 and ada#6 (bob's are not hers).
        let got = take(
            events(hub.clone(), caller("ada", &[]), Some("e1-2".into())),
            2,
        )
        .await;
        assert!(
            got[0].contains("e1-4") && got[0].contains("ada#4"),
            "{got:?}"
        );
        assert!(
            got[1].contains("e1-6") && got[1].contains("ada#6"),
            "{got:?}"
        );
        // An admin resuming from the start of the held changes gets all of them.
        let got = take(
            events(hub.clone(), caller("root", &["admin"]), Some("e1-0".into())),
            6,
        )
        .await;
        assert_eq!(got.len(), 6);
        assert!(
            got[0].contains("bob#1") && got[5].contains("ada#6"),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn an_unknown_or_evicted_id_asks_for_a_resync() {
        let hub = Arc::new(Hub::new("e2".into(), 3));
        for n in 1..=5 {
            presence(&hub, "ada", n);
        }
        for last in ["e1-4", "e2-1", "garbage", "e2-99"] {
            let got = take(
                events(hub.clone(), caller("ada", &[]), Some(last.into())),
                1,
            )
            .await;
            assert!(got[0].contains("resync"), "{last}: {got:?}");
        }
        let got = take(
            events(hub.clone(), caller("ada", &[]), Some("e2-2".into())),
            3,
        )
        .await;
        assert!(
            got[0].contains("ada#3") && got[2].contains("ada#5"),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn a_subscriber_outrun_by_a_burst_is_resynced_and_goes_on() {
        let hub = Arc::new(Hub::new("e3".into(), 4));
        let slow = events(hub.clone(), caller("root", &["admin"]), None);
        let fast = events(hub.clone(), caller("root", &["admin"]), None);
        let mut fast = Box::pin(fast);
        for n in 1..=10 {
            presence(&hub, "ada", n);
            let e = fast
                .next()
                .await
                .map(|e| format!("{e:?}"))
                .unwrap_or_default();
            assert!(e.contains(&format!("ada#{n}")), "{e}");
        }
        // The slow one read nothing while ten went by with room for four:
        // it is told six were missed, then gets the four still held, and
        // stays open for the next.
        let mut slow = Box::pin(slow);
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(format!("{:?}", slow.next().await));
        }
        assert!(
            got[0].contains("resync") && got[0].contains("6 changes went by"),
            "{got:?}"
        );
        for (i, n) in (7..=10).enumerate() {
            assert!(got[i + 1].contains(&format!("ada#{n}")), "{got:?}");
        }
        presence(&hub, "ada", 11);
        let next = format!("{:?}", slow.next().await);
        assert!(next.contains("ada#11"), "{next}");
    }

    #[tokio::test]
    async fn a_deleted_user_s_held_changes_are_not_resent() {
        let hub = Arc::new(Hub::new("e9".into(), 100));
        presence(&hub, "ann", 3);
        presence(&hub, "bob", 1);
        hub.forget_user("ann");
        hub.publish(
            "presence",
            Audience::Presence("ann".into()),
            r#"{"user_id":"ann","change":"deleted","user":null}"#.into(),
        );
        let sub = hub.subscribe(Some("e9-0"));
        let held: Vec<&str> = sub.backlog.iter().map(|c| c.data.as_str()).collect();
        assert_eq!(held.len(), 2, "{held:?}");
        assert!(held[0].contains("bob"), "{held:?}");
        assert!(held[1].contains("deleted"), "{held:?}");
    }

    #[test]
    fn audiences() {
        let ada = caller("ada", &[]);
        let bob = caller("bob", &[]);
        let cy = caller("cy", &[]);
        let admin = caller("root", &["admin"]);
        // Only bob is in /quiz, since change 5.
        let member = |room: &str, user: &str| (room == "/quiz" && user == "bob").then_some(5);
        let admits = |a: &Audience, c: &Caller| a.admits(c, 7, &member);
        let moved = Audience::Import {
            owner: Some("bob".into()),
            previous: Some("ada".into()),
        };
        assert!(admits(&moved, &ada) && admits(&moved, &bob) && admits(&moved, &admin));
        let legacy = Audience::Import {
            owner: None,
            previous: None,
        };
        assert!(!admits(&legacy, &ada) && admits(&legacy, &admin));
        let p = Audience::Presence("ada".into());
        assert!(admits(&p, &ada) && !admits(&p, &bob) && admits(&p, &admin));
        // ada leaves /quiz: she, the members (bob) and the admin see it; cy does not.
        let left = Audience::Room {
            room: "/quiz".into(),
            user: "ada".into(),
            change: Move::Leave,
        };
        assert!(admits(&left, &ada) && admits(&left, &bob) && admits(&left, &admin));
        assert!(!admits(&left, &cy));
        // What happened before bob joined is not his to see.
        assert!(!left.admits(&bob, 4, &member));
        // With rooms limited by a claim, a member the claim does not let in sees nothing.
        let limited = Caller {
            rooms: sessionfold_auth::RoomAccess::Only(vec!["/docs/*".into()]),
            ..bob.clone()
        };
        assert!(!admits(&left, &limited));
    }

    #[tokio::test]
    async fn a_member_resuming_from_before_it_joined_gets_only_what_came_after() {
        let hub = Arc::new(Hub::new("e7".into(), 100));
        let room = |user: &str, change: Move| {
            hub.publish(
                "room",
                Audience::Room {
                    room: "/quiz".into(),
                    user: user.into(),
                    change,
                },
                format!("{user} {change:?}"),
            )
        };
        room("ada", Move::Join);
        room("ada", Move::Update);
        room("bob", Move::Join);
        room("ada", Move::Leave);
        let in_room = |r: &str, u: &str| r == "/quiz" && u == "bob";
        hub.set_membership(Box::new(in_room));
        let got = take(
            events(hub.clone(), caller("bob", &[]), Some("e7-0".into())),
            2,
        )
        .await;
        assert!(got[0].contains("bob Join"), "{got:?}");
        assert!(got[1].contains("ada Leave"), "{got:?}");
    }
}
