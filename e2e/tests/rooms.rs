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
    assert_eq!(
        room_events(&carol_sub.drain(Duration::from_millis(200)).await?),
        Vec::<(String, String, String)>::new(),
        "carol is in no room of ann's"
    );
    Ok(())
}
