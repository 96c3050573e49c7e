//! Rooms: who is where, right now. A session is in the room its current
//! page names (the page path, or the room name the app sends as its page)
//! while it is active. A change of one user's state moves only that user's
//! memberships, so a room of ten thousand members costs no more per change
//! than a room of two, and its join and leave changes come out as diffs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use sessionfold_schemas::{Millis, SessionState, UserPresence};

/// A device type name's number in [`Rooms`]: members hold numbers, not names.
type DeviceNo = u16;

/// What a device type name beyond the numbers there are is counted as.
const OTHER_DEVICE: &str = "other";

/// One user in a room: how many of their sessions are there, on which
/// devices, and their latest activity. Session ids are not kept: the user's
/// old and new states say which sessions moved.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    last_activity: Millis,
    sessions: u32,
    /// The device of every session here when they share one, as nearly
    /// all members do (most have one session in a room).
    device: DeviceNo,
    /// (device, sessions) when they differ; no allocation otherwise.
    mixed: Option<Box<[(DeviceNo, u32)]>>,
}

impl Member {
    fn devices(&self) -> impl Iterator<Item = (DeviceNo, u32)> + '_ {
        let one = self.mixed.is_none().then_some((self.device, self.sessions));
        one.into_iter()
            .chain(self.mixed.iter().flat_map(|m| m.iter().copied()))
    }
}

/// The members of one room.
#[derive(Debug, Clone, Default)]
struct Room {
    // Boxed ids and a compact member: a B-tree filled in order keeps its
    // nodes half full, so every byte of an entry counts about twice.
    members: BTreeMap<Box<str>, Member>,
    sessions: usize,
}

/// What a change did to one user's place in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MemberJson {
    /// The user.
    pub user_id: String,
    /// The user's sessions in the room, by device type.
    pub devices: BTreeMap<String, usize>,
    /// Latest activity of those sessions.
    pub last_activity: String,
}

/// One room now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    rooms: HashMap<Arc<str>, Room>,
    /// Device type names by number, each held once.
    device_names: Vec<Arc<str>>,
    device_nos: HashMap<Arc<str>, DeviceNo>,
}

/// The active sessions of a state, by the room their page names.
pub(crate) fn seats(u: Option<&UserPresence>) -> BTreeMap<&str, Vec<&SessionState>> {
    let mut by_room: BTreeMap<&str, Vec<&SessionState>> = BTreeMap::new();
    for s in u.into_iter().flat_map(|u| u.sessions.iter()) {
        if s.active && s.started_at.is_some() && s.ended_at.is_none() {
            if let Some(room) = s.current_page.as_deref() {
                by_room.entry(room).or_default().push(s);
            }
        }
    }
    by_room
}

fn same_sessions(a: &[&SessionState], b: &[&SessionState]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.session_id == y.session_id && x.device_type == y.device_type)
}

impl Rooms {
    /// No rooms.
    pub fn new() -> Rooms {
        Rooms::default()
    }

    /// The number of a device type name. Past the numbers there are, new
    /// names count as [`OTHER_DEVICE`]: device types come from clients.
    fn device(&mut self, d: Option<&str>) -> DeviceNo {
        let mut d = d.unwrap_or("unknown");
        if let Some(&n) = self.device_nos.get(d) {
            return n;
        }
        if self.device_names.len() >= usize::from(DeviceNo::MAX) {
            d = OTHER_DEVICE;
            if let Some(&n) = self.device_nos.get(d) {
                return n;
            }
        }
        let n = DeviceNo::try_from(self.device_names.len()).unwrap_or(DeviceNo::MAX);
        let name: Arc<str> = Arc::from(d);
        self.device_names.push(name.clone());
        self.device_nos.insert(name, n);
        n
    }

    fn device_name(&self, n: DeviceNo) -> &str {
        self.device_names
            .get(usize::from(n))
            .map_or(OTHER_DEVICE, |name| &**name)
    }

