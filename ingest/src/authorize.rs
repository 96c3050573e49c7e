//! Who may emit which event: the one set of rules for both streams.
//!
//! A user token acts for its own `sub` only; a service acts for anyone. Only a
//! service starts an import for another owner or without owner. Only an
//! admin or `IMPORT_ADMIN` transfers one. Once the ingest knows an import's
//! owner, only that owner, an admin, `IMPORT_ADMIN` or a service writes its
//! events.

use serde_json::Value;
use sessionfold_auth::Caller;
use sessionfold_schemas::{ActivityBody, ActivityEvent, ImportBody, ImportEvent};

use crate::parse::{FieldError, item_path};

/// An event about to be accepted, with what the ingest knows around it.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// An activity event.
    Activity(&'a ActivityEvent),
    /// An import event, with the import's owner as the ingest knows it:
    /// `None` when unknown, `Some(None)` for a legacy import.
    Import(&'a ImportEvent, Option<Option<&'a str>>),
}

/// Why a caller may not emit an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The field the refusal is about, when one is.
    pub field: Option<&'static str>,
    /// The rule broken.
    pub reason: String,
}

impl Forbidden {
    fn at(field: &'static str, reason: impl Into<String>) -> Forbidden {
        Forbidden {
            field: Some(field),
            reason: reason.into(),
        }
    }

    fn whole(reason: impl Into<String>) -> Forbidden {
        Forbidden {
            field: None,
            reason: reason.into(),
        }
    }

    /// The message, with the field named under `path` (such as `events[2].`).
    pub fn message(&self, path: &str) -> String {
        match self.field {
            Some(f) => format!("{path}{f}: {}", self.reason),
            None => self.reason.clone(),
        }
    }
}

const FOR_OWN_SUB: &str = "a user token may only emit events for its own sub";

/// Decides whether `caller` may emit `event`.
pub fn authorize(caller: &Caller, event: Event<'_>) -> Result<(), Forbidden> {
    match event {
        Event::Activity(e) => {
            if !caller.may_act_for(&e.user_id) {
                return Err(Forbidden::at("user_id", FOR_OWN_SUB));
            }
            // A page names the room it joins: only one the room rule allows.
            let page = match &e.body {
                ActivityBody::SessionStarted(s) => s.page.as_deref(),
                ActivityBody::Heartbeat { page, .. } => page.as_deref(),
                ActivityBody::PageViewed { page, .. } => Some(page.as_str()),
                ActivityBody::SessionEnded { .. } => None,
            };
            if let Some(room) = page.filter(|room| !caller.may_enter_room(room)) {
                return Err(Forbidden::at(
                    "page",
                    format!(
                        "{room:?} is a room this token may not enter (its room claim does not name it)"
                    ),
                ));
            }
        }
        Event::Import(e, owner) => {
            if let Some(actor) = &e.actor_id
                && !caller.may_act_for(actor)
            {
                return Err(Forbidden::at("actor_id", FOR_OWN_SUB));
            }
            match &e.body {
                ImportBody::Started { owner_id, .. } => {
                    let allowed = match owner_id {
                        Some(o) => caller.may_act_for(o),
                        None => caller.is_service(),
                    };
                    if !allowed {
                        return Err(Forbidden::at(
                            "owner_id",
                            "only a service token may start an import for another owner or a legacy import",
                        ));
                    }
                    // Starting an import that exists already is writing to
                    // it: only its owner (or one who acts on any) may.
                    if !caller.acts_on_any_import()
                        && let Some(known) = owner
                        && known != Some(caller.user_id.as_str())
                    {
                        return Err(Forbidden::whole(format!(
                            "import {:?} exists already and is not yours",
                            e.import_id
                        )));
                    }
                    return Ok(());
                }
                ImportBody::Transferred { .. } if !caller.may_transfer_imports() => {
                    return Err(Forbidden::whole(
                        "only an admin or IMPORT_ADMIN may transfer an import",
                    ));
                }
                _ => {}
            }
            if !caller.acts_on_any_import()
                && let Some(owner) = owner
                && owner != Some(caller.user_id.as_str())
            {
                return Err(Forbidden::whole(format!(
                    "import {:?} is not yours: only its owner, an admin, IMPORT_ADMIN or a service may write its events",
                    e.import_id
                )));
            }
        }
    }
    Ok(())
}

/// Why an event of a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The event is not valid (400).
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The caller may not emit it (403).
    #[error("{0}")]
    Forbidden(String),
}

