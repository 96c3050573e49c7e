//! Rooms on the real broker: who may read a room, and the join and leave
//! changes its members receive on the stream (and others do not).

use std::time::Duration;

use serde_json::{Value, json};
use sessionfold_e2e::{SseClient, Stack, eventually, get_json_as, post_json_as, token};

fn room_events(events: &[sessionfold_e2e::SseEvent]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|e| e.event == "room")
        .map(|e| {
            let s = |k: &str| e.data[k].as_str().unwrap_or_default().to_owned();
            (s("room"), s("user_id"), s("change"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_a_room_and_its_joins_and_leaves() -> anyhow::Result<()> {
    let stack = Stack::start("rooms", &[], &[]).await?;
    let activity = format!("{}/v1/activity", stack.producer.url);
    let svc = token("svc", &["service"], &[]);
    let post = |body: Value| {
        let (url, t) = (activity.clone(), svc.clone());
        async move {
            let (status, answer) = post_json_as(&url, &body, Some(&t)).await?;
            anyhow::ensure!(status == 202, "{answer}");
            anyhow::Ok(())
        }
    };
    let start = |user: &str, session: &str, page: &str, device: &str| {
        json!({"kind": "session_started", "user_id": user, "session_id": session,
               "email": format!("{user}@example.com"), "page": page, "device_type": device})
    };
    post(json!({"events": [start("bob", "b1", "/quiz", "desktop"),
                           start("carol", "c1", "/other", "desktop")]}))
    .await?;
    let quiz = format!("{}/v1/presence/rooms/%2Fquiz", stack.projections.url);
    let bob = token("bob", &[], &[]);
    let carol = token("carol", &[], &[]);
    eventually(Duration::from_secs(60), "bob in /quiz", || async {
        Ok((get_json_as(&quiz, Some(&bob)).await?.0 == 200).then_some(()))
    })
    .await?;
    // A room is for its members and for whoever sees everyone.
    assert_eq!(get_json_as(&quiz, Some(&carol)).await?.0, 404);
    let admin = token("root", &["admin"], &[]);
    assert_eq!(get_json_as(&quiz, Some(&admin)).await?.0, 200);

    let stream = format!("{}/v1/stream", stack.projections.url);
    let mut bob_sub = SseClient::connect(&stream, &bob, None).await?;
    let mut carol_sub = SseClient::connect(&stream, &carol, None).await?;
    // ann opens two tabs in /quiz (one on a phone), then closes one, then the other.
    post(json!({"events": [start("ann", "a1", "/quiz", "desktop"),
                           start("ann", "a2", "/quiz", "mobile")]}))
    .await?;
    let (_, room) = eventually(Duration::from_secs(60), "ann in /quiz", || async {
        let r = get_json_as(&quiz, Some(&bob)).await?;
        Ok((r.1["users"] == 2 && r.1["sessions"] == 3).then_some(r))
    })
    .await?;
    assert_eq!(room["by_device"], json!({"desktop": 2, "mobile": 1}));
    assert_eq!(room["members"][0]["user_id"], "ann");
    assert_eq!(
        room["members"][0]["devices"],
        json!({"desktop": 1, "mobile": 1})
    );
    for (session, reason) in [("a1", "closed"), ("a2", "logout")] {
        post(
            json!({"kind": "session_ended", "user_id": "ann", "session_id": session,
                    "reason": reason}),
        )
        .await?;
    }
    eventually(Duration::from_secs(60), "ann left /quiz", || async {
        let r = get_json_as(&quiz, Some(&bob)).await?;
        Ok((r.1["users"] == 1).then_some(()))
    })
    .await?;
    let seen = room_events(&bob_sub.drain(Duration::from_millis(1500)).await?);
    let anns: Vec<&str> = seen
        .iter()
        .filter(|(r, u, _)| r == "/quiz" && u == "ann")
        .map(|(_, _, c)| c.as_str())
        .collect();
    // The two tabs may arrive in one state or two: a join, maybe an update,
    // then an update when one tab closes, and a leave when the last does.
    assert_eq!(anns.first(), Some(&"join"), "{seen:?}");
    assert_eq!(anns.last(), Some(&"leave"), "{seen:?}");
    assert!(anns.contains(&"update"), "{seen:?}");
    // carol is in no room of ann's: her stream, proven live by her own
    // page change published after all of ann's, carried none of them.
    post(json!({"kind": "page_viewed", "user_id": "carol", "session_id": "c1", "page": "/elsewhere"}))
        .await?;
    let carols = until_own_change(&mut carol_sub, "carol").await?;
    assert_eq!(
        room_events(&carols),
        Vec::<(String, String, String)>::new(),
        "{carols:?}"
    );
    Ok(())
}

/// Events of `sub` up to and including the first presence change of `user`.
async fn until_own_change(
    sub: &mut SseClient,
    user: &str,
) -> anyhow::Result<Vec<sessionfold_e2e::SseEvent>> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let Some(e) = sub.next(Duration::from_secs(5)).await? else {
            continue;
        };
        let own = e.event == "presence" && e.data["user_id"] == user;
        seen.push(e);
        if own {
            return Ok(seen);
        }
    }
    anyhow::bail!("no presence change of {user} within 60 s: {seen:?}")
}

/// A token with a room claim, as an identity provider would issue it.
fn with_rooms(sub: &str, rooms: &[&str]) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 3600)
        .unwrap_or(0);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "rooms": rooms}),
        &jsonwebtoken::EncodingKey::from_secret(sessionfold_e2e::TEST_SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

/// A member resuming the stream with an id from before it joined gets the
/// room's changes from its joining on, not what happened there before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_resuming_sees_nothing_from_before_it_joined() -> anyhow::Result<()> {
    let stack = Stack::start("rooms-resume", &[], &[]).await?;
    let activity = format!("{}/v1/activity", stack.producer.url);
    let post_as = |user: &str, body: Value| {
        let (url, t) = (activity.clone(), token(user, &[], &[]));
        async move {
            let (status, answer) = post_json_as(&url, &body, Some(&t)).await?;
            anyhow::ensure!(status == 202, "{answer}");
            anyhow::Ok(())
        }
    };
    let admin = token("root", &["admin"], &[]);
    let stream = format!("{}/v1/stream", stack.projections.url);
    let mut watcher = SseClient::connect(&stream, &admin, None).await?;
    post_as(
        "zed",
        json!({"kind": "session_started", "user_id": "zed", "session_id": "z1",
                          "email": "zed@example.com", "page": "/lobby"}),
    )
    .await?;
    let before = until_own_change(&mut watcher, "zed").await?;
    let resume_from = before
        .last()
        .and_then(|e| e.id.clone())
        .ok_or_else(|| anyhow::anyhow!("no id: {before:?}"))?;
    // Ann comes and goes in /quiz; then dave joins it, naming it as his page
    // (a user joins a room by naming it, under the open rule).
    post_as(
        "ann",
        json!({"kind": "session_started", "user_id": "ann", "session_id": "a1",
                          "email": "ann@example.com", "page": "/quiz"}),
    )
    .await?;
    post_as(
        "ann",
        json!({"kind": "session_ended", "user_id": "ann", "session_id": "a1", "reason": "logout"}),
    )
    .await?;
    post_as(
        "dave",
        json!({"kind": "session_started", "user_id": "dave", "session_id": "d1",
                           "email": "dave@example.com", "page": "/quiz"}),
    )
    .await?;
    let quiz = format!("{}/v1/presence/rooms/%2Fquiz", stack.projections.url);
    let dave = token("dave", &[], &[]);
    eventually(Duration::from_secs(60), "dave alone in /quiz", || async {
        let (status, r) = get_json_as(&quiz, Some(&dave)).await?;
        Ok((status == 200 && r["users"] == 1).then_some(()))
    })
    .await?;
    let mut resumed = SseClient::connect(&stream, &dave, Some(&resume_from)).await?;
    let got = until_own_change(&mut resumed, "dave").await?;
    let mut rooms = room_events(&got);
    // dave's own join may come right after his presence change.
    if let Some(e) = resumed.next(Duration::from_secs(2)).await? {
        rooms.extend(room_events(&[e]));
    }
    assert!(
        rooms.iter().all(|(_, u, _)| u == "dave"),
        "ann's moves in /quiz came before dave joined: {rooms:?}"
    );
    Ok(())
}

