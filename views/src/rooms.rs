//! Rooms: who is where, right now. A session is in the room its current
//! page names (the page path, or the room name the app sends as its page)
//! while it is active. A change of one user's state moves only that user's
//! memberships, so a room of ten thousand members costs no more per change
//! than a room of two, and its join and leave changes come out as diffs.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sessionfold_schemas::{Millis, UserPresence};

/// One session in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seat {
    device_type: Option<String>,
    /// Last activity of the session, for the member list.
    last_activity: Millis,
}

/// The members of one room: (user, session) → seat.
#[derive(Debug, Clone, Default)]
struct Room {
    seats: BTreeMap<(String, String), Seat>,
    users: usize,
}

/// What a change did to one user's place in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    /// The user's first session entered the room.
    Join,
    /// The user's last session left it.
    Leave,
    /// The user stays, with a different set of sessions there.
    Update,
}

/// A room change of one user, as the stream sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomChange {
    /// The room.
    pub room: String,
    /// The user.
    pub user_id: String,
    /// join, leave or update.
    pub change: Move,
    /// The user's sessions in the room after the change.
    pub sessions: usize,
    /// Members of the room after the change.
    pub members: usize,
}

/// A member as a room lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberJson {
    /// The user.
    pub user_id: String,
    /// The user's sessions in the room, by device type.
    pub devices: BTreeMap<String, usize>,
    /// Latest activity of those sessions.
    pub last_activity: String,
}

/// One room now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomJson {
    /// The room.
    pub room: String,
    /// When the answer was computed.
    pub as_of: String,
    /// Users in the room.
    pub users: usize,
    /// Sessions in the room.
    pub sessions: usize,
    /// Sessions by device type.
    pub by_device: BTreeMap<String, usize>,
    /// The members, by user id.
    pub members: Vec<MemberJson>,
}

/// A room in the busiest-rooms list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomCount {
    /// The room.
    pub room: String,
    /// Users in it.
    pub users: usize,
    /// Sessions in it.
    pub sessions: usize,
}

/// Every room with at least one active session.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<String, Room>,
    /// Each user's current seats: (room, session id).
    of_user: HashMap<String, Vec<(String, String)>>,
}

fn device(d: &Option<String>) -> String {
    d.clone().unwrap_or_else(|| "unknown".into())
}

impl Rooms {
    /// No rooms.
    pub fn new() -> Rooms {
        Rooms::default()
    }

    /// Moves `user_id` to the rooms its new state puts it in (`None`: gone);
    /// returns one change per room the user entered, left or changed in.
    pub fn apply(&mut self, user_id: &str, state: Option<&UserPresence>) -> Vec<RoomChange> {
        let mut seats: Vec<(String, String, Seat)> = state
            .into_iter()
            .flat_map(|u| u.sessions.iter())
            .filter(|s| s.active && s.started_at.is_some() && s.ended_at.is_none())
            .filter_map(|s| {
                let room = s.current_page.clone()?;
                Some((
                    room,
                    s.session_id.clone(),
                    Seat {
                        device_type: s.device_type.clone(),
                        last_activity: s.last_activity,
                    },
                ))
            })
            .collect();
        seats.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let old = self.of_user.remove(user_id).unwrap_or_default();
        // Per room: the user's sessions there before and after.
        let mut before: BTreeMap<String, usize> = BTreeMap::new();
        for (room, session) in &old {
            *before.entry(room.clone()).or_default() += 1;
            if let Some(r) = self.rooms.get_mut(room) {
                r.seats.remove(&(user_id.to_owned(), session.clone()));
            }
        }
        let mut after: BTreeMap<String, usize> = BTreeMap::new();
        for (room, session, seat) in &seats {
            *after.entry(room.clone()).or_default() += 1;
            self.rooms
                .entry(room.clone())
                .or_default()
                .seats
                .insert((user_id.to_owned(), session.clone()), seat.clone());
        }
        let mut changes = Vec::new();
        let touched: std::collections::BTreeSet<&String> =
            before.keys().chain(after.keys()).collect();
        for room in touched {
            let (b, a) = (
                before.get(room).copied().unwrap_or(0),
                after.get(room).copied().unwrap_or(0),
            );
            let change = match (b, a) {
                (0, 0) => continue,
                (0, _) => Move::Join,
                (_, 0) => Move::Leave,
                _ => Move::Update,
            };
            let Some(r) = self.rooms.get_mut(room) else {
                continue;
            };
            match change {
                Move::Join => r.users += 1,
                Move::Leave => r.users -= 1,
                Move::Update => {}
            }
            let members = r.users;
            if r.seats.is_empty() {
                self.rooms.remove(room);
            }
            // A heartbeat that moves nothing is not news.
            let same_seats = b == a
                && old
                    .iter()
                    .filter(|(r2, _)| r2 == room)
                    .map(|(_, s)| s)
                    .eq(seats
                        .iter()
                        .filter(|(r2, ..)| r2 == room)
                        .map(|(_, s, _)| s));
            if change == Move::Update && same_seats {
                continue;
            }
            changes.push(RoomChange {
                room: room.clone(),
                user_id: user_id.to_owned(),
                change,
                sessions: a,
                members,
            });
        }
        if !seats.is_empty() {
            self.of_user.insert(
                user_id.to_owned(),
                seats.into_iter().map(|(r, s, _)| (r, s)).collect(),
            );
        }
        changes
    }

