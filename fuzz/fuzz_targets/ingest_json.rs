//! Any request body on the two ingest routes: parsing never panics, and an
//! accepted event always encodes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessionfold_auth::Caller;
use sessionfold_ingest::{Receipt, activity_request, import_request};
use sessionfold_schemas::Contract;

fn contract() -> &'static Contract {
    static C: OnceLock<Contract> = OnceLock::new();
    C.get_or_init(|| Contract::load().expect("the compiled-in schemas load"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let r = Receipt {
        received_at: 1_780_000_000_000,
        max_clock_skew: 60_000,
    };
    if let Ok(events) = activity_request(&body, r, 100) {
        for e in events {
            contract()
                .encode_activity(&e)
                .expect("an accepted event encodes");
        }
    }
    let callers = [
        Caller {
            user_id: "alice".into(),
            ..Caller::default()
        },
        Caller {
            user_id: "svc".into(),
            roles: vec!["service".into()],
            ..Caller::default()
        },
    ];
    for caller in &callers {
        if let Ok(events) = import_request(&body, "imp-1", caller, r, 100) {
            for e in events {
                contract()
                    .encode_import(&e)
                    .expect("an accepted event encodes");
            }
        }
    }
});
