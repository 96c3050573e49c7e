//! What a changelog record changed, as the live stream labels it: the same
//! words for every subscriber, decided from the answer before and after.

use crate::view::UserJson;

/// What a user's presence record did, as the stream's `change` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// The user is gone from the view (expired for good, or forgotten).
    Deleted,
    /// The user was offline or unknown and is online now.
    Online,
    /// The user was online and is not now.
    Offline,
    /// Still online or offline, on another page.
    Page,
    /// Anything else (a heartbeat, a new session beside one still active).
    Updated,
}

impl PresenceChange {
    /// The word the stream sends.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceChange::Deleted => "deleted",
            PresenceChange::Online => "online",
            PresenceChange::Offline => "offline",
            PresenceChange::Page => "page",
            PresenceChange::Updated => "updated",
        }
    }
}

/// What the stream needs of a user's answer before a change: whether they
/// were online and on which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceBefore {
    online: bool,
    page: Option<String>,
}

impl PresenceBefore {
    /// Takes what matters from the answer before the change.
    pub fn of(u: &UserJson) -> PresenceBefore {
        PresenceBefore {
            online: u.online,
            page: current_page(u),
        }
    }

    /// Labels the change from `self` (or an unknown user) to `after`.
    pub fn change(before: Option<&PresenceBefore>, after: Option<&UserJson>) -> PresenceChange {
        match (after, before) {
            (None, _) => PresenceChange::Deleted,
            (Some(u), None) if u.online => PresenceChange::Online,
            (Some(u), Some(b)) if u.online && !b.online => PresenceChange::Online,
            (Some(u), Some(b)) if !u.online && b.online => PresenceChange::Offline,
            (Some(u), Some(b)) if current_page(u) != b.page => PresenceChange::Page,
            _ => PresenceChange::Updated,
        }
    }
}

/// The page of the user's most recent session.
fn current_page(u: &UserJson) -> Option<String> {
    u.sessions.first().and_then(|s| s.current_page.clone())
}

/// What an import's record did, with the owners the stream routes it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportChange {
    /// `deleted`, `transferred` or `updated`.
    pub change: &'static str,
    /// Who owns it now (who owned it, for a deletion).
    pub owner: Option<String>,
    /// Who owned it before a transfer.
    pub previous: Option<String>,
}

impl ImportChange {
    /// Labels an import's change from its owner before (`None`: unknown
    /// import) to its owner after (`None`: deleted).
    pub fn of(before: Option<Option<String>>, after: Option<Option<String>>) -> ImportChange {
        let (change, owner, previous) = match (before, after) {
            (Some(old), None) => ("deleted", old, None),
            (Some(old), Some(new)) if old != new => ("transferred", new, old),
            (_, new) => ("updated", new.flatten(), None),
        };
        ImportChange {
            change,
            owner,
            previous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::SessionJson;

    fn user(online: bool, page: Option<&str>) -> UserJson {
        UserJson {
            user_id: "u".into(),
            email: None,
            full_name: None,
            membership: None,
            roles: vec![],
            online,
            last_seen: String::new(),
            sessions: vec![SessionJson {
                session_id: "s".into(),
                device_type: None,
                browser: None,
                os: None,
                ip_address: None,
                current_page: page.map(str::to_owned),
                started_at: None,
                last_activity: String::new(),
                active: online,
                ended_reason: None,
                page_views: 0,
                heartbeats: 0,
            }],
        }
    }

    fn label(before: Option<UserJson>, after: Option<UserJson>) -> &'static str {
        let before = before.as_ref().map(PresenceBefore::of);
        PresenceBefore::change(before.as_ref(), after.as_ref()).as_str()
    }

    #[test]
    fn presence_changes_are_labelled_by_what_a_viewer_sees_change() {
        let on = |p| Some(user(true, p));
        let off = |p| Some(user(false, p));
        assert_eq!(label(None, on(Some("/a"))), "online");
        assert_eq!(label(None, off(Some("/a"))), "updated");
        assert_eq!(label(off(Some("/a")), on(Some("/a"))), "online");
        assert_eq!(label(on(Some("/a")), off(Some("/a"))), "offline");
        // Going offline wins over a page change in the same record.
        assert_eq!(label(on(Some("/a")), off(Some("/b"))), "offline");
        assert_eq!(label(on(Some("/a")), on(Some("/b"))), "page");
        assert_eq!(label(on(None), on(Some("/b"))), "page");
        assert_eq!(label(off(Some("/a")), off(Some("/b"))), "page");
        assert_eq!(label(on(Some("/a")), on(Some("/a"))), "updated");
        assert_eq!(label(on(Some("/a")), None), "deleted");
        assert_eq!(label(None, None), "deleted");
    }

    #[test]
    fn an_import_change_names_its_owners() {
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            ImportChange::of(None, Some(some("ann"))),
            ImportChange {
                change: "updated",
                owner: some("ann"),
                previous: None
            }
        );
        assert_eq!(
            ImportChange::of(Some(some("ann")), Some(some("bob"))),
            ImportChange {
                change: "transferred",
                owner: some("bob"),
                previous: some("ann")
            }
        );
        assert_eq!(
            ImportChange::of(Some(some("ann")), None),
            ImportChange {
                change: "deleted",
                owner: some("ann"),
                previous: None
            }
        );
        assert_eq!(
            ImportChange::of(Some(some("ann")), Some(some("ann"))),
            ImportChange {
                change: "updated",
                owner: some("ann"),
                previous: None
            }
        );
    }
}