    /// Whether `user_id` has a session in `room`.
    pub fn is_member(&self, room: &str, user_id: &str) -> bool {
        self.of_user
            .get(user_id)
            .is_some_and(|seats| seats.iter().any(|(r, _)| r == room))
    }

    /// The rooms `user_id` is in.
    pub fn rooms_of(&self, user_id: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .of_user
            .get(user_id)
            .into_iter()
            .flatten()
            .map(|(r, _)| r.clone())
            .collect();
        v.dedup();
        v
    }

    /// One room with its members; `None` when nobody is there.
    pub fn room(&self, room: &str, as_of: String, limit: usize) -> Option<RoomJson> {
        let r = self.rooms.get(room)?;
        let mut by_device: BTreeMap<String, usize> = BTreeMap::new();
        let mut members: Vec<MemberJson> = Vec::new();
        for ((user, _), seat) in &r.seats {
            *by_device.entry(device(&seat.device_type)).or_default() += 1;
            if members.last().is_none_or(|m| &m.user_id != user) {
                if members.len() == limit {
                    continue;
                }
                members.push(MemberJson {
                    user_id: user.clone(),
                    devices: BTreeMap::new(),
                    last_activity: crate::view::rfc3339(seat.last_activity),
                });
            }
            if let Some(m) = members.last_mut().filter(|m| &m.user_id == user) {
                *m.devices.entry(device(&seat.device_type)).or_default() += 1;
                let t = crate::view::rfc3339(seat.last_activity);
                if t > m.last_activity {
                    m.last_activity = t;
                }
            }
        }
        Some(RoomJson {
            room: room.to_owned(),
            as_of,
            users: r.users,
            sessions: r.seats.len(),
            by_device,
            members,
        })
    }

    /// The busiest rooms, most users first (ties by name).
    pub fn busiest(&self, limit: usize, only: Option<&[String]>) -> Vec<RoomCount> {
        let mut v: Vec<RoomCount> = self
            .rooms
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o.contains(name)))
            .map(|(name, r)| RoomCount {
                room: name.clone(),
                users: r.users,
                sessions: r.seats.len(),
            })
            .collect();
        v.sort_by(|a, b| b.users.cmp(&a.users).then_with(|| a.room.cmp(&b.room)));
        v.truncate(limit);
        v
    }
}

#[cfg(test)]
mod tests {
    use sessionfold_schemas::SessionState;

    use super::*;