/// Authorizes every event parsed from `body`, in order; the first refusal
/// names the event's path in the body.
pub fn authorize_request<'a>(
    caller: &Caller,
    body: &Value,
    events: impl IntoIterator<Item = Event<'a>>,
) -> Result<(), Refusal> {
    for (i, e) in events.into_iter().enumerate() {
        authorize(caller, e).map_err(|f| Refusal::Forbidden(f.message(&item_path(body, i))))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use sessionfold_auth::RoomAccess;
    use sessionfold_schemas::Interaction;

    use super::*;

    /// A caller with these roles and permissions.
    pub(crate) fn caller(sub: &str, roles: &[&str], permissions: &[&str]) -> Caller {
        Caller {
            user_id: sub.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            ..Caller::default()
        }
    }

    fn progress(actor: &str) -> ImportEvent {
        ImportEvent {
            event_id: "e".into(),
            occurred_at: 0,
            import_id: "imp".into(),
            actor_id: Some(actor.into()),
            body: ImportBody::Accessed,
            received_at: None,
        }
    }

    #[test]
    fn a_user_emits_activity_for_itself_only() {
        let e = ActivityEvent {
            event_id: "e".into(),
            occurred_at: 0,
            user_id: "bob".into(),
            session_id: "s".into(),
            body: ActivityBody::Heartbeat {
                page: None,
                activity: Interaction::Timer,
            },
            received_at: None,
        };
        let refused = authorize(&caller("alice", &["admin"], &[]), Event::Activity(&e));
        assert_eq!(
            refused.map_err(|f| f.message("events[3].")),
            Err("events[3].user_id: a user token may only emit events for its own sub".into())
        );
        assert_eq!(
            authorize(&caller("bob", &[], &[]), Event::Activity(&e)),
            Ok(())
        );
        assert_eq!(
            authorize(&caller("svc", &["service"], &[]), Event::Activity(&e)),
            Ok(())
        );
    }

    #[test]
    fn only_the_known_owner_or_an_import_admin_writes_an_import() {
        let alice = caller("alice", &[], &[]);
        let e = progress("alice");
        assert_eq!(authorize(&alice, Event::Import(&e, None)), Ok(()));
        assert_eq!(
            authorize(&alice, Event::Import(&e, Some(Some("alice")))),
            Ok(())
        );
        let refused = authorize(&alice, Event::Import(&e, Some(Some("bob"))));
        assert_eq!(
            refused.map_err(|f| f.message("")),
            Err("import \"imp\" is not yours: only its owner, an admin, IMPORT_ADMIN or a service may write its events".into())
        );
        assert!(authorize(&alice, Event::Import(&e, Some(None))).is_err());
        let admin = caller("alice", &[], &["IMPORT_ADMIN"]);
        assert_eq!(
            authorize(&admin, Event::Import(&e, Some(Some("bob")))),
            Ok(())
        );
    }

    #[test]
    fn a_known_import_is_started_again_only_by_its_owner() {
        let started = ImportEvent {
            body: ImportBody::Started {
                owner_id: Some("alice".into()),
                json_hash: "h".into(),
                file_name: "f.json".into(),
                questions_total: 1,
            },
            ..progress("alice")
        };
        let alice = caller("alice", &[], &[]);
        assert_eq!(authorize(&alice, Event::Import(&started, None)), Ok(()));
        assert_eq!(
            authorize(&alice, Event::Import(&started, Some(Some("alice")))),
            Ok(())
        );
        assert_eq!(
            authorize(&alice, Event::Import(&started, Some(Some("bob"))))
                .map_err(|f| f.message("")),
            Err("import \"imp\" exists already and is not yours".into())
        );
        assert!(authorize(&alice, Event::Import(&started, Some(None))).is_err());
        let svc = caller("svc", &["service"], &[]);
        assert_eq!(
            authorize(&svc, Event::Import(&started, Some(Some("bob")))),
            Ok(())
        );
    }

    #[test]
    fn a_page_enters_only_a_room_the_rule_allows() {
        let view = |page: &str| ActivityEvent {
            event_id: "e".into(),
            occurred_at: 0,
            user_id: "ann".into(),
            session_id: "s".into(),
            body: ActivityBody::PageViewed {
                page: page.into(),
                title: None,
            },
            received_at: None,
        };
        let open = caller("ann", &[], &[]);
        assert_eq!(authorize(&open, Event::Activity(&view("/secret"))), Ok(()));
        let limited = Caller {
            rooms: RoomAccess::Only(vec!["team-7".into(), "/docs/*".into()]),
            ..caller("ann", &[], &[])
        };
        for allowed in ["team-7", "/docs/", "/docs/intro"] {
            assert_eq!(
                authorize(&limited, Event::Activity(&view(allowed))),
                Ok(()),
                "{allowed}"
            );
        }
        for refused in ["team-70", "/doc", "/secret"] {
            assert_eq!(
                authorize(&limited, Event::Activity(&view(refused))).map_err(|f| f.field),
                Err(Some("page")),
                "{refused}"
            );
        }
        let service = Caller {
            rooms: RoomAccess::Only(Vec::new()),
            ..caller("svc", &["service"], &[])
        };
        assert_eq!(
            authorize(&service, Event::Activity(&view("/secret"))),
            Ok(())
        );
    }
}