    /// Moves `user_id` from the rooms its `old` state put it in to those its
    /// `new` state puts it in (`None`: no state); returns one change per
    /// room the user entered, left or changed sessions in. Costs the user's
    /// sessions, whatever the size of the rooms.
    pub fn apply(
        &mut self,
        user_id: &str,
        old: Option<&UserPresence>,
        new: Option<&UserPresence>,
    ) -> Vec<RoomChange> {
        let before = seats(old);
        let after = seats(new);
        let mut names: Vec<&str> = before.keys().chain(after.keys()).copied().collect();
        names.sort_unstable();
        names.dedup();
        let mut changes = Vec::new();
        for name in names {
            let b = before.get(name).map_or(&[][..], Vec::as_slice);
            let a = after.get(name).map_or(&[][..], Vec::as_slice);
            let change = match (b.is_empty(), a.is_empty()) {
                (true, true) => continue,
                (true, false) => Move::Join,
                (false, true) => Move::Leave,
                (false, false) => Move::Update,
            };
            let news = change != Move::Update || !same_sessions(b, a);
            let member = (!a.is_empty()).then(|| {
                let nos: Vec<DeviceNo> = a
                    .iter()
                    .map(|s| self.device(s.device_type.as_deref()))
                    .collect();
                let device = nos.first().copied().unwrap_or_default();
                let mixed = (!nos.iter().all(|&d| d == device)).then(|| {
                    let mut counts: Vec<(DeviceNo, u32)> = Vec::with_capacity(nos.len());
                    for d in &nos {
                        match counts.iter_mut().find(|(x, _)| x == d) {
                            Some(entry) => entry.1 += 1,
                            None => counts.push((*d, 1)),
                        }
                    }
                    counts.into_boxed_slice()
                });
                Member {
                    sessions: u32::try_from(a.len()).unwrap_or(u32::MAX),
                    device,
                    mixed,
                    last_activity: a.iter().map(|s| s.last_activity).max().unwrap_or(0),
                }
            });
            let room = match self.rooms.get_mut(name) {
                Some(r) => r,
                None => self.rooms.entry(Arc::from(name)).or_default(),
            };
            if let Some(old) = room.members.remove(user_id) {
                room.sessions -= old.sessions as usize;
            }
            if let Some(m) = member {
                room.sessions += m.sessions as usize;
                room.members.insert(user_id.into(), m);
            }
            let members = room.members.len();
            if members == 0 {
                self.rooms.remove(name);
            }
            // A heartbeat that moves no session is not news.
            if news {
                changes.push(RoomChange {
                    room: name.to_owned(),
                    user_id: user_id.to_owned(),
                    change,
                    sessions: a.len(),
                    members,
                });
            }
        }
        changes
    }

    /// One room with its members; `None` when nobody is there.
    pub fn room(&self, room: &str, as_of: String, limit: usize) -> Option<RoomJson> {
        let r = self.rooms.get(room)?;
        let mut by_device: BTreeMap<String, usize> = BTreeMap::new();
        for m in r.members.values() {
            for (d, n) in m.devices() {
                *by_device.entry(self.device_name(d).to_owned()).or_default() += n as usize;
            }
        }
        let members = r
            .members
            .iter()
            .take(limit)
            .map(|(user, m)| MemberJson {
                user_id: user.to_string(),
                devices: m
                    .devices()
                    .map(|(d, n)| (self.device_name(d).to_owned(), n as usize))
                    .collect(),
                last_activity: crate::view::rfc3339(m.last_activity),
            })
            .collect();
        Some(RoomJson {
            room: room.to_owned(),
            as_of,
            users: r.members.len(),
            sessions: r.sessions,
            by_device,
            members,
        })
    }

    /// The busiest rooms, most users first (ties by name); only those named
    /// in `only` when given.
    pub fn busiest(&self, limit: usize, only: Option<&[String]>) -> Vec<RoomCount> {
        let mut v: Vec<RoomCount> = self
            .rooms
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o.iter().any(|x| x.as_str() == &***name)))
            .map(|(name, r)| RoomCount {
                room: name.to_string(),
                users: r.members.len(),
                sessions: r.sessions,
            })
            .collect();
        v.sort_by(|a, b| b.users.cmp(&a.users).then_with(|| a.room.cmp(&b.room)));
        v.truncate(limit);
        v
    }
}