/// Rooms limited by a claim: a user token enters (names as its page) and
/// reads only the rooms its claim names; a service enters any for anyone,
/// but a member whose claim does not name the room still cannot read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_claim_rule_a_room_is_for_those_its_claim_names() -> anyhow::Result<()> {
    let rule = ["--room-access", "claim"];
    let stack = Stack::start_with("rooms-claim", &rule, &[], &rule).await?;
    let activity = format!("{}/v1/activity", stack.producer.url);
    let eve = with_rooms("eve", &["team-7", "/docs/*"]);
    let frank = with_rooms("frank", &["/docs/*"]);
    let start = |user: &str, session: &str, page: &str| {
        json!({"kind": "session_started", "user_id": user, "session_id": session,
               "email": format!("{user}@example.com"), "page": page})
    };
    let (status, answer) =
        post_json_as(&activity, &start("eve", "e1", "team-7"), Some(&eve)).await?;
    assert_eq!(status, 202, "{answer}");
    for page in ["/secret", "team-70"] {
        let (status, answer) =
            post_json_as(&activity, &start("eve", "e2", page), Some(&eve)).await?;
        assert_eq!(status, 403, "{page}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains("may not enter"),
            "{page}: {answer}"
        );
    }
    let (status, answer) = post_json_as(
        &activity,
        &json!({"kind": "page_viewed", "user_id": "frank", "session_id": "f1", "page": "team-7"}),
        Some(&frank),
    )
    .await?;
    assert_eq!(status, 403, "{answer}");
    // A service puts frank in team-7 all the same.
    let svc = token("svc", &["service"], &[]);
    let (status, answer) =
        post_json_as(&activity, &start("frank", "f1", "team-7"), Some(&svc)).await?;
    assert_eq!(status, 202, "{answer}");
    let team = format!("{}/v1/presence/rooms/team-7", stack.projections.url);
    let admin = token("root", &["admin"], &[]);
    eventually(
        Duration::from_secs(60),
        "eve and frank in team-7",
        || async {
            let (status, r) = get_json_as(&team, Some(&admin)).await?;
            Ok((status == 200 && r["users"] == 2).then_some(()))
        },
    )
    .await?;
    assert_eq!(get_json_as(&team, Some(&eve)).await?.0, 200);
    assert_eq!(get_json_as(&team, Some(&frank)).await?.0, 404);
    Ok(())
}