    fn session(id: &str, page: &str, device: &str, active: bool) -> SessionState {
        SessionState {
            session_id: id.into(),
            started_at: Some(1),
            current_page: Some(page.into()),
            device_type: Some(device.into()),
            last_activity: 10,
            active,
            ..SessionState::default()
        }
    }

    fn user(id: &str, sessions: Vec<SessionState>) -> UserPresence {
        UserPresence {
            user_id: id.into(),
            sessions,
            ..UserPresence::default()
        }
    }

    fn moves(c: &[RoomChange]) -> Vec<(&str, Move, usize, usize)> {
        c.iter()
            .map(|c| (c.room.as_str(), c.change, c.sessions, c.members))
            .collect()
    }

    #[test]
    fn two_tabs_in_two_rooms_then_one_closes_then_the_other() {
        let mut r = Rooms::new();
        let both = user(
            "ann",
            vec![
                session("t1", "/quiz", "desktop", true),
                session("t2", "/results", "mobile", true),
            ],
        );
        assert_eq!(
            moves(&r.apply("ann", Some(&both))),
            [("/quiz", Move::Join, 1, 1), ("/results", Move::Join, 1, 1)]
        );
        assert!(
            r.apply("ann", Some(&both)).is_empty(),
            "a repeat moves nothing"
        );
        let bob = user("bob", vec![session("b1", "/quiz", "desktop", true)]);
        assert_eq!(
            moves(&r.apply("bob", Some(&bob))),
            [("/quiz", Move::Join, 1, 2)]
        );
        // ann's second tab follows her to /quiz: an update there, a leave elsewhere.
        let moved = user(
            "ann",
            vec![
                session("t1", "/quiz", "desktop", true),
                session("t2", "/quiz", "mobile", true),
            ],
        );
        assert_eq!(
            moves(&r.apply("ann", Some(&moved))),
            [
                ("/quiz", Move::Update, 2, 2),
                ("/results", Move::Leave, 0, 0)
            ]
        );
        let quiz = r.room("/quiz", "now".into(), 10).expect("room");
        assert_eq!((quiz.users, quiz.sessions), (2, 3));
        assert_eq!(quiz.by_device.get("mobile"), Some(&1));
        assert_eq!(quiz.members[0].devices.get("desktop"), Some(&1));
        assert_eq!(quiz.members[0].devices.get("mobile"), Some(&1));
        assert!(r.room("/results", "now".into(), 10).is_none());
        // One tab ends: ann stays; the other ends too: ann leaves.
        let mut one = moved.clone();
        one.sessions[1].active = false;
        one.sessions[1].ended_at = Some(20);
        assert_eq!(
            moves(&r.apply("ann", Some(&one))),
            [("/quiz", Move::Update, 1, 2)]
        );
        assert_eq!(moves(&r.apply("ann", None)), [("/quiz", Move::Leave, 0, 1)]);
        assert!(r.is_member("/quiz", "bob") && !r.is_member("/quiz", "ann"));
        assert_eq!(
            r.busiest(5, None),
            [RoomCount {
                room: "/quiz".into(),
                users: 1,
                sessions: 1
            }]
        );
    }

    #[test]
    fn a_change_in_a_room_of_ten_thousand_is_one_diff() {
        let mut r = Rooms::new();
        for i in 0..10_000 {
            let id = format!("u{i}");
            let u = user(&id, vec![session("s", "/big", "desktop", true)]);
            r.apply(&id, Some(&u));
        }
        let late = user("late", vec![session("s", "/big", "mobile", true)]);
        assert_eq!(
            moves(&r.apply("late", Some(&late))),
            [("/big", Move::Join, 1, 10_001)]
        );
        assert_eq!(
            moves(&r.apply("u7", None)),
            [("/big", Move::Leave, 0, 10_000)]
        );
        let big = r.room("/big", "now".into(), 3).expect("room");
        assert_eq!(
            (big.users, big.sessions, big.members.len()),
            (10_000, 10_000, 3)
        );
        assert_eq!(big.by_device.get("mobile"), Some(&1));
    }
}