#[cfg(test)]
mod tests {
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

    /// Rooms fed with each user's previous state, as the presence view does.
    #[derive(Default)]
    struct Track {
        rooms: Rooms,
        states: HashMap<String, UserPresence>,
    }

    impl Track {
        fn apply(&mut self, user: &str, new: Option<&UserPresence>) -> Vec<RoomChange> {
            let old = self.states.remove(user);
            let c = self.rooms.apply(user, old.as_ref(), new);
            if let Some(n) = new {
                self.states.insert(user.to_owned(), n.clone());
            }
            c
        }

        fn room(&self, name: &str, limit: usize) -> Option<RoomJson> {
            self.rooms.room(name, "now".into(), limit)
        }
    }

    fn moves(c: &[RoomChange]) -> Vec<(&str, Move, usize, usize)> {
        c.iter()
            .map(|c| (c.room.as_str(), c.change, c.sessions, c.members))
            .collect()
    }

    #[test]
    fn devices_are_counted_per_member_and_past_the_numbers_as_other() {
        let mut r = Track::default();
        let two = user(
            "ann",
            vec![
                session("t1", "/a", "desktop", true),
                session("t2", "/a", "desktop", true),
            ],
        );
        r.apply("ann", Some(&two));
        let a = r.room("/a", 10).expect("room");
        assert_eq!(a.members[0].devices.get("desktop"), Some(&2));
        assert_eq!(a.by_device.get("desktop"), Some(&2));
        // Every number taken by a flood of made-up device types.
        for i in 1..usize::from(DeviceNo::MAX) {
            r.rooms.device(Some(&format!("made-up-{i}")));
        }
        let late = user("bob", vec![session("b1", "/a", "brand-new", true)]);
        r.apply("bob", Some(&late));
        let a = r.room("/a", 10).expect("room");
        assert_eq!(a.by_device.get(OTHER_DEVICE), Some(&1));
        assert_eq!(a.by_device.get("brand-new"), None);
        assert_eq!(a.by_device.get("desktop"), Some(&2));
    }

    #[test]
    fn two_tabs_in_two_rooms_then_one_closes_then_the_other() {
        let mut r = Track::default();
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
        let quiz = r.room("/quiz", 10).expect("room");
        assert_eq!((quiz.users, quiz.sessions), (2, 3));
        assert_eq!(quiz.by_device.get("mobile"), Some(&1));
        assert_eq!(quiz.members[0].devices.get("desktop"), Some(&1));
        assert_eq!(quiz.members[0].devices.get("mobile"), Some(&1));
        assert!(r.room("/results", 10).is_none());
        // One tab ends: ann stays; the other ends too: ann leaves.
        let mut one = moved.clone();
        one.sessions[1].active = false;
        one.sessions[1].ended_at = Some(20);
        assert_eq!(
            moves(&r.apply("ann", Some(&one))),
            [("/quiz", Move::Update, 1, 2)]
        );
        assert_eq!(moves(&r.apply("ann", None)), [("/quiz", Move::Leave, 0, 1)]);
        let members: Vec<String> = r
            .room("/quiz", 10)
            .map(|q| q.members.into_iter().map(|m| m.user_id).collect())
            .unwrap_or_default();
        assert_eq!(members, ["bob"]);
        assert_eq!(
            r.rooms.busiest(5, None),
            [RoomCount {
                room: "/quiz".into(),
                users: 1,
                sessions: 1
            }]
        );
    }

    #[test]
    fn a_change_in_a_room_of_ten_thousand_is_one_diff() {
        let mut r = Track::default();
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
        let big = r.room("/big", 3).expect("room");
        assert_eq!(
            (big.users, big.sessions, big.members.len()),
            (10_000, 10_000, 3)
        );
        assert_eq!(big.by_device.get("mobile"), Some(&1));
    }
}
